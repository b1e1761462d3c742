"""Shared pieces of the kill-switch tests: a real server with its lifespan, OTLP JSON spans over
a budget, and waiting for a decision with a deadline."""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import httpx
from starlette.applications import Starlette

from tests.servers import serve as serve_app


@contextmanager
def serve(app: Starlette) -> Iterator[str]:
    """Serve `app` with its lifespan on (the switch index loads and refreshes)."""
    with serve_app(app, lifespan="on") as url:
        yield url


def _attr(key: str, value: str | int) -> dict[str, Any]:
    inner = {"stringValue": value} if isinstance(value, str) else {"intValue": str(value)}
    return {"key": key, "value": inner}


def spend_export(
    user: str, model: str, input_tokens: int, at_ns: int | None = None
) -> dict[str, Any]:
    """One request (a server span of `user` on /chat) with one LLM call, as OTLP/JSON."""
    at_ns = at_ns or time.time_ns()
    trace, root = uuid.uuid4().hex, uuid.uuid4().hex[:16]
    span = {
        "traceId": trace,
        "startTimeUnixNano": str(at_ns),
        "endTimeUnixNano": str(at_ns + 10**8),
    }
    return {
        "resourceSpans": [
            {
                "resource": {"attributes": [_attr("service.name", "chat-api")]},
                "scopeSpans": [
                    {
                        "spans": [
                            {
                                **span,
                                "spanId": root,
                                "name": "POST /chat",
                                "kind": 2,
                                "attributes": [
                                    _attr("http.route", "/chat"),
                                    _attr("enduser.id", user),
                                ],
                            },
                            {
                                **span,
                                "spanId": uuid.uuid4().hex[:16],
                                "parentSpanId": root,
                                "name": f"chat {model}",
                                "kind": 3,
                                "attributes": [
                                    _attr("gen_ai.provider.name", "openai"),
                                    _attr("gen_ai.operation.name", "chat"),
                                    _attr("gen_ai.request.model", model),
                                    _attr("gen_ai.usage.input_tokens", input_tokens),
                                    _attr("gen_ai.usage.output_tokens", 1),
                                ],
                            },
                        ]
                    }
                ],
            }
        ]
    }


def wait_until(check: Callable[[], bool], timeout: float, step: float = 0.02) -> float:
    """Poll `check` until true; returns the seconds it took (fails past `timeout`)."""
    start = time.monotonic()
    while not check():
        if time.monotonic() - start > timeout:
            raise AssertionError(f"not true within {timeout}s")
        time.sleep(step)
    return time.monotonic() - start


def decision(client: httpx.Client, **params: str) -> httpx.Response:
    return client.get("/v1/decision", params=params)


def clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("SPENDGUARD_")}
