"""The `spendguard` command line; see `app.cli.root`."""

from app.cli import alerts, billing, collect, demo, kill, pricing, processes, tokens, warehouse  # noqa: F401  (each registers its commands)
from app.cli.root import app, main

__all__ = ["app", "main"]
