"""The HTTP API (`spendguard api`); routes and scopes per ARCHITECTURE, "HTTP API".

    GET  /healthz     open (load balancers); "degraded" while kill switches cannot be reloaded
    GET  /metrics     open, or any valid token with `api.metrics_token_required`
    POST /v1/traces   scope `ingest`: the OTLP/HTTP receiver (`app.api.otlp`)
    /v1/decision…, /v1/killswitches…   the decision API and kill switches (`app.api.decision`)

Every other route is added with `guard.protect(endpoint, scope)` (`app.api.auth`), so nothing
but `/healthz` answers without a token by accident. Replicas are stateless: each keeps only
short-lived caches, so several may run behind one load balancer.
"""

from __future__ import annotations

from sqlalchemy import Engine, func, select
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Route

from app import __version__
from app.api.auth import Guard, TokenCache
from app.api.decision import DecisionApi
from app.api.docs import openapi
from app.api.otlp import OtlpReceiver
from app.settings import Settings
from app.warehouse.tables import LlmCall, OutboxItem
from app.warehouse.tables import Request as RequestRow


def create_app(engine: Engine, settings: Settings) -> Starlette:
    guard = Guard(TokenCache(engine, settings.api.token_cache_seconds))
    receiver = OtlpReceiver(engine, settings)
    decisions = DecisionApi(engine, settings, guard)
    receiver.after_store.append(decisions.kill_rules.poke)  # pushed spend → kill rules, now

    async def healthz(_: Request) -> JSONResponse:
        # Always 200: a degraded replica still answers decisions from its last known switches.
        switches = decisions.health()
        status = "ok" if switches["state"] == "ok" else "degraded"
        return JSONResponse({"status": status, "version": __version__, "killswitches": switches})

    def metrics(_: Request) -> PlainTextResponse:
        # Sync handler: Starlette runs it in a thread, so the database call does not block.
        with engine.connect() as conn:
            requests = conn.execute(select(func.count()).select_from(RequestRow)).scalar_one()
            calls = conn.execute(select(func.count()).select_from(LlmCall)).scalar_one()
            backlog = conn.execute(
                select(func.count()).select_from(OutboxItem).where(OutboxItem.status == "pending")
            ).scalar_one()
        body = (
            "# HELP spendguard_requests_stored Requests (traces) in the warehouse.\n"
            "# TYPE spendguard_requests_stored gauge\n"
            f"spendguard_requests_stored {requests}\n"
            "# HELP spendguard_llm_calls_stored LLM calls in the warehouse.\n"
            "# TYPE spendguard_llm_calls_stored gauge\n"
            f"spendguard_llm_calls_stored {calls}\n"
            "# HELP spendguard_outbox_backlog Notifications and gateway events not yet delivered.\n"
            "# TYPE spendguard_outbox_backlog gauge\n"
            f"spendguard_outbox_backlog {backlog}\n"
        ) + receiver.stats.render()
        body += decisions.render_metrics()
        return PlainTextResponse(body, media_type="text/plain; version=0.0.4")

    metrics_endpoint = (
        guard.protect(metrics, scope=None) if settings.api.metrics_token_required else metrics
    )
    routes = [
        Route("/healthz", healthz),
        Route("/metrics", metrics_endpoint),
        Route("/openapi.json", guard.protect(openapi, scope=None)),
        Route(
            "/v1/traces",
            guard.protect(receiver.export, scope="ingest", deny=receiver.deny),
            methods=["POST"],
        ),
        *decisions.routes(),
    ]
    app = Starlette(routes=routes, lifespan=decisions.lifespan)
    app.state.guard = guard
    app.state.decisions = decisions
    return app
