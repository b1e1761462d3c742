"""Spans → a batch ready to load: merged request facts per trace and priced LLM calls."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import NamedTuple

from app.errors import InputError
from app.pricing import SOURCE_UNPRICED, Pricer
from app.settings import AttributionConfig
from app.traces.attribution import RequestFacts, observe
from app.traces.decoded import Rejected
from app.traces.spans import Span
from app.traces.usage import BUILTIN_FAMILIES, UsageFamily, extract_usage


class CallRow(NamedTuple):
    """One `llm_calls` row (but `ingested_at`): a tuple, cheap to build and to pickle, handed
    to the database driver as it is."""

    trace_id: str
    span_id: str
    started_at: datetime
    duration_ms: int
    provider: str
    model: str
    response_model: str | None
    priced_model: str | None
    operation: str | None
    family: str
    input_tokens: int
    cache_read_tokens: int
    cache_write_tokens: int
    output_tokens: int
    reasoning_tokens: int
    cost_nanousd: int | None
    price_source: str


@dataclass(slots=True)
class Batch:
    requests: dict[str, RequestFacts] = field(default_factory=dict)
    calls: dict[tuple[str, str], CallRow] = field(default_factory=dict)
    rejected: list[Rejected] = field(default_factory=list)

    @property
    def unpriced(self) -> int:
        return sum(1 for c in self.calls.values() if c.price_source == SOURCE_UNPRICED)


class BatchBuilder:
    """Turns decoded spans into request facts and priced calls (pure; no database)."""

    def __init__(
        self,
        attribution: AttributionConfig,
        pricer: Pricer,
        families: tuple[UsageFamily, ...] = BUILTIN_FAMILIES,
    ) -> None:
        self._attribution = attribution
        self._pricer = pricer
        self._families = families

    def build(self, spans: Iterable[Span]) -> Batch:
        batch = Batch()
        for span in spans:
            self.add(batch, span)
        return batch

    def add(self, batch: Batch, span: Span) -> None:
        try:
            usage = extract_usage(span, self._families)
        except InputError as exc:
            # The whole span is quarantined: half of it (its request, not its cost) would
            # make the request look cheaper than it was.
            batch.rejected.append(
                Rejected(f"span {span.span_id}", str(exc), span.trace_id, span.span_id)
            )
            return
        observe(batch.requests, span, self._attribution)
        if usage is None:
            return
        price = self._pricer.price(usage, span.started_at)
        batch.calls[(span.trace_id, span.span_id)] = CallRow(
            trace_id=span.trace_id,
            span_id=span.span_id,
            started_at=span.started_at,
            duration_ms=span.duration_ms,
            provider=price.provider or usage.provider or "(unknown)",
            model=usage.model or "(unknown)",
            response_model=usage.response_model,
            priced_model=price.priced_model,
            operation=usage.operation,
            family=usage.family,
            input_tokens=usage.input_tokens,
            cache_read_tokens=usage.cache_read_tokens,
            cache_write_tokens=usage.cache_write_tokens,
            output_tokens=usage.output_tokens,
            reasoning_tokens=usage.reasoning_tokens,
            cost_nanousd=price.cost_nanousd,
            price_source=price.source,
        )
