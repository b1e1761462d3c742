"""The shared pieces of the bill collectors: the retrying HTTP client, the paginator, exact
amounts and model names. The network is an `httpx.MockTransport`, time a fake clock."""

from __future__ import annotations

import random
from collections.abc import Callable
from datetime import timedelta
from decimal import Decimal
from email.utils import format_datetime
from typing import Any

import httpx
import pytest

from collectors.base import CollectorError
from collectors.billing_common import normalize_billed_model, to_nanos
from collectors.http import ApiClient, RetryPolicy, SettingNames
from collectors.pagination import NextPagePaginator, PaginationError, pages
from tests.billing_server import FakeClock

NAMES = SettingNames("collectors.openai.admin_key", "collectors.openai.base_url", " (sk-admin…)")
OK = {"object": "page", "data": [], "has_more": False, "next_page": None}


def client(
    answers: list[httpx.Response | Exception] | Callable[[httpx.Request], httpx.Response],
    clock: FakeClock,
) -> ApiClient:
    """A client whose transport gives `answers` in order (or calls a handler)."""
    queue = list(answers) if isinstance(answers, list) else None

    def handle(request: httpx.Request) -> httpx.Response:
        if queue is None:
            assert callable(answers)
            return answers(request)
        answer = queue.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    return ApiClient(
        "https://api.openai.com/v1",
        {"authorization": "Bearer sk-admin-secret"},
        NAMES,
        name="openai",
        transport=httpx.MockTransport(handle),
        sleep=clock.sleep,
        now=clock,
        rng=random.Random(1),
    )


def test_5xx_is_retried_with_growing_jittered_waits() -> None:
    clock = FakeClock()
    answers: list[Any] = [httpx.Response(503), httpx.Response(502), httpx.Response(500)]
    with client([*answers, httpx.Response(200, json=OK)], clock) as api:
        assert api.get_json("organization/costs") == OK
        assert api.calls == 4
    policy = RetryPolicy()
    for retry, waited in enumerate(clock.slept):
        ceiling = policy.base_delay * 2**retry
        assert ceiling / 2 <= waited <= ceiling  # exponential, with jitter below the ceiling
    assert len(set(clock.slept)) == 3


def test_429_honours_retry_after_in_seconds_and_as_an_http_date() -> None:
    clock = FakeClock()
    later = format_datetime(clock.now + timedelta(seconds=42), usegmt=True)
    answers = [
        httpx.Response(429, headers={"Retry-After": "7"}),
        httpx.Response(429, headers={"Retry-After": later}),
        httpx.Response(429),  # no header: backoff
        httpx.Response(200, json=OK),
    ]
    with client(answers, clock) as api:
        assert api.get_json("organization/costs") == OK
    assert clock.slept[:2] == [7.0, 35.0]  # the date is 42 s after the start, 7 s already gone
    assert 2.0 <= clock.slept[2] <= 4.0


def test_a_retry_after_too_long_fails_the_run_instead_of_waiting() -> None:
    clock = FakeClock()
    with (
        client([httpx.Response(429, headers={"Retry-After": "86400"})], clock) as api,
        pytest.raises(CollectorError, match="asked to wait 86400 s"),
    ):
        api.get_json("organization/costs")
    assert clock.slept == []


def test_timeouts_are_retried_then_fail_naming_the_base_url_setting() -> None:
    clock = FakeClock()
    timeouts = [httpx.ReadTimeout("slow") for _ in range(5)]
    with client(timeouts, clock) as api:  # type: ignore[arg-type]
        with pytest.raises(CollectorError) as failed:
            api.get_json("organization/costs")
        assert api.calls == 5
    message = str(failed.value)
    assert "still failing after 5 attempts (timed out: ReadTimeout)" in message
    assert "collectors.openai.base_url" in message
    assert len(clock.slept) == 4


def test_a_timeout_then_an_answer_succeeds() -> None:
    clock = FakeClock()
    with client([httpx.ConnectTimeout("slow"), httpx.Response(200, json=OK)], clock) as api:
        assert api.get_json("x") == OK


@pytest.mark.parametrize("status", [401, 403])
def test_401_and_403_fail_at_once_naming_the_key_setting(status: int) -> None:
    clock = FakeClock()
    body = {"error": {"message": "Invalid admin key", "type": "invalid_request_error"}}
    with client([httpx.Response(status, json=body)], clock) as api:
        with pytest.raises(CollectorError) as failed:
            api.get_json("organization/costs")
        assert api.calls == 1
    message = str(failed.value)
    assert f"openai GET /organization/costs: {status}" in message
    assert "fix collectors.openai.admin_key (sk-admin…)" in message
    assert "Invalid admin key" in message
    assert "sk-admin-secret" not in message
    assert clock.slept == []


def test_other_client_errors_fail_with_the_apis_message() -> None:
    clock = FakeClock()
    answers = [
        httpx.Response(404, json={"error": {"message": "nope"}}),
        httpx.Response(400, json={"error": {"message": "limit must be at most 31"}}),
        httpx.Response(200, text="<html>proxy login</html>"),
    ]
    with client(answers, clock) as api:
        with pytest.raises(CollectorError, match=r"404 not found at .* check collectors\.openai"):
            api.get_json("organization/costs", [("limit", 7)])
        with pytest.raises(CollectorError, match="400 limit must be at most 31"):
            api.get_json("organization/costs")
        with pytest.raises(CollectorError, match=r"not JSON .* collectors\.openai\.base_url"):
            api.get_json("organization/costs")
    assert clock.slept == []


