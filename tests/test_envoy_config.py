"""The Envoy `ext_authz` configuration of docs/gateways.md, checked without an Envoy (Debian does
not package one): the YAML block is parsed, its fields are checked against the names of Envoy's
v3 API (a typo would make Envoy refuse the config) and against what the decision API reads, and
check requests shaped as Envoy's HTTP authorization service sends them (method kept, the original
path and query appended to `path_prefix`, only the allowed headers copied, `headers_to_add` with
`%REQ(…)%` filled from the client's request, no body) get the right 200/403 from a real
`spendguard api` process."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from sqlalchemy import Engine

from app.auth.tokens import create_token
from app.killswitch.model import DIMENSIONS
from tests.servers import free_port
from tests.test_decision_replicas import api_process

DOC = Path(__file__).resolve().parents[1] / "docs" / "gateways.md"
PLACEHOLDER = "sg_REPLACE_WITH_A_DECISION_TOKEN"

# Field names of Envoy's v3 messages the documented config uses (extensions/filters/http/
# ext_authz/v3/ext_authz.proto, config/core/v3/http_uri.proto, type/matcher/v3/string.proto).
EXT_AUTHZ_FIELDS = {
    "grpc_service", "http_service", "transport_api_version", "failure_mode_allow",
    "failure_mode_allow_header_add", "with_request_body", "clear_route_cache", "status_on_error",
    "metadata_context_namespaces", "typed_metadata_context_namespaces", "filter_enabled",
    "filter_enabled_metadata", "deny_at_disable", "include_peer_certificate", "stat_prefix",
    "bootstrap_metadata_labels_key", "allowed_headers", "disallowed_headers",
    "include_tls_session", "charge_cluster_response_stats", "encode_raw_headers",
    "decoder_header_mutation_rules", "validate_mutations", "emit_filter_state_stats",
}  # fmt: skip
HTTP_SERVICE_FIELDS = {
    "server_uri",
    "path_prefix",
    "authorization_request",
    "authorization_response",
}
AUTHORIZATION_REQUEST_FIELDS = {"headers_to_add"}  # its allowed_headers is deprecated (→ ExtAuthz)
AUTHORIZATION_RESPONSE_FIELDS = {
    "allowed_upstream_headers", "allowed_upstream_headers_to_append", "allowed_client_headers",
    "allowed_client_headers_on_success", "dynamic_metadata_from_headers",
}  # fmt: skip
HTTP_URI_FIELDS = {"uri", "cluster", "timeout"}
MATCHER_FIELDS = {"exact", "prefix", "suffix", "contains", "safe_regex", "ignore_case"}

pytestmark = pytest.mark.slow


def documented_config() -> dict[str, Any]:
    section = DOC.read_text(encoding="utf-8").split("## Envoy", 1)[1].split("\n## ", 1)[0]
    match = re.search(r"```yaml\n(.*?)```", section, re.DOTALL)
    assert match, "docs/gateways.md has no ```yaml block under ## Envoy"
    config = yaml.safe_load(match.group(1))
    assert isinstance(config, dict)
    return config


def ext_authz(config: dict[str, Any]) -> dict[str, Any]:
    (found,) = [f for f in config["http_filters"] if f["name"] == "envoy.filters.http.ext_authz"]
    typed = found["typed_config"]
    assert typed["@type"] == (
        "type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthz"
    )
    return {k: v for k, v in typed.items() if k != "@type"}


def matches(patterns: list[dict[str, Any]], name: str) -> bool:
    for p in patterns:
        assert set(p) <= MATCHER_FIELDS, p
        value = name.lower() if p.get("ignore_case", True) else name  # header names: lower case
        if ("exact" in p and value == p["exact"]) or (
            "prefix" in p and value.startswith(p["prefix"])
        ):
            return True
    return False


def test_the_documented_envoy_config_uses_envoys_v3_field_names() -> None:
    config = documented_config()
    authz = ext_authz(config)
    assert set(authz) <= EXT_AUTHZ_FIELDS, set(authz) - EXT_AUTHZ_FIELDS
    assert authz["transport_api_version"] == "V3"
    assert authz["failure_mode_allow"] is True  # the documented default: fail open
    service = authz["http_service"]
    assert set(service) <= HTTP_SERVICE_FIELDS, set(service) - HTTP_SERVICE_FIELDS
    assert set(service["server_uri"]) == HTTP_URI_FIELDS
    assert set(service["authorization_request"]) <= AUTHORIZATION_REQUEST_FIELDS
    assert set(service["authorization_response"]) <= AUTHORIZATION_RESPONSE_FIELDS
    assert set(authz["allowed_headers"]) == {"patterns"}
    for item in service["authorization_request"]["headers_to_add"]:
        assert set(item) == {"key", "value"}  # config.core.v3.HeaderValue
    # The cluster the filter names exists, on the port the URI names.
    uri = httpx.URL(service["server_uri"]["uri"])
    (cluster,) = [c for c in config["clusters"] if c["name"] == service["server_uri"]["cluster"]]
    endpoint = cluster["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]
    assert endpoint["address"]["socket_address"] == {"address": uri.host, "port_value": uri.port}
    assert re.fullmatch(r"\d+(\.\d+)?s", service["server_uri"]["timeout"])


def test_the_documented_envoy_config_sends_what_the_decision_api_reads() -> None:
    authz = ext_authz(documented_config())
    service = authz["http_service"]
    assert service["path_prefix"] == "/v1/decision"  # the route that takes the original path
    added = {
        h["key"].lower(): h["value"] for h in service["authorization_request"]["headers_to_add"]
    }
    assert added["authorization"] == f"Bearer {PLACEHOLDER}"
    for dim in ("user", "team", "model"):
        source = re.fullmatch(r"%REQ\(([a-z0-9-]+)\)%", added[f"x-spendguard-{dim}"])
        assert source, added  # from the client's own header, not its x-spendguard-*
        assert matches(authz["allowed_headers"]["patterns"], source.group(1))
    assert "x-spendguard-endpoint" not in added  # the endpoint is the forwarded path
    assert not matches(authz["allowed_headers"]["patterns"], "x-spendguard-user")
    client = service["authorization_response"]["allowed_client_headers"]["patterns"]
    assert matches(client, "x-spendguard-reason") and matches(client, "retry-after")


def check_request(
    authz: dict[str, Any], api_url: str, token: str, method: str, path: str, headers: dict[str, str]
) -> httpx.Request:
    """The request Envoy's ext_authz HTTP service sends for a client request (to `api_url`, where
    the documented `server_uri` says http://spendguard:8700)."""
    service = authz["http_service"]
    lower = {k.lower(): v for k, v in headers.items()}
    sent = {k: v for k, v in lower.items() if matches(authz["allowed_headers"]["patterns"], k)}
    if "authorization" in lower:  # always included by Envoy…
        sent["authorization"] = lower["authorization"]
    for item in service["authorization_request"]["headers_to_add"]:  # …and overridden here
        value = re.sub(r"%REQ\(([a-z0-9-]+)\)%", lambda m: lower.get(m.group(1), ""), item["value"])
        sent[item["key"].lower()] = value.replace(PLACEHOLDER, token)
    sent["content-length"] = "0"
    assert service["server_uri"]["uri"] == "http://spendguard:8700"
    return httpx.Request(method, f"{api_url}{service['path_prefix']}{path}", headers=sent)


