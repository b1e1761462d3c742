"""The end-to-end kill path, timed: spans pushed over a budget (POST /v1/traces) → the rule with
a `kill` action fires → the decision API answers 403 for that user, and only that user.

The bound asserted is generous (15 s) so a loaded CI machine does not flake; the measured time
is printed (`-s`), and `bench/decision.py` reports it too. With default settings it is well
under a second: the push pokes the kill rules at once, the firing trips the switch and the
API re-reads its index right after.
"""

from __future__ import annotations

import time

import httpx
from sqlalchemy import Engine

from app.api import create_app
from app.auth.tokens import create_token
from app.settings import Settings
from tests.killswitch_support import serve, spend_export, wait_until

BOUND_SECONDS = 15.0


def runaway_settings(url: str) -> Settings:
    return Settings(
        database={"url": url},
        # One token of this model costs $1: a single span crosses the budget.
        pricing={"overrides": [{"model": "runaway-model", "input_per_mtok": "1000000"}]},
        rules=[
            {
                "id": "user-daily-cap",
                "metric": "cost_usd",
                "group_by": ["user"],
                "window": "day",
                "condition": {"above": 10},
                "actions": ["kill"],
            },
        ],
    )


def test_spans_over_a_budget_are_refused_within_seconds(engine: Engine, warehouse_url: str) -> None:
    settings = runaway_settings(warehouse_url)
    ingest = create_token(engine, "ingest", "sdk")[1]
    decision = create_token(engine, "decision", "gateway")[1]
    with serve(create_app(engine, settings)) as url, httpx.Client(base_url=url, timeout=10) as http:
        gateway = {"Authorization": f"Bearer {decision}"}
        sdk = {"Authorization": f"Bearer {ingest}"}

        def refused() -> bool:
            answer = http.get("/v1/decision", params={"user": "u-1313"}, headers=gateway)
            return answer.status_code == 403

        under = http.post(
            "/v1/traces", json=spend_export("u-1313", "runaway-model", 5), headers=sdk
        )
        assert under.status_code == 200
        assert (
            http.get("/v1/decision", params={"user": "u-1313"}, headers=gateway).status_code == 200
        )

        start = time.monotonic()
        pushed = http.post(
            "/v1/traces", json=spend_export("u-1313", "runaway-model", 20), headers=sdk
        )
        assert pushed.status_code == 200
        wait_until(refused, BOUND_SECONDS)
        elapsed = time.monotonic() - start
        print(f"\ntime to kill: {elapsed:.3f} s from the push that crossed the budget to a 403")
        body = http.get("/v1/decision", params={"user": "u-1313"}, headers=gateway).json()
        assert body["reason"].startswith("rule user-daily-cap: cost_usd $25.00 over day")
        assert http.get("/v1/decision", params={"user": "u-2"}, headers=gateway).status_code == 200
