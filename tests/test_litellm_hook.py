"""The LiteLLM pre-call hook of docs/gateways.md, run for real: the `custom_callbacks.py` block is
cut out of the docs (so what is tested is what is documented), imported with the real `litellm`
(`CustomLogger`, `UserAPIKeyAuth`, `DualCache`) and `fastapi.HTTPException`, and asked against a
real `spendguard api` process: a blocked user, team or model gets a 403 with `Retry-After`, others
go through unchanged, and with the API gone the hook fails open (or closed with
`SPENDGUARD_FAIL_OPEN=false`).

litellm comes from the `gateways` extra (`make test` / `.ci/run` install it); outside CI the test
skips without it, under CI=true it fails.
"""

from __future__ import annotations

import asyncio
import importlib.util
import inspect
import json
import os
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine

from app.auth.tokens import create_token
from tests.conftest import UNDER_CI
from tests.servers import free_port
from tests.test_decision_replicas import api_process

DOC = Path(__file__).resolve().parents[1] / "docs" / "gateways.md"
HOOK_FIRST_LINE = "# custom_callbacks.py"

pytestmark = pytest.mark.slow


def documented_hook() -> str:
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(encoding="utf-8"), re.DOTALL)
    hooks = [b for b in blocks if b.startswith(HOOK_FIRST_LINE)]
    assert len(hooks) == 1, f"docs/gateways.md needs one ```python block opening {HOOK_FIRST_LINE}"
    return str(hooks[0])


@pytest.fixture(scope="module")
def litellm() -> ModuleType:
    # litellm fetches its model cost map from the internet at import unless told not to.
    os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"
    try:
        import litellm
    except ImportError:
        if UNDER_CI:
            pytest.fail("litellm is not installed: `make test` / `.ci/run` install '.[gateways]'")
        pytest.skip("litellm is not installed (pip install -e '.[gateways]', or `make test`)")
    return litellm


def load_hook(tmp_path: Path, url: str, token: str, fail_open: str | None) -> ModuleType:
    """Import the documented custom_callbacks.py as LiteLLM does: a module next to config.yaml,
    configured by the environment at import."""
    folder = tmp_path / f"hook-{len(list(tmp_path.glob('hook-*')))}"
    folder.mkdir()
    path = folder / "custom_callbacks.py"
    path.write_text(documented_hook(), encoding="utf-8")
    env = {"SPENDGUARD_URL": url, "SPENDGUARD_DECISION_TOKEN": token}
    if fail_open is not None:
        env["SPENDGUARD_FAIL_OPEN"] = fail_open
    saved = {k: os.environ.get(k) for k in (*env, "SPENDGUARD_FAIL_OPEN")}
    os.environ.pop("SPENDGUARD_FAIL_OPEN", None)
    os.environ.update(env)
    try:
        spec = importlib.util.spec_from_file_location(f"custom_callbacks_{folder.name}", path)
        assert spec and spec.loader
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    sys.modules.pop(module.__name__, None)
    return module


Calls = list[tuple[dict[str, Any], str]]


async def ask(hook: Any, key: Any, cache: Any, calls: Calls) -> list[Any]:
    """Each call's result: the returned data, or the exception the hook raised."""
    results: list[Any] = []
    try:
        for data, call_type in calls:
            try:
                results.append(await hook.async_pre_call_hook(key, cache, data, call_type))
            except Exception as e:
                results.append(e)
    finally:
        await hook.client.aclose()
    return results


@contextmanager
def api(tmp_path: Path, sqlite_engine: Engine) -> Iterator[tuple[str, str, str]]:
    """A real `spendguard api` process: its URL, a decision token and an admin token."""
    config = tmp_path / "spendguard.yaml"
    url = sqlite_engine.url.render_as_string(hide_password=False)
    config.write_text(json.dumps({"database": {"url": url}}))
    decision = create_token(sqlite_engine, "decision", "litellm")[1]
    admin = create_token(sqlite_engine, "admin", "ops")[1]
    with api_process(config, free_port()) as api_url:
        yield api_url, decision, admin


def test_documented_hook_matches_litellms_custom_logger(
    litellm: ModuleType, tmp_path: Path
) -> None:
    from litellm.integrations.custom_logger import CustomLogger

    module = load_hook(tmp_path, "http://127.0.0.1:9", "sg_unused", None)
    assert isinstance(module.proxy_handler_instance, CustomLogger)
    ours = inspect.signature(module.SpendguardGate.async_pre_call_hook).parameters
    theirs = inspect.signature(CustomLogger.async_pre_call_hook).parameters
    assert list(ours) == list(theirs)  # LiteLLM calls it with keywords


