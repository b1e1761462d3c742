"""The decoded span: what every encoding of OTLP becomes before attribution."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

# OTLP SpanKind values.
KIND_INTERNAL = 1
KIND_SERVER = 2
KIND_CLIENT = 3

AttrValue = str | int | float | bool | list[Any] | dict[str, Any] | bytes | None


@dataclass(slots=True)  # not frozen: frozen dataclasses are slower to build, per span
class Span:
    trace_id: str
    span_id: str
    parent_span_id: str | None
    name: str
    kind: int
    start_ns: int
    end_ns: int
    attributes: dict[str, AttrValue] = field(default_factory=dict)
    resource: dict[str, AttrValue] = field(default_factory=dict)

    @property
    def started_at(self) -> datetime:
        return datetime.fromtimestamp(self.start_ns // 1_000_000_000, tz=UTC).replace(
            microsecond=(self.start_ns % 1_000_000_000) // 1000
        )

    @property
    def duration_ms(self) -> int:
        return max(0, (self.end_ns - self.start_ns) // 1_000_000)

    def attr(self, key: str) -> AttrValue:
        """A span attribute, falling back to the resource's (resource applies to every span)."""
        if key in self.attributes:
            return self.attributes[key]
        return self.resource.get(key)
