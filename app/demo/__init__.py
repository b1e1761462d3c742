"""Synthetic but realistic demo data for `spendguard demo`, in the real source format.

`write_demo_files(out_dir, days=30, seed=7)` writes OTLP JSON Lines traces
(`traces-YYYY-MM-DD.jsonl`) of a small company's LLM application: 7 endpoints, 10 models from
OpenAI, Anthropic and a self-hosted vLLM model, 360 users in 6 teams with a heavy-tailed request
rate, daily and weekly rhythms, prompt-cache hits, requests with no LLM call, a few failed calls,
and one runaway agent loop in the last two days. `generate_demo` does the same and returns a
`DemoSummary` of what it wrote.

The config the demo data needs, to be merged into settings by the caller:
- `DEMO_PRICE_OVERRIDES`: `pricing.overrides` entries for the self-hosted model;
- `DEMO_USER_TEAMS`: `attribution.user_teams` for the users whose spans carry no `team.id`.

Modules: `catalog` (models, endpoints, teams, users: fixed data), `traffic` (the seeded volume,
users and endpoints), `calls` (the LLM calls of one request), `otlp_writer` (OTLP JSON Lines),
`run` (the entry points).
"""

from app.demo.catalog import DEMO_PRICE_OVERRIDES, DEMO_USER_TEAMS, RUNAWAY_USER
from app.demo.run import DemoSummary, default_end, generate_demo, write_demo_files

__all__ = [
    "DEMO_PRICE_OVERRIDES",
    "DEMO_USER_TEAMS",
    "RUNAWAY_USER",
    "DemoSummary",
    "default_end",
    "generate_demo",
    "write_demo_files",
]
