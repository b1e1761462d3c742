"""The true-up: scale estimated (trace) call costs so they add up to the provider's bill.

`refresh_true_up` recomputes the `true_up_factors` of one provider for a range of UTC days
(see `app.warehouse.tables_trueup` for how a factor is applied, exactly, in SQL). A model-day
gets a factor when its reconciliation row (`app.reports.reconcile`) has a USD bill of 0 or more,
a priced estimate above 0 and no line in another currency, and only once the day is over (UTC):
a day's bill grows while the day runs (and providers' cost reports lag it by hours), so a factor
from today's partial bill would scale today's calls down to what has been billed so far, and
move at every billing run. Other model-days keep their estimate, and the result says why.
It runs after each successful run of a billing collector when `pricing.true_up` is on (for the
days that run re-read) and on demand as `spendguard trueup`. Calls that arrive after it ran are
scaled by the factor of their day, so a model-day's total can drift from its bill until the
next refresh; refreshing again makes it exact. The rollups carry each call's trued-up cost
(`app.warehouse.tables_rollup`), so the request days of the calls whose factor (or residual)
a refresh changes are summed again with the new factors before they are written, and their
rollup rows replaced in the transaction that writes them (`app.rollups.swap`): pages read
those days from the rollups throughout, never from the base tables. A billing collector
re-reads its last days every run, and their bills mostly come out as they were: their days
keep their rollup rows as they are.

One refresh of a provider at a time (the named lock `trueup:<provider>`): a second one finds
it taken and reports `busy` rather than racing the first.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from fractions import Fraction
from typing import Any

from sqlalchemy import Connection, Engine, and_, delete, func, select, update
from sqlalchemy.orm import Session

from app.reports.reconcile import Key, TracedGroup, midnight, reconcile
from app.rollups.dirty import provider_call_hours
from app.rollups.swap import WAIT, NewFactors, write_change
from app.warehouse.locks import named_lock
from app.warehouse.tables import LlmCall
from app.warehouse.tables_billing import BilledCost
from app.warehouse.tables_trueup import MAX_TERM, TrueUpFactor, factor_join, scaled_cost
from app.warehouse.types import as_date

DAY = timedelta(days=1)
BILLING_COLLECTORS = frozenset({"openai", "anthropic"})  # collector name = provider name


@dataclass(slots=True)
class TrueUpResult:
    provider: str
    busy: bool = False  # another refresh of this provider was running: nothing done
    model_days: int = 0
    estimated_nanousd: int = 0
    billed_nanousd: int = 0
    skipped: list[str] = field(default_factory=list)  # model-days left as estimated, and why
    # The days whose factors changed (those whose calls' trued-up costs did).
    changed_days: list[date] = field(default_factory=list)
    # The request days of their calls whose rollups were rebuilt with the new factors and
    # written with them (`app.rollups.swap`); the others are marked for the refresh.
    rebuilt_days: list[date] = field(default_factory=list)


def bounded_fraction(billed: int, estimated: int) -> Fraction:
    """billed / estimated with both terms at most `MAX_TERM`: exact when they fit, else the
    closest such fraction (relative error below about 1e-9; the residual absorbs it)."""
    exact = Fraction(billed, estimated)
    limit = MAX_TERM
    approx = exact.limit_denominator(limit)
    while approx.numerator > MAX_TERM and limit > 1:
        limit //= 2
        approx = exact.limit_denominator(limit)
    if approx.numerator > MAX_TERM:
        raise ValueError(f"billed / estimated = {billed} / {estimated} is too large to apply")
    return approx


def billed_providers(engine: Engine, since: date, until: date | None) -> list[str]:
    conds = [BilledCost.day >= since] + ([BilledCost.day < until] if until else [])
    query = select(BilledCost.provider).where(*conds).distinct().order_by(BilledCost.provider)
    with engine.connect() as conn:
        return [str(p) for p in conn.execute(query).scalars()]


def refresh_true_up(
    engine: Engine,
    provider: str,
    since: date,
    until: date | None = None,
    *,
    now: datetime | None = None,
    wait: float = WAIT,
) -> TrueUpResult:
    """Recompute the provider's factors for the days `since` (inclusive) to `until`
    (exclusive; default: through today), replacing those stored for these days. Days not over
    at `now` (default: the current time) get no factor. `wait`: how long to wait for the
    rollups' refresh lock before marking the changed days rather than rebuilding them."""
    if now is not None and now.tzinfo is None:
        raise ValueError("refresh_true_up: `now` must be timezone-aware")
    today = (now or datetime.now(UTC)).astimezone(UTC).date()
    until = until or today + DAY
    result = TrueUpResult(provider)
    with named_lock(engine, f"trueup:{provider}") as held:
        if not held:
            result.busy = True
            return result
        recon = reconcile(engine, since, until)
        not_usd = {(r.day, r.provider, r.model) for r in recon.not_usd}
        factors: dict[Key, tuple[int, int, Fraction]] = {}
        for row in recon.rows:
            if row.provider != provider or row.line_item is not None:
                continue
            key = (row.day, row.provider, row.model or "")
            billed, estimated = row.billed_nanousd, row.estimated_nanousd or 0
            why = _not_trued_up(billed, estimated, key in not_usd, row.day >= today)
            if why or billed is None:
                result.skipped.append(f"{row.day} {row.model}: {why}")
                continue
            try:
                factors[key] = (billed, estimated, bounded_fraction(billed, estimated))
            except ValueError as exc:  # a bill billions of times its estimate: not scaled
                result.skipped.append(f"{row.day} {row.model}: {exc}")
        with Session(engine) as session:
            before = _applied(session, provider, since, until)
            _replace(session, provider, since, until, recon.traced, factors)
            _settle_residuals(session, provider, since, until, factors)
            # The rollups sum trued-up costs: a day whose factors came out as they were keeps
            # its rollup rows; the request days of the calls of the others are rebuilt with
            # the new factors and swapped in with them (`app.rollups.swap`).
            changed = sorted({row[1] for row in before ^ _applied(session, provider, since, until)})
            if changed:
                new = NewFactors(provider, since, until, _stored(session, provider, since, until))
                session.rollback()
            else:
                session.commit()
        if changed:
            # (The hours read once the change may be written: `write_change`.)
            hours = functools.partial(_request_hours, provider=provider, days=changed)
            result.rebuilt_days = write_change(engine, new, hours, wait).rebuilt
        result.changed_days = changed
        result.model_days = len(factors)
        result.billed_nanousd = sum(b for b, _, _ in factors.values())
        result.estimated_nanousd = sum(e for _, e, _ in factors.values())
    return result


