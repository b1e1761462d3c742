"""Where a `focus` export's files are (S3, or a local copy of it) and which files make each of
its billing periods (the manifest's `dataFiles`, else every data file under the period), with a
fingerprint of their keys and ETags (or mtimes) that tells `collectors.focus` what changed.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from botocore.exceptions import BotoCoreError, ClientError

from app.settings import FocusCollectorConfig
from collectors import aws
from collectors.base import CollectorError

log = logging.getLogger("spendguard.collectors")

_DATA = re.compile(r"(?:^|/)(?P<export>[^/]+)/data/BILLING_PERIOD=(?P<period>\d{4}-\d{2})/.+")
_MANIFEST = re.compile(
    r"(?:^|/)(?P<export>[^/]+)/metadata/BILLING_PERIOD=(?P<period>\d{4}-\d{2})/[^/]*Manifest\.json$"
)
_DATA_SUFFIXES = (".parquet", ".csv", ".csv.gz", ".gz")


@dataclass(frozen=True, slots=True)
class Period:
    """One billing period of one export: its data files and their fingerprint."""

    export: str
    period: str  # YYYY-MM
    files: tuple[str, ...]
    fingerprint: str

    @property
    def key(self) -> str:
        return f"{self.export}/{self.period}"


class Store:
    where: str

    def objects(self) -> Iterator[tuple[str, str]]:
        """(key relative to the prefix, ETag or mtime+size) of every object."""
        raise NotImplementedError

    def read(self, key: str) -> bytes:
        raise NotImplementedError

    def periods(self) -> list[Period]:
        data: dict[tuple[str, str], dict[str, str]] = {}
        manifests: dict[tuple[str, str], tuple[str, str]] = {}
        for key, tag in self.objects():
            if m := _MANIFEST.search(key):
                manifests[(m["export"], m["period"])] = (key, tag)
            elif (m := _DATA.search(key)) and key.lower().endswith(_DATA_SUFFIXES):
                data.setdefault((m["export"], m["period"]), {})[key] = tag
        found = []
        for (export, period), files in sorted(data.items(), key=lambda kv: (kv[0][1], kv[0][0])):
            chosen = files
            if (export, period) in manifests:
                listed = self._manifest_files(manifests[(export, period)][0])
                if listed is not None:
                    chosen = {k: t for k, t in files.items() if any(k.endswith(x) for x in listed)}
            marks = sorted(chosen.items())
            digest = hashlib.sha256(json.dumps(marks).encode()).hexdigest()[:32]
            found.append(Period(export, period, tuple(k for k, _ in marks), digest))
        return found

    def _manifest_files(self, key: str) -> list[str] | None:
        """The data files a manifest lists, as key suffixes (bucket-less), or None if unreadable."""
        try:
            manifest = json.loads(self.read(key))
            files = [str(f) for f in manifest["dataFiles"]]
        except (ValueError, KeyError, TypeError):
            log.warning("focus: %s: manifest not understood; reading every data file", key)
            return None
        return [re.sub(r"^s3://[^/]+/", "", f).split("/data/", 1)[-1] for f in files]


class _S3Store(Store):
    def __init__(self, config: FocusCollectorConfig) -> None:
        self.bucket = config.bucket or ""
        self.prefix = config.prefix
        self.where = f"s3://{self.bucket}/{self.prefix}"
        self.client = aws.client("s3", config.region, config.endpoint_url)

    def objects(self) -> Iterator[tuple[str, str]]:
        try:
            paginator = self.client.get_paginator("list_objects_v2")
            for page in paginator.paginate(Bucket=self.bucket, Prefix=self.prefix):
                for obj in page.get("Contents", []):
                    yield obj["Key"], str(obj.get("ETag", "")) + f":{obj.get('Size', 0)}"
        except (ClientError, BotoCoreError) as exc:
            raise aws.explain(exc, self.where, "collectors.focus") from None

    def read(self, key: str) -> bytes:
        try:
            body: bytes = self.client.get_object(Bucket=self.bucket, Key=key)["Body"].read()
        except (ClientError, BotoCoreError) as exc:
            raise aws.explain(exc, f"s3://{self.bucket}/{key}", "collectors.focus") from None
        return body


class _FolderStore(Store):
    def __init__(self, path: Path) -> None:
        self.path = path
        self.where = str(path)
        if not path.is_dir():
            raise CollectorError(
                f"{path}: no such folder; fix collectors.focus.path (a local copy of the export)"
            )

    def objects(self) -> Iterator[tuple[str, str]]:
        for file in sorted(self.path.rglob("*")):
            if file.is_file():
                stat = file.stat()
                yield file.relative_to(self.path).as_posix(), f"{stat.st_mtime_ns}:{stat.st_size}"

    def read(self, key: str) -> bytes:
        return (self.path / key).read_bytes()


def store_of(config: FocusCollectorConfig) -> Store:
    if config.path is not None:
        return _FolderStore(config.path)
    return _S3Store(config)
