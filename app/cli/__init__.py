"""The `spendguard` command line; see `app.cli.root`."""

from app.cli import (  # noqa: F401  (each registers its commands)
    alerts,
    billing,
    collect,
    demo,
    gpu,
    kill,
    pricing,
    processes,
    tokens,
    warehouse,
)
from app.cli.root import app, main

__all__ = ["app", "main"]
