"""Fuzzing the trace decoders: whatever the input, they return `Decoded` or raise `InputError`.

Inputs: arbitrary bytes; arbitrary JSON-like values; valid OTLP documents (JSON and protobuf)
mutated — keys dropped, values of the wrong type, huge integers, odd strings, bytes flipped,
cut or inserted; and files of every suffix holding such bytes, read whole or from an offset,
complete or still growing. The budget is small (200 examples a test) to keep the file quick.
"""

from __future__ import annotations

import gzip
import json
import struct
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import zstandard
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.errors import InputError
from app.traces.decoded import Decoded
from app.traces.files import SUFFIXES, read_documents
from app.traces.otlp_json import decode_document, decode_json
from app.traces.otlp_proto import decode_protobuf, iter_length_prefixed
from tests.conftest import FIXTURES

FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
COUNTING_JSON = json.loads((FIXTURES / "otlp" / "counting.json").read_text())
COUNTING_PB = (FIXTURES / "otlp" / "proto" / "counting.binpb").read_bytes()

ODD_STRINGS = st.sampled_from(
    [
        "",
        "0" * 32,
        "0" * 16,
        "ZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZ",
        "W47/95gDgQPSabYzgT/GDA==",
        "=" * 16,
        "\ud800",  # a lone surrogate
        "\x00",
        "é" * 16,
        "1e400",
        "-1",
        "NaN",
        "SPAN_KIND_",
        "span_kind_client",
        "9" * 400,
        "１２３",  # full-width digits: int() accepts them
    ]
)
HUGE_INTS = st.one_of(
    st.integers(min_value=2**63, max_value=2**200),
    st.integers(min_value=-(2**200), max_value=-(2**63)),
    st.sampled_from([2**64, 2**64 - 1, -1, 0]),
)
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
    ODD_STRINGS,
)
JSON_VALUES = st.recursive(
    SCALARS,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(
            st.one_of(
                st.text(max_size=10),
                st.sampled_from(["resourceSpans", "scopeSpans", "spans", "value", "key"]),
            ),
            children,
            max_size=4,
        ),
    ),
    max_leaves=20,
)


def expect_decoded(decode: Callable[[], Decoded]) -> None:
    """The decoder returns `Decoded` or raises `InputError`, nothing else."""
    try:
        result = decode()
    except InputError:
        return
    assert isinstance(result, Decoded)
    for span in result.spans:
        assert len(span.trace_id) == 32 and len(span.span_id) == 16
        assert span.start_ns > 0 and span.end_ns >= span.start_ns


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(node, dict):
        for key, value in node.items():
            out.extend(_paths(value, (*prefix, key)))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            out.extend(_paths(value, (*prefix, i)))
    return out


@st.composite
def mutated_documents(draw: st.DrawFn) -> Any:
    """counting.json with a few of its values dropped or replaced by something odd."""
    doc = json.loads(json.dumps(COUNTING_JSON))
    for _ in range(draw(st.integers(min_value=1, max_value=4))):
        paths = _paths(doc)
        path = draw(st.sampled_from(paths))
        replacement = draw(st.one_of(JSON_VALUES, HUGE_INTS, ODD_STRINGS, st.just(_DROP)))
        if not path:
            doc = None if replacement is _DROP else replacement
            continue
        parent = doc
        for step in path[:-1]:
            parent = parent[step]
        if replacement is _DROP:
            del parent[path[-1]]
        else:
            parent[path[-1]] = replacement
    return doc


_DROP = object()


@st.composite
def mutated_protobuf(draw: st.DrawFn) -> bytes:
    """counting.binpb with some bytes flipped, removed or inserted, or cut short."""
    data = bytearray(COUNTING_PB)
    for _ in range(draw(st.integers(min_value=1, max_value=6))):
        at = draw(st.integers(min_value=0, max_value=max(0, len(data) - 1)))
        action = draw(st.sampled_from(["flip", "drop", "insert", "cut"]))
        if action == "flip" and data:
            data[at] = draw(st.integers(min_value=0, max_value=255))
        elif action == "drop":
            del data[at : at + draw(st.integers(min_value=1, max_value=8))]
        elif action == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=8))
        else:
            del data[at:]
    return bytes(data)


def _json_text(value: Any) -> bytes:
    return json.dumps(value, allow_nan=True).encode()


# --- the decoders ----------------------------------------------------------------------------


@FUZZ
@given(st.binary(max_size=2000))
def test_arbitrary_bytes(data: bytes) -> None:
    expect_decoded(lambda: decode_json(data, "fuzz"))
    expect_decoded(lambda: decode_protobuf(data, "fuzz"))


@FUZZ
@given(JSON_VALUES)
def test_arbitrary_json_values(value: Any) -> None:
    expect_decoded(lambda: decode_document(value, "fuzz"))
    expect_decoded(lambda: decode_document({"resourceSpans": value}, "fuzz"))
    expect_decoded(lambda: decode_json(_json_text(value), "fuzz"))


@FUZZ
@given(mutated_documents())
def test_mutated_otlp_json(doc: Any) -> None:
    expect_decoded(lambda: decode_document(doc, "fuzz"))
    expect_decoded(lambda: decode_json(_json_text(doc), "fuzz"))


@FUZZ
@given(mutated_protobuf())
def test_mutated_otlp_protobuf(data: bytes) -> None:
    expect_decoded(lambda: decode_protobuf(data, "fuzz"))


@FUZZ
@given(st.binary(max_size=200), st.integers(min_value=0, max_value=300))
def test_length_prefixed_split(data: bytes, offset: int) -> None:
    end = offset
    for end, message in iter_length_prefixed(data, offset):
        assert struct.unpack(">I", data[end - len(message) - 4 : end - len(message)])[0] == len(
            message
        )
    assert end <= max(offset, len(data))


# --- files -----------------------------------------------------------------------------------


def _stored(name: str, content: bytes) -> bytes:
    if name.endswith(".gz"):
        return gzip.compress(content)
    if name.endswith(".zst"):
        return zstandard.ZstdCompressor().compress(content)
    return content


CONTENTS = st.one_of(
    st.binary(max_size=500),
    mutated_protobuf(),
    mutated_documents().map(_json_text),
    mutated_documents().map(lambda d: _json_text(d) + b"\n" + _json_text(d)[:30]),
    mutated_protobuf().map(lambda m: struct.pack(">I", len(m)) + m),
    st.binary(max_size=50).map(lambda b: b"\x00\x00\x00\x10" + b),
)


@FUZZ
@given(
    name=st.sampled_from(SUFFIXES).map(lambda s: "traces" + s),
    content=CONTENTS,
    compress=st.booleans(),
    start=st.one_of(st.just(0), st.integers(min_value=0, max_value=600)),
    complete=st.booleans(),
)
def test_read_documents_of_any_file(
    name: str, content: bytes, compress: bool, start: int, complete: bool
) -> None:
    stored = _stored(name, content) if compress else content
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / name
        path.write_bytes(stored)
        try:
            docs = list(read_documents(path, start=start, complete=complete))
        except InputError:
            return
    ends = [d.end_offset for d in docs]
    assert ends == sorted(ends)
    assert all(isinstance(d.decoded, Decoded) for d in docs)
    assert all(e >= start for e in ends) or start == 0
