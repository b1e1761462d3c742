"""Parallel ingest (decode workers) gives the warehouse of serial ingest, on both backends; the
COPY path writes what the INSERT path writes; a failing or dying worker is a clear error that
loses nothing already written, and a re-run completes the load."""

from __future__ import annotations

import gc
import gzip
import json
import os
import random
import signal
import time
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, select, text

from app import ingest
from app.ingest import IngestResult, IngestWorkerError, ingest_paths
from app.settings import Settings
from app.warehouse import load
from app.warehouse.tables import CollectorRun

BASE_NS = 1_763_600_000 * 10**9


def _attr(key: str, value: str | int) -> dict[str, Any]:
    if isinstance(value, int):
        return {"key": key, "value": {"intValue": str(value)}}
    return {"key": key, "value": {"stringValue": value}}


def _trace(rng: random.Random, n: int) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Calls and internal spans of one request, and its root."""
    trace_id = f"{rng.getrandbits(128):032x}"
    root_id = f"{rng.getrandbits(64):016x}"
    start = BASE_NS + n * 50_000_000
    children = []
    for i in range(rng.choice([0, 1, 2, 3])):
        model = rng.choice(["gpt-4o-mini", "claude-haiku-4-5", "my-own-model"])
        attrs = [
            _attr("gen_ai.request.model", model),
            _attr("gen_ai.usage.input_tokens", rng.randint(1, 5000)),
            _attr("gen_ai.usage.output_tokens", rng.randint(0, 900)),
        ]
        if rng.random() < 0.3:
            attrs.append(_attr("llm.user", f"u-{rng.randint(1, 9)}"))  # a user on a call
        children.append(
            {
                "traceId": trace_id,
                "spanId": f"{rng.getrandbits(64):016x}",
                "parentSpanId": root_id,
                "kind": 3,
                "startTimeUnixNano": str(start + (i + 1) * 1000),
                "endTimeUnixNano": str(start + 800_000_000),
                "attributes": attrs,
            }
        )
    children.append(
        {
            "traceId": trace_id,
            "spanId": f"{rng.getrandbits(64):016x}",
            "parentSpanId": root_id,
            "kind": 1,
            "startTimeUnixNano": str(start - 5000),  # before its root: clock skew
            "endTimeUnixNano": str(start + 1000),
            "attributes": [_attr("db.system", "postgresql")],
        }
    )
    root = {
        "traceId": trace_id,
        "spanId": root_id,
        "kind": 2,
        "name": "POST",
        "startTimeUnixNano": str(start),
        "endTimeUnixNano": str(start + 1_000_000_000),
        "attributes": [
            _attr("http.route", rng.choice(["/a", "/b", "/c"])),
            _attr("enduser.id", f"u-{rng.randint(1, 9)}"),
        ],
    }
    return children, root


def _line(spans: list[dict[str, Any]], service: str = "shop") -> str:
    doc = {
        "resourceSpans": [
            {
                "resource": {"attributes": [_attr("service.name", service)]},
                "scopeSpans": [{"spans": spans}],
            }
        ]
    }
    return json.dumps(doc) + "\n"


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Several files; a request's spans split across them (roots in other files than their
    calls), duplicates, a bad line, a bad span and a corrupt gzip file."""
    folder = tmp_path_factory.mktemp("otlp")
    rng = random.Random(7)
    traces = [_trace(rng, n) for n in range(900)]
    by_file: dict[str, list[str]] = {f"part-{i}.jsonl": [] for i in range(5)}
    for n in range(0, 900, 30):
        chunk = traces[n : n + 30]
        children = [s for c, _ in chunk for s in c]
        roots = [r for _, r in chunk]
        calls_file = f"part-{n // 30 % 5}.jsonl"
        roots_file = f"part-{(n // 30 + 2) % 5}.jsonl"
        by_file[calls_file].append(_line(children))
        by_file[roots_file].append(_line(roots))
    by_file["part-1.jsonl"].append(by_file["part-0.jsonl"][0])  # duplicated spans
    by_file["part-2.jsonl"].append("{not json\n")
    bad = dict(traces[0][1], spanId="f" * 16)
    bad["attributes"] = [_attr("gen_ai.request.model", "x"), _attr("gen_ai.usage.input_tokens", -1)]
    by_file["part-3.jsonl"].append(_line([bad]))
    for name, lines in by_file.items():
        (folder / name).write_text("".join(lines))
    (folder / "corrupt.jsonl.gz").write_bytes(gzip.compress(rng.randbytes(5000))[:-100])
    return folder