def test_json_numbers_are_decoded_exactly() -> None:
    text = '{"a": 41.2735, "b": 0.8958740000000000123, "c": 12, "d": 1e-7}'
    with client([httpx.Response(200, text=text)], FakeClock()) as api:
        got = api.get_json("x")
    assert got == {
        "a": Decimal("41.2735"),
        "b": Decimal("0.8958740000000000123"),
        "c": 12,
        "d": Decimal("1e-7"),
    }
    assert all(not isinstance(v, float) for v in got.values())


def test_query_lists_repeat_and_headers_are_sent() -> None:
    seen: list[httpx.Request] = []

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json=OK)

    with client(handle, FakeClock()) as api:
        api.get_json("/organization/costs", [("group_by", "project_id"), ("group_by", "line_item")])
    (request,) = seen
    assert request.url.path == "/v1/organization/costs"
    assert request.url.params.get_list("group_by") == ["project_id", "line_item"]
    assert request.headers["authorization"] == "Bearer sk-admin-secret"


# ── pagination ─────────────────────────────────────────────────────────────────────────────────


def test_pages_follow_next_page_until_has_more_is_false() -> None:
    book = {None: "t1", "t1": "t2", "t2": None}
    asked: list[str | None] = []

    def fetch(token: str | None) -> dict[str, Any]:
        asked.append(token)
        return {"data": [token], "has_more": book[token] is not None, "next_page": book[token]}

    paginator = NextPagePaginator("x")
    assert [p["data"] for p in pages(fetch, paginator)] == [[None], ["t1"], ["t2"]]
    assert asked == [None, "t1", "t2"] and paginator.finished and paginator.count == 3


@pytest.mark.parametrize(
    ("book", "error"),
    [
        ({None: "a", "a": "b", "b": "a"}, "points back to a page already read"),
        ({None: "a", "a": "a"}, "points back"),
        ({None: ""}, "has_more is true but next_page is empty"),
    ],
)
def test_pagination_stops_on_loops_and_missing_tokens(book: dict[Any, str], error: str) -> None:
    def fetch(token: str | None) -> dict[str, Any]:
        return {"data": [], "has_more": True, "next_page": book[token]}

    with pytest.raises(PaginationError, match=error):
        list(pages(fetch, NextPagePaginator("openai GET /organization/costs")))


def test_pagination_has_a_page_ceiling() -> None:
    def fetch(token: str | None) -> dict[str, Any]:
        return {"has_more": True, "next_page": f"{int(token or 0) + 1}"}

    with pytest.raises(PaginationError, match="more than 5 pages"):
        list(pages(fetch, NextPagePaginator("x", max_pages=5)))


# ── amounts and model names ────────────────────────────────────────────────────────────────────


@pytest.mark.parametrize(
    ("amount", "scale", "nanos"),
    [
        (Decimal("41.2735"), 0, 41_273_500_000),
        (Decimal("0.8958740000000000"), 0, 895_874_000),
        (Decimal("2310.5"), 2, 23_105_000_000),  # Anthropic: cents
        (Decimal("0.0000000005"), 0, 0),  # half-even at the nano
        (Decimal("0.0000000015"), 0, 2),
        (Decimal("-3.25"), 0, -3_250_000_000),  # credits are negative
        (Decimal("123456789.123456789123"), 2, 1_234_567_891_234_568),
    ],
)
def test_amounts_become_exact_nano_units(amount: Decimal, scale: int, nanos: int) -> None:
    assert to_nanos(amount, scale) == nanos


def test_an_amount_that_is_not_a_number_is_refused() -> None:
    with pytest.raises(ValueError, match="finite"):
        to_nanos(Decimal("NaN"))


@pytest.mark.parametrize(
    ("provider", "billed", "traced"),
    [
        ("openai", "gpt-4o-mini-2024-07-18", "gpt-4o-mini"),
        ("openai", "gpt-4.1-2025-04-14", "gpt-4.1"),
        ("openai", "o4-mini-2025-04-16", "o4-mini"),
        ("openai", "gpt-3.5-turbo-0125", "gpt-3.5-turbo"),
        ("openai", "GPT-4o-mini", "gpt-4o-mini"),
        ("openai", "text-embedding-3-small", "text-embedding-3-small"),
        ("openai", "ft:gpt-4o-mini-2024-07-18:acme::abc", "ft:gpt-4o-mini-2024-07-18:acme::abc"),
        ("anthropic", "claude-sonnet-4-5-20250929", "claude-sonnet-4-5"),
        ("anthropic", "claude-3-5-sonnet-latest", "claude-3-5-sonnet"),
        ("anthropic", "claude-haiku-4-5", "claude-haiku-4-5"),
        ("vllm", "llama-3.1-70b", "llama-3.1-70b"),
        ("openai", None, None),
        ("anthropic", "  ", None),
    ],
)
def test_billed_models_meet_the_names_traces_use(
    provider: str, billed: str | None, traced: str | None
) -> None:
    assert normalize_billed_model(provider, billed) == traced
    assert normalize_billed_model(provider, traced) == traced  # idempotent
