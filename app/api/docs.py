"""The OpenAPI document of the API (`GET /openapi.json`), kept in `openapi.yaml` beside this
module; tests/test_openapi.py fails when a route is missing from it or it names a route the
app does not have."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml
from starlette.requests import Request
from starlette.responses import JSONResponse

SPEC_PATH = Path(__file__).with_name("openapi.yaml")


@lru_cache(maxsize=1)
def openapi_spec() -> dict[str, Any]:
    spec = yaml.safe_load(SPEC_PATH.read_text(encoding="utf-8"))
    assert isinstance(spec, dict)
    return spec


async def openapi(_: Request) -> JSONResponse:
    return JSONResponse(openapi_spec())