def test_documented_litellm_hook_against_a_real_api(
    litellm: ModuleType, tmp_path: Path, sqlite_engine: Engine
) -> None:
    with api(tmp_path, sqlite_engine) as (url, token, admin_token):
        check_decisions(url, token, admin_token, tmp_path)


def check_decisions(url: str, token: str, admin_token: str, tmp_path: Path) -> None:
    from fastapi import HTTPException
    from litellm.caching.dual_cache import DualCache
    from litellm.integrations.custom_logger import CustomLogger
    from litellm.proxy._types import UserAPIKeyAuth

    admin = {"Authorization": f"Bearer {admin_token}"}
    for scope in ({"user": "u-1313"}, {"model": "gpt-4*"}, {"team": "t-runaway"}):
        added = httpx.post(
            f"{url}/v1/killswitches", headers=admin, json={**scope, "reason": "daily cap reached"}
        )
        assert added.status_code == 201, added.text

    hook = load_hook(tmp_path, url, token, None).proxy_handler_instance
    assert isinstance(hook, CustomLogger)
    key = UserAPIKeyAuth(api_key="sk-test", user_id="key-owner", team_id="t-1")
    runaway_team_key = UserAPIKeyAuth(api_key="sk-team", user_id="key-owner", team_id="t-runaway")
    cache = DualCache()
    blocked_user = {"model": "claude-3-5-haiku", "user": "u-1313", "messages": []}
    other_user = {"model": "claude-3-5-haiku", "user": "u-2", "messages": []}
    blocked_model = {"model": "gpt-4o", "user": "u-2", "messages": []}
    keyed = {"model": "claude-3-5-haiku", "messages": []}  # the user is the key's owner
    first = asyncio.run(
        ask(
            hook,
            key,
            cache,
            [
                (blocked_user, "completion"),
                (other_user, "completion"),
                (blocked_model, "completion"),
                (keyed, "embedding"),
            ],
        )
    )
    refused = first[0]
    assert isinstance(refused, HTTPException), refused
    assert refused.status_code == 403
    assert refused.headers == {"Retry-After": "3600"}  # no expiry: the decision API's hint
    assert refused.detail == {
        "error": "blocked by spendguard: daily cap reached",
        "retry_after": 3600,
    }
    assert first[1] is other_user and other_user["user"] == "u-2"  # unchanged, as is
    assert isinstance(first[2], HTTPException) and first[2].status_code == 403
    assert first[3] is keyed

    hook = load_hook(tmp_path, url, token, None).proxy_handler_instance
    (team,) = asyncio.run(ask(hook, runaway_team_key, cache, [(dict(keyed), "completion")]))
    assert isinstance(team, HTTPException) and team.status_code == 403

    # A token spendguard refuses (401) is "cannot answer": open by default, closed on request.
    hook = load_hook(tmp_path, url, "sg_not_a_token", None).proxy_handler_instance
    assert asyncio.run(ask(hook, key, cache, [(other_user, "completion")])) == [other_user]
    hook = load_hook(tmp_path, url, "sg_not_a_token", "false").proxy_handler_instance
    (closed,) = asyncio.run(ask(hook, key, cache, [(other_user, "completion")]))
    assert isinstance(closed, HTTPException) and closed.status_code == 503


def test_documented_litellm_hook_with_the_api_down(
    litellm: ModuleType, tmp_path: Path, sqlite_engine: Engine
) -> None:
    from fastapi import HTTPException
    from litellm.caching.dual_cache import DualCache
    from litellm.proxy._types import UserAPIKeyAuth

    key = UserAPIKeyAuth(api_key="sk-test", user_id="u-1")
    data = {"model": "gpt-4o", "user": "u-1", "messages": []}
    with api(tmp_path, sqlite_engine) as (url, token, _):
        hook = load_hook(tmp_path, url, token, None).proxy_handler_instance
        assert asyncio.run(ask(hook, key, DualCache(), [(data, "completion")])) == [data]

    # The same spendguard, stopped: nothing listens on its port any more.
    hook = load_hook(tmp_path, url, token, None).proxy_handler_instance
    (opened,) = asyncio.run(ask(hook, key, DualCache(), [(data, "completion")]))
    assert opened is data  # fail open (the default)
    hook = load_hook(tmp_path, url, token, "false").proxy_handler_instance
    (closed,) = asyncio.run(ask(hook, key, DualCache(), [(data, "completion")]))
    assert isinstance(closed, HTTPException) and closed.status_code == 503
    assert closed.detail == "spendguard unavailable"