def _applied(
    session: Session, provider: str, since: date, until: date
) -> set[tuple[str, date, int, int, str | None, str | None, int]]:
    """What the provider's factors of [since, until) make of its calls' costs (`trued_cost`):
    per model and day, the factor and the call that carries the residual, with the residual."""
    f = TrueUpFactor
    rows = session.execute(
        select(
            f.model,
            f.day,
            f.factor_num,
            f.factor_den,
            f.carrier_trace_id,
            f.carrier_span_id,
            f.residual_nano,
        ).where(f.provider == provider, f.day >= since, f.day < until)
    )
    return {(m, as_date(d), int(n), int(q), t, sp, int(r)) for m, d, n, q, t, sp, r in rows}


def _stored(session: Session, provider: str, since: date, until: date) -> list[dict[str, Any]]:
    """The provider's factor rows of [since, until) as written (every column)."""
    f = TrueUpFactor.__table__
    where = and_(f.c.provider == provider, f.c.day >= since, f.c.day < until)
    return [dict(row) for row in session.execute(select(f).where(where)).mappings()]


def _request_hours(
    conn: Session | Connection, provider: str, days: list[date]
) -> set[tuple[date, int]]:
    """The request days and hours of the provider's calls on `days`."""
    hours: set[tuple[date, int]] = set()
    for day in days:
        query = provider_call_hours(provider, midnight(day), midnight(day + DAY))
        hours.update((as_date(d), int(h)) for d, h in conn.execute(query))
    return hours


