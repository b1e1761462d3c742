"""Find and read OTLP trace files, streaming, one document at a time.

Encodings by name: `.json` (one `TracesData`/`ExportTraceServiceRequest` document per file) and
`.jsonl` (one per line, the Collector file exporter's `format: json`), each optionally `.gz`.

Every document carries the byte offset just after it, so a collector can checkpoint exactly what
it has loaded and start the next run there. A line without its newline at the end of a file that
may still be growing is left for the next run (`complete=False`), never dropped or half-read.
A line that cannot be decoded becomes a rejected record, and reading goes on.
"""

from __future__ import annotations

import gzip
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, cast

from app.errors import InputError
from app.traces.decoded import Decoded, Rejected
from app.traces.otlp_json import decode_json

SUFFIXES = (".json", ".jsonl", ".json.gz", ".jsonl.gz")


@dataclass(frozen=True, slots=True)
class Document:
    location: str  # where in the file: "document", "line at byte N"
    end_offset: int  # byte offset (of the decompressed stream) just after this document
    decoded: Decoded


def is_trace_file(path: Path) -> bool:
    return path.name.lower().endswith(SUFFIXES)


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


def read_documents(path: Path, *, start: int = 0, complete: bool = True) -> Iterator[Document]:
    """The documents of a trace file from byte `start` on (of the decompressed stream).

    With `complete=False` (a file that may still be written to), a last line without its newline
    is not read: the next run reads it whole. Raises `InputError` only when the file itself
    cannot be read (missing, corrupt compression); bad documents are rejected records.
    """
    name = path.name.lower()
    compressed = name.endswith(".gz")
    if name.removesuffix(".gz").endswith(".jsonl"):
        yield from _read_lines(path, start=start, complete=complete, compressed=compressed)
        return
    if start > 0:
        return  # a single-document file is read whole or not at all
    data = _open(path, compressed).read() if compressed else path.read_bytes()
    yield Document("document", len(data), _decode_or_reject(data, str(path), "document"))


def iter_documents(path: Path) -> Iterator[Decoded]:
    """Just the decoded contents of each document of a complete file."""
    for doc in read_documents(path):
        yield doc.decoded


def _open(path: Path, compressed: bool) -> IO[bytes]:
    if compressed:
        return cast(IO[bytes], gzip.GzipFile(path, "rb"))
    return path.open("rb")


def _read_lines(path: Path, *, start: int, complete: bool, compressed: bool) -> Iterator[Document]:
    offset = 0
    try:
        with _open(path, compressed) as stream:
            if start:
                offset = _skip(stream, start, compressed)
            for line in stream:
                if not line.endswith(b"\n") and not complete:
                    return  # half-written: the writer is still on this line
                line_start = offset
                offset += len(line)
                if not line.strip():
                    continue
                where = f"line at byte {line_start}"
                yield Document(where, offset, _decode_or_reject(line, f"{path}: {where}", where))
    except (OSError, EOFError, zlib.error) as exc:
        if compressed and isinstance(exc, EOFError | gzip.BadGzipFile | zlib.error):
            if not complete and isinstance(exc, EOFError):
                return  # a .gz still being written: read the rest next time
            raise InputError(f"{path}: corrupt gzip data after byte {offset}: {exc}") from None
        raise InputError(f"{path}: cannot read: {exc}") from None


def _skip(stream: IO[bytes], start: int, compressed: bool) -> int:
    if not compressed:
        stream.seek(start)
        return start
    remaining = start
    while remaining:
        chunk = stream.read(min(remaining, 1 << 20))
        if not chunk:
            break
        remaining -= len(chunk)
    return start - remaining


def _decode_or_reject(data: bytes, where: str, location: str) -> Decoded:
    try:
        return decode_json(data, where)
    except InputError as exc:
        return Decoded(rejected=[Rejected(location, str(exc).removeprefix(f"{where}: "))])
