"""Daily rollups of `requests` and `llm_calls` (with their GPU share), and the days to rebuild.

Each rollup row sums one UTC day (the *request's* day, as every report counts, but for
`rollup_call_days`, below) of one key. The rows are additive over their keys: summing any of
their columns over days or keys gives the base tables' answer exactly (integer nano-dollars,
integer counts), which is what lets the dashboard and `report unit-costs` read a few thousand
rollup rows instead of millions of calls.

- `rollup_daily` (day, endpoint, team): every request of the key, with or without calls.
- `rollup_daily_calls` (day, endpoint, team, model, provider): the calls of the key, and
  distinct-request counts that stay exact when summed (ARCHITECTURE: by model, a request
  counts once per model it called):
    `requests`           requests that made a call of this model *and* provider;
    `requests_model`     of those, each counted only at its first provider for the model, so
                         summing over providers counts each request once per model;
    `requests_provider`  likewise each counted only at its first model for the provider.
- `rollup_daily_call_sets` (day, endpoint, team, pairs): how many requests called exactly this set
  of (model, provider) pairs, so that a filter on several models (or providers) counts each
  request once: the requests whose set holds one of them.
- `rollup_daily_users` (day, user, endpoint, team) and `rollup_daily_user_totals` (day, user,
  team): every request of the key, like `rollup_daily`.
- `rollup_daily_user_calls` (day, user, endpoint, team, model, provider): `rollup_daily_calls` by
  user too, for questions about users *and* models (big: nearly a row per user's call group,
  read through its (model, day) and (user, day) indexes).
- `rollup_daily_set_calls` (day, endpoint, team, model, provider, pairs) and
  `rollup_daily_user_set_calls` (… and user): `rollup_daily_calls` and `rollup_daily_user_calls`
  split by the requests' call sets, so that a filter on several models (or providers) counts
  each request once *by any dimension*, in one pass: the calls' sums of the rows the filters
  accept, and the requests of only the row of each request's first accepted pair (in the
  filter's order; by model, its first such pair of that model). The row's counts (every row of
  a request carries the same set):
    `requests`           the requests of the key with this call set (on every pair's row);
    `requests_model`     the same on the row of the first provider of the pair's model, else 0;
    `requests_provider`  the same on the row of the first model of the pair's provider, else 0.
  The user's is big (hardly more rows than `rollup_daily_user_calls` when users make few
  requests a day): read through its (model, day) and (user, day) indexes.

- `rollup_daily_gpu` (day, call_day, pool, endpoint, team, model), `rollup_daily_gpu_users`
  (… and user) and `rollup_daily_gpu_user_totals` (day, call_day, pool, user, team, model: a
  few times smaller than the users' when users call from several endpoints): the allocated GPU
  shares (`gpu_allocations`) of the day's requests' calls by the UTC day of the calls' hour
  (`call_day`: the GPU page's range is of the calls' hours), pool and model: `calls` and
  `gpu_cost_nanousd`, and `requests`, the requests whose shares all fall in this one
  (call_day, pool, model) cell, so that each of them is on one row only and any sum of rows
  counts it once. The others ("spread" requests: two pooled models, two pools, calls either
  side of midnight) are listed in `rollup_daily_gpu_spread`, one row per request and cell, and
  counted there by distinct trace id (`app.rollups.gpu`).

NULL user, team, model and provider are stored as NULL, as in the base tables, so filters
match exactly the same rows. The tables have no primary key: a day is always replaced whole
(`app.rollups.refresh`), never merged row by row.

`rollup_call_days` (day, provider, model) is the one rollup keyed by the *call's* UTC day, the
grain of the reconciliation against provider bills (`app.reports.reconcile`): per provider and
served model as the calls store it (`response_model`, else `model`; normalized to the bill's
name only when read), the calls, their tokens, the priced calls' estimate `cost_nanousd` and the
unpriced calls. A call never changes day (its `started_at` is written once), so the day whose
row a call's write or re-price makes stale is the call's own: whatever writes calls marks
their days too (`app.rollups.dirty`), in the same `rollup_dirty`.

Hour slices: a row's `hour` is WHOLE_DAY (-1) when it sums its whole day, or the UTC hour
(0-23; of the request, or for `rollup_call_days` of the call) when its day is *sliced*, listed
in `rollup_sliced`: the live days (the latest with requests, and for the first two hours of it
the day before: `app.rollups.refresh.live_from`), rebuilt an hour at a time, so
that an ingest's marks make one hour stale, not the day. Slices add up like days (a request
starts in one hour, a call too), so readers sum rows whatever their hour; the refresh compacts
a day into WHOLE_DAY rows once it is no longer live (`app.rollups.refresh`).

`rollup_dirty` lists the days (with an `hour`: the hours) whose rollup rows are stale: written
by whatever changes the base tables (`load_batch`, a trigger on `requests` for a request that
moved to another day or hour, `reprice`, the GPU allocation, `app.trueup`) and emptied by the
refresh, which deletes the marks it handles in the transaction that rebuilds their day or
hour, before it reads the base tables, so a mark written meanwhile by a concurrent writer
survives for the next refresh.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, Date, Index, Integer, SmallInteger, String, Table, Text

from app.warehouse.tables import Base

_metadata = Base.metadata


# The call measures every rollup sums (after its own distinct-request counts).
# `trued_cost_nanousd` is the token cost after the true-up (`app.warehouse.tables_trueup`:
# each call's own trued-up cost, its estimate where its model-day has no factor) and
# `trued_up_calls` the calls that have a factor, so `pricing.true_up` reads the rollups too;
# the true-up rebuilds (or marks) the days whose calls it scales (migration 0012,
# `app.rollups.swap`).
SUMMED = (
    "llm_calls",
    "input_tokens",
    "output_tokens",
    "token_cost_nanousd",
    "gpu_cost_nanousd",
    "unpriced_calls",
    "trued_cost_nanousd",
    "trued_up_calls",
)


# The `hour` of a row that sums a whole day (a day not in `rollup_sliced`).
WHOLE_DAY = -1

# The GPU rollups' sums: requests each on one row only (see above), calls, money.
GPU_SUMMED = ("requests", "calls", "gpu_cost_nanousd")


def _hour() -> Column[int]:
    """The row's UTC hour on a sliced day (0-23), or WHOLE_DAY."""
    return Column("hour", SmallInteger, nullable=False, server_default=str(WHOLE_DAY))


