"""Find and read OTLP trace files, streaming, one document at a time.

Encodings by name, each optionally compressed (`.gz`, or `.zst` for zstd):

- `.json`: one `TracesData`/`ExportTraceServiceRequest` JSON document per file (awss3exporter
  `otlp_json`); `.jsonl`: one per line (the Collector file exporter's `format: json`).
- `.binpb`: one protobuf message per file (awss3exporter `otlp_proto`).
- `.pb`: the Collector file exporter's `format: proto`, messages each preceded by their length
  (4 bytes, big-endian) — or one bare message. The first byte tells which: every non-empty
  `TracesData` starts with 0x0A, the tag of its field 1, while a length prefix starts with 0x00
  for any message under 16 MiB (0x0A would mean one of 160 MiB or more, beyond both the
  exporter's 100 MB rotation default and the 4 MiB default limit of an OTLP/gRPC receiver).
  So a `.pb` file starting with 0x0A is one message; anything else is length-prefixed.
- A `.zst` file that does not start with a zstd frame is the file exporter's legacy
  `compression: zstd` (without its `exporter.file.nativeCompression` gate): length-prefixed
  messages, each compressed alone. It is read as such whatever the name before `.zst`; a
  message holds JSON when it starts with `{`, protobuf otherwise.

Every document carries the byte offset just after it, so a collector can checkpoint exactly what
it has loaded and start the next run there; offsets count the decompressed stream for `.gz` and
zstd-framed `.zst` files. A line without its newline, or a length-prefixed message cut short, at
the end of a file that may still be growing is left for the next run (`complete=False`), never
dropped or half-read. A document that cannot be decoded becomes a rejected record, and reading
goes on.
"""

from __future__ import annotations

import gzip
import io
import struct
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import IO, cast

import zstandard

from app.errors import InputError
from app.traces.decoded import Decoded, Rejected
from app.traces.otlp_json import decode_json, decode_json_deferred
from app.traces.otlp_proto import decode_protobuf

_ENCODINGS = (".json", ".jsonl", ".binpb", ".pb")
_COMPRESSIONS = ("", ".gz", ".zst")
SUFFIXES = tuple(e + c for c in _COMPRESSIONS for e in _ENCODINGS)

_ZSTD_FRAME = b"\x28\xb5\x2f\xfd"
_LENGTH = struct.Struct(">I")
_CHUNK = 1 << 20
_ERRORS = (OSError, EOFError, zlib.error, zstandard.ZstdError)


@dataclass(frozen=True, slots=True)
class Document:
    location: str  # where in the file: "document", "line at byte N", "message at byte N"
    end_offset: int  # byte offset (of the decompressed stream) just after this document
    decoded: Decoded


def is_trace_file(path: Path) -> bool:
    return path.name.lower().endswith(SUFFIXES)


def appendable(path: Path) -> bool:
    """Whether the file may grow by whole documents (uncompressed `.jsonl` or `.pb`), so that a
    reader can stop at any document's end offset and carry on from there when it has grown."""
    return path.name.lower().endswith((".jsonl", ".pb"))


def discover(paths: Sequence[Path]) -> list[Path]:
    """Every trace file named or found (recursively, sorted) under the given paths."""
    found: list[Path] = []
    for path in paths:
        if path.is_dir():
            found.extend(sorted(p for p in path.rglob("*") if p.is_file() and is_trace_file(p)))
        elif path.is_file():
            if not is_trace_file(path):
                raise InputError(f"{path}: not a trace file; expected one of {', '.join(SUFFIXES)}")
            found.append(path)
        else:
            raise InputError(f"{path}: no such file or directory")
    return found


def read_documents(
    path: Path, *, start: int = 0, complete: bool = True, deferred: bool = False
) -> Iterator[Document]:
    """The documents of a trace file from byte `start` on (of the decompressed stream).

    With `complete=False` (a file that may still be written to), a last line without its newline
    or a last length-prefixed message cut short is not read: the next run reads it whole.
    Raises `InputError` only when the file itself cannot be read (missing, corrupt
    compression); bad documents are rejected records. With `deferred`, JSON documents are
    checked but their spans left undecoded (`decode_json_deferred`), for `BatchBuilder`.
    """
    json = decode_json_deferred if deferred else decode_json
    name = path.name.lower()
    compression = next((c for c in (".gz", ".zst") if name.endswith(c)), "")
    encoding = name.removesuffix(compression)
    try:
        if compression == ".zst" and not _zstd_framed(path):
            # Legacy per-message zstd: the file itself is the length-prefixed stream.
            yield from _read_frames(path, "", json, start=start, complete=complete)
        elif encoding.endswith(".jsonl"):
            yield from _read_lines(path, compression, json, start=start, complete=complete)
        elif encoding.endswith(".pb") and _first_byte(path, compression) != b"\x0a":
            yield from _read_frames(path, compression, json, start=start, complete=complete)
        elif start == 0:  # a single-document file is read whole or not at all
            with _open(path, compression) as stream:
                data = stream.read()
            decode = json if encoding.endswith(".json") else decode_protobuf
            where = "document"
            yield Document(where, len(data), _decode_or_reject(decode, data, str(path), where))
    except _ERRORS as exc:
        raise _unreadable(path, compression, exc) from None


def iter_documents(path: Path) -> Iterator[Decoded]:
    """Just the decoded contents of each document of a complete file."""
    for doc in read_documents(path):
        yield doc.decoded


