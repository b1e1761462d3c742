"""The HTTP API (`spendguard api`). For now: health and metrics; the OTLP receiver, decision API
and kill-switch routes arrive with their issues and all require scoped tokens."""

from __future__ import annotations

from sqlalchemy import Engine, func, select
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Route

from app import __version__
from app.warehouse.tables import LlmCall
from app.warehouse.tables import Request as RequestRow


def create_app(engine: Engine) -> Starlette:
    async def healthz(_: Request) -> JSONResponse:
        return JSONResponse({"status": "ok", "version": __version__})

    def metrics(_: Request) -> PlainTextResponse:
        # Sync handler: Starlette runs it in a thread, so the database call does not block.
        with engine.connect() as conn:
            requests = conn.execute(select(func.count()).select_from(RequestRow)).scalar_one()
            calls = conn.execute(select(func.count()).select_from(LlmCall)).scalar_one()
        body = (
            "# HELP spendguard_requests_stored Requests (traces) in the warehouse.\n"
            "# TYPE spendguard_requests_stored gauge\n"
            f"spendguard_requests_stored {requests}\n"
            "# HELP spendguard_llm_calls_stored LLM calls in the warehouse.\n"
            "# TYPE spendguard_llm_calls_stored gauge\n"
            f"spendguard_llm_calls_stored {calls}\n"
        )
        return PlainTextResponse(body, media_type="text/plain; version=0.0.4")

    return Starlette(routes=[Route("/healthz", healthz), Route("/metrics", metrics)])