def test_envoy_shaped_check_requests_against_a_real_api(
    tmp_path: Path, sqlite_engine: Engine
) -> None:
    authz = ext_authz(documented_config())
    config = tmp_path / "spendguard.yaml"
    url = sqlite_engine.url.render_as_string(hide_password=False)
    config.write_text(json.dumps({"database": {"url": url}}))
    token = create_token(sqlite_engine, "decision", "envoy")[1]
    admin = {"Authorization": f"Bearer {create_token(sqlite_engine, 'admin', 'ops')[1]}"}
    assert set(DIMENSIONS) == {"endpoint", "model", "user", "team"}
    with api_process(config, free_port()) as api_url, httpx.Client() as client:
        for scope in ({"user": "u-1313"}, {"model": "gpt-4*"}, {"endpoint": "/v1/embeddings"}):
            switch = {**scope, "reason": "cap"}
            added = client.post(f"{api_url}/v1/killswitches", headers=admin, json=switch)
            assert added.status_code == 201, added.text

        def status(method: str, path: str, **headers: str) -> httpx.Response:
            return client.send(check_request(authz, api_url, token, method, path, headers))

        chat = "/v1/chat/completions"
        blocked = status("POST", chat, **{"x-user-id": "u-1313", "authorization": "Bearer sk-user"})
        assert blocked.status_code == 403
        assert blocked.headers["x-spendguard-reason"] == "cap"
        assert blocked.headers["retry-after"] == "3600"
        assert status("POST", chat, **{"x-user-id": "u-2"}).status_code == 200
        assert status("GET", "/v1/models", **{"x-user-id": "u-2"}).status_code == 200
        assert status("POST", chat, **{"x-user-id": "u-2", "x-model": "gpt-4o"}).status_code == 403
        assert status("POST", "/v1/embeddings", **{"x-user-id": "u-2"}).status_code == 403
        assert status("PUT", "/v1/embeddings").status_code == 403  # any method
        # The client cannot pick its own decision inputs: neither headers nor the query string.
        spoof = {"x-user-id": "u-1313", "x-spendguard-user": "u-2"}
        assert status("POST", chat, **spoof).status_code == 403
        assert status("POST", f"{chat}?user=u-2", **{"x-user-id": "u-1313"}).status_code == 403
        assert status("POST", f"{chat}?user=u-1313", **{"x-user-id": "u-2"}).status_code == 200
        # With a token spendguard does not know, it refuses (401): Envoy denies as well.
        bare = check_request(authz, api_url, "sg_unknown", "POST", chat, {"x-user-id": "u-2"})
        assert client.send(bare).status_code == 401
