"""Page "Collectors": each source's freshness and recent runs (status, rows, errors), and a
"Run now" button per collector for operators (the same run as `spendguard collect NAME`,
under the same lock as the worker, so the two never race a checkpoint).
"""

from __future__ import annotations

import polars as pl
import streamlit as st

from app.dashboard import actions, data, loaders, tables
from app.dashboard.formatting import local_time_text
from app.dashboard.shell import Context, page
from app.errors import SpendguardError
from collectors import registry

RUNS_PER_COLLECTOR = 10
DONE_KEY = "_collector_done"


def main() -> None:
    ctx = page("Collectors", needs_requests=False)
    if ctx is None:
        return
    _collectors(ctx)
    _runs(ctx)


def _collectors(ctx: Context) -> None:
    assert ctx.url is not None
    assert ctx.settings is not None
    done = st.session_state.pop(DONE_KEY, None)
    if done:
        kind, text = done
        (st.success if kind == "ok" else st.error)(text)
    runs = loaders.recent_runs(ctx.url, 1)
    last = {r.collector: r for r in runs}
    fresh = {f.source: f for f in loaders.freshness(ctx.url)}
    allowed = ctx.identity.is_operator
    if not allowed:
        st.caption("You are a viewer: running a collector needs the operator role.")
    for name in registry.names():
        collector = registry.get(name)
        enabled = collector.enabled(ctx.settings)
        has_sources = collector.has_sources(ctx.settings)
        run = last.get(name)
        with st.container(border=True):
            left, mid, right = st.columns([3, 4, 2])
            status = (
                "—"
                if run is None
                else {"ok": ":green[ok]", "failed": ":red[failed]"}.get(run.status, run.status)
            )
            left.markdown(f"**{name}** · last run {status}")
            left.caption(
                ("enabled" if enabled else "disabled")
                + ("" if has_sources else " · no sources configured")
            )
            latest = fresh.get(name) or fresh.get(f"{name} bill")
            if run is not None:
                mid.caption(
                    f"started {local_time_text(run.started_at, ctx.timezone)} · "
                    f"{run.rows_loaded:,} rows, {run.rows_rejected:,} rejected"
                )
                if run.error:
                    mid.text(run.error.splitlines()[0][:300])
            else:
                mid.caption("never ran")
            if latest is not None and latest.latest is not None:
                mid.caption(f"{latest.detail}: {local_time_text(latest.latest, ctx.timezone)}")
            why = None
            if not allowed:
                why = "Needs the operator role."
            elif not enabled or not has_sources:
                why = f"Enable and configure collectors.{name} in spendguard.yaml first."
            runnable = allowed and enabled and has_sources
            if right.button("Run now", key=f"run_{name}", disabled=not runnable, help=why):
                _run(ctx, name)


def _run(ctx: Context, name: str) -> None:
    assert ctx.url is not None
    assert ctx.settings is not None
    with st.spinner(f"Running {name}…"):
        try:
            outcome = actions.run_collector_now(
                data.engine(ctx.url), ctx.settings, ctx.identity, name
            )
        except SpendguardError as exc:
            st.session_state[DONE_KEY] = ("error", str(exc))
        else:
            text = (
                f"{name}: {outcome.status}, {outcome.rows_loaded:,} rows, "
                f"{outcome.rows_rejected:,} rejected (run {outcome.run_id})"
            )
            if outcome.error:
                text += f": {outcome.error}"
            st.session_state[DONE_KEY] = ("ok" if outcome.ok else "error", text)
    loaders.clear_runs()
    st.rerun()


def _runs(ctx: Context) -> None:
    assert ctx.url is not None
    st.subheader("Recent runs")
    runs = loaders.recent_runs(ctx.url, RUNS_PER_COLLECTOR)
    if not runs:
        st.info(
            "No collector has run yet. `spendguard worker` runs them on their schedules; "
            "`spendguard collect` runs them once; `spendguard demo` loads demo data."
        )
        return
    zone = ctx.timezone
    frame = pl.DataFrame(
        {
            "Collector": [r.collector for r in runs],
            "Run": [r.id for r in runs],
            "Status": [r.status for r in runs],
            "Started": [local_time_text(r.started_at, zone) for r in runs],
            "Seconds": [
                None
                if r.finished_at is None
                else round((r.finished_at - r.started_at).total_seconds(), 1)
                for r in runs
            ],
            "Rows": [r.rows_loaded for r in runs],
            "Rejected": [r.rows_rejected for r in runs],
            "Data from": [
                local_time_text(r.window_start, zone) if r.window_start else "" for r in runs
            ],
            "Data to": [local_time_text(r.window_end, zone) if r.window_end else "" for r in runs],
            "Source": [r.source for r in runs],
            "Error": [r.error or "" for r in runs],
        },
        schema_overrides={"Seconds": pl.Float64},
    )
    tables.show_frame(
        frame,
        key="runs",
        column_config={
            "Rows": tables.count_column("Rows"),
            "Rejected": tables.count_column("Rejected"),
        },
    )


if __name__ == "__main__":  # Streamlit runs a page as __main__; importing it draws nothing
    main()
