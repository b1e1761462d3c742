"""Decoded spans → the warehouse, in the caller's transaction, with rejects quarantined.

Every path that brings spans in (`ingest`, the pull collector, the OTLP/HTTP receiver) goes
through `Intake.load`, so they all attribute, price, deduplicate and quarantine alike. Callers
own the transaction: a collector commits its checkpoint in the same one, the receiver answers
200 only after it commits.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy.orm import Session

from app.pricing import Pricer
from app.settings import Settings
from app.traces.batch import Batch, BatchBuilder
from app.traces.decoded import Decoded, Rejected
from app.traces.usage import families_from_config
from app.warehouse.load import insert_ignore, load_batch
from app.warehouse.tables import QuarantinedRecord


@dataclass(frozen=True, slots=True)
class IntakeCounts:
    spans: int
    requests_seen: int
    calls_new: int
    calls_duplicate: int
    unpriced_calls: int
    quarantined: int


class Intake:
    def __init__(self, settings: Settings, collector: str) -> None:
        self.collector = collector
        self._builder = BatchBuilder(
            settings.attribution,
            Pricer(settings.pricing.overrides),
            families_from_config(settings.attribution.families),
        )
        self._user_teams = settings.attribution.user_teams

    def build(self, decoded: Decoded) -> Batch:
        """Attribute and price (no database): the CPU part, done before a transaction opens."""
        return self._builder.build_decoded(decoded)

    def batches(self, documents: Iterable[Decoded], limit: int) -> Iterator[Batch]:
        """Batches of about `limit` records, built as the documents come (a document is never
        split), so only one batch at a time is held, never its raw documents."""
        batch = Batch()
        size = 0
        for decoded in documents:
            self._builder.add_decoded(batch, decoded)
            size += len(decoded)
            if size >= limit:
                self._builder.finish(batch)
                yield batch
                batch, size = Batch(), 0
        if size:
            self._builder.finish(batch)
            yield batch

    def load(self, session: Session, batch: Batch, source: str, spans: int) -> IntakeCounts:
        counts = load_batch(session, batch, self._user_teams)
        quarantined = quarantine(session, self.collector, source, batch.rejected)
        return IntakeCounts(
            spans=spans,
            requests_seen=counts.requests_seen,
            calls_new=counts.calls_new,
            calls_duplicate=counts.calls_duplicate,
            unpriced_calls=batch.unpriced,
            quarantined=quarantined,
        )


def quarantine(session: Session, collector: str, source: str, rejected: list[Rejected]) -> int:
    """Record rejected records (once per collector, source and location); returns how many."""
    if not rejected:
        return 0
    now = datetime.now(UTC)
    rows = {
        r.location[:256]: {
            "received_at": now,
            "collector": collector,
            "source": source[:512],
            "location": r.location[:256],
            "reason": r.reason,
            "trace_id": r.trace_id,
            "span_id": r.span_id,
        }
        for r in rejected
    }
    session.execute(insert_ignore(session, QuarantinedRecord), list(rows.values()))
    return len(rows)
