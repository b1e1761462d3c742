"""Staging a whole day's rebuild (`app.warehouse.tables_staged`), so that readers leave the
day's base tables as early as possible, a step at a time.

1. `stage_pairs` lists the day's marks and writes its pairs (`app.rollups.day_pairs`), one
   commit: from then on readers read the day's request rollups from the pairs, weighted as each
   rollup counts them.
2. `stage_twins` writes the rollups' twins from them, a step of `STEPS` per commit (the call
   days', the GPU rollups', then the request rollups' in `day_pairs.ORDER`), each taken off
   `rollup_staged_paired` as it is committed; readers read a twin in place of the rollup as
   soon as it is in.
3. `write_staged`, in one transaction, replaces the day's rollup rows with its twins' rows and
   deletes the marks the staging holds (a mark written since stays, and sends readers back to
   the base tables until the next refresh).

A refresh cut off between commits finishes from where it stopped (`staged`, `rebuild` in
`app.rollups.refresh`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date
from typing import Any

from sqlalchemy import Connection, Engine, Table, delete, insert, literal, select

from app.rollups.call_days import rebuild_call_slices
from app.rollups.day_pairs import ORDER, write_pairs, write_twin
from app.rollups.gpu import rebuild_gpu_slices
from app.rollups.stale import Stale, hour_of, staged_by_hour
from app.rollups.weeks import invalidate
from app.warehouse.engine import READ_SETTINGS
from app.warehouse.tables import LlmCall, Request
from app.warehouse.tables_rollup import (
    GPU_ROLLUPS,
    WHOLE_DAY,
    rollup_call_days,
    rollup_dirty,
    rollup_sliced,
)
from app.warehouse.tables_staged import (
    TWINS,
    rollup_staged_marks,
    rollup_staged_paired,
    rollup_staged_pairs,
)


@dataclass(frozen=True, slots=True)
class Rebuild:
    """One rebuild of the refresh (`app.rollups.refresh.plan`), in one transaction but for a
    whole day's staging: a day whole (`hours` None) or some hours of a sliced day; `sliced`:
    the rows are hour slices (the day is live)."""

    day: date
    hours: tuple[int, ...] | None
    sliced: bool


def stage(engine: Engine, job: Rebuild) -> None:
    """The first step of a whole day's `Rebuild`: the day's rows of every rollup summed into
    the rollups' twins, with the marks they hold (`app.warehouse.tables_staged`), which
    readers read in place of the base tables until they replace the day's rows
    (`write_staged`). In steps: `stage_pairs`, then `stage_twins`."""
    stage_pairs(engine, job)
    stage_twins(engine, job)


def stage_pairs(engine: Engine, job: Rebuild) -> None:
    """A staging's first commit: the day's marks, its pairs (`rollup_staged_pairs`), which
    readers read its request rollups from, and the names of every rollup whose twin is still
    to write in `rollup_staged_paired` (`STEPS`). The marks are listed first: on PostgreSQL
    each statement sees the writes committed before it, so every mark listed is of a write the
    sums hold, and a write they may hold whose mark is not listed only sends readers to the
    base tables."""
    day = job.day
    with engine.begin() as conn:
        read_settings(conn)
        clear_staged(conn, day)
        listed = select(rollup_dirty.c.id, rollup_dirty.c.day).where(rollup_dirty.c.day == day)
        conn.execute(insert(rollup_staged_marks).from_select(["mark_id", "day"], listed))
        names = [{"day": day, "rollup": name} for step in STEPS for name in step]
        conn.execute(insert(rollup_staged_paired), names)
        spans = Stale((day,), ()).periods()
        write_pairs(conn, day, spans, row_hour(job, Request.started_at), rollup_staged_pairs)


# The staging's commits after its pairs (`stage_twins`), each the names of the twins it writes:
# first those whose readers read the base tables until they are in (the call days', then the
# GPU rollups', from one read of the day's GPU shares), then the request rollups' (read from
# the pairs meanwhile) in `ORDER`, the small ones that most pages and every filter list read
# first.
STEPS: tuple[tuple[str, ...], ...] = (
    (rollup_call_days.name,),
    tuple(table.name for table in GPU_ROLLUPS),
    *((table.name,) for table in ORDER),
)
assert {name for step in STEPS for name in step} == {table.name for table in TWINS}


def stage_twins(engine: Engine, job: Rebuild, limit: int | None = None) -> None:
    """A staging's next commits, after `stage_pairs`: each step of `STEPS` whose twins are
    still listed in `rollup_staged_paired` for the day, its twins summed (a request rollup's
    from the day's staged pairs, or a finer twin) and committed with their listing deleted;
    the pairs go with the last. `limit`: stop after that many (as a refresh cut off would)."""
    day, p = job.day, rollup_staged_paired.c
    with engine.connect() as conn:
        listed = set(conn.execute(select(p.rollup).where(p.day == day)).scalars())
    left = [step for step in STEPS if listed.intersection(step)]
    spans = Stale((day,), ()).periods()
    for n, step in enumerate(left[:limit], 1):
        with engine.begin() as conn:
            read_settings(conn)
            if step == (rollup_call_days.name,):
                hour = row_hour(job, LlmCall.started_at)
                rebuild_call_slices(conn, day, spans, hour, TWINS.__getitem__)
            elif len(step) > 1:
                hour = row_hour(job, Request.started_at)
                rebuild_gpu_slices(conn, day, spans, hour, TWINS.__getitem__)
            else:
                write_twin(conn, _BY_NAME[step[0]], day)
            conn.execute(delete(rollup_staged_paired).where(p.day == day, p.rollup.in_(step)))
            if n == len(left):
                conn.execute(delete(rollup_staged_pairs).where(rollup_staged_pairs.c.day == day))


_BY_NAME = {table.name: table for table in ORDER}


def staged(conn: Connection, job: Rebuild, *, pairs: bool = False) -> bool:
    """Whether the day of `job` (a whole day) is staged after every mark it has now, as the
    job writes it (hour slices or whole); with `pairs`, whether its first commit
    (`stage_pairs`) is, at least."""
    m, s = rollup_dirty.c, rollup_staged_marks.c
    if conn.execute(select(s.mark_id).where(s.day == job.day).limit(1)).first() is None:
        return False
    paired = select(rollup_staged_paired.c.day).where(rollup_staged_paired.c.day == job.day)
    if not pairs and conn.execute(paired).first() is not None:  # (its twins not written)
        return False
    if staged_by_hour(conn, job.day) not in (None, job.sliced):
        return False
    unstaged = select(m.id).where(m.day == job.day, m.id.not_in(select(s.mark_id))).limit(1)
    return conn.execute(unstaged).first() is None


def write_staged(engine: Engine, job: Rebuild) -> None:
    """A whole day's staged rows in place of its rollup rows, in one transaction: the marks
    the staging holds deleted (a mark written since stays, and readers take the day from the
    base tables until the next refresh), the day's rows replaced by its twins' rows, which
    are deleted."""
    day = job.day
    s = rollup_staged_marks.c
    with engine.begin() as conn:
        invalidate(conn, [day])  # its week's sums no longer hold (`app.rollups.weeks`)
        held = select(s.mark_id).where(s.day == day)
        conn.execute(delete(rollup_dirty).where(rollup_dirty.c.id.in_(held)))
        conn.execute(delete(rollup_staged_marks).where(s.day == day))
        conn.execute(delete(rollup_staged_pairs).where(rollup_staged_pairs.c.day == day))
        conn.execute(delete(rollup_staged_paired).where(rollup_staged_paired.c.day == day))
        conn.execute(delete(rollup_sliced).where(rollup_sliced.c.day == day))
        if job.sliced:
            conn.execute(insert(rollup_sliced).values(day=day))
        replace_rows(conn, TWINS, day)


def replace_rows(conn: Connection, tables: Iterable[Table], day: date) -> None:
    """The day's rows of these rollups replaced by their twins' rows, which are deleted."""
    for table in tables:
        twin = TWINS[table]
        names = [c.name for c in table.c]
        conn.execute(delete(table).where(table.c.day == day))
        rows = select(*(twin.c[n] for n in names)).where(twin.c.day == day)
        conn.execute(insert(table).from_select(names, rows))
        conn.execute(delete(twin).where(twin.c.day == day))


def clear_staged(conn: Connection, day: date) -> None:
    """Whatever is staged of `day` deleted: its listed marks, pairs, listing of twins to write
    and twins' rows (a staging cut off, or done but not written)."""
    conn.execute(delete(rollup_staged_marks).where(rollup_staged_marks.c.day == day))
    conn.execute(delete(rollup_staged_pairs).where(rollup_staged_pairs.c.day == day))
    conn.execute(delete(rollup_staged_paired).where(rollup_staged_paired.c.day == day))
    for twin in TWINS.values():
        conn.execute(delete(twin).where(twin.c.day == day))


def row_hour(job: Rebuild, column: Any) -> Any:
    """The rows' `hour`: of `column` (a start) on a sliced day, else WHOLE_DAY."""
    return hour_of(column) if job.sliced else literal(WHOLE_DAY)


def read_settings(conn: Connection) -> None:
    if conn.dialect.name == "postgresql":
        # One day is a small slice of llm_calls: fetched by primary key, and grouped and
        # sorted in memory (the readers' settings).
        for setting in READ_SETTINGS:
            conn.exec_driver_sql(f"SET LOCAL {setting}")
