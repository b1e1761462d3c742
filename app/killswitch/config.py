"""The `gateways:` section of spendguard.yaml: the LLM gateways that enforce kill switches.

NGINX and Envoy ask the decision API on every request (docs/gateways.md); LiteLLM is also told
through its admin API. Any gateway may have a `webhook_url`: every switch change is POSTed
there as JSON signed per Standard Webhooks, from the same durable outbox as alerts.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator


class GatewayConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kind: Literal["nginx", "envoy", "litellm", "custom"]
    name: str | None = Field(default=None, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
    enabled: bool = True
    base_url: str | None = None
    master_key: SecretStr | None = None
    webhook_url: str | None = None
    webhook_secret: SecretStr | None = None

    @field_validator("base_url", "webhook_url")
    @classmethod
    def _http(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError("must be an http(s):// URL")
        return value

    @model_validator(mode="after")
    def _needs(self) -> GatewayConfig:
        if self.kind == "litellm" and (self.base_url is None or self.master_key is None):
            raise ValueError(
                "a litellm gateway needs 'base_url' (the proxy, e.g. http://litellm:4000) and "
                "'master_key' (a ${VAR} reference to its master key)"
            )
        if self.kind == "custom" and self.webhook_url is None:
            raise ValueError("a custom gateway needs 'webhook_url' (where switch changes go)")
        if self.webhook_secret is not None and self.webhook_url is None:
            raise ValueError("'webhook_secret' signs what goes to 'webhook_url': set that too")
        return self


def gateway_names(gateways: list[GatewayConfig]) -> list[str]:
    """Each gateway's name: its `name`, else its kind (kind-2, kind-3… for repeats)."""
    names: list[str] = []
    seen: dict[str, int] = {}
    for gateway in gateways:
        if gateway.name is not None:
            names.append(gateway.name)
            continue
        seen[gateway.kind] = seen.get(gateway.kind, 0) + 1
        count = seen[gateway.kind]
        names.append(gateway.kind if count == 1 else f"{gateway.kind}-{count}")
    return names


def check_gateways(gateways: list[GatewayConfig]) -> None:
    names = gateway_names(gateways)
    for i, name in enumerate(names):
        if name in names[:i]:
            raise ValueError(f"gateways[{i}]: gateway name {name!r} is used twice; set 'name'")
