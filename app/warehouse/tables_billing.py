"""Provider bills as billed: costs (the invoice's lines) and usage (token counts per bucket).

Stored with their own grain and currency, never mixed with estimated (trace) costs. A
collector run replaces the rows of the days it re-read (restatements), so re-running never
appends twice. Amounts are integer nano-units of `currency` (exact; Anthropic's cents strings
and OpenAI's numbers both convert without floats).
"""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import BigInteger, Date, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from app.warehouse.tables import Base
from app.warehouse.types import UtcDateTime


class BilledCost(Base):
    """One line of a provider's cost report for one UTC day."""

    __tablename__ = "billed_costs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    provider: Mapped[str] = mapped_column(String(64))  # openai, anthropic (OTel names)
    day: Mapped[date] = mapped_column(Date)
    line_item: Mapped[str] = mapped_column(String(256))  # OpenAI line_item / Anthropic description
    model: Mapped[str | None] = mapped_column(String(256))  # normalized to match traces
    model_raw: Mapped[str | None] = mapped_column(String(256))  # as the bill wrote it
    cost_type: Mapped[str | None] = mapped_column(String(64))  # tokens, web_search, …
    token_type: Mapped[str | None] = mapped_column(String(64))  # Anthropic: uncached_input_tokens…
    project: Mapped[str | None] = mapped_column(String(128))  # OpenAI project / Anthropic workspace
    amount_nano: Mapped[int] = mapped_column(BigInteger)  # nano-units of `currency`
    currency: Mapped[str] = mapped_column(String(8))
    fetched_at: Mapped[datetime] = mapped_column(UtcDateTime())

    __table_args__ = (
        Index(None, "provider", "day"),
        Index(None, "day", "model"),
    )


class BilledUsage(Base):
    """Token usage as the provider's usage report counts it, per bucket (1h or 1d)."""

    __tablename__ = "billed_usage"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    provider: Mapped[str] = mapped_column(String(64))
    bucket_start: Mapped[datetime] = mapped_column(UtcDateTime())
    bucket_width: Mapped[str] = mapped_column(String(8))  # 1h, 1d
    model: Mapped[str | None] = mapped_column(String(256))
    model_raw: Mapped[str | None] = mapped_column(String(256))
    project: Mapped[str | None] = mapped_column(String(128))
    api_key_id: Mapped[str | None] = mapped_column(String(128))
    input_tokens: Mapped[int] = mapped_column(BigInteger, default=0)  # includes cached
    cache_read_tokens: Mapped[int] = mapped_column(BigInteger, default=0)
    cache_write_tokens: Mapped[int] = mapped_column(BigInteger, default=0)
    output_tokens: Mapped[int] = mapped_column(BigInteger, default=0)
    requests: Mapped[int | None] = mapped_column(BigInteger)  # OpenAI only
    fetched_at: Mapped[datetime] = mapped_column(UtcDateTime())

    __table_args__ = (Index(None, "provider", "bucket_start"),)
