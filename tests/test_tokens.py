"""API tokens: created once, stored hashed, verified by hash, scoped, revocable, cached briefly."""

from __future__ import annotations

import asyncio
import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import Engine, select, text

from app.api.auth import TokenCache, bearer_token
from app.auth.tokens import (
    SCOPES,
    TOKEN_PREFIX,
    create_token,
    hash_token,
    list_tokens,
    revoke_token,
    verify_token,
)
from app.warehouse.tables import ApiToken


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_create_then_verify(engine: Engine) -> None:
    info, token = create_token(engine, "ingest", "otel collector")
    assert token.startswith(TOKEN_PREFIX)
    assert len(token) >= len(TOKEN_PREFIX) + 43  # 32 random bytes, URL-safe base64
    found = verify_token(engine, token)
    assert found is not None
    assert (found.id, found.name, found.scope) == (info.id, "otel collector", "ingest")
    assert found.revoked_at is None
    assert verify_token(engine, token + "x") is None
    assert verify_token(engine, token[:-1]) is None
    assert verify_token(engine, "") is None
    assert verify_token(engine, "x" * 10_000) is None


def test_tokens_are_random_and_unique(engine: Engine) -> None:
    tokens = {create_token(engine, "decision", "t")[1] for _ in range(5)}
    assert len(tokens) == 5


def test_only_the_sha256_is_stored(engine: Engine) -> None:
    info, token = create_token(engine, "admin", "ops")
    with engine.connect() as conn:
        row = conn.execute(select(ApiToken).where(ApiToken.id == info.id)).one()
        dump = " ".join(str(v) for v in conn.execute(text("SELECT * FROM api_tokens")).one())
    assert row.token_hash == hashlib.sha256(token.encode()).hexdigest() == hash_token(token)
    assert token not in dump
    assert token.removeprefix(TOKEN_PREFIX) not in dump


def test_revoked_tokens_no_longer_verify(engine: Engine) -> None:
    info, token = create_token(engine, "ingest", "old")
    revoked = revoke_token(engine, info.id)
    assert revoked is not None
    assert revoked.revoked_at is not None
    assert verify_token(engine, token) is None
    again = revoke_token(engine, info.id)  # revoking twice keeps the first time
    assert again is not None
    assert again.revoked_at == revoked.revoked_at
    assert revoke_token(engine, 9999) is None
    assert [t.revoked_at is not None for t in list_tokens(engine)] == [True]


def test_unknown_scope_is_refused(engine: Engine) -> None:
    with pytest.raises(ValueError, match="ingest, decision, admin"):
        create_token(engine, "root", "x")


@pytest.mark.parametrize(
    ("scope", "allowed"),
    [
        ("ingest", {"ingest", None}),
        ("decision", {"decision", None}),
        ("admin", {"ingest", "decision", "admin", None}),
    ],
)
def test_scopes_and_admin_implies_all(sqlite_engine: Engine, scope: str, allowed: set[str]) -> None:
    info, _ = create_token(sqlite_engine, scope, "t")
    for required in (*SCOPES, None):
        assert info.grants(required) is (required in allowed), required


def test_bearer_header_parsing() -> None:
    assert bearer_token("Bearer sg_abc") == "sg_abc"
    assert bearer_token("bearer   sg_abc  ") == "sg_abc"
    assert bearer_token("Basic dXNlcjpwYXNz") is None
    assert bearer_token("Bearer ") is None
    assert bearer_token(None) is None


def test_the_cache_answers_without_the_database_until_its_ttl(sqlite_engine: Engine) -> None:
    clock = FakeClock()
    cache = TokenCache(sqlite_engine, ttl=5, clock=clock)
    info, token = create_token(sqlite_engine, "ingest", "t")
    digest = hash_token(token)
    assert cache.cached(digest) is None
    assert cache.load(digest) == info
    revoke_token(sqlite_engine, info.id)
    clock.now += 4.9
    entry = cache.cached(digest)
    assert entry is not None
    assert entry.token == info  # still valid from memory: revocation takes up to the TTL
    clock.now += 0.2
    assert cache.cached(digest) is None
    assert cache.load(digest) is None  # …and then it is refused


def test_unknown_tokens_are_remembered_too(sqlite_engine: Engine) -> None:
    clock = FakeClock()
    cache = TokenCache(sqlite_engine, ttl=5, clock=clock)
    digest = hash_token("sg_nope")
    assert cache.load(digest) is None
    entry = cache.cached(digest)
    assert entry is not None
    assert entry.token is None


def test_zero_ttl_means_no_cache(sqlite_engine: Engine) -> None:
    cache = TokenCache(sqlite_engine, ttl=0)
    _, token = create_token(sqlite_engine, "ingest", "t")
    assert cache.load(hash_token(token)) is not None
    assert cache.cached(hash_token(token)) is None


def test_last_used_is_written_at_most_once_a_minute(sqlite_engine: Engine) -> None:
    clock = FakeClock()
    cache = TokenCache(sqlite_engine, ttl=5, clock=clock)
    info, _ = create_token(sqlite_engine, "ingest", "t")
    assert cache.claim_touch(info)
    cache.touch(info)
    first = list_tokens(sqlite_engine)[0].last_used_at
    assert first is not None
    clock.now += 59
    assert not cache.claim_touch(info)
    clock.now += 1
    assert cache.claim_touch(info)


def test_a_scheduled_touch_writes_last_used_without_the_caller_waiting(
    sqlite_engine: Engine,
) -> None:
    cache = TokenCache(sqlite_engine, ttl=5)
    info, _ = create_token(sqlite_engine, "ingest", "t")

    async def request_path() -> None:
        cache.touch_later(info)  # returns at once; the write runs on the executor
        await asyncio.gather(*cache._pending)

    asyncio.run(request_path())
    assert list_tokens(sqlite_engine)[0].last_used_at is not None


# ── the command line ───────────────────────────────────────────────────────────────────────────


def spendguard(*args: str, url: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SPENDGUARD_")}
    env["SPENDGUARD_DATABASE_URL"] = url
    return subprocess.run(
        [sys.executable, "-m", "app", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        timeout=120,
    )


@pytest.mark.slow
def test_cli_create_prints_the_token_alone_on_the_last_line(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'w.db'}"
    out = spendguard(
        "token", "create", "--scope", "ingest", "--name", "edge", url=url, cwd=tmp_path
    )
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    token = lines[-1]
    assert token.startswith(TOKEN_PREFIX)
    assert token == token.strip()
    assert len(lines) > 1  # what it is comes before, the token alone last
    assert "edge" in out.stdout

    from app.warehouse.engine import make_engine

    engine = make_engine(url)
    try:
        found = verify_token(engine, token)
        assert found is not None
        assert found.scope == "ingest"
    finally:
        engine.dispose()

    listed = spendguard("token", "list", "--format", "json", url=url, cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    assert '"name": "edge"' in listed.stdout
    assert token not in listed.stdout

    revoked = spendguard("token", "revoke", str(found.id), url=url, cwd=tmp_path)
    assert revoked.returncode == 0, revoked.stderr
    assert "revoked" in revoked.stdout
    missing = spendguard("token", "revoke", "999", url=url, cwd=tmp_path)
    assert missing.returncode != 0
    assert "no API token 999" in missing.stderr

    bad = spendguard("token", "create", "--scope", "root", url=url, cwd=tmp_path)
    assert bad.returncode != 0
    assert "ingest, decision, admin" in bad.stderr
