"""What a decoder hands on: the spans it could read and the records it had to reject."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from app.traces.spans import Span


@dataclass(frozen=True, slots=True)
class Rejected:
    """A record that cannot be loaded, and why. `location` says where in its source it was
    (a line, a span path); no payload is kept (it could hold prompt text)."""

    location: str
    reason: str
    trace_id: str | None = None
    span_id: str | None = None


@dataclass(slots=True)
class Decoded:
    spans: list[Span] = field(default_factory=list)
    rejected: list[Rejected] = field(default_factory=list)
    # Deferred JSON (`decode_json_deferred`): `resourceSpans` lists (or `otlp_fast.FastDocument`s)
    # whose spans are not decoded yet, and how many span entries they hold.
    documents: list[Any] = field(default_factory=list)
    pending: int = 0

    def extend(self, other: Decoded) -> None:
        self.spans.extend(other.spans)
        self.rejected.extend(other.rejected)
        self.documents.extend(other.documents)
        self.pending += other.pending

    def __len__(self) -> int:
        return len(self.spans) + len(self.rejected) + self.pending
