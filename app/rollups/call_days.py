"""The reconciliation's rollup (`rollup_call_days`): calls per *call's* UTC day, provider and
served model, rebuilt with the other rollups of a day and read like them.

The other rollups count a call on its request's day; the reconciliation against provider bills
counts it on its own (bills count usage by day). The two differ for a request that spans
midnight, or whose late root moves it to another day, so this rollup is built from `llm_calls`
alone, by the call's `started_at`. It stays exact by the same marks as the others, taken per
call day (`app.rollups.dirty`):

- a call is written once and never changes day, so only the write of a new call and a change of
  its cost (`app.reprice`) make a call day's row stale: `load_batch` marks the days of the
  batch's calls (known from the batch, no read) beside its requests', `reprice` the days of the
  calls it re-priced, `mark_all` every day with a request or a call;
- a request moving to another day changes no call's day: nothing to mark for this rollup;
- the true-up changes no call's estimate (`cost_nanousd`), which is all the reconciliation
  sums (it *computes* the factors from it): nothing to mark for this rollup either.

`app.rollups.refresh` rebuilds the day's rows here (or, on a sliced day, the hours': by the
calls' own hour) in the transaction that deletes the marks and rebuilds the other rollups;
readers take the days and hours still marked from `llm_calls` (`traced_query`), so an answer
never waits for a rebuild and never differs from the base tables'.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import date, datetime
from typing import Any

from sqlalchemy import (
    Connection,
    Date,
    Select,
    Table,
    func,
    insert,
    literal,
    select,
    union_all,
)

from app.rollups.stale import Stale, day_conditions, in_spans, skip
from app.warehouse.tables import LlmCall
from app.warehouse.tables_rollup import rollup_call_days
from app.warehouse.tables_staged import TWINS
from app.warehouse.tables_trueup import served_model

# The measures, in the table's order; `cost_nanousd` sums priced calls only (NULL: unpriced).
MEASURES = ("llm_calls", "input_tokens", "output_tokens", "cost_nanousd", "unpriced_calls")


def rebuild_call_slices(
    conn: Connection,
    day: date,
    spans: list[tuple[datetime, datetime]],
    hour: Any,
    into: Callable[[Table], Table] = lambda table: table,
) -> None:
    """Write the rows of `rollup_call_days` of the calls that started in `spans` (UTC ranges of
    one day); `hour`: the rows' hour, an expression of the call's start or WHOLE_DAY; `into`:
    the table to write them into (its staged twin). The caller has deleted those rows, in the
    same transaction (`app.rollups.refresh`)."""
    query = _summed(
        literal(day, Date), [in_spans(LlmCall.started_at, spans)], by_day=False, keys=[hour]
    )
    conn.execute(insert(into(rollup_call_days)).from_select([*_COLUMNS, "hour"], query))


def traced_query(
    since: date,
    until: date | None,
    providers: Sequence[str] | None,
    dirty: Stale,
) -> Select[Any]:
    """Per call day, provider and served model: calls, tokens, estimate and unpriced calls of
    the days [since, until), from `rollup_call_days` but for the `dirty` days and hours, which
    are summed from `llm_calls` and added (a sliced day's other hours come from the rollup),
    or for its staged days read from the rollup's twin (`app.warehouse.tables_staged`)."""
    r, twin = rollup_call_days.c, TWINS[rollup_call_days].c
    stale = dirty.within(since, until).ready(rollup_call_days)
    conds = day_conditions(r.day, since, until) + skip(dirty, r)
    staged = [twin.day.in_(stale.staged)]
    if providers is not None:
        conds.append(r.provider.in_(list(providers)))
        staged.append(twin.provider.in_(list(providers)))
    # One flat UNION ALL: SQLite cannot read a compound select nested in parentheses.
    parts: list[Select[Any]] = [select(*(r[c] for c in _COLUMNS)).where(*conds)]
    if stale.staged:
        parts.append(select(*(twin[c] for c in _COLUMNS)).where(*staged))
    stale = stale.unstaged()
    if stale:
        live_conds: list[Any] = [stale.covers(LlmCall.started_at)]
        if providers is not None:
            live_conds.append(LlmCall.provider.in_(list(providers)))
        parts.append(_summed(func.date(LlmCall.started_at), live_conds, by_day=True, keys=[]))
    rolled = parts[0] if len(parts) == 1 else union_all(*parts)
    p = rolled.subquery("parts").c
    keys = [p.day, p.provider, p.model]
    # A sliced day has a row per hour, and its stale hours come from the calls: summed.
    return select(*keys, *(func.sum(p[m]).label(m) for m in MEASURES)).group_by(*keys)


_COLUMNS = ("day", "provider", "model", *MEASURES)


def _summed(day: Any, conds: Sequence[Any], *, by_day: bool, keys: Sequence[Any]) -> Select[Any]:
    """The calls that meet `conds`, summed per provider, served model, the `keys` (selected
    after the measures) and `day` (an expression, when `by_day`; else one day's value): the
    columns of `rollup_call_days`."""
    model = served_model()
    groups = [day, LlmCall.provider, model] if by_day else [LlmCall.provider, model]
    return (
        select(
            day.label("day"),
            LlmCall.provider.label("provider"),
            model.label("model"),
            func.count().label("llm_calls"),
            func.coalesce(func.sum(LlmCall.input_tokens), 0).label("input_tokens"),
            func.coalesce(func.sum(LlmCall.output_tokens), 0).label("output_tokens"),
            func.coalesce(func.sum(LlmCall.cost_nanousd), 0).label("cost_nanousd"),
            (func.count() - func.count(LlmCall.cost_nanousd)).label("unpriced_calls"),
            *keys,
        )
        .where(*conds)
        .group_by(*groups, *keys)
    )