def _not_trued_up(
    billed: int | None, estimated: int, has_other_currency: bool, running: bool
) -> str:
    if running:
        return "the day is not over yet: its bill is partial"
    if has_other_currency:
        return "billed in another currency"
    if billed is None:
        return "no bill for the day yet"
    if billed < 0:
        return "billed amount is negative (a credit)"
    if estimated <= 0:
        return "no priced call to scale"
    return ""


def _replace(
    session: Session,
    provider: str,
    since: date,
    until: date,
    traced: list[TracedGroup],
    factors: dict[Key, tuple[int, int, Fraction]],
) -> None:
    session.execute(
        delete(TrueUpFactor).where(
            TrueUpFactor.provider == provider,
            TrueUpFactor.day >= since,
            TrueUpFactor.day < until,
        )
    )
    now = datetime.now(UTC)
    for group in traced:
        key = group.key
        if key not in factors:
            continue
        billed, estimated, ratio = factors[key]
        day = key[0]
        session.add(
            TrueUpFactor(
                provider=provider,
                model=group.raw_model,
                day=day,
                starts_at=midnight(day),
                ends_at=midnight(day + DAY),
                billed_model=key[2],
                billed_nano=billed,
                estimated_nano=estimated,
                factor_num=ratio.numerator,
                factor_den=ratio.denominator,
                residual_nano=0,
                computed_at=now,
            )
        )
    session.flush()


def _settle_residuals(
    session: Session,
    provider: str,
    since: date,
    until: date,
    factors: dict[Key, tuple[int, int, Fraction]],
) -> None:
    """Give each model-day's leftover (bill − sum of scaled calls) to its costliest call."""
    group = (TrueUpFactor.day, TrueUpFactor.billed_model)
    # The calls' own bounds and provider too (what the factors' ranges imply): the planner then
    # reads the range's calls by the `started_at` index, not every call (PostgreSQL took 20 s
    # for 4 days of 14.5 million calls without them).
    in_range = and_(
        TrueUpFactor.provider == provider,
        TrueUpFactor.day >= since,
        TrueUpFactor.day < until,
        LlmCall.provider == provider,
        LlmCall.started_at >= midnight(since),
        LlmCall.started_at < midnight(until),
    )
    sums = select(*group, func.sum(scaled_cost())).join(LlmCall, factor_join()).where(in_range)
    scaled = {
        (as_date(d), m): int(s or 0) for d, m, s in session.execute(sums.group_by(*group)).all()
    }
    rank = (
        func.row_number()
        .over(
            partition_by=group,
            order_by=(LlmCall.cost_nanousd.desc(), LlmCall.trace_id, LlmCall.span_id),
        )
        .label("rank")
    )
    ranked = (
        select(*group, LlmCall.trace_id, LlmCall.span_id, rank)
        .join(LlmCall, factor_join())
        .where(in_range, LlmCall.cost_nanousd.is_not(None))
        .subquery()
    )
    carriers = session.execute(
        select(ranked.c.day, ranked.c.billed_model, ranked.c.trace_id, ranked.c.span_id).where(
            ranked.c.rank == 1
        )
    ).all()
    by_key = {(as_date(day), model): (trace, span) for day, model, trace, span in carriers}
    for (day, _provider, model), (billed, _estimated, _ratio) in factors.items():
        trace_id, span_id = by_key[(day, model)]  # estimated > 0: some call costs something
        session.execute(
            update(TrueUpFactor)
            .where(
                TrueUpFactor.provider == provider,
                TrueUpFactor.day == day,
                TrueUpFactor.billed_model == model,
            )
            .values(
                carrier_trace_id=trace_id,
                carrier_span_id=span_id,
                residual_nano=billed - scaled.get((day, model), 0),
            )
        )