def _dump(engine: Engine) -> dict[str, list[tuple[Any, ...]]]:
    queries = {
        "requests": "select trace_id, started_at, root_span_id, root_key, endpoint, service, "
        "duration_ms, user_id, user_key, team, team_key from requests order by trace_id",
        "llm_calls": "select trace_id, span_id, started_at, duration_ms, provider, model, "
        "response_model, priced_model, operation, family, input_tokens, cache_read_tokens, "
        "cache_write_tokens, output_tokens, reasoning_tokens, cost_nanousd, price_source "
        "from llm_calls order by trace_id, span_id",
        "quarantine": "select collector, source, location, reason, trace_id, span_id "
        "from quarantine order by source, location",
    }
    with engine.connect() as conn:
        return {t: [tuple(r) for r in conn.execute(text(q))] for t, q in queries.items()}


def _wipe(engine: Engine) -> None:
    with engine.begin() as conn:
        for table in ("requests", "llm_calls", "quarantine"):
            conn.execute(text(f"delete from {table}"))


def _counts(r: IngestResult) -> tuple[Any, ...]:
    return (r.files, r.spans, r.requests_new, r.calls_new, r.calls_duplicate, r.quarantined)


@pytest.fixture
def small_batches(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ingest, "BATCH_SPANS", 150)  # several batches per file, per worker


@pytest.mark.postgres
@pytest.mark.usefixtures("small_batches")
def test_parallel_ingest_gives_the_serial_warehouse(engine: Engine, files: Path) -> None:
    thresholds = gc.get_threshold()
    serial = ingest_paths(engine, Settings(), [files], jobs=1)
    assert gc.get_threshold() == thresholds  # raised while it wrote, then set back
    expected = _dump(engine)
    assert expected["requests"] and expected["llm_calls"] and expected["quarantine"]
    assert set(serial.failed) == {str(files / "corrupt.jsonl.gz")}
    _wipe(engine)
    parallel = ingest_paths(engine, Settings(), [files], jobs=3)
    assert _dump(engine) == expected
    assert _counts(parallel) == _counts(serial)
    assert parallel.failed == serial.failed
    again = ingest_paths(engine, Settings(), [files], jobs=2)  # everything is stored already
    assert _dump(engine) == expected
    assert (again.requests_new, again.calls_new) == (0, 0)
    assert again.calls_duplicate == serial.calls_new + serial.calls_duplicate


