"""The `spendguard demo` data generator: real OTLP JSON Lines, deterministic, and realistic enough
to show every view of the dashboard (rhythms, heavy users, caches, a runaway agent)."""

from __future__ import annotations

import json
import re
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from genai_prices import Usage as PriceUsage
from genai_prices import calc_price

from app.demo import (
    DEMO_PRICE_OVERRIDES,
    DEMO_USER_TEAMS,
    RUNAWAY_USER,
    DemoSummary,
    default_end,
    generate_demo,
    write_demo_files,
)
from app.traces.files import iter_documents
from app.traces.usage import extract_usage

END = datetime(2025, 11, 21, 14, tzinfo=UTC)  # a Friday afternoon
DAYS = 7
RATE = 800
NS = 1_000_000_000


@dataclass
class Trace:
    root: dict[str, Any] | None = None
    service: str | None = None
    calls: list[dict[str, Any]] = field(default_factory=list)


def attrs(span: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for a in span["attributes"]:
        value = a["value"]
        if "intValue" in value:
            assert isinstance(value["intValue"], str)
            out[a["key"]] = int(value["intValue"])
        else:
            out[a["key"]] = value["stringValue"]
    return out


def read_traces(files: list[Path]) -> dict[str, Trace]:
    traces: dict[str, Trace] = defaultdict(Trace)
    for path in files:
        for line in path.read_text(encoding="utf-8").splitlines():
            doc = json.loads(line)
            for rs in doc["resourceSpans"]:
                resource = {
                    a["key"]: a["value"]["stringValue"] for a in rs["resource"]["attributes"]
                }
                for ss in rs["scopeSpans"]:
                    for span in ss["spans"]:
                        trace = traces[span["traceId"]]
                        if span["kind"] == 2:
                            assert trace.root is None, "one root span per trace"
                            trace.root, trace.service = span, resource["service.name"]
                        else:
                            trace.calls.append(span)
    return dict(traces)


def usage_calls(trace: Trace) -> list[dict[str, Any]]:
    return [c for c in trace.calls if "gen_ai.usage.input_tokens" in attrs(c)]


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[DemoSummary, dict[str, Trace]]:
    out = tmp_path_factory.mktemp("demo")
    summary = generate_demo(out, days=DAYS, seed=7, end=END, requests_per_day=RATE)
    return summary, read_traces(list(summary.files))


@pytest.fixture(scope="module")
def traces(demo: tuple[DemoSummary, dict[str, Trace]]) -> dict[str, Trace]:
    return demo[1]


def test_files_are_otlp_json_lines_one_per_utc_day(
    demo: tuple[DemoSummary, dict[str, Trace]],
) -> None:
    summary, _ = demo
    names = [p.name for p in summary.files]
    assert names == sorted(names)
    assert names[0] == "traces-2025-11-14.jsonl"
    assert names[-1] == "traces-2025-11-21.jsonl"
    assert len(names) == DAYS + 1  # the window starts and ends mid-day
    spans = 0
    for path in summary.files:
        for line in path.read_text(encoding="utf-8").splitlines():
            doc = json.loads(line)
            assert set(doc) == {"resourceSpans"}
            in_line = 0
            for rs in doc["resourceSpans"]:
                keys = [a["key"] for a in rs["resource"]["attributes"]]
                assert "service.name" in keys
                for ss in rs["scopeSpans"]:
                    assert ss["scope"]["name"]
                    for span in ss["spans"]:
                        in_line += 1
                        assert re.fullmatch(r"[0-9a-f]{32}", span["traceId"])
                        assert re.fullmatch(r"[0-9a-f]{16}", span["spanId"])
                        assert span["kind"] in (2, 3)
                        assert ("parentSpanId" in span) == (span["kind"] == 3)
                        start, end = span["startTimeUnixNano"], span["endTimeUnixNano"]
                        assert isinstance(start, str) and isinstance(end, str)
                        assert int(start) <= int(end)
                        attrs(span)  # every value a string or an int64-as-string
            assert 0 < in_line <= 256
            spans += in_line
    assert spans == summary.spans


def test_call_spans_sit_inside_their_request(traces: dict[str, Trace]) -> None:
    for trace in traces.values():
        root = trace.root
        assert root is not None, "every call has its request's root span"
        a = attrs(root)
        assert a["http.route"].startswith("/v1/")
        assert a["http.request.method"] in ("GET", "POST")
        assert a["enduser.id"].startswith("u-")
        for call in trace.calls:
            assert call["parentSpanId"] == root["spanId"]
            assert int(root["startTimeUnixNano"]) <= int(call["startTimeUnixNano"])
            assert int(call["endTimeUnixNano"]) <= int(root["endTimeUnixNano"])


def test_spans_never_carry_prompt_or_completion_text(traces: dict[str, Trace]) -> None:
    keys = {a["key"] for t in traces.values() for c in t.calls for a in c["attributes"]}
    assert not [k for k in keys if "prompt" in k or "completion" in k or "content" in k]


def test_same_seed_and_end_give_identical_bytes(tmp_path: Path) -> None:
    def run(name: str, seed: int) -> list[bytes]:
        files = write_demo_files(tmp_path / name, days=2, seed=seed, end=END, requests_per_day=200)
        return [p.read_bytes() for p in files]

    first = run("a", 7)
    assert first == run("b", 7)
    assert first != run("c", 8)


def test_breadth_of_endpoints_models_providers_users_teams(traces: dict[str, Trace]) -> None:
    routes = {attrs(t.root)["http.route"] for t in traces.values() if t.root}
    models = Counter()
    providers = set()
    for t in traces.values():
        for c in usage_calls(t):
            a = attrs(c)
            models[a["gen_ai.request.model"]] += 1
            providers.add(a["gen_ai.provider.name"])
    users = {attrs(t.root)["enduser.id"] for t in traces.values() if t.root}
    teams = {attrs(t.root).get("team.id") for t in traces.values() if t.root} - {None}
    services = {t.service for t in traces.values()}
    assert len(routes) >= 6
    assert len(models) >= 8
    assert providers == {"openai", "anthropic", "vllm"}
    assert len(users) >= 300
    assert len(teams) >= 5
    assert len(services) >= 3


def test_requests_per_user_are_heavy_tailed(traces: dict[str, Trace]) -> None:
    per_user = Counter(attrs(t.root)["enduser.id"] for t in traces.values() if t.root)
    counts = sorted(per_user.values(), reverse=True)
    top = counts[: max(1, len(counts) // 20)]
    assert sum(top) >= 0.25 * sum(counts)


def test_daily_and_weekly_rhythm(traces: dict[str, Trace]) -> None:
    by_hour: Counter[int] = Counter()
    by_day: Counter[str] = Counter()
    for t in traces.values():
        assert t.root is not None
        if attrs(t.root)["enduser.id"] == RUNAWAY_USER:
            continue
        at = datetime.fromtimestamp(int(t.root["startTimeUnixNano"]) // NS, tz=UTC)
        by_hour[at.hour] += 1
        by_day[at.date().isoformat()] += 1
    night = sum(by_hour[h] for h in range(6)) / 6
    work = sum(by_hour[h] for h in range(9, 18)) / 9
    assert night < work / 3
    weekend = (by_day["2025-11-15"] + by_day["2025-11-16"]) / 2  # Saturday, Sunday
    weekdays = sum(by_day[d] for d in ("2025-11-17", "2025-11-18", "2025-11-19")) / 3
    assert weekend < 0.6 * weekdays
    # The rate is about what was asked for.
    assert 0.7 * RATE < sum(by_day.values()) / DAYS < 1.3 * RATE


def test_some_requests_make_no_llm_call(traces: dict[str, Trace]) -> None:
    without: Counter[str] = Counter()
    for t in traces.values():
        if t.root and not usage_calls(t):
            without[attrs(t.root)["http.route"]] += 1
    assert without["/v1/profile"] > 0
    assert {r for r in without if r != "/v1/profile"}, "app-level cache hits on LLM routes"
    profile = [
        t for t in traces.values() if t.root and attrs(t.root)["http.route"] == "/v1/profile"
    ]
    assert all(not t.calls for t in profile)


def test_runaway_agent_loop_only_in_the_last_two_days(
    demo: tuple[DemoSummary, dict[str, Trace]],
) -> None:
    summary, traces = demo
    cutoff = (END - timedelta(days=2)).timestamp() * NS
    loops = [t for t in traces.values() if t.root and len(usage_calls(t)) > 20]
    assert len(loops) == summary.runaway_requests >= 20
    for t in loops:
        assert t.root is not None
        a = attrs(t.root)
        assert (a["enduser.id"], a["http.route"]) == (RUNAWAY_USER, "/v1/agent/run")
        assert int(t.root["startTimeUnixNano"]) >= cutoff
    # In the last two days the runaway user is by far the biggest caller of LLMs.
    recent: Counter[str] = Counter()
    for t in traces.values():
        if t.root and int(t.root["startTimeUnixNano"]) >= cutoff:
            recent[attrs(t.root)["enduser.id"]] += len(usage_calls(t))
    (first, n1), (_, n2) = recent.most_common(2)
    assert first == RUNAWAY_USER
    assert n1 > 5 * n2


def test_cache_and_reasoning_tokens_follow_the_otel_convention(traces: dict[str, Trace]) -> None:
    cache_read: Counter[str] = Counter()
    cache_write: Counter[str] = Counter()
    for t in traces.values():
        for c in usage_calls(t):
            a = attrs(c)
            provider = a["gen_ai.provider.name"]
            read = a.get("gen_ai.usage.cache_read.input_tokens", 0)
            written = a.get("gen_ai.usage.cache_creation.input_tokens", 0)
            assert read + written <= a["gen_ai.usage.input_tokens"]
            cache_read[provider] += read > 0
            cache_write[provider] += written > 0
            if "gen_ai.usage.reasoning.output_tokens" in a:
                assert a["gen_ai.request.model"] == "o4-mini"
                assert a["gen_ai.usage.reasoning.output_tokens"] <= a["gen_ai.usage.output_tokens"]
            if a["gen_ai.operation.name"] == "embeddings":
                assert "gen_ai.usage.output_tokens" not in a
    assert cache_read["openai"] > 0
    assert cache_read["anthropic"] > 0
    assert cache_write["anthropic"] > 0


def test_every_model_has_a_price(traces: dict[str, Trace]) -> None:
    seen: set[tuple[str, str]] = set()
    for t in traces.values():
        for c in usage_calls(t):
            a = attrs(c)
            for key in ("gen_ai.request.model", "gen_ai.response.model"):
                if key in a:
                    seen.add((a["gen_ai.provider.name"], a[key]))
    overridden = {(o["provider"], o["model"]) for o in DEMO_PRICE_OVERRIDES}
    for provider, model in sorted(seen):
        if provider == "vllm":
            assert (provider, model) in overridden
            continue
        price = calc_price(
            PriceUsage(input_tokens=1000, output_tokens=100), model, provider_id=provider
        )
        assert price.total_price > 0, (provider, model)


def test_users_without_team_attribute_are_mapped(traces: dict[str, Trace]) -> None:
    teamless = {
        attrs(t.root)["enduser.id"]
        for t in traces.values()
        if t.root and "team.id" not in attrs(t.root)
    }
    assert len(teamless) >= 10
    assert teamless <= set(DEMO_USER_TEAMS)
    for t in traces.values():
        assert t.root is not None
        a = attrs(t.root)
        assert ("team.id" in a) != (a["enduser.id"] in DEMO_USER_TEAMS)


def test_the_ingest_decoder_reads_every_call(demo: tuple[DemoSummary, dict[str, Trace]]) -> None:
    summary, _ = demo
    calls = 0
    for path in summary.files:
        for decoded in iter_documents(path):
            assert not decoded.rejected
            calls += sum(extract_usage(s) is not None for s in decoded.spans)
    assert calls == summary.llm_calls


def test_summary_counts(demo: tuple[DemoSummary, dict[str, Trace]]) -> None:
    summary, traces = demo
    assert summary.requests == len(traces)
    assert summary.requests_without_llm == sum(not usage_calls(t) for t in traces.values())
    assert summary.users >= 300
    assert (summary.teams, summary.endpoints, summary.models) == (6, 7, 10)
    assert summary.start == END - timedelta(days=DAYS)


def test_default_end_is_the_start_of_the_current_utc_hour() -> None:
    assert default_end(datetime(2025, 3, 4, 10, 37, 5, tzinfo=UTC)) == datetime(
        2025, 3, 4, 10, tzinfo=UTC
    )


def test_bad_arguments_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="days"):
        write_demo_files(tmp_path, days=0)
    with pytest.raises(ValueError, match="requests_per_day"):
        write_demo_files(tmp_path, requests_per_day=0)