def _measures(*extra: str) -> list[Column[int]]:
    """The summed columns: distinct-request counts first, then calls, tokens and money."""
    return [Column(n, BigInteger, nullable=False) for n in (*extra, *SUMMED)]


rollup_daily = Table(
    "rollup_daily",
    _metadata,
    Column("day", Date, nullable=False),
    Column("endpoint", String(512), nullable=False),
    Column("team", String(256)),
    *_measures("requests"),
    _hour(),
    Index(None, "day"),
)

rollup_daily_calls = Table(
    "rollup_daily_calls",
    _metadata,
    Column("day", Date, nullable=False),
    Column("endpoint", String(512), nullable=False),
    Column("team", String(256)),
    Column("model", String(256), nullable=False),
    Column("provider", String(64), nullable=False),
    *_measures("requests", "requests_model", "requests_provider"),
    _hour(),
    Index(None, "day"),
)

# A request's (model, provider) pairs as one text: PAIR_START + model + PAIR_MID + provider, for
# each pair, then PAIR_START. Control characters no model or provider name holds.
PAIR_START, PAIR_MID = "\x1f", "\x1e"

rollup_daily_call_sets = Table(
    "rollup_daily_call_sets",
    _metadata,
    Column("day", Date, nullable=False),
    Column("endpoint", String(512), nullable=False),
    Column("team", String(256)),
    Column("pairs", Text, nullable=False),
    Column("requests", BigInteger, nullable=False),
    _hour(),
    Index(None, "day"),
)

rollup_daily_users = Table(
    "rollup_daily_users",
    _metadata,
    Column("day", Date, nullable=False),
    Column("user_id", String(256)),
    Column("endpoint", String(512), nullable=False),
    Column("team", String(256)),
    *_measures("requests"),
    _hour(),
    Index(None, "day"),
    Index(None, "user_id", "day"),
    Index(None, "endpoint", "day"),
)

rollup_daily_user_totals = Table(
    "rollup_daily_user_totals",
    _metadata,
    Column("day", Date, nullable=False),
    Column("user_id", String(256)),
    Column("team", String(256)),
    *_measures("requests"),
    _hour(),
    Index(None, "day"),
    Index(None, "user_id", "day"),
)

rollup_daily_user_calls = Table(
    "rollup_daily_user_calls",
    _metadata,
    Column("day", Date, nullable=False),
    Column("user_id", String(256)),
    Column("endpoint", String(512), nullable=False),
    Column("team", String(256)),
    Column("model", String(256), nullable=False),
    Column("provider", String(64), nullable=False),
    *_measures("requests", "requests_model", "requests_provider"),
    _hour(),
    Index(None, "day"),
    Index(None, "model", "day"),
    Index(None, "user_id", "day"),
)

rollup_daily_set_calls = Table(
    "rollup_daily_set_calls",
    _metadata,
    Column("day", Date, nullable=False),
    Column("endpoint", String(512), nullable=False),
    Column("team", String(256)),
    Column("model", String(256), nullable=False),
    Column("provider", String(64), nullable=False),
    Column("pairs", Text, nullable=False),
    *_measures("requests", "requests_model", "requests_provider"),
    _hour(),
    Index(None, "day"),
)

