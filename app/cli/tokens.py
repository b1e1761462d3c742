"""API token commands: `token create`, `token list`, `token revoke`."""

from __future__ import annotations

from typing import Annotated

import typer

from app.auth.tokens import SCOPES
from app.cli.root import app, choose, ctx_of

token_app = typer.Typer(help="API tokens for the HTTP API (ingest, decision, admin).")
app.add_typer(token_app, name="token", no_args_is_help=True)


@token_app.command("create")
def token_create(
    ctx: typer.Context,
    scope: Annotated[
        str,
        typer.Option(
            help="ingest (send traces), decision (decision API, read kill switches) "
            "or admin (everything)."
        ),
    ],
    name: Annotated[
        str | None, typer.Option(help="A label to recognise it by (default: the scope).")
    ] = None,
) -> None:
    """Create an API token and print it once, alone on the last line (only its hash is kept)."""
    from app.auth.tokens import create_token

    choose(scope, SCOPES, "--scope")
    _, engine = ctx_of(ctx).warehouse()
    info, token = create_token(engine, scope, name or scope)
    typer.echo(f"created API token {info.id} {info.name!r} with scope {info.scope}.")
    typer.echo(
        "It is shown only this once (spendguard keeps only its SHA-256): store it now, "
        "e.g. as SPENDGUARD_INGEST_TOKEN. Send it as `Authorization: Bearer <token>`."
    )
    typer.echo(token)


@token_app.command("list")
def token_list(
    ctx: typer.Context,
    fmt: Annotated[str, typer.Option("--format", help="table, csv or json.")] = "table",
) -> None:
    """List API tokens: id, name, scope, created, last used, revoked (never the token)."""
    from app.auth.tokens import list_tokens
    from app.reports.render import FORMATS, render_records

    choose(fmt, FORMATS, "--format")
    _, engine = ctx_of(ctx).warehouse()
    columns = ["id", "name", "scope", "created_at", "last_used_at", "revoked_at"]
    records = [
        {
            "id": t.id,
            "name": t.name,
            "scope": t.scope,
            "created_at": t.created_at.isoformat(timespec="seconds"),
            "last_used_at": t.last_used_at.isoformat(timespec="seconds")
            if t.last_used_at
            else None,
            "revoked_at": t.revoked_at.isoformat(timespec="seconds") if t.revoked_at else None,
        }
        for t in list_tokens(engine)
    ]
    typer.echo(render_records(records, columns, fmt), nl=False)


@token_app.command("revoke")
def token_revoke(
    ctx: typer.Context,
    token_id: Annotated[int, typer.Argument(metavar="ID", help="The token's id (token list).")],
) -> None:
    """Revoke an API token; every API replica refuses it within api.token_cache_seconds."""
    from app.auth.tokens import revoke_token

    settings, engine = ctx_of(ctx).warehouse()
    info = revoke_token(engine, token_id)
    if info is None:
        typer.echo(
            f"error: there is no API token {token_id} (see `spendguard token list`)", err=True
        )
        raise typer.Exit(1)
    assert info.revoked_at is not None
    typer.echo(
        f"API token {info.id} {info.name!r} ({info.scope}) is revoked since "
        f"{info.revoked_at.isoformat(timespec='seconds')}; the API refuses it within "
        f"{settings.api.token_cache_seconds:g}s."
    )
