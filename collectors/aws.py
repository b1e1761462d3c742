"""AWS clients for collectors, shared: one retry policy, one way to explain a failure.

Credentials come from the standard boto3 chain (environment, profile, instance/task role).
Throttling and 5xx answers are retried by botocore's "standard" mode (exponential backoff with
jitter, a retry quota); what still fails becomes a `CollectorError` that names the source and
the setting to look at.
"""

from __future__ import annotations

import functools
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    EndpointConnectionError,
    NoCredentialsError,
    PartialCredentialsError,
)

from collectors.base import CollectorError

MAX_ATTEMPTS = 5
_DENIED = {"AccessDenied", "AllAccessDisabled", "InvalidAccessKeyId", "SignatureDoesNotMatch"}
_BUSY = {"SlowDown", "Throttling", "ThrottlingException", "RequestLimitExceeded", "503"}


@functools.lru_cache(maxsize=32)
def client(service: str, region: str, endpoint_url: str | None = None, retries: bool = True) -> Any:
    """A client per service, region and endpoint, made once: clients are thread-safe, and
    making one costs a quarter second. Expiring credentials (roles) refresh themselves.
    `retries=False` sends each request once and leaves retrying to the caller (Cost Explorer
    counts its paid calls)."""
    policy = {"max_attempts": MAX_ATTEMPTS} if retries else {"total_max_attempts": 1}
    config = Config(
        retries={"mode": "standard", **policy},
        connect_timeout=10,
        read_timeout=60,
        user_agent_extra="spendguard",
    )
    return boto3.session.Session().client(
        service, region_name=region, endpoint_url=endpoint_url, config=config
    )


def error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def explain(exc: Exception, where: str, setting: str) -> CollectorError:
    """A boto error as a `CollectorError` naming `where` (s3://bucket/prefix) and `setting`."""
    if isinstance(exc, ClientError):
        code = error_code(exc)
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
        if code == "NoSuchBucket":
            return CollectorError(
                f"{where}: the bucket does not exist (NoSuchBucket); fix {setting}.bucket "
                f"(and {setting}.region / {setting}.endpoint_url)"
            )
        if code in _DENIED or status == 403:
            return CollectorError(
                f"{where}: access denied ({code or status}); give the AWS credentials of this "
                f"process s3:ListBucket and s3:GetObject there, or fix {setting}.bucket and "
                f"{setting}.prefix"
            )
        if code in _BUSY or status >= 500:
            return CollectorError(
                f"{where}: S3 still failing ({code or status}) after {MAX_ATTEMPTS} attempts; "
                "the next run resumes from the checkpoint"
            )
        return CollectorError(f"{where}: {code or status}: {exc}; check {setting}")
    if isinstance(exc, NoCredentialsError | PartialCredentialsError):
        return CollectorError(
            f"{where}: no AWS credentials found; set AWS_ACCESS_KEY_ID and "
            "AWS_SECRET_ACCESS_KEY, AWS_PROFILE, or run with an instance or task role"
        )
    if isinstance(exc, EndpointConnectionError):
        return CollectorError(
            f"{where}: cannot reach the S3 endpoint ({exc}); check {setting}.endpoint_url "
            f"and {setting}.region"
        )
    if isinstance(exc, BotoCoreError):
        return CollectorError(f"{where}: {exc}; check {setting}")
    return CollectorError(f"{where}: {type(exc).__name__}: {exc}")
