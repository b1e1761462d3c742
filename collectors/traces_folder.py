"""The `traces` collector's folder source: the OpenTelemetry Collector file exporter's output.

Checkpoint (JSON): `{"files": {path: {offset, size, mtime_ns, inode, dev, done, head,
head_len}}}` — per file, the byte offset (of the decompressed stream) up to which it is stored,
what the file looked like then, and a fingerprint of its first bytes.

- A plain `.jsonl` (or length-prefixed `.pb`) file may still be growing: each run reads only
  the bytes after `offset`, and a last line (message) still being written is left for the next
  run. A rotated file (the exporter's `traces-2025-11-20T10-00-00.000.jsonl`) is finished: its
  last line is read whatever it is.
- Compressed (`.gz`, `.zst`) and single-document (`.json`, `.binpb`) files are read whole once
  (`done`), not in the `SETTLE_SECONDS` after they last changed (they may be mid-write), and
  again only if they change: from the start, or from `offset` when a stream only grew.
- A file renamed by rotation keeps its checkpoint (same inode and first bytes), so only its
  tail is read. A file truncated or replaced (smaller than `offset`, another inode, other
  first bytes) is read again from byte 0; the spans already stored are skipped by their ids.
- A file that cannot be decoded at all (corrupt gzip) is quarantined and marked done.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import NamedTuple

from app import ingest
from app.errors import InputError
from app.progress import Progress
from app.traces.decoded import Decoded, Rejected
from app.traces.files import Document, appendable, discover, read_documents
from collectors.base import CollectorError

log = logging.getLogger("spendguard.collectors.traces")

BATCH_SPANS = ingest.BATCH_SPANS  # spans per transaction (a document is never split)
HEAD_BYTES = 1024
SETTLE_SECONDS = 5.0
# lumberjack (the file exporter's rotation) renames `traces.jsonl` to `traces-<time>.jsonl`.
ROTATED = re.compile(r"-\d{4}-\d{2}-\d{2}T\d{2}-\d{2}-\d{2}(\.\d+)?\.\w+(\.gz|\.zst)?$")


class SourceBatch(NamedTuple):
    decoded: Decoded
    checkpoint: str  # the source's checkpoint once `decoded` is stored
    source: str  # what to name as the source of quarantined records


def batches(documents: Iterable[Document], seen: Callable[[Document], None]) -> Iterator[Decoded]:
    """`app.ingest.batched`, calling `seen` as each document joins a batch. `batched` yields a
    batch right after adding its last document, so when a batch comes out, `seen` has been
    called for exactly the documents of this batch and the earlier ones."""

    def tap() -> Iterator[Document]:
        for doc in documents:
            seen(doc)
            yield doc

    return ingest.batched(tap(), BATCH_SPANS)


@dataclass(slots=True)
class FileState:
    offset: int
    size: int
    mtime_ns: int
    inode: int
    dev: int
    done: bool = False
    head: str = ""
    head_len: int = 0


def read_folder(
    folder: Path,
    setting: str,
    checkpoint: str | None,
    since: datetime | None,
    bar: Callable[[int], Progress],
) -> Iterator[SourceBatch]:
    if not folder.is_dir():
        raise CollectorError(
            f"folder {folder} does not exist or is not a directory; fix {setting}.path "
            "(the file exporter's directory) or create it"
        )
    try:
        files = discover([folder])
    except (InputError, OSError) as exc:
        raise CollectorError(f"cannot list folder {folder}: {exc}; check {setting}.path") from None
    old = _parse(checkpoint)
    state: dict[str, FileState] = {}
    plan: list[tuple[Path, int]] = []
    gone = {
        (s.dev, s.inode): s
        for p, s in old.items()
        if not _same_file(Path(p), s)  # moved away (rotated) or deleted: its state may follow
    }
    since_ns = int(since.timestamp() * 1e9) if since else None
    for path in files:
        try:
            st = path.stat()
            start, entry = _plan(path, st, old.get(str(path)), gone, since_ns)
            if start is not None:
                with path.open("rb"):  # unreadable (permissions) fails the source, not the file
                    plan.append((path, start))
        except FileNotFoundError:
            continue  # rotated away since the listing: seen under its new name next time
        except OSError as exc:
            raise CollectorError(f"cannot read {path}: {exc}; check {setting}.path") from None
        state[str(path)] = entry
    total = sum(max(0, state[str(p)].size - start) for p, start in plan)
    last = _dump(old)
    with bar(total) as progress:
        for path, start in plan:
            entry = state[str(path)]
            for decoded in _read_file(path, start, entry):
                last = _dump(state)
                yield SourceBatch(decoded, last, str(path))
            progress.advance(max(0, entry.size - start))
    if _dump(state) != last:  # finished files, new fingerprints, forgotten deleted files
        yield SourceBatch(Decoded(), _dump(state), str(folder))


def _plan(
    path: Path,
    st: os.stat_result,
    prev: FileState | None,
    gone: dict[tuple[int, int], FileState],
    since_ns: int | None,
) -> tuple[int | None, FileState]:
    """Where to start reading (None: nothing to read now) and the file's state for this run."""
    if prev is None or (prev.dev, prev.inode) != (st.st_dev, st.st_ino):
        moved = gone.get((st.st_dev, st.st_ino))  # renamed by rotation: same inode, same start
        prev = moved if moved and _head(path, moved.head_len) == moved.head else None
    if prev is not None:
        prev = replace(prev, inode=st.st_ino, dev=st.st_dev)
    now = FileState(0, st.st_size, st.st_mtime_ns, st.st_ino, st.st_dev)
    again = since_ns is not None and st.st_mtime_ns >= since_ns  # --since: read it all again
    whole = _whole(path)
    changed = prev is None or (prev.size, prev.mtime_ns) != (now.size, now.mtime_ns)
    finished = prev is not None and (prev.done or (not whole and prev.offset >= now.size))
    if prev is not None and finished and not again and not changed:
        return None, prev  # the common case: nothing changed since the last run
    if whole and not again and time.time() - st.st_mtime_ns / 1e9 < SETTLE_SECONDS:
        return None, prev or now  # may still be being written: next run
    now.head_len = min(now.size, HEAD_BYTES)
    now.head = _head(path, now.head_len)
    if again or prev is None:
        return 0, now  # new, or --since
    same_start = _head(path, prev.head_len) == prev.head
    if whole and changed and not (_stream(path) and now.size > prev.size and same_start):
        return 0, now  # a whole file changed since it was read (unless it only grew)
    if not whole and (now.size < prev.offset or not same_start):
        return 0, now  # truncated, or replaced in place by other content
    now.offset = prev.offset  # grown, or a run stopped part-way through it
    return prev.offset, now


