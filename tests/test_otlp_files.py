"""Files that carry OTLP: the Collector file exporter's length-prefixed protobuf streams,
gzip and zstd (whole file and per message), and the suffixes that are discovered.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

import pytest
import zstandard
from opentelemetry.proto.trace.v1.trace_pb2 import TracesData

from app.errors import InputError
from app.traces.files import SUFFIXES, discover, read_documents
from app.traces.otlp_proto import iter_length_prefixed
from tests.otlp_messages import (
    COUNTING,
    PROTO,
    counting_stream,
    json_spans,
    length_prefixed,
    one_span,
)

# --- length-prefixed streams -----------------------------------------------------------------


def test_iter_length_prefixed() -> None:
    stream = length_prefixed(b"a", b"", b"bcd")
    assert list(iter_length_prefixed(stream)) == [(5, b"a"), (9, b""), (16, b"bcd")]
    assert list(iter_length_prefixed(stream, 5)) == [(9, b""), (16, b"bcd")]
    # A message cut short stops the iteration: the writer is still on it.
    assert list(iter_length_prefixed(stream[:-1])) == [(5, b"a"), (9, b"")]
    assert list(iter_length_prefixed(stream[:11])) == [(5, b"a"), (9, b"")]
    assert list(iter_length_prefixed(b"\xff\xff\xff\xff")) == []


def test_length_prefixed_file(tmp_path: Path) -> None:
    path = tmp_path / "traces.pb"
    stream = counting_stream()
    path.write_bytes(stream)
    docs = list(read_documents(path))
    assert [s for d in docs for s in d.decoded.spans] == json_spans()
    offsets = [0] + [d.end_offset for d in docs[:-1]]
    assert [d.location for d in docs] == [f"message at byte {o}" for o in offsets]
    # Read again from a checkpoint: the same documents, the same locations.
    again = list(read_documents(path, start=docs[0].end_offset))
    assert [d.location for d in again] == [d.location for d in docs[1:]]


def test_growing_length_prefixed_file(tmp_path: Path) -> None:
    path = tmp_path / "live.pb"
    first, second = (TracesData.FromString(m) for _, m in iter_length_prefixed(counting_stream()))
    whole = length_prefixed(first.SerializeToString(), second.SerializeToString())
    cut = len(whole) - 10
    path.write_bytes(whole[:cut])
    docs = list(read_documents(path, complete=False))
    assert len(docs) == 1  # the second message is still being written
    path.write_bytes(whole)
    rest = list(read_documents(path, start=docs[0].end_offset, complete=False))
    assert [d.location for d in rest] == [f"message at byte {docs[0].end_offset}"]
    assert rest[0].end_offset == len(whole)
    assert len(rest[0].decoded.spans) == len(second.resource_spans[0].scope_spans[0].spans)


def test_truncated_tail_of_a_complete_file_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "done.pb"
    stream = counting_stream()
    path.write_bytes(stream[:-10])
    docs = list(read_documents(path))
    last = docs[-1]
    assert not last.decoded.spans and last.end_offset == len(stream) - 10
    assert "message cut short" in last.decoded.rejected[0].reason
    assert last.decoded.rejected[0].location == last.location
    path.write_bytes(stream + b"\x00\x00")  # a length prefix cut short
    assert "cut short" in list(read_documents(path))[-1].decoded.rejected[0].reason


def test_bad_message_in_a_stream_is_rejected_and_reading_goes_on(tmp_path: Path) -> None:
    path = tmp_path / "t.pb"
    good = one_span()
    path.write_bytes(length_prefixed(good, b"\xff\xff", good))
    docs = list(read_documents(path))
    assert [len(d.decoded.spans) for d in docs] == [2, 0, 2]
    (bad,) = docs[1].decoded.rejected
    assert bad.location == f"message at byte {4 + len(good)}"
    assert bad.reason.startswith("not an OTLP protobuf message")


def test_pb_file_of_one_bare_message(tmp_path: Path) -> None:
    path = tmp_path / "t.pb"
    path.write_bytes((PROTO / "counting.binpb").read_bytes())
    (doc,) = read_documents(path)
    assert doc.location == "document"
    assert doc.decoded.spans == json_spans()


# --- compression and discovery ---------------------------------------------------------------


def zstd(data: bytes) -> bytes:
    return zstandard.ZstdCompressor().compress(data)


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("t.binpb", lambda: (PROTO / "counting.binpb").read_bytes()),
        ("t.binpb.gz", lambda: gzip.compress((PROTO / "counting.binpb").read_bytes())),
        ("t.binpb.zst", lambda: zstd((PROTO / "counting.binpb").read_bytes())),
        ("t.pb.gz", lambda: gzip.compress(counting_stream())),
        ("t.pb.zst", lambda: zstd(counting_stream())),  # the exporter's native compression
        ("t.json.zst", lambda: zstd(COUNTING.read_bytes())),
        (
            "t.jsonl.zst",  # one zstd frame per write, as in the exporter's rotation mode
            lambda: b"".join(zstd(line + b"\n") for line in _counting_lines()),
        ),
    ],
)
def test_compressed_variants(tmp_path: Path, name: str, content: Any) -> None:
    path = tmp_path / name
    path.write_bytes(content())
    assert discover([tmp_path]) == [path]
    assert [s for d in read_documents(path) for s in d.decoded.spans] == json_spans()


def _counting_lines() -> list[bytes]:
    doc = json.loads(COUNTING.read_text())
    return [json.dumps({"resourceSpans": [rs]}).encode() for rs in doc["resourceSpans"]]


def test_legacy_per_message_zstd(tmp_path: Path) -> None:
    # Without its nativeCompression gate, the exporter compresses each message on its own and
    # length-prefixes the result, for `format: proto` and `format: json` alike.
    frames = [zstd(m) for _, m in iter_length_prefixed(counting_stream())]
    (tmp_path / "t.pb.zst").write_bytes(length_prefixed(*frames))
    (tmp_path / "t.jsonl.zst").write_bytes(length_prefixed(*(zstd(x) for x in _counting_lines())))
    for name in ("t.pb.zst", "t.jsonl.zst"):
        docs = list(read_documents(tmp_path / name))
        assert [s for d in docs for s in d.decoded.spans] == json_spans()
        assert docs[0].location == "message at byte 0"
        assert docs[-1].end_offset == (tmp_path / name).stat().st_size


def test_zstd_json_lines_stream_with_offsets(tmp_path: Path) -> None:
    lines = _counting_lines()
    path = tmp_path / "live.jsonl.zst"
    text = b"".join(line + b"\n" for line in lines)
    path.write_bytes(zstd(text) + zstd(b'{"resourceSpans": ['))  # a last line half-written
    docs = list(read_documents(path, complete=False))
    assert [d.end_offset for d in docs] == [
        sum(len(x) + 1 for x in lines[: i + 1]) for i in range(len(lines))
    ]
    assert list(read_documents(path, start=docs[1].end_offset, complete=False)) == docs[2:]


def test_corrupt_zstd_is_an_error_for_the_file(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl.zst"
    good = zstd(b"x" * 1000)
    path.write_bytes(good[:20] + b"\xff" * 40)
    with pytest.raises(InputError, match="corrupt zstd"):
        list(read_documents(path))


def test_corrupt_gzip_single_document_is_an_error_for_the_file(tmp_path: Path) -> None:
    path = tmp_path / "t.binpb.gz"
    path.write_bytes(b"\x1f\x8b" + b"\x00" * 30)
    with pytest.raises(InputError, match=r"t\.binpb\.gz: "):
        list(read_documents(path))


def test_suffixes_are_discovered() -> None:
    for suffix in (".binpb", ".pb", ".pb.gz", ".binpb.zst", ".json.zst", ".jsonl.zst"):
        assert suffix in SUFFIXES
