"""Notifiers by kind (`notifiers.<name>.kind` in spendguard.yaml): the built-ins register
through the same `register` an extension would use."""

from alerts.notifiers import slack, webhook  # noqa: F401  (each registers its kind)
from alerts.notifiers.base import NOTIFIERS, Message, Notifier, Outcome, register
from app.settings import Settings

__all__ = ["NOTIFIERS", "Message", "Notifier", "Outcome", "notifier_problems", "register"]


def notifier_problems(settings: Settings) -> list[str]:
    """Configured notifiers that cannot work, and rules whose notifiers are switched off."""
    problems = []
    for name, config in settings.notifiers.items():
        problem = NOTIFIERS[config.kind].problem(config)
        if problem:
            problems.append(f"notifiers.{name}: {problem}")
    for i, rule in enumerate(settings.rules):
        for action in rule.actions:
            target = settings.notifiers.get(action)
            if rule.enabled and target is not None and not target.enabled:
                problems.append(
                    f"rules[{i}] ({rule.id}): notifier {action!r} has enabled: false, so this "
                    "rule would notify nobody there"
                )
    return problems
