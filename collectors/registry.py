"""Collectors by name. Built-ins register through the same `register` as anything else:
a new source is one module (a `Collector` subclass) plus one `register(...)` line below.

The name is the collector's section under `collectors:` in spendguard.yaml, the argument of
`spendguard collect NAME` and the `collector` column of its runs and checkpoints.
"""

from __future__ import annotations

from typing import Any

from app.errors import SpendguardError
from app.settings import CollectorsConfig, Settings
from collectors.anthropic import AnthropicCollector
from collectors.aws_ce import AwsCeCollector
from collectors.base import Collector
from collectors.focus import FocusCollector
from collectors.openai import OpenAICollector
from collectors.opencost import OpenCostCollector
from collectors.traces import TracesCollector

AnyCollector = Collector[Any, Any, Any]

_REGISTRY: dict[str, type[AnyCollector]] = {}


class UnknownCollector(SpendguardError):
    """A name that no registered collector has."""


def register(cls: type[AnyCollector]) -> type[AnyCollector]:
    """Add a collector class; its `name` must be a section of `collectors:` in the settings."""
    name = getattr(cls, "name", None)
    if not name:
        raise TypeError(f"{cls.__name__} has no `name`")
    if name not in CollectorsConfig.model_fields:
        raise TypeError(f"collector {name!r} has no `collectors.{name}` settings section")
    if _REGISTRY.get(name, cls) is not cls:
        raise TypeError(f"collector {name!r} is already registered by {_REGISTRY[name].__name__}")
    _REGISTRY[name] = cls
    return cls


def unregister(name: str) -> None:
    """Remove a collector (tests that register a fake one clean up with this)."""
    _REGISTRY.pop(name, None)


def names() -> list[str]:
    return sorted(_REGISTRY)


def get(name: str) -> AnyCollector:
    """A new instance of the named collector."""
    try:
        return _REGISTRY[name]()
    except KeyError:
        raise UnknownCollector(
            f"no collector named {name!r}; available: {', '.join(names()) or 'none'}"
        ) from None


def enabled(settings: Settings) -> list[AnyCollector]:
    """The registered collectors that spendguard.yaml enables, by name."""
    return [c for c in (get(n) for n in names()) if c.enabled(settings)]


def not_available(settings: Settings) -> list[str]:
    """Sections enabled in the settings whose collector is not registered (not built yet)."""
    return [
        name
        for name, section in settings.collectors
        if getattr(section, "enabled", False) and name not in _REGISTRY
    ]


# ── built-in collectors: one line each ─────────────────────────────────────────────────────────
register(TracesCollector)
register(OpenAICollector)
register(AnthropicCollector)
register(AwsCeCollector)
register(FocusCollector)
register(OpenCostCollector)
