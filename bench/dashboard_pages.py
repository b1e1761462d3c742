"""Timing the dashboard's pages for `bench/dashboard.py`: every page through
`streamlit.testing.v1.AppTest` as a browser session would (first paint cold and warm, a filter
change and back, each page's own controls, more changes on the Unit costs page), with the time
spent in SQL beside each figure (`SqlClock`), and the reconciliation query alone.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, event

from app.warehouse.engine import make_engine
from bench.dashboard_data import END

ROOT = Path(__file__).resolve().parents[1]
ENTRY = ROOT / "streamlit_app.py"
PAGES = ["overview", "unit_costs", "spend", "gpu", "alerts", "collectors"]


class SqlClock:
    """Seconds spent in SQL statements (every engine, every thread), between `reset` calls.
    Pages load ahead (`app.dashboard.ahead`): statements of two threads run side by side, and
    their sum can exceed the run's wall time."""

    # Statements slower than this are printed (--show-slow), with their first characters.
    show_slow: float | None = None

    def __init__(self) -> None:
        self.seconds = 0.0
        self.statements = 0
        self._started: dict[int, float] = {}
        self._lock = threading.Lock()
        event.listen(Engine, "before_cursor_execute", self._before)
        event.listen(Engine, "after_cursor_execute", self._after)

    def _before(self, conn: Any, cursor: Any, *args: Any) -> None:
        self._started[id(cursor)] = time.perf_counter()

    def _after(self, conn: Any, cursor: Any, statement: str, params: Any, *args: Any) -> None:
        began = self._started.pop(id(cursor), None)
        if began is not None:
            seconds = time.perf_counter() - began
            with self._lock:
                self.seconds += seconds
                self.statements += 1
            if self.show_slow is not None and seconds >= self.show_slow:
                text = " ".join(statement.split())
                shown = f"{text[:400]} … {str(params)[:300]}"
                print(f"      slow SQL {seconds:.2f} s: {shown}", flush=True)

    def reset(self) -> None:
        self.seconds, self.statements = 0.0, 0


def time_reconcile(url: str, title: str) -> None:
    """The Spend page's "Estimated vs billed" query, alone: `reconcile` over the last 30 and 90
    days, on a new engine (no pooled connection, no page cache), twice each."""
    from app.reports.reconcile import reconcile

    end = END.date()
    for days in (30, 90):
        figures = []
        for _ in range(2):
            engine = make_engine(url)
            began = time.perf_counter()
            rows = len(reconcile(engine, end - timedelta(days=days), end).rows)
            figures.append(time.perf_counter() - began)
            engine.dispose()
        load = " ".join(f"{x:.2f}" for x in os.getloadavg())
        print(
            f"  {title}: estimated vs billed, {days} days ({rows} rows): "
            f"{figures[0]:5.2f} s, again {figures[1]:5.2f} s (load average {load})",
            flush=True,
        )


_CLOCK: list[SqlClock] = []


def _clock() -> SqlClock:
    """One clock for the process: each listens on every engine, so a second would count (and
    print) every statement again."""
    if not _CLOCK:
        _CLOCK.append(SqlClock())
    return _CLOCK[0]


