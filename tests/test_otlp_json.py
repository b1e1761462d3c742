"""Decoding OTLP JSON: the shapes of the spec and the variations real exporters write."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from app.errors import InputError
from app.traces.files import discover, iter_documents, read_documents
from app.traces.otlp_json import decode_document
from app.traces.spans import KIND_SERVER
from tests.conftest import SAMPLES


def _doc(span: dict[str, object], key: str = "scopeSpans") -> dict[str, object]:
    return {
        "resourceSpans": [
            {
                "resource": {
                    "attributes": [{"key": "service.name", "value": {"stringValue": "svc"}}]
                },
                key: [{"scope": {"name": "s"}, "spans": [span]}],
            }
        ]
    }


BASE = {
    "traceId": "5b8efff798038103d269b633813fc60c",
    "spanId": "eee19b7ec3c1b174",
    "name": "POST /v1/chat",
    "kind": 2,
    "startTimeUnixNano": "1763712000000000000",
    "endTimeUnixNano": "1763712002400000000",
}


def test_sample_chat_request_decodes() -> None:
    doc = json.loads((SAMPLES / "chat_request.json").read_text())
    spans = decode_document(doc, "sample").spans
    assert [s.span_id for s in spans] == [
        "eee19b7ec3c1b174",
        "eee19b7ec3c1b175",
        "eee19b7ec3c1b176",
    ]
    root = spans[0]
    assert root.kind == KIND_SERVER and root.parent_span_id is None
    assert root.attributes["http.route"] == "/v1/chat"
    assert root.attributes["http.response.status_code"] == 200
    assert root.resource["service.name"] == "support-bot"
    assert spans[2].attributes["gen_ai.usage.input_tokens"] == 3400  # a number, not a string
    assert root.duration_ms == 2400


def test_attribute_value_kinds() -> None:
    span = {
        **BASE,
        "attributes": [
            {"key": "i", "value": {"intValue": "42"}},
            {"key": "n", "value": {"intValue": 7}},
            {"key": "d", "value": {"doubleValue": 1.5}},
            {"key": "b", "value": {"boolValue": True}},
            {"key": "a", "value": {"arrayValue": {"values": [{"stringValue": "x"}]}}},
            {
                "key": "kv",
                "value": {"kvlistValue": {"values": [{"key": "k", "value": {"intValue": "1"}}]}},
            },
            {"key": "bytes", "value": {"bytesValue": "aGk="}},
            {"key": "empty", "value": {}},
        ],
    }
    (s,) = decode_document(_doc(span), "t").spans
    assert s.attributes == {
        "i": 42,
        "n": 7,
        "d": 1.5,
        "b": True,
        "a": ["x"],
        "kv": {"k": 1},
        "bytes": b"hi",
        "empty": None,
    }


def test_old_instrumentation_library_spans_and_unknown_fields() -> None:
    span = {**BASE, "droppedAttributesCount": 0, "flags": 257, "somethingNew": {"x": 1}}
    (s,) = decode_document(_doc(span, key="instrumentationLibrarySpans"), "t").spans
    assert s.trace_id == BASE["traceId"]


def test_kind_as_enum_name_and_base64_ids() -> None:
    span = {
        **BASE,
        "kind": "SPAN_KIND_SERVER",
        "traceId": "W47/95gDgQPSabYzgT/GDA==",
        "spanId": "7uGbfsPBsXQ=",
    }
    (s,) = decode_document(_doc(span), "t").spans
    assert s.kind == KIND_SERVER
    assert s.trace_id == "5b8efff798038103d269b633813fc60c"
    assert s.span_id == "eee19b7ec3c1b174"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"traceId": "xyz"}, "traceId 'xyz' is not 32 hex digits"),
        ({"spanId": None}, "spanId is missing"),
        ({"traceId": "0" * 32}, "all zeros"),
        ({"startTimeUnixNano": "soon"}, "startTimeUnixNano must be an integer"),
        ({"startTimeUnixNano": "0"}, "startTimeUnixNano is missing or zero"),
    ],
)
def test_malformed_span_is_rejected_alone(change: dict[str, object], message: str) -> None:
    good = {**BASE, "spanId": "aaaaaaaaaaaaaaaa"}
    doc = _doc({**BASE, **change})
    doc["resourceSpans"][0]["scopeSpans"][0]["spans"].append(good)  # type: ignore[index]
    decoded = decode_document(doc, "f.json")
    assert [s.span_id for s in decoded.spans] == ["aaaaaaaaaaaaaaaa"]
    (rejected,) = decoded.rejected
    assert rejected.location == "resourceSpans[0].scopeSpans[0].spans[0]"
    assert message in rejected.reason


def test_not_a_traces_document() -> None:
    with pytest.raises(InputError, match="no 'resourceSpans'"):
        decode_document({"resourceMetrics": []}, "m.json")


def test_files_json_jsonl_gzip(tmp_path: Path) -> None:
    line = json.dumps(_doc(BASE))
    (tmp_path / "a.json").write_text(line)
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b.jsonl").write_text(
        line + "\n\n" + line.replace("eee19b7e", "fff19b7e") + "\n"
    )
    (tmp_path / "sub" / "c.jsonl.gz").write_bytes(gzip.compress((line + "\n").encode()))
    (tmp_path / "notes.txt").write_text("ignored")
    files = discover([tmp_path])
    assert [f.relative_to(tmp_path).as_posix() for f in files] == [
        "a.json",
        "sub/b.jsonl",
        "sub/c.jsonl.gz",
    ]
    assert [len(d.spans) for f in files for d in iter_documents(f)] == [1, 1, 1, 1]


def test_bad_json_line_is_rejected_and_reading_goes_on(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    line = json.dumps(_doc(BASE))
    path.write_text(line + "\n{broken\n" + line + "\n")
    docs = list(read_documents(path))
    assert [len(d.decoded.spans) for d in docs] == [1, 0, 1]
    (bad,) = docs[1].decoded.rejected
    assert bad.location == f"line at byte {len(line) + 1}"
    assert "not valid JSON" in bad.reason
    assert docs[-1].end_offset == path.stat().st_size


def test_half_written_last_line_is_left_for_the_next_run(tmp_path: Path) -> None:
    path = tmp_path / "live.jsonl"
    line = json.dumps(_doc(BASE))
    path.write_text(line + "\n" + line[:40])
    docs = list(read_documents(path, complete=False))
    assert [d.end_offset for d in docs] == [len(line) + 1]
    with path.open("a") as f:  # the writer finishes the line
        f.write(line[40:] + "\n")
    rest = list(read_documents(path, start=docs[-1].end_offset, complete=False))
    assert [len(d.decoded.spans) for d in rest] == [1]
    assert rest[0].location == f"line at byte {len(line) + 1}"


def test_not_utf8_line_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    path.write_bytes(b'{"resourceSpans": [\xff]}\n' + json.dumps(_doc(BASE)).encode() + b"\n")
    docs = list(read_documents(path))
    assert "not UTF-8" in docs[0].decoded.rejected[0].reason
    assert len(docs[1].decoded.spans) == 1


def test_corrupt_gzip_is_an_error_for_the_file(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl.gz"
    path.write_bytes(gzip.compress(b"x" * 100)[:-12])  # cut inside the stream
    with pytest.raises(InputError, match="corrupt gzip"):
        list(read_documents(path))


def test_discover_refuses_missing_and_foreign_files(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no such file"):
        discover([tmp_path / "missing.json"])
    (tmp_path / "x.csv").write_text("a,b")
    with pytest.raises(InputError, match="not a trace file"):
        discover([tmp_path / "x.csv"])
