"""API tokens: shown once at creation, stored only as their SHA-256, checked by a hash lookup.

A token is `sg_` followed by 43 URL-safe characters (32 random bytes): the prefix makes a leaked
one easy to recognise (secret scanners, logs). Only `sha256(token)` in hex is stored, so a copy of
the database grants nothing. Checking a token hashes what was presented and looks the hash up by
its unique index: the presented string is never compared with a stored one, so response times
say nothing about how much of it was right.

Scopes (ARCHITECTURE, "HTTP API"): `ingest` sends traces (POST /v1/traces), `decision` asks the
decision API and reads kill switches, `admin` may do everything.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import Engine, select, update
from sqlalchemy.orm import Session

from app.warehouse.engine import session_scope
from app.warehouse.tables import ApiToken

SCOPES = ("ingest", "decision", "admin")
ADMIN = "admin"
TOKEN_PREFIX = "sg_"  # noqa: S105 - a public marker, not a secret
# Generated tokens are 46 characters; anything much longer is not one of ours (and is not
# worth hashing).
MAX_TOKEN_LENGTH = 256


@dataclass(frozen=True, slots=True)
class TokenInfo:
    """A token's record, without the token (which is never stored)."""

    id: int
    name: str
    scope: str
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None

    def grants(self, required: str | None) -> bool:
        """Whether this token may call a route needing `required` (None: any valid token)."""
        return required is None or self.scope == ADMIN or self.scope == required


def generate_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def create_token(engine: Engine, scope: str, name: str) -> tuple[TokenInfo, str]:
    """A new token of `scope`: its record and the token itself (to show once, never again)."""
    if scope not in SCOPES:
        raise ValueError(f"scope {scope!r}: choose one of {', '.join(SCOPES)}")
    token = generate_token()
    row = ApiToken(
        name=name[:128],
        scope=scope,
        token_hash=hash_token(token),
        created_at=datetime.now(UTC),
    )
    with session_scope(engine) as session:
        session.add(row)
        session.flush()
        info = _info(row)
    return info, token


def lookup_hash(engine: Engine, token_hash: str) -> TokenInfo | None:
    """The active (not revoked) token with this hash, or None."""
    with Session(engine) as session:
        row = session.scalars(
            select(ApiToken).where(ApiToken.token_hash == token_hash, ApiToken.revoked_at.is_(None))
        ).one_or_none()
        return None if row is None else _info(row)


def verify_token(engine: Engine, token: str) -> TokenInfo | None:
    """The active token `token` is, or None (unknown, revoked or malformed)."""
    if not token or len(token) > MAX_TOKEN_LENGTH:
        return None
    return lookup_hash(engine, hash_token(token))


def touch_token(engine: Engine, token_id: int, at: datetime | None = None) -> None:
    """Record that the token was used (callers throttle this: it is a write)."""
    with session_scope(engine) as session:
        session.execute(
            update(ApiToken)
            .where(ApiToken.id == token_id)
            .values(last_used_at=at or datetime.now(UTC))
        )


def list_tokens(engine: Engine) -> list[TokenInfo]:
    with Session(engine) as session:
        return [_info(r) for r in session.scalars(select(ApiToken).order_by(ApiToken.id))]


def revoke_token(engine: Engine, token_id: int) -> TokenInfo | None:
    """Revoke a token (once: an earlier revocation time is kept); None if there is no such id."""
    with session_scope(engine) as session:
        session.execute(
            update(ApiToken)
            .where(ApiToken.id == token_id, ApiToken.revoked_at.is_(None))
            .values(revoked_at=datetime.now(UTC))
        )
        row = session.get(ApiToken, token_id)
        return None if row is None else _info(row)


def _info(row: ApiToken) -> TokenInfo:
    return TokenInfo(
        id=row.id,
        name=row.name,
        scope=row.scope,
        created_at=row.created_at,
        last_used_at=row.last_used_at,
        revoked_at=row.revoked_at,
    )
