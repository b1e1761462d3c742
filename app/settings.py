"""spendguard.yaml + environment → one validated `Settings` object.

Loading order: the YAML file (path from `--config`, `SPENDGUARD_CONFIG`, else `./spendguard.yaml`;
no file at all means defaults), then `${VAR}` references expanded from the environment, then
environment overrides (`SPENDGUARD_DATABASE_URL`, and `SPENDGUARD_<SECTION>__<KEY>` for any key),
then validation. Anything wrong becomes one `ConfigError` naming the file, the key path and the fix.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from app.durations import parse_duration
from app.errors import ConfigError

DEFAULT_CONFIG_PATH = Path("spendguard.yaml")
DEFAULT_DATABASE_URL = "sqlite:///spendguard.db"
DEFAULT_USER_ATTRIBUTES = ["enduser.id", "user.id", "app.user.id", "llm.user"]
DEFAULT_TEAM_ATTRIBUTES = ["team.id", "app.team"]

_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Schedule(_Strict):
    """When a collector runs: a fixed interval (`every: 60s`) or a crontab line (`cron: ...`)."""

    every: str | None = None
    cron: str | None = None

    @model_validator(mode="after")
    def _one_of(self) -> Schedule:
        if (self.every is None) == (self.cron is None):
            raise ValueError("give exactly one of 'every' (e.g. 60s, 5m, 1h) or 'cron'")
        if self.every is not None:
            parse_duration(self.every)
        if self.cron is not None and len(self.cron.split()) != 5:
            raise ValueError(
                f"cron {self.cron!r} must have 5 fields: minute hour day month weekday"
            )
        return self


class DatabaseConfig(_Strict):
    url: str = DEFAULT_DATABASE_URL


class FolderSource(_Strict):
    kind: Literal["folder"]
    path: Path


class S3Source(_Strict):
    kind: Literal["s3"]
    bucket: str
    prefix: str = ""
    region: str = "us-east-1"
    endpoint_url: str | None = None


class TracesCollectorConfig(_Strict):
    enabled: bool = True
    schedule: Schedule = Schedule(every="60s")
    sources: list[FolderSource | S3Source] = Field(default_factory=list)


class OpenAICollectorConfig(_Strict):
    enabled: bool = False
    schedule: Schedule = Schedule(every="1h")
    admin_key: SecretStr | None = None
    base_url: str = "https://api.openai.com/v1"
    project_ids: list[str] = Field(default_factory=list)
    lookback_days: int = Field(default=3, ge=0)


class AnthropicCollectorConfig(_Strict):
    enabled: bool = False
    schedule: Schedule = Schedule(every="1h")
    admin_key: SecretStr | None = None
    base_url: str = "https://api.anthropic.com"
    workspace_ids: list[str] = Field(default_factory=list)
    lookback_days: int = Field(default=3, ge=0)


class AwsCeCollectorConfig(_Strict):
    enabled: bool = False
    schedule: Schedule = Schedule(cron="0 */6 * * *")
    region: str = "us-east-1"
    endpoint_url: str | None = None
    tag_key: str = "gpu-pool"


class FocusCollectorConfig(_Strict):
    enabled: bool = False
    schedule: Schedule = Schedule(cron="0 */6 * * *")
    bucket: str | None = None
    prefix: str = ""
    region: str = "us-east-1"
    endpoint_url: str | None = None


class OpenCostCollectorConfig(_Strict):
    enabled: bool = False
    schedule: Schedule = Schedule(every="1h")
    base_url: str = "http://opencost.opencost:9003"
    aggregate: str = "namespace"


class CollectorsConfig(_Strict):
    traces: TracesCollectorConfig = TracesCollectorConfig()
    openai: OpenAICollectorConfig = OpenAICollectorConfig()
    anthropic: AnthropicCollectorConfig = AnthropicCollectorConfig()
    aws_ce: AwsCeCollectorConfig = AwsCeCollectorConfig()
    focus: FocusCollectorConfig = FocusCollectorConfig()
    opencost: OpenCostCollectorConfig = OpenCostCollectorConfig()


class PriceOverride(_Strict):
    """A per-model price that wins over the catalog; `model` may be a glob (`ft:gpt-4o-mini:*`)."""

    provider: str | None = None
    model: str
    input_per_mtok: str = "0"
    output_per_mtok: str = "0"
    cache_read_per_mtok: str | None = None
    cache_write_per_mtok: str | None = None

    @model_validator(mode="after")
    def _decimal_strings(self) -> PriceOverride:
        from decimal import Decimal, InvalidOperation

        for name in (
            "input_per_mtok",
            "output_per_mtok",
            "cache_read_per_mtok",
            "cache_write_per_mtok",
        ):
            value = getattr(self, name)
            if value is None:
                continue
            try:
                parsed = Decimal(value)
            except InvalidOperation:
                raise ValueError(
                    f'{name}={value!r} is not a decimal number (write it quoted, e.g. "0.30")'
                ) from None
            if not parsed.is_finite() or parsed < 0:
                raise ValueError(f"{name}={value!r} must be a finite, non-negative number")
        return self


class PricingConfig(_Strict):
    overrides: list[PriceOverride] = Field(default_factory=list)
    true_up: bool = False


class AttributionConfig(_Strict):
    user_attributes: list[str] = Field(default_factory=lambda: list(DEFAULT_USER_ATTRIBUTES))
    team_attributes: list[str] = Field(default_factory=lambda: list(DEFAULT_TEAM_ATTRIBUTES))
    user_teams: dict[str, str] = Field(default_factory=dict)


class GpuPoolConfig(_Strict):
    name: str
    match: dict[str, Any] = Field(default_factory=dict)
    models: list[str] = Field(default_factory=list)
    allocate_by: Literal["gpu_seconds", "tokens"] = "gpu_seconds"


class NotifierConfig(_Strict):
    kind: Literal["slack", "webhook"]
    webhook_url: SecretStr | None = None
    url: str | None = None
    secret: SecretStr | None = None

    @model_validator(mode="after")
    def _target(self) -> NotifierConfig:
        if self.kind == "slack" and self.webhook_url is None:
            raise ValueError("a slack notifier needs 'webhook_url'")
        if self.kind == "webhook" and self.url is None:
            raise ValueError("a webhook notifier needs 'url'")
        return self


class RuleConfig(_Strict):
    id: str
    description: str = ""
    metric: Literal["cost_usd", "tokens", "requests", "cost_per_1k_requests", "unpriced_calls"]
    filter: dict[str, str | list[str]] = Field(default_factory=dict)
    group_by: list[Literal["endpoint", "model", "user", "team", "provider"]] = Field(
        default_factory=list
    )
    window: str = "day"
    condition: dict[str, Any]
    min_requests: int = 0
    severity: Literal["info", "warning", "critical"] = "warning"
    actions: list[str] = Field(default_factory=list)
    cooldown: str | None = None
    renotify: str | None = None


class GatewayConfig(_Strict):
    kind: Literal["nginx", "envoy", "litellm", "custom"]
    base_url: str | None = None
    master_key: SecretStr | None = None


class ApiConfig(_Strict):
    host: str = "127.0.0.1"
    port: int = Field(default=8700, ge=1, le=65535)


class DashboardConfig(_Strict):
    port: int = Field(default=8501, ge=1, le=65535)
    auth: Literal["none", "token"] = "none"
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

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # The environment wins over the file, so one variable can retarget a deployment.
        return (env_settings, init_settings)


def config_path(explicit: str | Path | None = None) -> Path:
    """The config file to read: explicit path, else $SPENDGUARD_CONFIG, else ./spendguard.yaml."""
    if explicit:
        return Path(explicit)
    env = os.environ.get("SPENDGUARD_CONFIG")
    return Path(env) if env else DEFAULT_CONFIG_PATH


def load_settings(
    path: str | Path | None = None, environ: Mapping[str, str] | None = None
) -> Settings:
    """Read, expand and validate the configuration, or raise `ConfigError` saying what to fix."""
    env = os.environ if environ is None else environ
    file = config_path(path)
    explicit = path is not None or "SPENDGUARD_CONFIG" in env
    raw: dict[str, Any] = {}
    if file.exists():
        try:
            loaded = yaml.safe_load(file.read_text(encoding="utf-8"))
        except yaml.YAMLError as exc:
            raise ConfigError(f"{file}: not valid YAML: {exc}") from None
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise ConfigError(
                f"{file}: the top level must be a mapping of sections, got {type(loaded).__name__}"
            )
        raw = _expand_env(loaded, env, file, ())
    elif explicit:
        raise ConfigError(
            f"{file}: config file not found. Fix the path given by --config or "
            "SPENDGUARD_CONFIG, or unset it to run with defaults."
        )
    if env.get("SPENDGUARD_DATABASE_URL"):
        raw.setdefault("database", {})
        if isinstance(raw["database"], dict):
            raw["database"] = {**raw["database"], "url": env["SPENDGUARD_DATABASE_URL"]}
    try:
        return Settings(**raw)
    except ValidationError as exc:
        raise ConfigError(_describe(exc, file)) from None


def _expand_env(node: Any, env: Mapping[str, str], file: Path, at: tuple[str | int, ...]) -> Any:
    if isinstance(node, dict):
        return {k: _expand_env(v, env, file, (*at, str(k))) for k, v in node.items()}
    if isinstance(node, list):
        return [_expand_env(v, env, file, (*at, i)) for i, v in enumerate(node)]
    if isinstance(node, str):

        def sub(match: re.Match[str]) -> str:
            name = match.group(1)
            if name not in env:
                raise ConfigError(
                    f"{file}: {_key_path(at)}: environment variable ${{{name}}} is not set. "
                    f"Fix: export {name}=… before starting spendguard, or remove the key."
                )
            return env[name]

        return _ENV_REF.sub(sub, node)
    return node


def _key_path(parts: tuple[str | int, ...]) -> str:
    out = ""
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


def _describe(exc: ValidationError, file: Path) -> str:
    lines = [f"{file}: invalid configuration ({exc.error_count()} problem(s)):"]
    for err in exc.errors():
        loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and "[" in p and p != "*"))
        # Drop pydantic's union tags such as 'FolderSource' from the path.
        loc = tuple(p for p in loc if not (isinstance(p, str) and p[:1].isupper()))
        where = _key_path(loc)
        if err["type"] == "extra_forbidden":
            fix = "remove it or check its spelling against spendguard.example.yaml"
            lines.append(f"  {where}: unknown key; {fix}")
        else:
            msg = err["msg"].removeprefix("Value error, ")
            lines.append(f"  {where}: {msg} (see spendguard.example.yaml for the expected form)")
    return "\n".join(lines)
