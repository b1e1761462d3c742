"""The rest of the dashboard benchmark's warehouse, beside the requests and calls of
`bench/dashboard_data.py`: what the GPU, Spend, Overview, Alerts and Collectors pages read.

- `spendguard.yaml` (`config_text`): two GPU pools, five rules (three of them budgets), and
  `pricing.true_up` on or off.
- Provider bills: OpenAI and Anthropic daily costs at the traced cost plus 2–6 % (so the
  reconciliation has a gap), served by the demo's fake Admin APIs and loaded by the real
  collectors (`app.demo.bills`), then the true-up factors computed (`app.trueup`).
- GPU: the `llama-70b` pool billed by a FOCUS export and Cost Explorer (`app.demo.gpu`, through
  the focus and aws_ce collectors) and the `llama-8b` pool by OpenCost (its collector on an
  in-process fake of the allocation API); both allocated to their calls by `app.gpu.allocate`.
- History: ~17,000 collector runs, alert transitions and audit entries for 90 days, kill
  switches added and released through `app.killswitch.store`, and one real evaluation of the
  rules at the end.

The pools' capacity scales with N so that about half of each pool's hours' cost is idle.
"""

from __future__ import annotations

import json
import random
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import Engine, func, insert, select

from alerts.engine import evaluate_once
from app.demo.bills import load_demo_bills
from app.demo.gpu import load_demo_gpu
from app.killswitch.model import Scope
from app.killswitch.store import add, release
from app.settings import OpenCostCollectorConfig, Settings, load_settings
from app.trueup import refresh_true_up
from app.warehouse.tables import AlertTransition, AuditEntry, CollectorRun, LlmCall
from bench.dashboard_data import DAYS, END

START = END - timedelta(days=DAYS)
SEED = 8
NAMESPACE = "inference-llama-8b"
GPU_HOURLY_8B = Decimal("2.3104")  # the OpenCost pool's GPU cost per hour, USD
RULES = 5


def config_text(n: int, daily_usd: Decimal, *, true_up: bool) -> str:
    """The benchmark's spendguard.yaml (the URL comes from SPENDGUARD_DATABASE_URL).
    `daily_usd`: the traced spend of an average day, to set budgets that some groups cross."""
    calls_per_hour = n * 0.145 / (DAYS * 24)  # calls of each self-hosted model per hour
    # About twice the pools' use: roughly half of their cost stays idle.
    seconds = max(1, round(calls_per_hour * 2.7 * 2))
    tokens = max(1, round(calls_per_hour * 2465 * 2))
    month = (daily_usd * 30 * Decimal("0.9")).quantize(Decimal("1"))
    team_week = (daily_usd * 7 / 12 * Decimal("1.1")).quantize(Decimal("1"))
    day = (daily_usd * Decimal("1.05")).quantize(Decimal("1"))
    user_day = (daily_usd / 3000 * 3).quantize(Decimal("0.01"))
    return f"""\
pricing:
  true_up: {"true" if true_up else "false"}
gpu_pools:
  - {{name: llama-70b, match: {{tag: {{gpu-pool: llama-70b}}}}, models: [llama-3.1-70b],
     allocate_by: gpu_seconds, capacity_per_hour: {seconds}}}
  - {{name: llama-8b, match: {{namespace: {NAMESPACE}}}, models: [llama-3.1-8b],
     allocate_by: tokens, capacity_per_hour: {tokens}}}
rules:
  - {{id: monthly-budget, metric: cost_usd, window: month, condition: {{above: "{month}"}}}}
  - {{id: team-weekly-budget, metric: cost_usd, group_by: [team], window: week,
     condition: {{forecast_above: "{team_week}"}}}}
  - {{id: daily-spend, metric: cost_usd, window: day, condition: {{above: "{day}"}}}}
  - {{id: user-daily-cap, metric: cost_usd, group_by: [user], window: day,
     condition: {{above: "{user_day}"}}, actions: [kill]}}
  - {{id: unpriced-calls, metric: unpriced_calls, window: 24h, condition: {{above: 1000}}}}
"""


