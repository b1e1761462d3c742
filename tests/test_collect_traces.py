"""The `traces` pull collector on folders (the Collector file exporter).

Its S3 source: test_collect_traces_s3.py; the command: test_collect_command.py; what every
collector must do: test_collector_conformance.py. Helpers here are shared by those.
"""

from __future__ import annotations

import base64
import gzip
import json
import os
import struct
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from google.protobuf import json_format
from opentelemetry.proto.trace.v1.trace_pb2 import TracesData
from sqlalchemy import Engine, func, select
from sqlalchemy.exc import OperationalError

from app.settings import Settings
from app.traces.intake import Intake
from app.warehouse.checkpoints import read_checkpoints
from app.warehouse.engine import session_scope
from app.warehouse.tables import CollectorRun, LlmCall, QuarantinedRecord
from collectors import traces_folder
from collectors.registry import get

T0 = 1_763_632_800_000_000_000  # 2025-11-20T10:00:00Z in ns
ROTATED = "traces-2025-11-20T10-00-00.000.jsonl"


# ── OTLP documents ─────────────────────────────────────────────────────────────────────────────


def span_doc(trace: int, span: int = 1, *, model: str = "gpt-4o-mini") -> dict[str, Any]:
    """One TracesData with one LLM call span (ids from the numbers; trace 0 is invalid)."""
    attrs = {
        "gen_ai.operation.name": {"stringValue": "chat"},
        "gen_ai.provider.name": {"stringValue": "openai"},
        "gen_ai.request.model": {"stringValue": model},
        "gen_ai.usage.input_tokens": {"intValue": "1000"},
        "gen_ai.usage.output_tokens": {"intValue": "100"},
    }
    start = T0 + trace * 1_000_000_000
    span = {
        "traceId": f"{trace:032x}",
        "spanId": f"{span:016x}",
        "name": f"chat {model}",
        "kind": 3,
        "startTimeUnixNano": str(start),
        "endTimeUnixNano": str(start + 500_000_000),
        "attributes": [{"key": k, "value": v} for k, v in attrs.items()],
    }
    resource = {"attributes": [{"key": "service.name", "value": {"stringValue": "shop"}}]}
    return {"resourceSpans": [{"resource": resource, "scopeSpans": [{"spans": [span]}]}]}


def lines(*traces: int) -> bytes:
    return b"".join(json.dumps(span_doc(t)).encode() + b"\n" for t in traces)


def protobuf(trace: int) -> bytes:
    """The same span as `span_doc`, in protobuf (awss3exporter `otlp_proto`, file `proto`)."""
    doc = span_doc(trace)
    span = doc["resourceSpans"][0]["scopeSpans"][0]["spans"][0]
    for field in ("traceId", "spanId"):  # the protobuf JSON mapping writes bytes as base64
        span[field] = base64.b64encode(bytes.fromhex(span[field])).decode()
    return bytes(json_format.ParseDict(doc, TracesData()).SerializeToString())


def settle(path: Path) -> Path:
    """Age a whole-read file past the settle time (a just-written .gz may be mid-write)."""
    old = datetime.now(UTC).timestamp() - 3600
    os.utime(path, (old, old))
    return path


def calls(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(LlmCall)).scalar_one())


def trace_ids(engine: Engine) -> set[int]:
    with engine.connect() as conn:
        return {int(t, 16) for t in conn.execute(select(LlmCall.trace_id)).scalars()}


def checkpoints(engine: Engine) -> dict[str, Any]:
    with session_scope(engine) as session:
        return {k: json.loads(v) for k, v in read_checkpoints(session, "traces").items()}


def folder_settings(*paths: Path) -> Settings:
    sources = [{"kind": "folder", "path": str(p)} for p in paths]
    return Settings(collectors={"traces": {"sources": sources}})  # type: ignore[arg-type]


def collect(engine: Engine, settings: Settings, **kwargs: Any) -> Any:
    return get("traces").run(engine, settings, **kwargs)


# ── folders ────────────────────────────────────────────────────────────────────────────────────