rollup_daily_user_set_calls = Table(
    "rollup_daily_user_set_calls",
    _metadata,
    Column("day", Date, nullable=False),
    Column("user_id", String(256)),
    Column("endpoint", String(512), nullable=False),
    Column("team", String(256)),
    Column("model", String(256), nullable=False),
    Column("provider", String(64), nullable=False),
    Column("pairs", Text, nullable=False),
    *_measures("requests", "requests_model", "requests_provider"),
    _hour(),
    Index(None, "day"),
    Index(None, "model", "day"),
    Index(None, "user_id", "day"),
)

rollup_daily_gpu = Table(
    "rollup_daily_gpu",
    _metadata,
    Column("day", Date, nullable=False),
    Column("call_day", Date, nullable=False),
    Column("pool", String(128), nullable=False),
    Column("endpoint", String(512), nullable=False),
    Column("team", String(256)),
    Column("model", String(256), nullable=False),
    *(Column(n, BigInteger, nullable=False) for n in GPU_SUMMED),
    _hour(),
    Index(None, "day"),
    Index(None, "call_day"),
)

rollup_daily_gpu_users = Table(
    "rollup_daily_gpu_users",
    _metadata,
    Column("day", Date, nullable=False),
    Column("call_day", Date, nullable=False),
    Column("pool", String(128), nullable=False),
    Column("user_id", String(256)),
    Column("endpoint", String(512), nullable=False),
    Column("team", String(256)),
    Column("model", String(256), nullable=False),
    *(Column(n, BigInteger, nullable=False) for n in GPU_SUMMED),
    _hour(),
    Index(None, "day"),
    Index(None, "call_day"),
    Index(None, "user_id", "call_day"),
)

rollup_daily_gpu_user_totals = Table(
    "rollup_daily_gpu_user_totals",
    _metadata,
    Column("day", Date, nullable=False),
    Column("call_day", Date, nullable=False),
    Column("pool", String(128), nullable=False),
    Column("user_id", String(256)),
    Column("team", String(256)),
    Column("model", String(256), nullable=False),
    *(Column(n, BigInteger, nullable=False) for n in GPU_SUMMED),
    _hour(),
    Index(None, "day"),
    Index(None, "call_day"),
    Index(None, "user_id", "call_day"),
)

rollup_daily_gpu_spread = Table(
    "rollup_daily_gpu_spread",
    _metadata,
    Column("day", Date, nullable=False),
    Column("call_day", Date, nullable=False),
    Column("pool", String(128), nullable=False),
    Column("model", String(256), nullable=False),
    Column("trace_id", String(32), nullable=False),
    Column("user_id", String(256)),
    Column("endpoint", String(512), nullable=False),
    Column("team", String(256)),
    _hour(),
    Index(None, "day"),
    Index(None, "call_day"),
)

rollup_call_days = Table(
    "rollup_call_days",
    _metadata,
    Column("day", Date, nullable=False),
    Column("provider", String(64), nullable=False),
    Column("model", String(256), nullable=False),
    *(
        Column(n, BigInteger, nullable=False)
        for n in ("llm_calls", "input_tokens", "output_tokens", "cost_nanousd", "unpriced_calls")
    ),
    _hour(),
    Index(None, "day"),
)

rollup_dirty = Table(
    "rollup_dirty",
    _metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("day", Date, nullable=False),
    Column("hour", SmallInteger),  # NULL: the whole day
    Index(None, "day"),
)

# Every summed column of any rollup (the others are keys): what compacting hour slices sums.
MEASURES = frozenset(
    {
        "requests",
        "requests_model",
        "requests_provider",
        *SUMMED,
        *GPU_SUMMED,
        "calls",
        "cost_nanousd",
    }
)

# The days whose rollup rows are hour slices (`app.rollups.refresh`).
rollup_sliced = Table("rollup_sliced", _metadata, Column("day", Date, primary_key=True))

# The GPU rollups, rebuilt by `app.rollups.gpu` (the others by `app.rollups.refresh`).
GPU_ROLLUPS = (
    rollup_daily_gpu,
    rollup_daily_gpu_users,
    rollup_daily_gpu_user_totals,
    rollup_daily_gpu_spread,
)

ROLLUPS = (
    rollup_daily,
    rollup_daily_calls,
    rollup_daily_call_sets,
    rollup_daily_users,
    rollup_daily_user_totals,
    rollup_daily_user_calls,
    rollup_daily_set_calls,
    rollup_daily_user_set_calls,
    *GPU_ROLLUPS,
)

# The weekly sums of the per-user rollups and the staged rebuilds, registered on Base.metadata
# with these.
from app.warehouse import tables_staged, tables_weekly  # noqa: E402, F401
