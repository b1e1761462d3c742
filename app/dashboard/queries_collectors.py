"""Collector runs and data freshness, aggregated in SQL (one row per collector or source)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime

from sqlalchemy import Engine, func, select

from app.warehouse.tables import CollectorRun, Request
from app.warehouse.tables_billing import BilledCost
from app.warehouse.types import as_date

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
INTERNAL = frozenset({"reprice"})  # recorded in collector_runs, but not a data source


@dataclass(frozen=True, slots=True)
class Run:
    id: int
    collector: str
    source: str
    status: str
    started_at: datetime
    finished_at: datetime | None
    rows_loaded: int
    rows_rejected: int
    window_start: datetime | None
    window_end: datetime | None
    error: str | None


def recent_runs(engine: Engine, limit: int = 5) -> list[Run]:
    """The last `limit` runs of each collector (and `ingest`), newest first per collector."""
    ranked = select(
        CollectorRun.id,
        func.row_number()
        .over(
            partition_by=CollectorRun.collector,
            order_by=(CollectorRun.started_at.desc(), CollectorRun.id.desc()),
        )
        .label("rank"),
    ).subquery()
    query = (
        select(CollectorRun)
        .join(ranked, ranked.c.id == CollectorRun.id)
        .where(ranked.c.rank <= limit)
        .order_by(CollectorRun.collector, CollectorRun.started_at.desc(), CollectorRun.id.desc())
    )
    with engine.connect() as conn:
        rows = conn.execute(query).all()
    return [
        Run(
            r.id, r.collector, r.source, r.status, _utc(r.started_at) or _EPOCH,
            _utc(r.finished_at), int(r.rows_loaded), int(r.rows_rejected),
            _utc(r.window_start), _utc(r.window_end), r.error,
        )
        for r in rows
    ]  # fmt: skip


@dataclass(frozen=True, slots=True)
class Freshness:
    """How recent a source's data is: `latest` is the newest data point it brought."""

    source: str
    latest: datetime | None
    last_ok_run: datetime | None
    last_status: str | None
    detail: str


def freshness(engine: Engine) -> list[Freshness]:
    """Per source: traces (the latest request), each billed provider (its latest billed day),
    and each collector's last successful run."""
    last_ok = (
        select(CollectorRun.collector, func.max(CollectorRun.finished_at).label("at"))
        .where(CollectorRun.status == "ok")
        .group_by(CollectorRun.collector)
    )
    last_id = select(func.max(CollectorRun.id).label("id")).group_by(CollectorRun.collector)
    with engine.connect() as conn:
        ok_at = {r.collector: _utc(r.at) for r in conn.execute(last_ok)}
        last_status = {
            r.collector: r.status
            for r in conn.execute(
                select(CollectorRun.collector, CollectorRun.status).where(
                    CollectorRun.id.in_(last_id)
                )
            )
        }
        latest_request = conn.execute(select(func.max(Request.started_at))).scalar_one_or_none()
        billed = conn.execute(
            select(BilledCost.provider, func.max(BilledCost.day)).group_by(BilledCost.provider)
        ).all()
    # Traces arrive by the collector, by `spendguard ingest` (and the demo) or by push.
    loads = [at for at in (ok_at.get("traces"), ok_at.get("ingest")) if at is not None]
    out = [
        Freshness(
            "traces",
            _utc(latest_request),
            max(loads) if loads else None,
            last_status.get("traces") or last_status.get("ingest"),
            "latest request",
        )
    ]
    for provider, day in sorted(billed):
        d: date = as_date(day)
        out.append(
            Freshness(
                f"{provider} bill",
                datetime(d.year, d.month, d.day, tzinfo=UTC),
                ok_at.get(provider),
                last_status.get(provider),
                "latest billed day",
            )
        )
    for name in sorted({*ok_at, *last_status} - {"traces", *(p for p, _ in billed)} - INTERNAL):
        out.append(
            Freshness(name, ok_at.get(name), ok_at.get(name), last_status.get(name), "last run")
        )
    return out


def _utc(value: object) -> datetime | None:
    if value is None:
        return None
    moment = datetime.fromisoformat(value) if isinstance(value, str) else value
    assert isinstance(moment, datetime)
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