def _read_file(path: Path, start: int, entry: FileState) -> Iterator[Decoded]:
    growing = appendable(path) and not _rotated(path)
    entry.offset = start

    def seen(doc: Document) -> None:
        entry.offset = doc.end_offset

    try:
        yield from batches(read_documents(path, start=start, complete=not growing), seen)
    except InputError as exc:
        log.warning("traces: %s", exc)
        # The file cannot be decoded further: quarantine it and move past it.
        reason = str(exc).removeprefix(f"{path}: ")
        yield Decoded(rejected=[Rejected(f"file after byte {entry.offset}", reason)])
        entry.done = True
        return
    entry.done = _whole(path)


def _whole(path: Path) -> bool:
    """Read whole, once: compressed files and single-document files."""
    return not appendable(path)


def _stream(path: Path) -> bool:
    """Documents one after another (lines, length-prefixed messages), compressed or not: a
    reader can resume at a document's end offset."""
    return path.name.lower().removesuffix(".gz").removesuffix(".zst").endswith((".jsonl", ".pb"))


def _rotated(path: Path) -> bool:
    return ROTATED.search(path.name) is not None


def _same_file(path: Path, state: FileState) -> bool:
    try:
        st = path.stat()
    except OSError:
        return False
    return (st.st_dev, st.st_ino) == (state.dev, state.inode)


def _head(path: Path, length: int) -> str:
    if length <= 0:
        return ""
    with path.open("rb") as f:
        data = f.read(length)
    return hashlib.sha256(data).hexdigest()[:32] if len(data) == length else "short"


def _parse(checkpoint: str | None) -> dict[str, FileState]:
    if not checkpoint:
        return {}
    try:
        files = json.loads(checkpoint)["files"]
        return {path: FileState(**entry) for path, entry in files.items()}
    except (ValueError, KeyError, TypeError) as exc:
        log.warning("traces: unreadable folder checkpoint (%s); reading every file again", exc)
        return {}


def _dump(state: dict[str, FileState]) -> str:
    return json.dumps({"files": {p: asdict(s) for p, s in state.items()}}, sort_keys=True)
