"""The unit-cost query answered from the daily rollups, when they can answer it exactly.

`rollup_query` returns the same columns as `app.reports.unit_costs.unit_cost_query` (the
dimensions, `requests`, `llm_calls`, tokens, `cost_nanousd`, `unpriced_calls`, token and GPU
cost), or None when only the base tables can answer. The counting rules decide:

- no model or provider among the dimensions and filters: every request counts; the table is
  `rollup_daily`, or when a user is grouped or filtered on `rollup_daily_user_totals` (or
  `rollup_daily_users` when the endpoint is asked too);
- a user *and* a model or provider: `rollup_daily_user_calls`, with the same counting as
  `rollup_daily_calls` (below) but no call sets;
- a model or provider: only the calls of the group count, and the requests that made one. The
  distinct requests add up exactly when each group holds one model (grouped, or filtered on one
  value) with any provider (`requests_model`), one provider with any model
  (`requests_provider`), or one of each (`requests`). Several models (or providers) in one group
  without being a dimension (a filter on two models, say) would count a request that called
  both twice. Grouped by endpoint or team only, the calls' sums come from `rollup_daily_calls`
  and the requests from `rollup_daily_call_sets` (those whose set holds a pair that the
  filters accept, each once), joined by group; grouped by model or provider, or with a user,
  all from `rollup_daily_set_calls` (or `rollup_daily_user_set_calls`), where
  `first_accepted` (`app.rollups.first_pair`) counts each request on one row per group: its
  first accepted pair, in the filters' order.
- `true_up`: the rollups' `trued_cost_nanousd` (the sum of each call's trued-up cost) in place
  of the estimate, and `trued_up_calls`.
- A filter on more than MAX_ORDERED models × providers in one group by user, model or provider:
  None (the first-pair test would cost more than the base tables).

Days are the requests' UTC days, as the report's `since`/`until` bounds are whole UTC days.
`stale` leaves rows out: `app.reports.unit_costs.cost_query` reads the days and hours waiting for
a rebuild (`dirty_in`: a `Stale`) from the base tables instead and adds the two answers. Its
staged days are read here, from the rollups' staged twins (`app.warehouse.tables_staged`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import date
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Select,
    Table,
    and_,
    func,
    literal,
    or_,
    select,
    true,
    union_all,
)

from app.rollups.day_pairs import pair_rows
from app.rollups.first_pair import first_accepted, ordered_values, position
from app.rollups.stale import Stale, day_conditions, skip
from app.rollups.weeks import Week, source
from app.warehouse.tables_rollup import (
    PAIR_MID,
    PAIR_START,
    rollup_daily,
    rollup_daily_call_sets,
    rollup_daily_calls,
    rollup_daily_set_calls,
    rollup_daily_user_calls,
    rollup_daily_user_set_calls,
    rollup_daily_user_totals,
    rollup_daily_users,
)
from app.warehouse.tables_staged import TWINS, rollup_staged_pairs
from app.warehouse.tables_weekly import WEEKLY

MISSING = "(none)"
TRUED_UP = "trued_up_calls"
CALL_DIMENSIONS = frozenset({"model", "provider"})
# Above this many models × providers in a multi-value filter, the first-pair test would be a
# query of over 1,000 text searches per row (tens of thousands of terms to compile): the base
# tables answer sooner.
MAX_ORDERED = 45
_COLUMN_NAMES = {
    "endpoint": "endpoint",
    "user": "user_id",
    "team": "team",
    "model": "model",
    "provider": "provider",
}


def rollup_query(
    dims: Sequence[str],
    filters: Mapping[str, Sequence[str]] | None,
    since: date | None,
    until: date | None,
    *,
    true_up: bool = False,
    by_day: bool = False,
    stale: Stale | None = None,
    hours: tuple[int, int] | None = None,
    weeks: Sequence[Week] = (),
) -> Select[Any] | None:
    """The rollups' answer to the unit-cost query, or None when they cannot answer exactly.
    `by_day` adds the UTC day as a column `day` and a grouping; the `stale` days and hours are
    left out (the caller reads them from the base tables). `hours` (from, to): only the rows of
    those UTC hours, for days that are sliced (`rollup_sliced`; a whole day's rows have none).
    `weeks` (`app.rollups.weeks.weeks_in`): weeks whose weekly rows the per-user and per-model
    rollups read in place of their days' (not `by_day`)."""
    chosen = {d: list(v) for d, v in (filters or {}).items() if v}
    used = set(dims) | set(chosen)
    call_level = bool(used & CALL_DIMENSIONS)
    table: Table
    if "user" in used:
        if call_level:
            table = rollup_daily_user_calls
        else:
            table = rollup_daily_users if "endpoint" in used else rollup_daily_user_totals
    else:
        table = rollup_daily_calls if call_level else rollup_daily
    count = "requests"
    if call_level:
        one_model = "model" in dims or len(chosen.get("model", ())) == 1
        one_provider = "provider" in dims or len(chosen.get("provider", ())) == 1
        if one_model and one_provider:
            count = "requests"
        elif one_model and "provider" not in used:
            count = "requests_model"
        elif one_provider and "model" not in used:
            count = "requests_provider"
        elif table is rollup_daily_calls and not CALL_DIMENSIONS.intersection(dims):
            return _by_call_sets(dims, chosen, since, until, by_day, stale, true_up, hours, weeks)
        elif ordered_values(dims, chosen) > MAX_ORDERED:
            return None
        else:
            table = rollup_daily_user_set_calls if "user" in used else rollup_daily_set_calls
            count = ""  # the first accepted pair's row

    filters = {_COLUMN_NAMES[d]: values for d, values in chosen.items()}
    t, conds = _rows(table, since, until, filters, stale, hours, () if by_day else weeks)
    requests = t[count] if count else first_accepted(t, dims, chosen)
    group_cols = [func.coalesce(t[_COLUMN_NAMES[d]], literal(MISSING)).label(d) for d in dims]
    token_cost = func.coalesce(func.sum(t[_token_cost(true_up)]), 0)
    gpu_cost = func.coalesce(func.sum(t.gpu_cost_nanousd), 0)
    query = select(
        *group_cols,
        func.coalesce(func.sum(requests), 0).label("requests"),
        func.coalesce(func.sum(t.llm_calls), 0).label("llm_calls"),
        func.coalesce(func.sum(t.input_tokens), 0).label("input_tokens"),
        func.coalesce(func.sum(t.output_tokens), 0).label("output_tokens"),
        (token_cost + gpu_cost).label("cost_nanousd"),
        func.coalesce(func.sum(t.unpriced_calls), 0).label("unpriced_calls"),
        token_cost.label("token_cost_nanousd"),
        gpu_cost.label("gpu_cost_nanousd"),
    )
    if true_up:
        query = query.add_columns(func.coalesce(func.sum(t.trued_up_calls), 0).label(TRUED_UP))
    if conds:
        query = query.where(*conds)
    groups: list[Any] = list(group_cols)
    if by_day:
        query = query.add_columns(t.day.label("day"))
        groups.append(t.day)
    if groups:
        query = query.group_by(*groups)
    return query


def _rows(
    table: Table,
    since: date | None,
    until: date | None,
    filters: Mapping[str, Sequence[str]],
    stale: Stale | None,
    hours: tuple[int, int] | None,
    weeks: Sequence[Week],
) -> tuple[Any, list[ColumnElement[bool]]]:
    """A rollup's rows of [since, until) that the `filters` (column name: values) take, but the
    `stale` ones, of the `hours`: the columns to read them by and the conditions still to apply.
    With `weeks` (and a weekly table), its weekly rows of those weeks and its daily rows of the
    other days (`app.rollups.weeks.source`). The staged days of `stale` are read from the
    table's staged twin (`app.warehouse.tables_staged`)."""

    def chosen(columns: Any) -> list[ColumnElement[bool]]:
        return [columns[name].in_(list(values)) for name, values in filters.items()]

    def stale_conds(columns: Any) -> list[ColumnElement[bool]]:
        return skip(stale, columns) + _hours(columns, hours)

    more: list[Select[Any]] = []
    within = stale.within(since, until) if stale else Stale()
    paired = [day for day, name in within.paired if name == table.name]
    staged = [day for day in within.staged if day not in paired]
    if staged:
        twin = TWINS[table].c
        rows = select(*(twin[c.name] for c in table.c))
        more.append(rows.where(twin.day.in_(staged), *chosen(twin), *_hours(twin, hours)))
    if paired:
        rows, p = pair_rows(table, rollup_staged_pairs, paired)
        more.append(rows.where(*chosen(p), *_hours(p, hours)))
    if weeks and hours is None and table in WEEKLY:  # (weekly rows have no hours)
        return source(table, weeks, since, until, chosen, stale_conds, more).c, []
    t = table.c
    conds = day_conditions(t.day, since, until) + stale_conds(t) + chosen(t)
    if not more:
        return t, conds
    return union_all(select(*table.c).where(*conds), *more).subquery(table.name).c, []


def _token_cost(true_up: bool) -> str:
    return "trued_cost_nanousd" if true_up else "token_cost_nanousd"


def _by_call_sets(
    dims: Sequence[str],
    chosen: Mapping[str, Sequence[str]],
    since: date | None,
    until: date | None,
    by_day: bool,
    stale: Stale | None,
    true_up: bool,
    hours: tuple[int, int] | None,
    weeks: Sequence[Week],
) -> Select[Any]:
    """Several models or providers in one group (by endpoint or team, or none): the calls' sums
    from `rollup_daily_calls`, the requests from `rollup_daily_call_sets` (those whose set of
    pairs holds one that the filters accept, each counted once), joined by group."""
    models, providers = chosen.get("model", ()), chosen.get("provider", ())
    if models and providers:
        wanted = [PAIR_START + m + PAIR_MID + p + PAIR_START for m in models for p in providers]
    elif models:
        wanted = [PAIR_START + m + PAIR_MID for m in models]
    else:
        wanted = [PAIR_MID + p + PAIR_START for p in providers]
    parts = []
    for table, counted in ((rollup_daily_calls, False), (rollup_daily_call_sets, True)):
        filters = {
            _COLUMN_NAMES[d]: values
            for d, values in chosen.items()
            if not counted or d not in CALL_DIMENSIONS
        }
        t, conds = _rows(table, since, until, filters, stale, hours, () if by_day else weeks)
        groups: list[Any] = [
            func.coalesce(t[_COLUMN_NAMES[d]], literal(MISSING)).label(d) for d in dims
        ]
        if by_day:
            groups.append(t.day.label("day"))
        if counted:
            conds.append(or_(*(position(t.pairs, literal(w)) > 0 for w in wanted)))
            sums: list[Any] = [func.sum(t.requests).label("requests")]
        else:
            sums = [
                func.sum(t[name]).label(name)
                for name in (
                    "llm_calls",
                    "input_tokens",
                    "output_tokens",
                    "unpriced_calls",
                    "gpu_cost_nanousd",
                    "trued_up_calls",
                )
            ]
            sums.append(func.sum(t[_token_cost(true_up)]).label("token_cost_nanousd"))
        query = select(*groups, *sums).where(*conds)
        parts.append((query.group_by(*groups) if groups else query).subquery())
    m, r = parts
    keys = [*dims, *(["day"] if by_day else [])]
    on = and_(true(), *(m.c[k] == r.c[k] for k in keys))
    token_cost = func.coalesce(m.c.token_cost_nanousd, 0)
    gpu_cost = func.coalesce(m.c.gpu_cost_nanousd, 0)
    return select(
        *(m.c[d] for d in dims),
        func.coalesce(r.c.requests, 0).label("requests"),
        func.coalesce(m.c.llm_calls, 0).label("llm_calls"),
        func.coalesce(m.c.input_tokens, 0).label("input_tokens"),
        func.coalesce(m.c.output_tokens, 0).label("output_tokens"),
        (token_cost + gpu_cost).label("cost_nanousd"),
        func.coalesce(m.c.unpriced_calls, 0).label("unpriced_calls"),
        token_cost.label("token_cost_nanousd"),
        gpu_cost.label("gpu_cost_nanousd"),
        *([func.coalesce(m.c.trued_up_calls, 0).label(TRUED_UP)] if true_up else []),
        *([m.c.day] if by_day else []),
    ).select_from(m.join(r, on))


def _hours(columns: Any, hours: tuple[int, int] | None) -> list[ColumnElement[bool]]:
    """Rows of the UTC hours [from, to) of sliced days, or no condition."""
    if hours is None:
        return []
    return [columns.hour >= hours[0], columns.hour < hours[1]]


def option_costs(
    dim: str,
    since: date | None,
    until: date | None,
    stale: Stale | None = None,
    weeks: Sequence[Week] = (),
) -> Select[Any]:
    """The values of `dim` in the range (but the `stale` rows) with their token cost, as columns
    `value` and `cost`: what `app.dashboard.queries.filter_options` orders its list by; `weeks`
    as for `rollup_query`."""
    table = (
        rollup_daily_user_totals
        if dim == "user"
        else rollup_daily_calls
        if dim in CALL_DIMENSIONS
        else rollup_daily
    )

    t, conds = _rows(table, since, until, {}, stale, None, weeks)
    column = t[_COLUMN_NAMES[dim]]
    conds.append(column.is_not(None))
    cost = func.coalesce(func.sum(t.token_cost_nanousd), literal(0))
    return select(column.label("value"), cost.label("cost")).where(*conds).group_by(column)
