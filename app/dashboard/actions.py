"""What the dashboard may change, each checked against the person's role *here*, where the
change is made (a disabled button is a courtesy, not the protection).

Kill switches go through `app.killswitch.store` (the same transaction as the CLI and the API:
row, audit entry with who, gateway events, version bump); a collector runs under the same
named lock as the worker and `spendguard collect`, so it never races their checkpoint.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import Engine

from app.dashboard.auth import Identity
from app.errors import SpendguardError
from app.killswitch import store
from app.killswitch.model import Switch
from app.settings import Settings
from app.warehouse.locks import named_lock
from collectors import registry
from collectors.base import RunOutcome


class NotAllowed(SpendguardError):
    """The person's role does not allow this change."""


class Busy(SpendguardError):
    """The collector is already running elsewhere (the worker, `spendguard collect`)."""


def _require_operator(identity: Identity, what: str) -> None:
    if not identity.is_operator:
        raise NotAllowed(
            f"{identity.name} is a {identity.role}: only operators may {what} "
            "(dashboard.operators in spendguard.yaml)"
        )


def release_switch(
    engine: Engine,
    settings: Settings,
    identity: Identity,
    switch_id: int,
    now: datetime | None = None,
) -> Switch:
    _require_operator(identity, "release kill switches")
    moment = now or datetime.now(UTC)
    return store.release(engine, settings, switch_id, identity.audit_name, moment)


def approve_switch(
    engine: Engine,
    settings: Settings,
    identity: Identity,
    switch_id: int,
    now: datetime | None = None,
) -> Switch:
    _require_operator(identity, "approve kill switches")
    moment = now or datetime.now(UTC)
    return store.approve(engine, settings, switch_id, identity.audit_name, moment)


def run_collector_now(
    engine: Engine, settings: Settings, identity: Identity, name: str
) -> RunOutcome:
    """Run one collector once, now, from its checkpoint (like `spendguard collect NAME`)."""
    _require_operator(identity, "run collectors")
    collector = registry.get(name)
    with named_lock(engine, f"collector:{name}") as held:
        if not held:
            raise Busy(f"{name} is running elsewhere right now (the worker?); try again shortly")
        return collector.run(engine, settings)