def test_rotated_gz_and_json_files_are_read_once(engine: Engine, tmp_path: Path) -> None:
    (tmp_path / "traces.jsonl").write_bytes(lines(1, 2))
    (tmp_path / ROTATED).write_bytes(lines(3, 4))
    with gzip.open(tmp_path / "traces-2025-11-20T09-00-00.000.jsonl.gz", "wb") as f:
        f.write(lines(5, 6))
    settle(tmp_path / "traces-2025-11-20T09-00-00.000.jsonl.gz")
    (tmp_path / "one.json").write_text(json.dumps(span_doc(7)))
    settle(tmp_path / "one.json")
    settings = folder_settings(tmp_path)

    first = collect(engine, settings)
    assert first.ok, first.errors
    assert (first.rows_loaded, first.rows_rejected) == (7, 0)
    assert trace_ids(engine) == {1, 2, 3, 4, 5, 6, 7}
    files = checkpoints(engine)[f"folder:{tmp_path}"]["files"]
    assert files[str(tmp_path / "traces-2025-11-20T09-00-00.000.jsonl.gz")]["done"] is True
    assert files[str(tmp_path / "traces.jsonl")]["offset"] == len(lines(1, 2))

    again = collect(engine, settings)
    assert again.ok and again.rows_loaded == 0
    assert calls(engine) == 7
    with engine.connect() as conn:
        runs = conn.execute(select(CollectorRun.status, CollectorRun.rows_loaded)).all()
    assert sorted(runs) == [("ok", 0), ("ok", 7)]


def test_growth_and_a_half_written_line(engine: Engine, tmp_path: Path) -> None:
    active = tmp_path / "traces.jsonl"
    whole = lines(2)
    active.write_bytes(lines(1) + whole[:40])  # the writer is in the middle of line 2
    settings = folder_settings(tmp_path)

    assert collect(engine, settings).rows_loaded == 1
    assert trace_ids(engine) == {1}
    with active.open("ab") as f:
        f.write(whole[40:] + lines(3))
    second = collect(engine, settings)
    assert second.rows_loaded == 2  # line 2 read once, whole; then line 3
    assert trace_ids(engine) == {1, 2, 3}
    assert collect(engine, settings).rows_loaded == 0


def test_rotation_reads_only_the_tail_of_the_renamed_file(engine: Engine, tmp_path: Path) -> None:
    active = tmp_path / "traces.jsonl"
    active.write_bytes(lines(1, 2))
    settings = folder_settings(tmp_path)
    assert collect(engine, settings).rows_loaded == 2
    with active.open("ab") as f:
        f.write(lines(3))
    active.rename(tmp_path / ROTATED)  # lumberjack: rename, then a new active file
    active.write_bytes(lines(4))

    run = collect(engine, settings)
    assert run.ok and run.rows_loaded == 2  # the rotated file's tail (3) and the new file (4)
    assert trace_ids(engine) == {1, 2, 3, 4}
    files = checkpoints(engine)[f"folder:{tmp_path}"]["files"]
    assert set(files) == {str(active), str(tmp_path / ROTATED)}


def test_truncation_and_replacement_read_from_the_start(engine: Engine, tmp_path: Path) -> None:
    active = tmp_path / "traces.jsonl"
    active.write_bytes(lines(1, 2, 3))
    settings = folder_settings(tmp_path)
    collect(engine, settings)

    active.write_bytes(lines(4))  # truncated (copytruncate) and written again: smaller
    assert collect(engine, settings).rows_loaded == 1
    # Rewritten in place, longer than the old offset: the first bytes tell it apart.
    active.write_bytes(lines(5, 6, 7, 8))
    assert collect(engine, settings).rows_loaded == 4
    assert trace_ids(engine) == set(range(1, 9))
    # Replaced by another file (another inode) of the same size: read again; ids dedupe.
    replacement = tmp_path / "new.tmp"
    replacement.write_bytes(lines(5, 6, 7, 8))
    replacement.replace(active)
    assert collect(engine, settings).rows_loaded == 4
    assert calls(engine) == 8


def test_a_bad_line_is_quarantined_and_passed(engine: Engine, tmp_path: Path) -> None:
    active = tmp_path / "traces.jsonl"
    active.write_bytes(lines(1) + b"{not json\n" + lines(2))
    settings = folder_settings(tmp_path)

    run = collect(engine, settings)
    assert run.ok and (run.rows_loaded, run.rows_rejected) == (2, 1)
    with engine.connect() as conn:
        q = conn.execute(select(QuarantinedRecord)).one()
    assert (q.collector, q.source) == ("traces", str(active))
    assert q.location == f"line at byte {len(lines(1))}" and "not valid JSON" in q.reason
    entry = checkpoints(engine)[f"folder:{tmp_path}"]["files"][str(active)]
    assert entry["offset"] == active.stat().st_size
    assert (collect(engine, settings).rows_loaded, calls(engine)) == (0, 2)


