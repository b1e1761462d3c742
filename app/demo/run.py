"""Generate the demo data set: `generate_demo` (with a summary) and `write_demo_files`."""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from app.demo.catalog import RUNAWAY_USER
from app.demo.otlp_writer import write_day
from app.demo.traffic import iter_days


@dataclass(frozen=True, slots=True)
class DemoSummary:
    """What `generate_demo` wrote.

    `requests` counts root spans (all of them, the runaway user's included);
    `requests_without_llm` those with no LLM call that reported usage (none made, or the only
    one failed); `llm_calls` the spans with token usage;
    `failed_calls` LLM spans that failed and report no usage; `spans` every span written;
    `users`, `teams`, `endpoints`, `models` the distinct values that occur.
    """

    files: tuple[Path, ...]
    start: datetime
    end: datetime
    requests: int
    requests_without_llm: int
    llm_calls: int
    failed_calls: int
    spans: int
    users: int
    teams: int
    endpoints: int
    models: int
    runaway_user: str
    runaway_requests: int


def default_end(now: datetime | None = None) -> datetime:
    """The start of the current UTC hour: the default end of the demo window."""
    now = now or datetime.now(UTC)
    return now.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


def generate_demo(
    out_dir: Path,
    *,
    days: int = 30,
    seed: int = 7,
    end: datetime | None = None,
    requests_per_day: int = 1500,
) -> DemoSummary:
    """Write `days` days of synthetic OTLP JSON traces ending at `end` (exclusive) to `out_dir`.

    `end` defaults to the start of the current UTC hour; a naive `end` is taken as UTC. The same
    `seed`, `end`, `days` and `requests_per_day` always give byte-identical files. Files are
    `traces-YYYY-MM-DD.jsonl`, one per UTC day the window touches (so `days + 1` files when `end`
    is not midnight), overwritten if present; other files in `out_dir` are left alone.
    """
    if days < 1:
        raise ValueError(f"days must be at least 1, got {days}")
    if requests_per_day < 1:
        raise ValueError(f"requests_per_day must be at least 1, got {requests_per_day}")
    end = default_end() if end is None else end
    end = end.replace(tzinfo=UTC) if end.tzinfo is None else end.astimezone(UTC)
    start = end - timedelta(days=days)
    rng = random.Random(seed)  # noqa: S311 - synthetic data, not security
    out_dir.mkdir(parents=True, exist_ok=True)

    files: list[Path] = []
    requests = without_llm = llm_calls = failed = spans = runaway = 0
    users: dict[str, None] = {}
    teams: dict[str, None] = {}
    endpoints: dict[str, None] = {}
    models: dict[str, None] = {}
    for day, day_requests in iter_days(rng, start, end, requests_per_day):
        path = out_dir / f"traces-{day.isoformat()}.jsonl"
        spans += write_day(path, day_requests)
        files.append(path)
        for r in day_requests:
            requests += 1
            without_llm += all(c.error is not None for c in r.calls)
            runaway += r.runaway
            users[r.user.id] = None
            teams[r.user.team] = None
            endpoints[r.endpoint.route] = None
            for c in r.calls:
                if c.error is None:
                    llm_calls += 1
                    models[c.model.name] = None
                else:
                    failed += 1
    return DemoSummary(
        files=tuple(sorted(files)),
        start=start,
        end=end,
        requests=requests,
        requests_without_llm=without_llm,
        llm_calls=llm_calls,
        failed_calls=failed,
        spans=spans,
        users=len(users),
        teams=len(teams),
        endpoints=len(endpoints),
        models=len(models),
        runaway_user=RUNAWAY_USER,
        runaway_requests=runaway,
    )


def write_demo_files(
    out_dir: Path,
    *,
    days: int = 30,
    seed: int = 7,
    end: datetime | None = None,
    requests_per_day: int = 1500,
) -> list[Path]:
    """Write the demo traces (see `generate_demo`) and return the files written, sorted."""
    summary = generate_demo(
        out_dir, days=days, seed=seed, end=end, requests_per_day=requests_per_day
    )
    return list(summary.files)
