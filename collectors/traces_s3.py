"""The `traces` collector's S3 source: objects the Collector's awss3exporter writes.

Keys: `[prefix/]year=YYYY/month=MM/day=DD/hour=HH/minute=MM/<file_prefix>traces_<unique>.json`
(`otlp_json`) or `.binpb` (`otlp_proto`), optionally `.gz`: one whole document per object, and
keys sort by the minute they were written in.

Checkpoint (JSON): `{"last_key": …, "recent": [keys…]}` — the greatest key stored, and the keys
stored within `LAG` of its minute. Objects can appear late or out of order within a few
minutes, so each run lists again from the partition `LAG` before `last_key`'s minute
(`StartAfter`), skips the keys in `recent`, and loads the others: a late object is picked up,
a stored one is not read twice. `--since D` lists from D's `year=…/month=…/day=…/` partition.
Keys without the partition layout fall back to listing after `last_key` (no lag window).
"""

from __future__ import annotations

import gzip
import json
import logging
import re
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from app.errors import InputError
from app.progress import Progress
from app.settings import S3Source
from app.traces.decoded import Decoded, Rejected
from app.traces.files import Document
from app.traces.otlp_json import decode_json
from app.traces.otlp_proto import decode_protobuf
from collectors import aws
from collectors.traces_folder import SourceBatch, batches

log = logging.getLogger("spendguard.collectors.traces")

LAG = timedelta(minutes=10)
PARTITION = re.compile(r"year=(\d{4})/month=(\d{2})/day=(\d{2})/hour=(\d{2})/minute=(\d{2})/")
MINUTE = "year=%Y/month=%m/day=%d/hour=%H/minute=%M/"
DAY = "year=%Y/month=%m/day=%d/"
OBJECT = re.compile(r"traces[^/]*\.(json|binpb)(\.gz)?$", re.IGNORECASE)


@dataclass(slots=True)
class S3State:
    last_key: str | None = None
    recent: set[str] = field(default_factory=set)

    def stored(self, key: str) -> None:
        self.recent.add(key)
        if self.last_key is None or key > self.last_key:
            self.last_key = key
        floor = lag_floor(self.last_key)  # listing starts after it: older keys are not seen
        self.recent = {k for k in self.recent if k > floor}

    def dump(self) -> str:
        return json.dumps({"last_key": self.last_key, "recent": sorted(self.recent)})


def lag_floor(last_key: str) -> str:
    """The `StartAfter` key: the partition `LAG` before `last_key`'s minute."""
    match = PARTITION.search(last_key)
    if match is None:
        return last_key
    year, month, day, hour, minute = (int(g) for g in match.groups())
    then = datetime(year, month, day, hour, minute, tzinfo=UTC) - LAG
    return last_key[: match.start()] + then.strftime(MINUTE)


def read_s3(
    source: S3Source,
    setting: str,
    checkpoint: str | None,
    since: datetime | None,
    bar: Callable[[int], Progress],
) -> Iterator[SourceBatch]:
    where = f"s3://{source.bucket}/{source.prefix}"
    s3 = aws.client("s3", source.region, source.endpoint_url)
    state = _parse(checkpoint)
    base = source.prefix.rstrip("/") + "/" if source.prefix else ""
    if since is not None:
        start_after: str | None = base + since.astimezone(UTC).strftime(DAY)
    else:
        start_after = lag_floor(state.last_key) if state.last_key else None
    listed = [
        (key, size)
        for key, size in _list(s3, source.bucket, base, start_after, where, setting)
        if key not in state.recent and OBJECT.search(key)
    ]
    with bar(sum(size for _, size in listed)) as progress:

        def documents() -> Iterator[Document]:
            for key, size in listed:
                data = _get(s3, source.bucket, key, where, setting)
                decoded = Decoded() if data is None else decode_object(key, data)
                yield Document(key, size, decoded)

        def seen(doc: Document) -> None:
            state.stored(doc.location)
            progress.advance(doc.end_offset)

        for decoded in batches(documents(), seen):
            yield SourceBatch(decoded, state.dump(), where)


def decode_object(key: str, data: bytes) -> Decoded:
    """One object's spans; anything undecodable becomes a rejected record named by its key."""
    name = key.lower()
    try:
        if name.endswith(".gz"):
            data = gzip.decompress(data)
            name = name.removesuffix(".gz")
        decode = decode_json if name.endswith(".json") else decode_protobuf
        decoded = decode(data, key)
    except (OSError, EOFError, zlib.error) as exc:
        decoded = Decoded(rejected=[Rejected("object", f"corrupt gzip data: {exc}")])
    except InputError as exc:
        decoded = Decoded(rejected=[Rejected("object", str(exc).removeprefix(f"{key}: "))])
    # Many objects share one quarantine source (the prefix): the key makes locations unique.
    decoded.rejected[:] = [replace(r, location=f"{key}: {r.location}") for r in decoded.rejected]
    return decoded


def _list(
    s3: Any, bucket: str, prefix: str, start_after: str | None, where: str, setting: str
) -> Iterator[tuple[str, int]]:
    params = {"Bucket": bucket, "Prefix": prefix}
    if start_after:
        params["StartAfter"] = start_after
    try:
        for page in s3.get_paginator("list_objects_v2").paginate(**params):
            for obj in page.get("Contents", []):
                yield obj["Key"], int(obj.get("Size", 0))
    except (ClientError, BotoCoreError) as exc:
        raise aws.explain(exc, where, setting) from None


def _get(s3: Any, bucket: str, key: str, where: str, setting: str) -> bytes | None:
    try:
        return bytes(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
    except ClientError as exc:
        if aws.error_code(exc) in {"NoSuchKey", "404"}:
            log.info("traces: %s/%s was deleted before it could be read; skipped", where, key)
            return None
        raise aws.explain(exc, f"{where} ({key})", setting) from None
    except BotoCoreError as exc:
        raise aws.explain(exc, f"{where} ({key})", setting) from None


def _parse(checkpoint: str | None) -> S3State:
    if not checkpoint:
        return S3State()
    try:
        raw = json.loads(checkpoint)
        return S3State(raw["last_key"], set(raw["recent"]))
    except (ValueError, KeyError, TypeError) as exc:
        log.warning("traces: unreadable S3 checkpoint (%s); listing the whole prefix again", exc)
        return S3State()
