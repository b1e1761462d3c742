"""What a decoder hands on: the spans it could read and the records it had to reject."""

from __future__ import annotations

from dataclasses import dataclass, field

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

    def extend(self, other: Decoded) -> None:
        self.spans.extend(other.spans)
        self.rejected.extend(other.rejected)

    def __len__(self) -> int:
        return len(self.spans) + len(self.rejected)