def _open(path: Path, compression: str) -> IO[bytes]:
    if compression == ".gz":
        return cast(IO[bytes], gzip.GzipFile(path, "rb"))
    if compression == ".zst":
        # read_across_frames: the exporter's rotation mode writes one zstd frame per write.
        reader = zstandard.ZstdDecompressor().stream_reader(
            path.open("rb"), read_across_frames=True
        )
        return cast(IO[bytes], io.BufferedReader(cast(io.RawIOBase, reader), _CHUNK))
    # A big buffer: a Collector's lines are often hundreds of kB (a whole export each), which
    # the default 8 kB buffer reads in pieces and joins.
    return path.open("rb", buffering=_CHUNK)


def _zstd_framed(path: Path) -> bool:
    """Whether the file starts like a zstd stream (a frame, or a skippable frame); empty counts."""
    with path.open("rb") as raw:
        head = raw.read(4)
    skippable = len(head) == 4 and head[0] & 0xF0 == 0x50 and head[1:] == b"\x2a\x4d\x18"
    return not head or head == _ZSTD_FRAME or skippable


def _first_byte(path: Path, compression: str) -> bytes:
    with _open(path, compression) as stream:
        return stream.read(1)


_Decode = Callable[[bytes, str], Decoded]


def _read_lines(
    path: Path, compression: str, json: _Decode, *, start: int, complete: bool
) -> Iterator[Document]:
    offset = 0
    try:
        with _open(path, compression) as stream:
            if start:
                offset = _skip(stream, start, compression)
            for line in stream:
                if not line.endswith(b"\n") and not complete:
                    return  # half-written: the writer is still on this line
                line_start = offset
                offset += len(line)
                if not line.strip():
                    continue
                where = f"line at byte {line_start}"
                decoded = _decode_or_reject(json, line, f"{path}: {where}", where)
                yield Document(where, offset, decoded)
    except _ERRORS as exc:
        if isinstance(exc, EOFError) and compression and not complete:
            return  # a compressed file still being written: read the rest next time
        raise _unreadable(path, compression, exc, offset) from None


def _read_frames(
    path: Path, compression: str, json: _Decode, *, start: int, complete: bool
) -> Iterator[Document]:
    """Length-prefixed messages: a 4-byte big-endian length, then that many bytes."""
    offset = 0
    try:
        with _open(path, compression) as stream:
            if start:
                offset = _skip(stream, start, compression)
            while True:
                where = f"message at byte {offset}"
                head = _read_exact(stream, 4)
                size = _LENGTH.unpack(head)[0] if len(head) == 4 else 0
                body = _read_exact(stream, size) if size else b""
                if len(head) == 4 and len(body) == size:
                    offset += 4 + size
                    decode = partial(_decode_frame, json=json)
                    decoded = _decode_or_reject(decode, body, f"{path}: {where}", where)
                    yield Document(where, offset, decoded)
                    continue
                if head and complete:  # cut short, and no more is coming: reject it, move on
                    end = offset + len(head) + len(body)
                    reason = f"message cut short: the file ends at byte {end}"
                    if len(head) == 4:
                        reason += f", {size} bytes announced"
                    yield Document(where, end, Decoded(rejected=[Rejected(where, reason)]))
                return  # the end, or a message still being written: read it next time
    except _ERRORS as exc:
        if isinstance(exc, EOFError) and compression and not complete:
            return  # a compressed file still being written: read the rest next time
        raise _unreadable(path, compression, exc, offset) from None


def _read_exact(stream: IO[bytes], size: int) -> bytes:
    """Up to `size` bytes, fewer only at the end of the stream; read in bounded chunks, so that
    a garbage length prefix cannot make us allocate gigabytes up front."""
    if size <= _CHUNK:
        return stream.read(size)
    parts: list[bytes] = []
    remaining = size
    while remaining:
        part = stream.read(min(remaining, _CHUNK))
        if not part:
            break
        parts.append(part)
        remaining -= len(part)
    return b"".join(parts)


def _decode_frame(data: bytes, where: str, json: _Decode = decode_json) -> Decoded:
    if data.startswith(_ZSTD_FRAME):  # legacy per-message compression
        try:
            data = zstandard.ZstdDecompressor().decompressobj().decompress(data)
        except zstandard.ZstdError as exc:
            raise InputError(f"{where}: corrupt zstd message: {exc}") from None
    # The exporter writes JSON with no leading space. (No lstrip: 0x0A, the first byte of a
    # protobuf message, is a newline, and the length byte after it can be "{".)
    if data[:1] == b"{":
        return json(data, where)
    return decode_protobuf(data, where)


def _skip(stream: IO[bytes], start: int, compression: str) -> int:
    if not compression:
        stream.seek(start)
        return start
    remaining = start
    while remaining:
        chunk = stream.read(min(remaining, _CHUNK))
        if not chunk:
            break
        remaining -= len(chunk)
    return start - remaining


def _unreadable(path: Path, compression: str, exc: BaseException, offset: int = 0) -> InputError:
    if isinstance(exc, EOFError | gzip.BadGzipFile | zlib.error | zstandard.ZstdError):
        kind = "gzip" if compression == ".gz" else "zstd"
        return InputError(f"{path}: corrupt {kind} data after byte {offset}: {exc}")
    return InputError(f"{path}: cannot read: {exc}")


def _decode_or_reject(
    decode: Callable[[bytes, str], Decoded], data: bytes, where: str, location: str
) -> Decoded:
    try:
        return decode(data, where)
    except InputError as exc:
        return Decoded(rejected=[Rejected(location, str(exc).removeprefix(f"{where}: "))])
