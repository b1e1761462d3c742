"""Rules compiled from config: the validated `RuleConfig` plus what evaluation needs (its
window, its condition object from the registry, durations, and a hash of its configuration so
the audit log can say when a rule changed)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta

from alerts.conditions import Condition, build_condition
from alerts.config import KILL, RuleConfig
from alerts.windows import WindowSpec
from app.durations import parse_duration
from app.settings import Settings

GroupKey = tuple[str, ...]  # a group's values, in the rule's `group_by` order


@dataclass(frozen=True)
class Rule:
    config: RuleConfig
    spec: WindowSpec
    condition: Condition
    cooldown: timedelta | None
    renotify: timedelta | None
    config_hash: str

    @property
    def id(self) -> str:
        return self.config.id

    @property
    def dims(self) -> tuple[str, ...]:
        return tuple(self.config.group_by)

    @property
    def notifiers(self) -> list[str]:
        return [a for a in self.config.actions if a != KILL]

    def group(self, key: GroupKey) -> dict[str, str]:
        return dict(zip(self.dims, key, strict=True))

    def describe(self) -> str:
        """One line: what the rule watches and when it fires."""
        cfg = self.config
        scope = f" per {'+'.join(cfg.group_by)}" if cfg.group_by else ""
        where = "".join(f" {d}={','.join(v)}" for d, v in cfg.filter_values().items())
        zone = f" ({cfg.timezone})" if self.spec.calendar and cfg.timezone != "UTC" else ""
        actions = ", ".join(cfg.actions) or "no actions"
        return (
            f"{cfg.metric}{scope}{where} over {cfg.window}{zone}: {self.condition.summary()} "
            f"[{cfg.severity}] → {actions}"
        )


def compile_rule(config: RuleConfig) -> Rule:
    spec = WindowSpec.parse(config.window, config.timezone)
    return Rule(
        config=config,
        spec=spec,
        condition=build_condition(config.condition, config.metric),
        cooldown=parse_duration(config.cooldown) if config.cooldown else None,
        renotify=parse_duration(config.renotify) if config.renotify else None,
        config_hash=config_hash(config),
    )


def compile_rules(settings: Settings, ids: Sequence[str] | None = None) -> list[Rule]:
    """The enabled rules (or those named in `ids`, enabled or not), in config order."""
    chosen = [r for r in settings.rules if (r.id in ids if ids is not None else r.enabled)]
    return [compile_rule(r) for r in chosen]


def config_hash(config: RuleConfig) -> str:
    canonical = json.dumps(config.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def group_json(group: dict[str, str]) -> str:
    return json.dumps(group, sort_keys=True, ensure_ascii=False, separators=(",", ":"))


def group_id(group: dict[str, str]) -> str:
    """A fixed-size key for a group (its values are untrusted and may be long)."""
    return hashlib.sha256(group_json(group).encode()).hexdigest()
