"""The configuration's shape: one pydantic model per section of spendguard.yaml.

Every model forbids unknown keys, so a typo is refused at start instead of being ignored.
Secrets are `SecretStr` (never printed). `spendguard.example.yaml` documents every field here,
and tests/test_docs.py fails when one is missing there.
"""

from __future__ import annotations

from typing import Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

# The alerting and gateway sections live beside the code that runs them (re-exported here).
from alerts.config import AlertsConfig as AlertsConfig
from alerts.config import NotifierConfig as NotifierConfig
from alerts.config import RuleConfig as RuleConfig
from alerts.config import check_rules
from app.killswitch.config import GatewayConfig as GatewayConfig
from app.killswitch.config import check_gateways
from app.settings.collectors import CollectorsConfig

DEFAULT_DATABASE_URL = "sqlite:///spendguard.db"
DEFAULT_USER_ATTRIBUTES = ["enduser.id", "user.id", "app.user.id", "llm.user"]
DEFAULT_TEAM_ATTRIBUTES = ["team.id", "app.team"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DatabaseConfig(_Strict):
    url: str = DEFAULT_DATABASE_URL


class PriceOverride(_Strict):
    """A per-model price that wins over the catalog; `model` may be a glob (`ft:gpt-4o-mini:*`)."""

    provider: str | None = None
    model: str
    input_per_mtok: str = "0"
    output_per_mtok: str = "0"
    cache_read_per_mtok: str | None = None
    cache_write_per_mtok: str | None = None

    @field_validator(
        "input_per_mtok",
        "output_per_mtok",
        "cache_read_per_mtok",
        "cache_write_per_mtok",
        mode="before",
    )
    @classmethod
    def _decimal_string(cls, value: object) -> object:
        from decimal import Decimal, InvalidOperation

        if value is None:
            return None
        if isinstance(value, int) and not isinstance(value, bool):
            return str(value)  # whole numbers are exact even unquoted
        if not isinstance(value, str):
            # YAML reads an unquoted 0.30 as a binary float: refuse it rather than round money.
            raise ValueError(
                f'{value!r} must be a quoted decimal string, e.g. "0.30" (USD per million tokens)'
            )
        try:
            parsed = Decimal(value)
        except InvalidOperation:
            raise ValueError(
                f'{value!r} is not a decimal number (write it quoted, e.g. "0.30")'
            ) from None
        if not parsed.is_finite() or parsed < 0:
            raise ValueError(f"{value!r} must be a finite, non-negative number")
        return value


class PricingConfig(_Strict):
    overrides: list[PriceOverride] = Field(default_factory=list)
    true_up: bool = False


# The built-in token usage families (app/traces/usage.py); a configured one may not take a name.
BUILTIN_FAMILY_NAMES = frozenset({"otel-genai", "openinference", "openllmetry", "langfuse"})


class UsageFamilyConfig(_Strict):
    """Span attributes of a home-grown token usage family, each list in order of preference."""

    name: str = Field(min_length=1, max_length=32)
    # Only spans whose attribute (or resource attribute) has this value, e.g. {service.name: x}.
    match: dict[str, str] = Field(default_factory=dict)
    input_tokens: list[str] = Field(default_factory=list)
    output_tokens: list[str] = Field(default_factory=list)
    model: list[str] = Field(default_factory=list)
    response_model: list[str] = Field(default_factory=list)
    provider: list[str] = Field(default_factory=list)
    provider_value: str | None = Field(default=None, min_length=1, max_length=64)
    cache_read_tokens: list[str] = Field(default_factory=list)
    cache_write_tokens: list[str] = Field(default_factory=list)
    reasoning_tokens: list[str] = Field(default_factory=list)
    operation: list[str] = Field(default_factory=list)
    input_includes_cache: bool = True

    @model_validator(mode="after")
    def _counts_something(self) -> UsageFamilyConfig:
        if not self.input_tokens and not self.output_tokens:
            raise ValueError(
                f"usage family {self.name!r} needs at least one 'input_tokens' or "
                "'output_tokens' attribute"
            )
        return self


class AttributionConfig(_Strict):
    user_attributes: list[str] = Field(default_factory=lambda: list(DEFAULT_USER_ATTRIBUTES))
    team_attributes: list[str] = Field(default_factory=lambda: list(DEFAULT_TEAM_ATTRIBUTES))
    user_teams: dict[str, str] = Field(default_factory=dict)
    families: list[UsageFamilyConfig] = Field(default_factory=list)

    @field_validator("families")
    @classmethod
    def _unique_family_names(cls, families: list[UsageFamilyConfig]) -> list[UsageFamilyConfig]:
        seen: set[str] = set()
        for family in families:
            if family.name in BUILTIN_FAMILY_NAMES:
                raise ValueError(f"usage family name {family.name!r} is a built-in family's")
            if family.name in seen:
                raise ValueError(f"usage family name {family.name!r} is used twice")
            seen.add(family.name)
        return families


GpuSource = Literal["focus", "aws_ce", "opencost"]
GPU_SOURCES: tuple[GpuSource, ...] = ("focus", "aws_ce", "opencost")
UNASSIGNED_POOL = "(unassigned)"


class GpuPoolMatch(_Strict):
    """Which cloud or Kubernetes cost lines belong to a pool: a line matches when ANY of the
    given criteria does (a tag criterion needs all of its tags)."""

    tag: dict[str, str] = Field(default_factory=dict)
    instance_ids: list[str] = Field(default_factory=list)
    namespace: list[str] = Field(default_factory=list)

    @field_validator("namespace", mode="before")
    @classmethod
    def _one_or_many(cls, value: object) -> object:
        return [value] if isinstance(value, str) else value


class GpuPoolConfig(_Strict):
    name: str = Field(min_length=1, max_length=128)
    match: GpuPoolMatch = GpuPoolMatch()
    models: list[str] = Field(default_factory=list)
    allocate_by: Literal["gpu_seconds", "tokens"] = "gpu_seconds"
    sources: list[GpuSource] = Field(default_factory=lambda: list(GPU_SOURCES), min_length=1)
    capacity_per_hour: int | None = Field(default=None, gt=0)

    @model_validator(mode="after")
    def _matches_something(self) -> GpuPoolConfig:
        if self.name == UNASSIGNED_POOL:
            raise ValueError(f"{UNASSIGNED_POOL!r} is reserved for cost lines of no pool")
        m = self.match
        if not (m.tag or m.instance_ids or m.namespace):
            raise ValueError(
                f"gpu pool {self.name!r}: 'match' needs a tag, instance_ids or namespace"
            )
        return self


def check_gpu_pools(pools: list[GpuPoolConfig]) -> None:
    """Pool names are unique and a model is served by one pool (its calls get one share)."""
    names: set[str] = set()
    served: dict[str, str] = {}
    for pool in pools:
        if pool.name in names:
            raise ValueError(f"gpu pool name {pool.name!r} is used twice")
        names.add(pool.name)
        for model in pool.models:
            if model in served:
                raise ValueError(
                    f"model {model!r} is in gpu pools {served[model]!r} and {pool.name!r}; "
                    "a model is served by one pool"
                )
            served[model] = pool.name


class ApiConfig(_Strict):
    host: str = "127.0.0.1"
    port: int = Field(default=8700, ge=1, le=65535)
    # OTLP/HTTP body limit, compressed and decompressed (the OTLP spec recommends 20 MiB).
    max_body_bytes: int = Field(default=20 * 1024 * 1024, ge=1024)
    metrics_token_required: bool = False
    # How long a token check is remembered: a revoked token stops working within this time.
    token_cache_seconds: float = Field(default=5.0, ge=0, le=300)


class DashboardConfig(_Strict):
    """The dashboard: where it listens, who may see it and who may act (release, approve, run).

    `auth: none` serves only this machine (127.0.0.1) and everyone who reaches it gets
    `local_role`; `auth: oidc` signs people in with Streamlit's `st.login` (the provider lives in
    `.streamlit/secrets.toml`) and maps their email or groups to a role."""

    port: int = Field(default=8501, ge=1, le=65535)
    auth: Literal["none", "oidc"] = "none"
    host: str = "0.0.0.0"  # noqa: S104 - only with auth: oidc; auth: none binds 127.0.0.1
    local_role: Literal["viewer", "operator"] = "operator"
    oidc_provider: str | None = Field(default=None, min_length=1, max_length=64)
    operators: list[str] = Field(default_factory=list)
    viewers: list[str] = Field(default_factory=list)
    groups_claim: str = Field(default="groups", min_length=1)
    public_url: str = "http://localhost:8501"
    timezone: str = "UTC"


class Settings(BaseSettings):
    """The whole configuration. Sections mirror spendguard.example.yaml one to one."""

    model_config = SettingsConfigDict(
        env_prefix="SPENDGUARD_", env_nested_delimiter="__", extra="forbid"
    )

    database: DatabaseConfig = DatabaseConfig()
    collectors: CollectorsConfig = CollectorsConfig()
    pricing: PricingConfig = PricingConfig()
    attribution: AttributionConfig = AttributionConfig()
    gpu_pools: list[GpuPoolConfig] = Field(default_factory=list)
    notifiers: dict[str, NotifierConfig] = Field(default_factory=dict)
    rules: list[RuleConfig] = Field(default_factory=list)
    gateways: list[GatewayConfig] = Field(default_factory=list)
    api: ApiConfig = ApiConfig()
    dashboard: DashboardConfig = DashboardConfig()
    alerts: AlertsConfig = AlertsConfig()

    @model_validator(mode="after")
    def _rules_refer_to_notifiers(self) -> Settings:
        check_rules(self.rules, self.notifiers)  # alerts/config.py: unique ids, known actions
        check_gateways(self.gateways)  # app/killswitch/config.py: unique names
        check_gpu_pools(self.gpu_pools)
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # `load_settings` merges the environment itself (the one it is given, not always
        # os.environ) so that errors can name the variable; `Settings()` alone is the defaults.
        return (init_settings,)
