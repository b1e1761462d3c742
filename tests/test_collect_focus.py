"""The `focus` collector against export objects written to moto's S3 in the real Data Exports
layout: FOCUS 1.2 and CUR 2.0, gzip CSV and Parquet, manifests, restatements."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import boto3
import polars as pl
import pytest
from sqlalchemy import Engine, func, select

from app.warehouse.tables_gpu import GpuCost
from collectors.focus import FocusCollector
from tests.gpu_fakes import (
    csv_gz,
    data_key,
    focus_frame,
    focus_settings,
    manifest,
    manifest_key,
    moto_endpoint_fixture,  # noqa: F401  (fixture `moto_endpoint`)
    moto_fixture,  # noqa: F401  (fixture `moto`)
    parquet,
)

NOW = datetime(2025, 11, 25, tzinfo=UTC)
P5, G6E = 98_170_100_000, 10_432_800_000  # the sample's two GPU lines, nano-USD


@pytest.fixture
def bucket(moto: str) -> Any:
    client = boto3.client("s3", region_name="us-east-1", endpoint_url=moto)
    client.bucket = "acme-billing"
    client.create_bucket(Bucket=client.bucket)
    return client


def put(bucket: Any, key: str, body: bytes) -> None:
    bucket.put_object(Bucket=bucket.bucket, Key=key, Body=body)


def run(engine: Engine, bucket: Any, **options: Any) -> Any:
    settings = focus_settings(bucket.bucket, bucket.meta.endpoint_url, **options)
    return FocusCollector(clock=lambda: NOW).run(engine, settings)


def lines(engine: Engine) -> list[tuple[Any, ...]]:
    query = select(
        GpuCost.slice_key,
        GpuCost.instance_type,
        GpuCost.charge_category,
        GpuCost.amount_nano,
        GpuCost.tags,
    ).order_by(GpuCost.amount_nano)
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(query)]


def total(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.sum(GpuCost.amount_nano))).scalar_one() or 0)


TAGGED_REFUND = (
    '-5.25,-5.25,0,-5.25,USD,Credit,,"Refund for p5 capacity",2025-11-20T00:00:00Z,'
    "2025-11-21T00:00:00Z,2025-11-01T00:00:00Z,2025-12-01T00:00:00Z,AWS,AWS,"
    "Amazon Elastic Compute Cloud,Compute,123456789012,210987654321,,,,,,,"
    '"{""gpu-pool"":""llama-70b""}",\n'
)


def test_the_focus_sample_as_gzip_csv_keeps_gpu_and_tagged_lines(
    engine: Engine, bucket: Any
) -> None:
    text = focus_frame().write_csv() + TAGGED_REFUND
    put(bucket, data_key("2025-11", "acme-focus-00001.csv.gz"), csv_gz(focus_frame(text)))
    outcome = run(engine, bucket)
    assert outcome.ok, outcome.errors
    assert lines(engine) == [
        ("2025-11", None, "credit", -5_250_000_000, '{"gpu-pool":"llama-70b"}'),
        ("2025-11", "g6e.12xlarge", "usage", G6E, '{"gpu-pool":"embeddings"}'),
        ("2025-11", "p5.48xlarge", "usage", P5, '{"gpu-pool":"llama-70b","team":"ml-platform"}'),
    ]
    # The untagged account-wide promotional credit is no GPU cost: skipped, and counted.
    assert outcome.details["lines_not_gpu"] == 1
    assert run(engine, bucket).rows_loaded == 0  # nothing changed: nothing read again


def test_parquet_with_typed_columns_gives_the_same_lines(engine: Engine, bucket: Any) -> None:
    frame = focus_frame().with_columns(
        pl.col("BilledCost").cast(pl.Float64),
        pl.col("EffectiveCost").cast(pl.Decimal(18, 4)),
        pl.col("ChargePeriodStart").str.to_datetime(time_zone="UTC"),
        pl.col("ChargePeriodEnd").str.to_datetime(time_zone="UTC"),
    )
    put(bucket, data_key("2025-11", "part-0.parquet"), parquet(frame))
    assert run(engine, bucket).ok
    assert [(r[1], r[3]) for r in lines(engine)] == [("g6e.12xlarge", G6E), ("p5.48xlarge", P5)]
    with engine.connect() as conn:
        start = conn.execute(select(func.min(GpuCost.period_start))).scalar_one()
    assert start == datetime(2025, 11, 20, tzinfo=UTC)


def test_effective_cost_when_asked(engine: Engine, bucket: Any) -> None:
    frame = focus_frame().with_columns(
        pl.when(pl.col("x_UsageType") == "BoxUsage:p5.48xlarge")
        .then(pl.lit("60.00"))
        .otherwise(pl.col("EffectiveCost"))
        .alias("EffectiveCost")
    )
    put(bucket, data_key("2025-11", "f.csv.gz"), csv_gz(frame))
    assert run(engine, bucket, cost_column="EffectiveCost").ok
    assert total(engine) == 60_000_000_000 + G6E


def test_extra_and_missing_optional_columns(engine: Engine, bucket: Any) -> None:
    frame = focus_frame().drop("x_UsageType", "Tags", "ConsumedQuantity", "ListCost")
    frame = frame.with_columns(pl.lit("whatever").alias("x_SomethingNew"))
    put(bucket, data_key("2025-11", "f.csv.gz"), csv_gz(frame))
    outcome = run(engine, bucket)
    assert outcome.ok, outcome.errors
    # The instance type still comes from the charge description; no tags now.
    assert [(r[1], r[3], r[4]) for r in lines(engine)] == [
        ("g6e.12xlarge", G6E, None),
        ("p5.48xlarge", P5, None),
    ]


def test_a_period_restated_twice_replaces_and_never_appends(engine: Engine, bucket: Any) -> None:
    key = data_key("2025-11", "acme-focus-00001.csv.gz")
    put(bucket, key, csv_gz(focus_frame()))
    assert run(engine, bucket).ok
    assert total(engine) == P5 + G6E
    for factor, expected in (("2", 2 * (P5 + G6E)), ("3", 3 * (P5 + G6E))):
        restated = focus_frame().with_columns(
            (pl.col("BilledCost").str.to_decimal(scale=4) * int(factor)).cast(pl.String)
        )
        put(bucket, key, csv_gz(restated))
        outcome = run(engine, bucket)
        assert outcome.ok and outcome.details["periods_replaced"] == 1
        assert total(engine) == expected and len(lines(engine)) == 2


def test_the_manifest_says_which_files_are_the_period(engine: Engine, bucket: Any) -> None:
    old = data_key("2025-11", "exec-0/acme-focus-00001.csv.gz")
    new = data_key("2025-11", "exec-1/acme-focus-00001.csv.gz")
    put(bucket, old, csv_gz(focus_frame()))
    put(bucket, new, csv_gz(focus_frame().filter(pl.col("x_UsageType") == "BoxUsage:p5.48xlarge")))
    put(bucket, manifest_key("2025-11"), manifest(bucket.bucket, [new]))
    assert run(engine, bucket).ok
    assert total(engine) == P5


def test_cur_2_0_columns(engine: Engine, bucket: Any) -> None:
    cur = pl.DataFrame(
        {
            "line_item_usage_start_date": [
                "2025-11-20T00:00:00Z",
                "2025-11-20T00:00:00Z",
                "2025-11-20T00:00:00Z",
            ],
            "line_item_usage_end_date": [
                "2025-11-20T01:00:00Z",
                "2025-11-20T01:00:00Z",
                "2025-11-21T00:00:00Z",
            ],
            "line_item_line_item_type": ["Usage", "Usage", "Refund"],
            "line_item_usage_type": [
                "USW2-BoxUsage:g6e.12xlarge",
                "BoxUsage:m5.large",
                "BoxUsage:g6e.12xlarge",
            ],
            "line_item_resource_id": ["i-0f9e8d7c6b5a40312", "i-cpu", "i-0f9e8d7c6b5a40312"],
            "line_item_usage_amount": ["1", "1", "0"],
            "line_item_unblended_cost": ["10.4328", "0.096", "-1.25"],
            "line_item_currency_code": ["USD", "USD", "USD"],
            "resource_tags": [
                '{"user_gpu_pool": "embeddings"}',
                "{}",
                '{"user_gpu_pool": "embeddings"}',
            ],
            "product_instance_type": ["g6e.12xlarge", "m5.large", ""],
        }
    )
    put(bucket, data_key("2025-11", "cur-00001.csv.gz", export="acme-cur"), csv_gz(cur))
    assert run(engine, bucket).ok
    assert [r[1:4] for r in lines(engine)] == [
        ("g6e.12xlarge", "refund", -1_250_000_000),
        ("g6e.12xlarge", "usage", G6E),
    ]


def test_a_file_without_the_required_columns_fails_its_period_only(
    engine: Engine, bucket: Any
) -> None:
    put(bucket, data_key("2025-10", "ok.csv.gz"), csv_gz(focus_frame()))
    put(bucket, data_key("2025-11", "bad.csv.gz"), csv_gz(focus_frame().drop("BilledCost")))
    outcome = run(engine, bucket)
    assert not outcome.ok and "neither FOCUS" in (outcome.error or "")
    assert total(engine) == P5 + G6E  # the good period is stored