def time_pages(
    url: str, title: str, more: bool = True, pages: list[str] | None = None
) -> list[dict[str, Any]]:
    import streamlit as st
    from streamlit.testing.v1 import AppTest

    from app.dashboard import loaders
    from app.dashboard.filters import filter_key

    os.environ["SPENDGUARD_DATABASE_URL"] = url
    # Budgets are judged at the wall clock: here, at the end of the generated 90 days.
    loaders.now = lambda: END - timedelta(minutes=30)
    print(f"  {title}:", flush=True)
    for name in ("streamlit", "streamlit.runtime"):  # "no runtime", "missing ScriptRunContext"
        logging.getLogger(name).setLevel(logging.ERROR)
    clock = _clock()
    results = []

    def run(at: AppTest) -> tuple[float, float, int]:
        clock.reset()
        began = time.perf_counter()
        at.run()
        wall = time.perf_counter() - began
        if at.exception:
            raise RuntimeError([e.value for e in at.exception])
        return wall, clock.seconds, clock.statements

    def session(page: str) -> AppTest:
        at = AppTest.from_file(str(ENTRY), default_timeout=300)
        # A server scans the installed packages for custom components once, at its start;
        # AppTest does it for each new AppTest (0.3-0.4 s, no part of a page): the first
        # one's registry serves every session here, as the server's does.
        at._bidi_component_manager = components[0] if components else None
        if page != "overview":
            at.switch_page(f"app/dashboard/pages/{page}.py")
        return at

    # A running dashboard has imported its modules (Plotly, Polars, the pages') before anyone
    # opens a page: one run first, so the first page timed does not pay for the imports.
    components: list[Any] = []
    first = session("collectors")
    run(first)
    components.append(first._bidi_component_manager)
    for page in pages or PAGES:
        st.cache_data.clear()
        st.cache_resource.clear()
        at = session(page)
        cold = run(at)
        warm = run(session(page))
        endpoint = at.sidebar.multiselect(key=filter_key("endpoint"))
        options = [o for o in endpoint.options if o != "/v1/chat"]
        endpoint.set_value([options[0] if options else "/v1/chat"])
        change = run(at)
        at.sidebar.multiselect(key=filter_key("endpoint")).set_value([])
        back = run(at)
        results.append({"page": page, "cold": cold, "warm": warm, "change": change, "back": back})
        print(
            f"  {page:<11} first paint cold {_fig(cold)}  warm {_fig(warm)}   "
            f"filter change {_fig(change)}  back (cached) {_fig(back)}",
            flush=True,
        )
        for label, step in PAGE_CHANGES.get(page, []):
            step(at)
            print(f"  {page:<11} {label:<45} {_fig(run(at))}", flush=True)
    if more:
        more_changes(run, session)
    return results


def _pick(key: str, value: Any) -> Any:
    """Set a widget by key: a selectbox or multiselect, else (a segmented control, which
    AppTest cannot set) its session state."""

    def step(at: Any) -> None:
        for kind in ("selectbox", "multiselect"):
            try:
                widget = getattr(at, kind)(key=key)
            except KeyError:
                continue
            widget.set_value(value)
            return
        at.session_state[key] = value

    return step


# Each page's own controls, changed one after the other (uncached: new queries).
PAGE_CHANGES: dict[str, list[tuple[str, Any]]] = {
    "overview": [("movers by model", _pick("movers_dim", "model"))],
    "spend": [
        ("split by model", _pick("spend_dim", "model")),
        ("period Last 90 days", _pick("period", "Last 90 days")),
    ],
    "gpu": [
        ("pool llama-8b only", _pick("gpu_pool_filter", ["llama-8b"])),
        ("period Last 90 days", _pick("period", "Last 90 days")),
    ],
    "alerts": [("period Last 90 days", _pick("period", "Last 90 days"))],
    "collectors": [("period Last 90 days", _pick("period", "Last 90 days"))],
}


GPT, HAIKU = "gpt-4o", "claude-haiku-4-5"


def more_changes(run: Any, session: Any) -> None:
    """Other changes on the Unit costs page, each uncached, one after the other."""
    from app.dashboard.filters import filter_key

    at = session("unit_costs")
    run(at)

    def sidebar(dim: str, values: list[str]) -> Any:
        return at.sidebar.multiselect(key=filter_key(dim)).set_value(values)

    def drill(key: str, value: str) -> Any:
        return at.selectbox(key=key).set_value(value)

    steps = [
        ("drill-down: endpoint /v1/chat", lambda: drill("drill_endpoint", "/v1/chat")),
        ("drill-down: model gpt-4o (users × model)", lambda: drill("drill_model", "gpt-4o")),
        ("sidebar: user u-17", lambda: sidebar("user", ["u-17"])),
        ("sidebar: no user, model gpt-4o", lambda: (sidebar("user", []), sidebar("model", [GPT]))),
        ("sidebar: models gpt-4o, claude-haiku-4-5", lambda: sidebar("model", [GPT, HAIKU])),
        ("sidebar: period Last 90 days", lambda: drill("period", "Last 90 days")),
        ("sidebar: no model (90 days)", lambda: sidebar("model", [])),
    ]  # fmt: skip
    for label, step in steps:
        step()
        print(f"  unit_costs  {label:<45} {_fig(run(at))}", flush=True)


def _fig(measure: tuple[float, float, int]) -> str:
    wall, sql, statements = measure
    return f"{wall:5.2f} s (SQL {sql:4.2f} s/{statements:3d})"