def daily_spend(engine: Engine) -> Decimal:
    """The traced spend of an average day, USD (exact)."""
    with engine.connect() as conn:
        total = conn.execute(select(func.coalesce(func.sum(LlmCall.cost_nanousd), 0))).scalar()
    return Decimal(int(total or 0)).scaleb(-9) / DAYS


def write_config(folder: Path, n: int, engine: Engine, *, true_up: bool) -> Path:
    path = folder / "spendguard.yaml"
    path.write_text(config_text(n, daily_spend(engine), true_up=true_up))
    return path


def load_extras(engine: Engine, config: Path, work: Path) -> list[str]:
    """Bills, GPU costs and their allocation, history: one summary line each."""
    settings = load_settings(config)
    lines = [load_demo_bills(engine, settings, start=START, end=END, seed=SEED, progress=False)]
    for provider in ("openai", "anthropic"):
        result = refresh_true_up(engine, provider, START.date(), END.date(), now=END)
        lines.append(f"true-up {provider}: {result.model_days} model-days")
    lines.append(load_opencost(engine, settings))
    lines.append(load_demo_gpu(engine, settings, start=START, end=END, out_dir=work))
    lines.append(write_history(engine, settings))
    return lines


# ── OpenCost at the wire ───────────────────────────────────────────────────────────────────────


def opencost_answer(request: httpx.Request) -> httpx.Response:
    """`GET /allocation` for one day, hourly steps: the pool's namespace and `__idle__`."""
    first, last = request.url.params["window"].split(",")
    hour = datetime.fromisoformat(first.replace("Z", "+00:00"))
    stop = datetime.fromisoformat(last.replace("Z", "+00:00"))
    steps = []
    while hour < stop:
        busy = Decimal(9 if 8 <= hour.hour < 20 else 4) / 10  # daytime: 90 % in use
        used = (GPU_HOURLY_8B * busy).quantize(Decimal("0.0001"))
        steps.append(
            {
                NAMESPACE: _allocation(NAMESPACE, hour, used, str(busy)),
                "__idle__": _allocation("__idle__", hour, GPU_HOURLY_8B - used, None),
            }
        )
        hour += timedelta(hours=1)
    body = json.dumps({"code": 200, "status": "success", "data": steps}, default=str)
    return httpx.Response(200, content=body, headers={"content-type": "application/json"})


def _allocation(name: str, hour: datetime, cost: Decimal, efficiency: str | None) -> Any:
    window = {"start": _iso(hour), "end": _iso(hour + timedelta(hours=1))}
    return {
        "name": name,
        "properties": {"cluster": "bench-gpu", "namespace": name},
        "window": window,
        **window,
        "gpuHours": 1 if efficiency else None,
        "gpuCost": f"{cost:f}",
        "gpuEfficiency": efficiency,
    }


def _iso(when: datetime) -> str:
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


def load_opencost(engine: Engine, settings: Settings) -> str:
    from collectors.opencost import OpenCostCollector

    config = OpenCostCollectorConfig(enabled=True, base_url="http://opencost.bench.invalid:9003")
    with_opencost = settings.model_copy(
        update={"collectors": settings.collectors.model_copy(update={"opencost": config})}
    )
    collector = OpenCostCollector(
        transport=httpx.MockTransport(opencost_answer), clock=lambda: END - timedelta(seconds=1)
    )
    result = collector.run(engine, with_opencost, since=START)
    if not result.ok:
        raise RuntimeError(f"OpenCost lines failed to load: {result.error}")
    return f"OpenCost: {result.rows_loaded} lines for the llama-8b pool"


# ── history ──────────────────────────────────────────────────────────────────────────────────


def write_history(engine: Engine, settings: Settings) -> str:
    rng = random.Random(SEED)
    runs = _runs(rng)
    transitions, audits = _alerts(rng)
    with engine.begin() as conn:
        for i in range(0, len(runs), 5000):
            conn.execute(insert(CollectorRun), runs[i : i + 5000])
        conn.execute(insert(AlertTransition), transitions)
        for i in range(0, len(audits), 5000):
            conn.execute(insert(AuditEntry), audits[i : i + 5000])
    switches = _switches(engine, settings, rng)
    evaluated = evaluate_once(engine, settings, END - timedelta(minutes=30))
    return (
        f"history: {len(runs)} collector runs, {len(transitions)} alert transitions, "
        f"{len(audits)} audit entries, {switches} kill switches, "
        f"{len(evaluated)} transitions from one real evaluation"
    )


