"""Which pool a cost line belongs to, how a line spreads over hours, exact splitting, and the
`gpu_pools` settings' checks."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from app.gpu.pools import CostLine, pool_hours, pool_of, spread
from app.money import split_exact
from app.settings import GpuPoolConfig, Settings


def line(**fields: object) -> CostLine:
    base: dict[str, object] = {
        "source": "focus",
        "period_start": datetime(2025, 11, 20, 10, tzinfo=UTC),
        "period_end": datetime(2025, 11, 20, 11, tzinfo=UTC),
        "charge_category": "usage",
        "resource_id": None,
        "namespace": None,
        "tags": None,
        "amount_nano": 1_000,
        "usage_milli": None,
    }
    return CostLine(**{**base, **fields})  # type: ignore[arg-type]


POOLS = [
    GpuPoolConfig(name="by-tag", match={"tag": {"gpu-pool": "a", "env": "prod"}}),  # type: ignore[arg-type]
    GpuPoolConfig(name="by-instance", match={"instance_ids": ["i-1"]}),  # type: ignore[arg-type]
    GpuPoolConfig(name="by-namespace", match={"namespace": "ns"}),  # type: ignore[arg-type]
]


def test_a_line_goes_to_the_first_pool_it_matches() -> None:
    assert pool_of(line(tags='{"gpu-pool":"a","env":"prod"}'), POOLS) == "by-tag"
    assert pool_of(line(tags='{"gpu-pool":"a"}'), POOLS) == "(unassigned)"  # every tag needed
    assert pool_of(line(tags='{"user_gpu_pool":"a","user_env":"prod"}'), POOLS) == "by-tag"
    assert pool_of(line(resource_id="i-1"), POOLS) == "by-instance"
    assert pool_of(line(namespace="ns"), POOLS) == "by-namespace"
    both = line(tags='{"gpu-pool":"a","env":"prod"}', resource_id="i-1")
    assert pool_of(both, POOLS) == "by-tag"


def test_a_line_spreads_over_its_hours_by_time_exactly() -> None:
    daily = line(
        period_start=datetime(2025, 11, 20, 0, 30, tzinfo=UTC),
        period_end=datetime(2025, 11, 20, 3, tzinfo=UTC),
        amount_nano=1_000,
        usage_milli=2_500,
    )
    assert [(h.hour, a, u) for h, a, u in spread(daily)] == [
        (0, 200, 500),
        (1, 400, 1000),
        (2, 400, 1000),
    ]


def test_one_source_per_pool_and_day() -> None:
    ce = line(
        source="aws_ce",
        period_start=datetime(2025, 11, 20, tzinfo=UTC),
        period_end=datetime(2025, 11, 21, tzinfo=UTC),
        amount_nano=24_000,
        resource_id="i-1",
    )
    focus = line(resource_id="i-1", amount_nano=5)
    start, end = datetime(2025, 11, 20, tzinfo=UTC), datetime(2025, 11, 21, tzinfo=UTC)
    hours = pool_hours([(ce, "USD"), (focus, "USD")], POOLS, start, end).hours
    assert {k: (s, c.cost) for k, (s, c) in hours.items()} == {
        ("by-instance", datetime(2025, 11, 20, 10, tzinfo=UTC)): ("focus", 5)
    }
    only_ce = pool_hours([(ce, "USD"), (line(amount_nano=7), "EUR")], POOLS, start, end)
    assert len(only_ce.hours) == 24 and only_ce.not_usd == 1


@given(
    st.integers(min_value=-(10**15), max_value=10**15),
    st.lists(st.integers(min_value=0, max_value=10**9), min_size=1, max_size=30),
)
def test_split_exact_adds_up_and_stays_within_one_unit(total: int, weights: list[int]) -> None:
    parts = split_exact(total, weights)
    assert sum(parts) == total
    whole = sum(weights) or len(weights)
    shares = weights if sum(weights) else [1] * len(weights)
    for part, weight in zip(parts, shares, strict=True):
        assert abs(part * whole - total * weight) < whole  # within one unit of the exact share


def test_pool_settings_are_checked() -> None:
    with pytest.raises(ValidationError, match="needs a tag, instance_ids or namespace"):
        Settings(gpu_pools=[{"name": "p", "models": ["m"]}])  # type: ignore[list-item]
    with pytest.raises(ValidationError, match="a model is served by one pool"):
        Settings(
            gpu_pools=[  # type: ignore[list-item]
                {"name": "p", "match": {"namespace": "a"}, "models": ["m"]},
                {"name": "q", "match": {"namespace": "b"}, "models": ["m"]},
            ]
        )
    with pytest.raises(ValidationError, match="used twice"):
        Settings(gpu_pools=[{"name": "p", "match": {"namespace": "a"}}] * 2)  # type: ignore[list-item]
    with pytest.raises(ValidationError, match="reserved"):
        Settings(gpu_pools=[{"name": "(unassigned)", "match": {"namespace": "a"}}])  # type: ignore[list-item]
