"""spendguard: what one request to an LLM feature costs, and who stops a runaway spend."""

__version__ = "0.1.0"
