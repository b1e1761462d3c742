"""The `traces` collector's S3 source, against awss3exporter's key layout.

S3 is moto in server mode (a real HTTP endpoint on localhost), reached by boto3 through
`endpoint_url` with dummy credentials in the standard environment chain, as a MinIO or
LocalStack would be.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import boto3
import pytest
from sqlalchemy import Engine, select

from app.settings import Settings
from app.warehouse.tables import CollectorRun, QuarantinedRecord
from tests.servers import aws_environment, free_port, moto_server
from tests.test_collect_traces import checkpoints, collect, protobuf, span_doc, trace_ids

PREFIX = "otel/traces"


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    """moto's S3, as an HTTP server on localhost for the whole module."""
    with moto_server() as url:
        yield url


@pytest.fixture
def s3(s3_endpoint: str, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest) -> Any:
    """A client on a fresh bucket, with dummy credentials in the standard environment chain."""
    aws_environment(monkeypatch)
    client = boto3.client("s3", region_name="us-east-1", endpoint_url=s3_endpoint)
    client.bucket = f"otel-{abs(hash(request.node.nodeid)) % 10**8}-{free_port()}"
    client.create_bucket(Bucket=client.bucket)
    return client


def s3_settings(s3: Any, bucket: str | None = None) -> Settings:
    source = {
        "kind": "s3",
        "bucket": bucket or s3.bucket,
        "prefix": f"{PREFIX}/",
        "region": "us-east-1",
        "endpoint_url": s3.meta.endpoint_url,
    }
    return Settings(collectors={"traces": {"sources": [source]}})  # type: ignore[arg-type]


def key(when: str, name: str, prefix: str = PREFIX) -> str:
    """awss3exporter's key for minute `when` ("2025-11-20T23:59")."""
    t = datetime.fromisoformat(when)
    return f"{prefix}/{t:year=%Y/month=%m/day=%d/hour=%H/minute=%M}/{name}"


def put(s3: Any, when: str, trace: int, suffix: str = ".json") -> str:
    body = json.dumps(span_doc(trace)).encode()
    if suffix.startswith(".binpb"):
        body = protobuf(trace)
    if suffix.endswith(".gz"):
        body = gzip.compress(body)
    name = key(when, f"traces_{trace:04d}{suffix}")
    s3.put_object(Bucket=s3.bucket, Key=name, Body=body)
    return name


def s3_checkpoint(engine: Engine, s3: Any) -> dict[str, Any]:
    return checkpoints(engine)[f"s3://{s3.bucket}/{PREFIX}/"]


def test_s3_reads_the_layout_across_hour_and_day_boundaries(engine: Engine, s3: Any) -> None:
    put(s3, "2025-11-20T22:59", 1)
    put(s3, "2025-11-20T23:59", 2, ".json.gz")
    last = put(s3, "2025-11-21T00:00", 3, ".binpb")
    put(s3, "2025-11-21T00:00", 4, ".binpb.gz")
    s3.put_object(Bucket=s3.bucket, Key=key("2025-11-21T00:01", "metrics_1.json"), Body=b"{}")
    s3.put_object(Bucket=s3.bucket, Key=key("2025-11-21T00:01", "traces_9.json", "other"), Body=b"")
    settings = s3_settings(s3)

    run = collect(engine, settings)
    assert run.ok, run.errors
    assert (run.rows_loaded, run.rows_rejected) == (4, 0)
    assert trace_ids(engine) == {1, 2, 3, 4}
    state = s3_checkpoint(engine, s3)
    assert state["last_key"] == max(last, key("2025-11-21T00:00", "traces_0004.binpb.gz"))
    assert key("2025-11-20T22:59", "traces_0001.json") not in state["recent"]  # beyond the lag
    assert collect(engine, settings).rows_loaded == 0


def test_s3_late_objects_inside_the_lag_window(engine: Engine, s3: Any) -> None:
    settings = s3_settings(s3)
    put(s3, "2025-11-20T10:00", 1)
    put(s3, "2025-11-20T10:05", 2)
    assert collect(engine, settings).rows_loaded == 2

    put(s3, "2025-11-20T10:03", 3)  # written late, in a minute already listed
    put(s3, "2025-11-20T10:05", 4)  # late, in the very minute of the checkpoint
    late = collect(engine, settings)
    assert late.rows_loaded == 2 and trace_ids(engine) == {1, 2, 3, 4}

    put(s3, "2025-11-20T10:20", 5)
    assert collect(engine, settings).rows_loaded == 1
    assert s3_checkpoint(engine, s3)["recent"] == [key("2025-11-20T10:20", "traces_0005.json")]

    put(s3, "2025-11-20T09:50", 6)  # later than the lag window: only --since finds it
    assert collect(engine, settings).rows_loaded == 0
    since = collect(engine, settings, since=datetime(2025, 11, 20, tzinfo=UTC))
    assert since.rows_loaded == 5  # everything listed again but the recent key; ids dedupe
    assert trace_ids(engine) == {1, 2, 3, 4, 5, 6}


def test_s3_bad_objects_are_quarantined_by_key(engine: Engine, s3: Any) -> None:
    bad = key("2025-11-20T10:00", "traces_bad.json")
    s3.put_object(Bucket=s3.bucket, Key=bad, Body=b"{nope")
    put(s3, "2025-11-20T10:01", 1)
    run = collect(engine, s3_settings(s3))
    assert run.ok and (run.rows_loaded, run.rows_rejected) == (1, 1)
    with engine.connect() as conn:
        q = conn.execute(select(QuarantinedRecord.location, QuarantinedRecord.reason)).one()
    assert q.location.startswith(bad) and "not valid JSON" in q.reason
    assert collect(engine, s3_settings(s3)).rows_rejected == 0


def test_s3_a_missing_bucket_fails_the_run_and_names_the_setting(engine: Engine, s3: Any) -> None:
    run = collect(engine, s3_settings(s3, bucket="no-such-bucket"))
    assert not run.ok
    assert "NoSuchBucket" in (run.error or "")
    assert "collectors.traces.sources[0].bucket" in (run.error or "")
    with engine.connect() as conn:
        assert conn.execute(select(CollectorRun.status)).scalar_one() == "failed"
