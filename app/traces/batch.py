"""Spans → a batch ready to load: merged request facts per trace and priced LLM calls."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, NamedTuple

import orjson

from app.errors import InputError
from app.pricing import SOURCE_UNPRICED, Price, Pricer
from app.settings import AttributionConfig
from app.traces.attribution import (
    NO_ENDPOINT,
    NO_ROOT_KEY,
    RequestFacts,
    facts_from_span,
    merge,
)
from app.traces.decoded import Decoded, Rejected
from app.traces.otlp_fast import HEX16, HEX32, ZERO16, ZERO32, FastDocument, Unsure, span_rows
from app.traces.otlp_json import (
    LAST_NS,
    _attributes,
    _hex_id,
    resource_spans_of,
    span_of,
    walk,
)
from app.traces.spans import KIND_SERVER, AttrValue, Span
from app.traces.trace_lists import (
    NONE4,
    ROOT_KEY,
    START,
    first_attr,
    merge_into,
    utc_from_ns,
)
from app.traces.usage import BUILTIN_FAMILIES, Usage, UsageFamily, extract_usage, usage_of


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


@dataclass(frozen=True, slots=True)
class DriverRows:
    """A batch's requests and calls as one warehouse dialect's driver takes them (made by
    `app.warehouse.load.prepare`, in a decode worker, so the writer has less to do)."""

    dialect: str
    requests: list[tuple[Any, ...]]
    calls: list[tuple[Any, ...]]
    unpriced: int


@dataclass(slots=True)
class Batch:
    requests: dict[str, RequestFacts] = field(default_factory=dict)
    calls: dict[tuple[str, str], CallRow] = field(default_factory=dict)
    rejected: list[Rejected] = field(default_factory=list)
    spans: int = 0  # spans read (rejected ones not counted)
    # Traces seen by the row path while building, not yet in `requests` (see `_row`).
    traces: dict[str, list[Any]] = field(default_factory=dict, repr=False)
    # Set by `app.warehouse.load.prepare`, which then empties `requests` and `calls`.
    rows: DriverRows | None = None

    @property
    def unpriced(self) -> int:
        if self.rows is not None:
            return self.rows.unpriced
        return sum(1 for c in self.calls.values() if c.price_source == SOURCE_UNPRICED)


_ROUTES = ("http.route", "url.path", "http.target")


class BatchBuilder:
    """Turns decoded spans into request facts and priced calls (pure; no database).

    Two ways in, with the same result: `Span` objects (`build`, `add`), or undecoded OTLP JSON
    documents (`add_json`), read straight into rows. The row path builds no `Span`: it reads
    the fields it needs, checked by the decoder's own helpers, and keeps each trace's facts in
    a list (`Batch.traces`) until `finish` turns them into `RequestFacts`. Any span it is not
    sure of (a bad or unusual field, a bad token count) goes the `Span` way instead, so every
    rejection and message stays the decoder's and `add`'s own.
    """

    def __init__(
        self,
        attribution: AttributionConfig,
        pricer: Pricer,
        families: tuple[UsageFamily, ...] = BUILTIN_FAMILIES,
    ) -> None:
        self._attribution = attribution
        self._pricer = pricer
        self._families = families
        self._user_names = tuple(attribution.user_attributes)
        self._team_names = tuple(attribution.team_attributes)
        self._who = frozenset((*self._user_names, *self._team_names))
        self._detect = frozenset(key for family in families for key in family.detect)
        self._resource: dict[str, AttrValue] | None = None
        self._resource_who = False
        self._service: str | None = None

    def build(self, spans: Iterable[Span]) -> Batch:
        batch = Batch()
        for span in spans:
            batch.spans += 1
            self.add(batch, span)
        self.finish(batch)
        return batch

    def build_decoded(self, decoded: Decoded) -> Batch:
        """A batch of decoded spans and deferred JSON documents."""
        batch = Batch()
        self.add_decoded(batch, decoded)
        self.finish(batch)
        return batch

    def add_decoded(self, batch: Batch, decoded: Decoded) -> None:
        """Add what a decoder handed on (its rejected records first); call `finish` after."""
        batch.rejected.extend(decoded.rejected)
        for span in decoded.spans:
            batch.spans += 1
            self.add(batch, span)
        for document in decoded.documents:
            if isinstance(document, FastDocument):
                self.add_fast(batch, document)
            else:
                self.add_json(batch, document)

    def add_fast(self, batch: Batch, document: FastDocument) -> None:
        """The spans of a document msgspec typed (`otlp_fast`); call `finish` after.

        Every span is checked first, the batch touched only after: a document with anything the
        fast path does not read exactly as `otlp_json` (`Unsure`) is read by `add_json`
        instead, whole, from its text. A span whose token counts are bad goes to `add`, as on
        the row path, to be quarantined with the same reason."""
        try:
            rows = span_rows(document)
        except Unsure:
            self.add_json(batch, resource_spans_of(orjson.loads(document.data), "document"))
            return
        fold = self._fold
        for row in rows:
            try:
                fold(batch, *row)
            except InputError:
                trace_id, span_id, parent, start, end, kind, name, attrs, resource = row
                span = Span(
                    trace_id, span_id, parent, name, kind, start, max(start, end), attrs, resource
                )
                batch.spans += 1
                self.add(batch, span)

    def add_json(self, batch: Batch, resource_spans: list[Any]) -> None:
        """The spans of a deferred JSON document (`decode_json_deferred`); call `finish` after."""

        def sink(raw: Any, resource: dict[str, AttrValue], at: Callable[[], str]) -> None:
            try:
                if self._row(batch, raw, resource):
                    return
            except InputError:
                pass
            span = span_of(raw, resource, at())  # InputError: `walk` rejects the span
            batch.spans += 1
            self.add(batch, span)

        walk(resource_spans, sink, batch.rejected)

    def finish(self, batch: Batch) -> None:
        """Fold the row path's traces into `batch.requests`."""
        requests = batch.requests
        for trace_id, s in batch.traces.items():
            facts = RequestFacts(trace_id, utc_from_ns(s[0]), *s[1:])
            prior = requests.get(trace_id)
            requests[trace_id] = facts if prior is None else merge(prior, facts)
        batch.traces = {}

    def _row(self, batch: Batch, raw: Any, resource: dict[str, AttrValue]) -> bool:
        """One span read straight into the batch; False (nothing changed) if it must go the
        `Span` way. Everything that can fail is done before the batch is touched."""
        if type(raw) is not dict:
            return False
        get = raw.get
        # The common shapes inline (lowercase hex ids, decimal-string or integer times); the
        # decoder's helpers for anything else, and the Span path if they refuse it.
        trace_id = get("traceId")
        if type(trace_id) is not str or HEX32(trace_id) is None or trace_id == ZERO32:
            trace_id = _hex_id(trace_id, 32, "traceId", "")
        span_id = get("spanId")
        if type(span_id) is not str or HEX16(span_id) is None or span_id == ZERO16:
            span_id = _hex_id(span_id, 16, "spanId", "")
        parent = get("parentSpanId") or None
        if parent and (type(parent) is not str or HEX16(parent) is None or parent == ZERO16):
            _hex_id(parent, 16, "parentSpanId", "")
        start = get("startTimeUnixNano", 0)
        end = get("endTimeUnixNano", start)
        try:  # what `_int` does with a string
            start = start if type(start) is int else int(start) if type(start) is str else None
            end = end if type(end) is int else int(end) if type(end) is str else None
        except ValueError:
            return False
        if start is None or end is None:
            return False
        kind = get("kind", 0)
        if start <= 0 or start > LAST_NS or type(kind) is not int:
            return False
        self._fold(
            batch,
            trace_id,
            span_id,
            parent,
            start,
            end,
            kind,
            get("name", ""),
            _attributes(get("attributes"), ""),
            resource,
        )
        return True

    def _fold(
        self,
        batch: Batch,
        trace_id: str,
        span_id: str,
        parent: str | None,
        start: int,
        end: int,
        kind: int,
        name: Any,
        attrs: dict[str, AttrValue],
        resource: dict[str, AttrValue],
    ) -> None:
        """A span's checked fields into the batch (`_row`, `add_fast`). `InputError` (a bad
        token count) is raised before the batch is touched."""
        usage = (
            usage_of(attrs, resource, self._families)
            if attrs and not self._detect.isdisjoint(attrs)
            else None
        )
        if resource is not self._resource:
            self._resource = resource
            self._resource_who = not self._who.isdisjoint(resource)
            service = resource.get("service.name")
            self._service = str(service) if service is not None else None
        if self._resource_who or not self._who.isdisjoint(attrs):
            user = first_attr(attrs, resource, self._user_names)
            team = first_attr(attrs, resource, self._team_names)
        else:
            user = team = None
        if parent is None:  # `attribution._rank`
            rank = 0 if kind == KIND_SERVER else 2
        else:
            rank = 1 if kind == KIND_SERVER else 5
        duration = (end - start) // 1_000_000 if end > start else 0
        call = None
        if usage is not None:
            started_at = utc_from_ns(start)
            price = self._pricer.price(usage, started_at)
            call = self._call(trace_id, span_id, started_at, duration, usage, price)

        traces = batch.traces
        state = traces.get(trace_id)
        if rank == 5 and user is None and team is None:
            # Not a root candidate and no user or team: only the earliest start can matter.
            if state is None:
                traces[trace_id] = [start, NO_ROOT_KEY, None, NO_ENDPOINT, None, None, *NONE4]
            elif state[ROOT_KEY] == NO_ROOT_KEY and start < state[START]:
                state[START] = start
        else:
            key = f"{rank}:{start:020d}:{span_id}"
            user_key = key if user else None
            team_key = key if team else None
            if rank < 5:
                endpoint = NO_ENDPOINT
                if kind == KIND_SERVER:
                    route = None
                    for route_name in _ROUTES:
                        route = (
                            attrs[route_name] if route_name in attrs else resource.get(route_name)
                        )
                        if route:
                            break
                    endpoint = str(route) if route else (str(name) or NO_ENDPOINT)
                new = [start, key, span_id, endpoint, self._service, duration]
            else:
                new = [start, NO_ROOT_KEY, None, NO_ENDPOINT, None, None]
            new += (user, user_key, team, team_key)
            if state is None:
                traces[trace_id] = new
            else:
                merge_into(state, new)
        batch.spans += 1
        if call is not None:
            batch.calls[(trace_id, span_id)] = call

    def add(self, batch: Batch, span: Span) -> None:
        """One decoded span; call `finish` after the last."""
        try:
            usage = extract_usage(span, self._families)
        except InputError as exc:
            # The whole span is quarantined: half of it (its request, not its cost) would
            # make the request look cheaper than it was.
            batch.rejected.append(
                Rejected(f"span {span.span_id}", str(exc), span.trace_id, span.span_id)
            )
            return
        self._observe(batch, span)
        if usage is None:
            return
        price = self._pricer.price(usage, span.started_at)
        batch.calls[(span.trace_id, span.span_id)] = self._call(
            span.trace_id, span.span_id, span.started_at, span.duration_ms, usage, price
        )

    def _observe(self, batch: Batch, span: Span) -> None:
        """Fold what `span` says about its request into the batch's trace lists, as
        `attribution.merge` would, where the row path folds its spans too: a batch's spans are
        merged in the order they came, whichever path they took (the first of two equal
        candidates wins, as in the database). Most spans are neither root candidates nor
        carriers of a user or team: for those only the trace's earliest start can matter."""
        traces = batch.traces
        state = traces.get(span.trace_id)
        cfg = self._attribution
        if (
            state is not None
            and span.parent_span_id is not None
            and span.kind != KIND_SERVER
            and first_attr(span.attributes, span.resource, self._user_names) is None
            and first_attr(span.attributes, span.resource, self._team_names) is None
        ):
            if state[ROOT_KEY] == NO_ROOT_KEY and span.start_ns < state[START]:
                state[START] = span.start_ns
            return
        facts = facts_from_span(span, cfg)
        new = [span.start_ns, *facts[2:]]
        if state is None:
            traces[span.trace_id] = new
        else:
            merge_into(state, new)

    @staticmethod
    def _call(
        trace_id: str,
        span_id: str,
        started_at: datetime,
        duration_ms: int,
        usage: Usage,
        price: Price,
    ) -> CallRow:
        return CallRow(
            trace_id,
            span_id,
            started_at,
            duration_ms,
            price.provider or usage.provider or "(unknown)",
            usage.model or "(unknown)",
            usage.response_model,
            price.priced_model,
            usage.operation,
            usage.family,
            usage.input_tokens,
            usage.cache_read_tokens,
            usage.cache_write_tokens,
            usage.output_tokens,
            usage.reasoning_tokens,
            price.cost_nanousd,
            price.source,
        )
