"""The data version: cached loaders recompute when the warehouse changed, never otherwise.

Every writer the dashboard reads from leaves a trace that one cheap query sees:

- collector runs and `ingest` (also the GPU allocation and `reprice`): a `collector_runs` row
  when they start, its `finished_at` when they end;
- any load of traces (the OTLP receiver's too) or re-price, allocation or true-up: marks in
  `rollup_dirty`; the rollup refresh that removes them stamps the `checkpoints` table, as do
  an allocation or true-up that writes its rollup rows itself (`app.rollups.swap`), the
  collectors with their cursors and the allocation with its watermark;
- the true-up: its factors' `computed_at`; alerts: `alert_transitions`; kill switches: their
  version counter.

`observe(url, engine, config)` (the shell, at the start of every rerun) reads those into a tuple,
with a digest of the configuration, and keeps, per warehouse, a counter that grows each
time the tuple differs from the last one seen, so a state seen before (the marks of a push
gone again after the refresh) is still a new version. `versioned` wraps a loader so that its
cache key holds that counter: data written a moment ago shows on the next rerun, and unchanged
data is read from the cache until the backstop TTL. The counter lives in the process, as
`st.cache_data` does.
"""

from __future__ import annotations

import functools
import hashlib
import threading
from collections.abc import Callable
from typing import Any, Protocol, TypeVar

import streamlit as st
from sqlalchemy import Engine, func, select
from sqlalchemy.exc import SQLAlchemyError

from app.settings import Settings
from app.warehouse.tables import AlertTransition, Checkpoint, CollectorRun
from app.warehouse.tables_killswitch import KillSwitchVersion
from app.warehouse.tables_rollup import rollup_dirty
from app.warehouse.tables_trueup import TrueUpFactor

# The backstop: a result whose version did not move is still read again after this long
# (something wrote without a trace above).
BACKSTOP_TTL = 3600

R = TypeVar("R")
R_co = TypeVar("R_co", covariant=True)

_lock = threading.Lock()
_seen: dict[str, tuple[tuple[Any, ...], int]] = {}


def state_query() -> Any:
    """One SELECT of the maxima and counts that move when the warehouse is written."""
    return select(
        select(func.max(CollectorRun.id)).scalar_subquery(),
        select(func.max(CollectorRun.finished_at)).scalar_subquery(),
        select(func.max(rollup_dirty.c.id)).scalar_subquery(),
        select(func.count()).select_from(rollup_dirty).scalar_subquery(),
        select(func.max(Checkpoint.updated_at)).scalar_subquery(),
        select(func.max(TrueUpFactor.computed_at)).scalar_subquery(),
        select(func.max(AlertTransition.id)).scalar_subquery(),
        select(func.max(KillSwitchVersion.version)).scalar_subquery(),
    )


def config_digest(settings: Settings) -> str:
    """What of the configuration the loaders read, as a short digest (secrets masked)."""
    return hashlib.sha256(settings.model_dump_json().encode()).hexdigest()[:16]


def read_state(engine: Engine) -> tuple[Any, ...]:
    with engine.connect() as conn:
        row = conn.execute(state_query()).one()
    return tuple(str(v) for v in row)


def observe(url: str, engine: Engine, config: str = "") -> int:
    """The warehouse's version now: a new number whenever its state (or `config`, the
    configuration the loaders read: rules, `pricing.true_up`) changed since the last look
    (by any session of this process)."""
    try:
        state = (*read_state(engine), config)
    except SQLAlchemyError:  # no schema yet, or the database is away: the loaders will say so
        state = ("unreadable", config)
    with _lock:
        last = _seen.get(url)
        if last is None:
            version = 1
        elif last[0] != state:
            version = last[1] + 1
        else:
            return last[1]
        _seen[url] = (state, version)
        return version


def has_marks(url: str) -> bool:
    """Whether the last look at the warehouse saw rollup marks (days waiting for a rebuild)."""
    with _lock:
        last = _seen.get(url)
    if last is None or len(last[0]) < _MARKS + 1:
        return False
    return last[0][_MARKS] not in ("0", "None")


_MARKS = 3  # where `state_query` has the count of rollup marks


def current(url: str, engine: Engine) -> int:
    """The version last observed for the warehouse (this rerun's, since the shell observes
    it first), or a first look."""
    with _lock:
        last = _seen.get(url)
    return last[1] if last is not None else observe(url, engine)


class Versioned(Protocol[R_co]):
    """A versioned loader: called with the warehouse URL first; `clear()` drops its entries."""

    def __call__(self, url: str, *args: Any, **kwargs: Any) -> R_co: ...

    def clear(self, *args: Any, **kwargs: Any) -> None: ...

    def later(self, url: str, *args: Any, **kwargs: Any) -> Callable[[], object]: ...


def versioned(
    engine: Callable[[str], Engine], *, ttl: float = BACKSTOP_TTL, show_spinner: bool | str = False
) -> Callable[[Callable[..., R]], Versioned[R]]:
    """`st.cache_data` keyed by the loader's arguments (the warehouse URL first) and the data
    version. The wrapper keeps `.clear()`, and `.later(url, ...)` gives a call of it for
    another thread (`app.dashboard.ahead`): keyed by this rerun's version, without a spinner."""

    def wrap(loader: Callable[..., R]) -> Versioned[R]:
        def cached(version: int, url: str, *args: Any, **kwargs: Any) -> R:
            return loader(url, *args, **kwargs)

        # Streamlit keys a cache by the function's module, name and source: this one's own.
        cached.__module__, cached.__qualname__ = loader.__module__, loader.__qualname__
        inner = st.cache_data(ttl=ttl, show_spinner=show_spinner)(cached)
        # The same cache and compute locks (Streamlit keys them by the function), no spinner:
        # a thread computing ahead of the page has no page to draw one on.
        quiet = st.cache_data(ttl=ttl, show_spinner=False)(cached)

        @functools.wraps(loader)
        def outer(url: str, *args: Any, **kwargs: Any) -> R:
            return inner(current(url, engine(url)), url, *args, **kwargs)

        def clear(*_args: Any, **_kwargs: Any) -> None:
            inner.clear()  # every version's entries: a caller's arguments lack the version

        def later(url: str, *args: Any, **kwargs: Any) -> Callable[[], object]:
            version = current(url, engine(url))
            return functools.partial(quiet, version, url, *args, **kwargs)

        outer.clear = clear  # type: ignore[attr-defined]
        outer.later = later  # type: ignore[attr-defined]
        return outer  # type: ignore[return-value]

    return wrap