def _runs(rng: random.Random) -> list[dict[str, Any]]:
    """The traces collector every 10 minutes, OpenAI and Anthropic hourly: ~17,000 runs."""
    rows = []
    for collector, every in (("traces", 10), ("openai", 60), ("anthropic", 60)):
        at = START
        while at < END:
            failed = rng.random() < 0.01
            rows.append(
                {
                    "collector": collector,
                    "source": "/var/lib/otelcol/traces" if collector == "traces" else "api",
                    "status": "failed" if failed else "ok",
                    "started_at": at,
                    "finished_at": at + timedelta(seconds=rng.randint(1, 40)),
                    "window_start": at - timedelta(minutes=every),
                    "window_end": at,
                    "rows_loaded": 0 if failed else rng.randint(100, 20000),
                    "rows_rejected": rng.randint(0, 3),
                    "error": "HTTP 503 from the API" if failed else None,
                    "api_calls": None if collector == "traces" else rng.randint(1, 4),
                }
            )
            at += timedelta(minutes=every)
    return rows


def _alerts(rng: random.Random) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Per day: a few users over their cap (fired, then resolved the next day), the daily
    spend now and then; each transition with its audit entries (fired, notification sent)."""
    transitions: list[dict[str, Any]] = []
    audits: list[dict[str, Any]] = []
    for d in range(DAYS):
        day = START + timedelta(days=d)
        fired = [("user-daily-cap", {"user": f"u-{rng.randrange(3000)}"}) for _ in range(25)]
        if rng.random() < 0.3:
            fired.append(("daily-spend", {}))
        for rule_id, group in fired:
            at = day + timedelta(minutes=rng.randrange(1440))
            for kind, when in (("firing", at), ("resolved", day + timedelta(days=1, minutes=1))):
                group_text = json.dumps(group, sort_keys=True)
                transitions.append(
                    {
                        "at": when, "rule_id": rule_id, "group_json": group_text,
                        "kind": kind, "delivery": "sent", "severity": "warning",
                        "metric": "cost_usd", "value": f"{rng.randint(1, 900)}.125000000",
                        "compared": None, "threshold": "50", "requests": rng.randint(10, 5000),
                        "method": "above", "window_start": day,
                        "window_end": day + timedelta(days=1),
                        "actions": json.dumps(["kill"] if "user" in group else []),
                        "config_hash": "bench",
                    }
                )  # fmt: skip
                for audit_kind in (kind, "notification_sent"):
                    audits.append(
                        {
                            "at": when, "kind": audit_kind, "rule_id": rule_id,
                            "group_json": group_text, "notifier": None, "message_id": None,
                            "detail": json.dumps({"delivery": "sent"}),
                        }
                    )  # fmt: skip
    return transitions, audits


def _switches(engine: Engine, settings: Settings, rng: random.Random) -> int:
    """Kill switches added by the user cap rule over the 90 days, most released by an operator
    a few hours later; the last days' ones still open."""
    added = 0
    with engine.begin() as conn:
        ids = []
        for d in range(DAYS):
            for _ in range(3):
                at = START + timedelta(days=d, minutes=rng.randrange(1440))
                user = f"u-{rng.randrange(3000)}"
                switch = add(
                    conn, settings, Scope(user=user), "over the daily cap", now=at,
                    by="user-daily-cap", origin="rule", rule_id="user-daily-cap",
                    group={"user": user}, expires_at=at + timedelta(days=1),
                )  # fmt: skip
                ids.append((switch.id, at))
                added += 1
    for switch_id, at in ids[:-6]:
        release(engine, settings, switch_id, "finops@bench", at + timedelta(hours=3))
    return added
