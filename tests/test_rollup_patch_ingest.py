"""A trace file collected late (its spans on past days the rollups have summed) patches those
days' rows as `spendguard ingest` loads it, batch by batch (`app.rollups.patch`): no mark, so
the dashboard never reads those days from the base tables for it, and the rows are a
rebuild's. The batches come as the decode workers prepare them (driver rows, COPY on
PostgreSQL), their requests' roots in other files than their calls."""

from __future__ import annotations

import random
import shutil
from pathlib import Path

import pytest
from sqlalchemy import Engine

from app import ingest
from app.ingest import ingest_paths
from app.rollups import patch
from app.rollups.refresh import refresh
from app.settings import Settings
from app.warehouse import load
from tests.test_collect_traces import collect, folder_settings, settle
from tests.test_ingest_parallel import _line, _trace
from tests.test_ingest_parallel import files as files  # (the fixture: the late files)
from tests.test_rollup_patch import marks, rebuilt, rows
from tests.test_rollup_refresh import assert_readers_answer_like_the_base_tables

DAY_NS = 86_400 * 10**9


def _later(folder: Path, days: int = 3) -> Path:
    """A file of one request `days` after the others: their days are past, not live."""
    calls, root = _trace(random.Random(11), 0)
    for span in (*calls, root):
        for key in ("startTimeUnixNano", "endTimeUnixNano"):
            span[key] = str(int(span[key]) + days * DAY_NS)
    path = folder / "later.jsonl"
    path.write_text(_line([*calls, root]))
    return path


@pytest.mark.postgres
def test_a_late_trace_file_patches_the_days_it_lands_on(
    engine: Engine, files: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ingest, "BATCH_SPANS", 150)  # many batches, each a patch
    monkeypatch.setattr(load, "COPY_MIN_ROWS", 0)  # PostgreSQL: the COPY rows
    monkeypatch.setattr(patch, "_CHUNK", 7)  # the stored days read in several statements
    first = ingest_paths(engine, Settings(), [files / "part-0.jsonl", _later(tmp_path)], jobs=1)
    assert first.requests_new > 100
    refresh(engine)
    assert marks(engine) == []
    summed = rows(engine)
    # The rest: new requests, the roots of stored ones (their endpoint and user change), spans
    # sent twice, and everything again (stored already: nothing changes).
    late = ingest_paths(engine, Settings(), [files], jobs=2)
    assert late.requests_new > 100 and late.calls_new > 100
    assert marks(engine) == []  # every batch patched
    assert rows(engine) != summed
    assert_readers_answer_like_the_base_tables(engine, random.Random(5))
    patched = rows(engine)
    again = ingest_paths(engine, Settings(), [files], jobs=1)
    assert (again.requests_new, again.calls_new) == (0, 0)
    assert marks(engine) == [] and rows(engine) == patched
    assert patched == rebuilt(engine)


def test_a_batch_over_more_days_than_a_patch_takes_is_marked(
    engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A batch whose requests lie on more than `PATCH_DAYS` days marks them (a patch reads
    every row of its days): one rebuild of each."""
    lines = []
    for n in range(3):  # a request a day, three days
        calls, root = _trace(random.Random(n), 0)
        for span in (*calls, root):
            for key in ("startTimeUnixNano", "endTimeUnixNano"):
                span[key] = str(int(span[key]) + n * DAY_NS)
        lines.append(_line([*calls, root]))
    spread = tmp_path / "days.jsonl"
    spread.write_text("".join(lines))
    ingest_paths(engine, Settings(), [spread, _later(tmp_path, days=5)], jobs=1)
    refresh(engine)
    monkeypatch.setattr(patch, "PATCH_DAYS", 3)
    ingest_paths(engine, Settings(), [spread], jobs=1)  # sent again: patched, nothing changes
    assert marks(engine) == []
    # A batch a day, in one transaction: each patch reads its own requests only (one day).
    monkeypatch.setattr(ingest, "BATCH_SPANS", 1)
    monkeypatch.setattr(patch, "PATCH_DAYS", 1)
    ingest_paths(engine, Settings(), [spread], jobs=1)
    assert marks(engine) == []
    monkeypatch.undo()
    monkeypatch.setattr(patch, "PATCH_DAYS", 2)
    ingest_paths(engine, Settings(), [spread], jobs=1)
    assert len({day for day, _ in marks(engine)}) == 3


@pytest.mark.postgres
def test_a_bulk_run_patches_up_to_its_budget_then_marks(
    engine: Engine, files: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run of the traces collector (and `ingest`) is a bulk load: its batches patch up to
    `PATCH_BUDGET` requests, then mark the days they land on, so that a day sent again whole
    costs one rebuild, not a patch per batch. The rows come out the same."""
    monkeypatch.setattr(ingest, "BATCH_SPANS", 150)
    ingest_paths(engine, Settings(), [files / "part-0.jsonl", _later(tmp_path)], jobs=1)
    refresh(engine)
    monkeypatch.setattr(patch, "PATCH_BUDGET", 40)  # a batch of the first part, not two
    folder = tmp_path / "collected"
    folder.mkdir()
    for n in range(1, 5):
        settle(Path(shutil.copy(files / f"part-{n}.jsonl", folder)))
    outcome = collect(engine, folder_settings(folder))
    assert outcome.status == "ok" and outcome.rows_loaded > 1000
    assert marks(engine)  # the budget spent: the rest marked
    refresh(engine)
    assert_readers_answer_like_the_base_tables(engine, random.Random(6))
    assert rows(engine) == rebuilt(engine)