@pytest.mark.postgres
@pytest.mark.usefixtures("small_batches")
def test_copy_path_writes_what_the_insert_path_writes(
    engine: Engine, files: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if engine.dialect.name != "postgresql":
        pytest.skip("COPY is the PostgreSQL path")
    monkeypatch.setattr(load, "COPY_MIN_ROWS", 10**9)  # every batch by INSERT
    by_insert = ingest_paths(engine, Settings(), [files], jobs=1)
    expected = _dump(engine)
    again = ingest_paths(engine, Settings(), [files], jobs=1)
    _wipe(engine)
    monkeypatch.setattr(load, "COPY_MIN_ROWS", 0)  # every batch by COPY
    by_copy = ingest_paths(engine, Settings(), [files], jobs=1)
    assert _dump(engine) == expected
    assert _counts(by_copy) == _counts(by_insert)
    again_copy = ingest_paths(engine, Settings(), [files], jobs=1)
    assert _counts(again_copy) == _counts(again)
    assert _dump(engine) == expected


def _fail_on(name: str, how: str) -> Any:
    real = ingest.file_batches

    def file_batches(intake: Any, path: Path) -> Any:
        if path.name == name and os.getpid() != PARENT:
            if how == "raise":
                raise RuntimeError("boom in the worker")
            os.kill(os.getpid(), signal.SIGKILL)
        return real(intake, path)

    return file_batches


PARENT = os.getpid()


@pytest.mark.parametrize(
    ("how", "message"),
    [("raise", "RuntimeError: boom in the worker"), ("die", "died with exit code -9")],
)
@pytest.mark.usefixtures("small_batches")
def test_a_failing_worker_stops_the_ingest_and_loses_nothing(
    sqlite_engine: Engine, files: Path, monkeypatch: pytest.MonkeyPatch, how: str, message: str
) -> None:
    ingest_paths(sqlite_engine, Settings(), [files], jobs=1)
    expected = _dump(sqlite_engine)
    _wipe(sqlite_engine)
    monkeypatch.setattr(ingest, "file_batches", _fail_on("part-2.jsonl", how))
    with pytest.raises(IngestWorkerError, match=message) as failed:
        ingest_paths(sqlite_engine, Settings(), [files], jobs=2)
    assert "part-2.jsonl" in str(failed.value)
    assert "run the command again" in str(failed.value)
    with sqlite_engine.connect() as conn:
        run = conn.execute(select(CollectorRun).order_by(CollectorRun.id.desc())).first()
    assert run is not None
    assert run.status == "failed"
    assert "IngestWorkerError" in (run.error or "")
    monkeypatch.undo()
    monkeypatch.setattr(ingest, "BATCH_SPANS", 150)
    ingest_paths(sqlite_engine, Settings(), [files], jobs=2)  # the re-run loads the rest
    assert _dump(sqlite_engine) == expected


def test_a_worker_killed_in_the_middle_of_sending_a_batch_stops_the_ingest(
    sqlite_engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The writer is busy (its first write takes 2 s), so the worker's next batch fills the
    pipe and waits half-sent; then the worker is killed (as by the OOM killer). The writer must
    read end-of-file and stop with the worker's error, not wait for the rest of the message."""
    rng = random.Random(3)
    lines = []
    for n in range(0, 6000, 500):
        pairs = [_trace(rng, n + i) for i in range(500)]
        lines.append(_line([s for c, root in pairs for s in (*c, root)]))
    (tmp_path / "big.jsonl").write_text("".join(lines))
    (tmp_path / "small.jsonl").write_text(lines[0])
    monkeypatch.setattr(ingest, "BATCH_SPANS", 5000)  # about 500 kB a batch: more than a pipe
    real = ingest.file_batches

    def batches(intake: Any, path: Path) -> Any:
        for number, batch in enumerate(real(intake, path)):
            yield batch
            if path.name == "big.jsonl" and os.getpid() != PARENT and number == 1:
                time.sleep(0.5)  # the sender is stuck in the middle of this batch
                os.kill(os.getpid(), signal.SIGKILL)

    real_write = ingest._Writer.write
    slow = [True]

    def busy_write(self: Any, batch: Any, path: Path) -> None:
        if slow.pop() if slow else False:
            time.sleep(2)
        real_write(self, batch, path)

    monkeypatch.setattr(ingest, "file_batches", batches)
    monkeypatch.setattr(ingest._Writer, "write", busy_write)

    def hung(*_: Any) -> None:
        raise AssertionError("the ingest hung on the dead worker's half-sent batch")

    previous = signal.signal(signal.SIGALRM, hung)
    signal.alarm(60)
    try:
        with pytest.raises(IngestWorkerError, match="died with exit code -9"):
            ingest_paths(sqlite_engine, Settings(), [tmp_path], jobs=2)
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def test_small_inputs_are_decoded_in_process(
    sqlite_engine: Engine, files: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_workers(*args: Any) -> None:
        raise AssertionError("worker processes started for a small input")

    monkeypatch.setattr(ingest, "run_workers", no_workers)
    result = ingest_paths(sqlite_engine, Settings(), [files])  # well under 4 MB
    assert result.spans > 0


def test_batches_share_transactions_and_give_the_same_warehouse(
    sqlite_engine: Engine, files: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With a transaction per batch and with several batches per transaction, the same rows and
    counts; the grouped run commits more than once (COMMIT_SPANS reached)."""
    monkeypatch.setattr(ingest, "BATCH_SPANS", 150)
    monkeypatch.setattr(ingest, "COMMIT_SPANS", 1)  # a commit after every batch
    each = ingest_paths(sqlite_engine, Settings(), [files], jobs=1)
    expected = _dump(sqlite_engine)
    _wipe(sqlite_engine)
    commits: list[int] = []
    real_commit = ingest._Writer.commit

    def counting(self: Any) -> None:
        commits.append(1)
        real_commit(self)

    monkeypatch.setattr(ingest._Writer, "commit", counting)
    monkeypatch.setattr(ingest, "COMMIT_SPANS", 600)
    monkeypatch.setattr(ingest, "COMMIT_SECONDS", 3600.0)  # counts only, however slow the machine
    grouped = ingest_paths(sqlite_engine, Settings(), [files], jobs=1)
    assert _dump(sqlite_engine) == expected
    assert _counts(grouped) == _counts(each)
    assert 1 < len(commits) < grouped.spans // 150
    with sqlite_engine.connect() as conn:  # the page cache is set back when the ingest ends
        assert conn.exec_driver_sql("PRAGMA cache_size").scalar_one() == -2000


def test_a_failing_write_rolls_back_its_transaction_and_a_rerun_completes(
    sqlite_engine: Engine, files: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ingest_paths(sqlite_engine, Settings(), [files], jobs=1)
    expected = _dump(sqlite_engine)
    _wipe(sqlite_engine)
    monkeypatch.setattr(ingest, "BATCH_SPANS", 150)
    monkeypatch.setattr(ingest, "COMMIT_SECONDS", 3600.0)
    real_load = ingest.Intake.load
    loads: list[int] = []

    def failing(self: Any, session: Any, batch: Any, source: str, spans: int) -> Any:
        loads.append(1)
        if len(loads) == 4:
            raise RuntimeError("disk full")
        return real_load(self, session, batch, source, spans)

    monkeypatch.setattr(ingest.Intake, "load", failing)
    with pytest.raises(RuntimeError, match="disk full"):
        ingest_paths(sqlite_engine, Settings(), [files], jobs=1)
    # The three batches before it shared its transaction: nothing of them half-stored.
    assert _dump(sqlite_engine)["llm_calls"] == []
    monkeypatch.undo()
    ingest_paths(sqlite_engine, Settings(), [files], jobs=1)
    assert _dump(sqlite_engine) == expected
