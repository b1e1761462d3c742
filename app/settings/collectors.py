"""The collectors' sections of spendguard.yaml (`collectors:`): when each runs (`Schedule`) and
where it reads. Re-exported by `app.settings`, with the other sections (`app.settings.models`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from app.durations import parse_duration


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Schedule(_Strict):
    """When a collector runs: a fixed interval (`every: 60s`) or a crontab line (`cron: ...`)."""

    every: str | None = None
    cron: str | None = None

    @field_validator("every")
    @classmethod
    def _duration(cls, value: str | None) -> str | None:
        if value is not None:
            parse_duration(value)
        return value

    @field_validator("cron")
    @classmethod
    def _crontab(cls, value: str | None) -> str | None:
        if value is not None and len(value.split()) != 5:
            raise ValueError(f"cron {value!r} must have 5 fields: minute hour day month weekday")
        return value

    @model_validator(mode="after")
    def _one_of(self) -> Schedule:
        if (self.every is None) == (self.cron is None):
            raise ValueError("give exactly one of 'every' (e.g. 60s, 5m, 1h) or 'cron'")
        return self


class FolderSource(_Strict):
    kind: Literal["folder"]
    path: Path


class S3Source(_Strict):
    kind: Literal["s3"]
    bucket: str
    prefix: str = ""
    region: str = "us-east-1"
    endpoint_url: str | None = None


# Tagged by `kind`, so a mistake is reported against the one alternative the user meant.
TraceSource = Annotated[FolderSource | S3Source, Field(discriminator="kind")]


class TracesCollectorConfig(_Strict):
    enabled: bool = True
    schedule: Schedule = Schedule(every="60s")
    sources: list[TraceSource] = Field(default_factory=list)


class OpenAICollectorConfig(_Strict):
    """`collectors/openai.py`: the organization's Costs and Usage (completions) reports."""

    enabled: bool = False
    schedule: Schedule = Schedule(every="1h")
    admin_key: SecretStr | None = None  # required when enabled (the run fails without it)
    base_url: str = "https://api.openai.com/v1"
    project_ids: list[str] = Field(default_factory=list)
    lookback_days: int = Field(default=3, ge=0)  # restated days re-read before the checkpoint
    initial_days: int = Field(default=30, ge=0)  # read by the first run (no checkpoint yet)
    usage_bucket_width: Literal["1d", "1h"] = "1d"


class AnthropicCollectorConfig(_Strict):
    """`collectors/anthropic.py`: the organization's cost report and Messages usage report."""

    enabled: bool = False
    schedule: Schedule = Schedule(every="1h")
    admin_key: SecretStr | None = None  # required when enabled (the run fails without it)
    base_url: str = "https://api.anthropic.com"
    workspace_ids: list[str] = Field(default_factory=list)
    lookback_days: int = Field(default=3, ge=0)
    initial_days: int = Field(default=30, ge=0)
    usage_bucket_width: Literal["1d", "1h"] = "1d"


# The EC2 instance families with GPUs or AI accelerators (Cost Explorer INSTANCE_TYPE_FAMILY).
GPU_INSTANCE_FAMILIES = [
    "p3", "p3dn", "p4d", "p4de", "p5", "p5e", "p5en", "p6",
    "g4dn", "g4ad", "g5", "g5g", "g6", "g6e", "gr6",
    "trn1", "trn1n", "trn2", "inf1", "inf2", "dl1",
]  # fmt: skip
CE_METRICS = Literal[
    "UnblendedCost", "AmortizedCost", "NetUnblendedCost", "NetAmortizedCost", "BlendedCost"
]


class AwsCeCollectorConfig(_Strict):
    """`collectors/aws_ce.py`: daily (or hourly) cost of GPU instances from Cost Explorer."""

    enabled: bool = False
    schedule: Schedule = Schedule(cron="0 */6 * * *")
    region: str = "us-east-1"
    endpoint_url: str | None = None
    tag_key: str = "gpu-pool"
    granularity: Literal["DAILY", "HOURLY"] = "DAILY"
    metric: CE_METRICS = "UnblendedCost"
    instance_families: list[str] = Field(default_factory=lambda: list(GPU_INSTANCE_FAMILIES))
    lookback_days: int = Field(default=3, ge=0)  # days re-read before the checkpoint
    initial_days: int = Field(default=14, ge=1, le=365)  # read by the first run


class FocusCollectorConfig(_Strict):
    """`collectors/focus.py`: FOCUS 1.x / CUR 2.0 Data Exports (S3, or a local copy)."""

    enabled: bool = False
    schedule: Schedule = Schedule(cron="0 */6 * * *")
    bucket: str | None = None
    prefix: str = ""
    region: str = "us-east-1"
    endpoint_url: str | None = None
    path: Path | None = None  # a local folder in the same layout, instead of a bucket
    cost_column: Literal["BilledCost", "EffectiveCost"] = "BilledCost"
    tag_keys: list[str] = Field(default_factory=lambda: ["gpu-pool"])
    initial_months: int = Field(default=2, ge=1, le=36)

    @model_validator(mode="after")
    def _one_place(self) -> FocusCollectorConfig:
        if self.bucket and self.path is not None:
            raise ValueError("give either 'bucket' (S3) or 'path' (a local folder), not both")
        return self


class OpenCostCollectorConfig(_Strict):
    """`collectors/opencost.py`: GPU cost per namespace (or label) from the allocation API."""

    enabled: bool = False
    schedule: Schedule = Schedule(every="1h")
    base_url: str = "http://opencost.opencost:9003"
    aggregate: str = "namespace"
    step: Literal["1h", "1d"] = "1h"
    include_idle: bool = True
    lookback_days: int = Field(default=1, ge=0)
    initial_days: int = Field(default=7, ge=1, le=90)


class CollectorsConfig(_Strict):
    traces: TracesCollectorConfig = TracesCollectorConfig()
    openai: OpenAICollectorConfig = OpenAICollectorConfig()
    anthropic: AnthropicCollectorConfig = AnthropicCollectorConfig()
    aws_ce: AwsCeCollectorConfig = AwsCeCollectorConfig()
    focus: FocusCollectorConfig = FocusCollectorConfig()
    opencost: OpenCostCollectorConfig = OpenCostCollectorConfig()
