"""Find and read OTLP trace files: `.json` (one document), `.jsonl` (one per line), each
optionally gzip-compressed (`.gz`)."""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator, Sequence
from pathlib import Path

from app.errors import InputError
from app.traces.otlp_json import decode_document, iter_json_lines
from app.traces.spans import Span

SUFFIXES = (".json", ".jsonl", ".json.gz", ".jsonl.gz")


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


def read_text(path: Path) -> str:
    data = path.read_bytes()
    if path.name.lower().endswith(".gz"):
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError) as exc:
            raise InputError(f"{path}: not a valid gzip file ({exc})") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(f"{path}: not UTF-8 text at byte {exc.start}") from None


def iter_documents(path: Path) -> Iterator[list[Span]]:
    """The spans of a file, one list per OTLP document (a whole `.json` file or a line)."""
    text = read_text(path)
    name = path.name.lower().removesuffix(".gz")
    if name.endswith(".jsonl"):
        for _lineno, spans in iter_json_lines(text, str(path)):
            yield spans
        return
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(f"{path}:{exc.lineno}: not valid JSON ({exc.msg})") from None
    yield decode_document(doc, str(path))