def test_corrupt_gz_is_quarantined_once(engine: Engine, tmp_path: Path) -> None:
    broken = tmp_path / "traces-2025-11-20T09-00-00.000.jsonl.gz"
    broken.write_bytes(gzip.compress(lines(1, 2))[:-12])  # cut short: no trailer
    settle(broken)
    run = collect(engine, folder_settings(tmp_path))
    assert run.ok and run.rows_rejected == 1
    assert collect(engine, folder_settings(tmp_path)).rows_rejected == 0


def test_a_compressed_stream_that_grew_is_read_from_where_it_stopped(
    engine: Engine, tmp_path: Path
) -> None:
    archive = tmp_path / "traces-2025-11-20T09-00-00.000.jsonl.gz"
    archive.write_bytes(gzip.compress(lines(1, 2)))
    settle(archive)
    settings = folder_settings(tmp_path)
    assert collect(engine, settings).rows_loaded == 2
    with archive.open("ab") as f:  # a second gzip member: the stream goes on
        f.write(gzip.compress(lines(3)))
    assert collect(engine, settings).rows_loaded == 0  # just changed: may be mid-write
    settle(archive)
    assert collect(engine, settings).rows_loaded == 1
    assert trace_ids(engine) == {1, 2, 3}


def test_length_prefixed_protobuf_growing_like_jsonl(engine: Engine, tmp_path: Path) -> None:
    frames = [struct.pack(">I", len(m)) + m for m in (protobuf(1), protobuf(2), protobuf(3))]
    active = tmp_path / "traces.pb"  # the file exporter's `format: proto`
    active.write_bytes(frames[0] + frames[1][:10])  # message 2 is still being written
    settings = folder_settings(tmp_path)
    assert collect(engine, settings).rows_loaded == 1
    with active.open("ab") as f:
        f.write(frames[1][10:] + frames[2])
    assert collect(engine, settings).rows_loaded == 2
    assert trace_ids(engine) == {1, 2, 3}


def test_a_failed_load_leaves_the_checkpoint(
    engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "traces.jsonl").write_bytes(lines(1, 2, 3))
    settings = folder_settings(tmp_path)
    monkeypatch.setattr(traces_folder, "BATCH_SPANS", 1)  # one transaction per span
    real_load = Intake.load
    loads = 0

    def flaky(self: Intake, session: Any, *args: Any) -> Any:
        nonlocal loads
        loads += 1
        counts = real_load(self, session, *args)  # the rows are written…
        if loads == 2:  # …and then the database fails before the commit
            raise OperationalError("INSERT …", {}, Exception("server closed the connection"))
        return counts

    monkeypatch.setattr(Intake, "load", flaky)
    failed = collect(engine, settings)
    assert not failed.ok and failed.rows_loaded == 1
    assert f"folder:{tmp_path}: OperationalError" in (failed.error or "")
    assert trace_ids(engine) == {1}  # batch 2 rolled back with its checkpoint
    entry = checkpoints(engine)[f"folder:{tmp_path}"]["files"][str(tmp_path / "traces.jsonl")]
    assert entry["offset"] == len(lines(1))
    with engine.connect() as conn:
        run = conn.execute(
            select(CollectorRun.status, CollectorRun.rows_loaded, CollectorRun.error)
        ).one()
    assert (run.status, run.rows_loaded) == ("failed", 1)
    assert "server closed the connection" in (run.error or "")

    monkeypatch.setattr(Intake, "load", real_load)
    resumed = collect(engine, settings)
    assert resumed.ok and resumed.rows_loaded == 2  # spans 2 and 3, each once
    assert trace_ids(engine) == {1, 2, 3}


def test_a_missing_folder_fails_the_run_and_names_the_setting(
    engine: Engine, tmp_path: Path
) -> None:
    good = tmp_path / "good"
    good.mkdir()
    (good / "traces.jsonl").write_bytes(lines(1))
    run = collect(engine, folder_settings(tmp_path / "nope", good))
    assert not run.ok and run.rows_loaded == 1  # the other source is still read
    assert "collectors.traces.sources[0].path" in (run.error or "")
    assert str(tmp_path / "nope") in (run.error or "")


def test_since_reads_recent_files_again(engine: Engine, tmp_path: Path) -> None:
    (tmp_path / "traces.jsonl").write_bytes(lines(1, 2))
    settings = folder_settings(tmp_path)
    collect(engine, settings)
    assert collect(engine, settings).rows_loaded == 0
    again = collect(engine, settings, since=datetime(2020, 1, 1, tzinfo=UTC))
    assert again.rows_loaded == 2 and calls(engine) == 2
    assert collect(engine, settings, since=datetime(2999, 1, 1, tzinfo=UTC)).rows_loaded == 0
