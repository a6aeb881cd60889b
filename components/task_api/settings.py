"""The function's environment, and the AWS clients it reuses across invocations.

Environment (set by ``sdfleet.components.api_ingress``):

- ``INPUT_TOPIC_ARN``: the SNS topic tasks are published to.
- ``OUTPUT_BUCKET``: the results bucket (offloaded requests, presigned result URLs).
- ``RUNTIMES``: the runtime catalogue tasks are validated against.
- ``TASK_TABLE_NAME``: the task table (``sdfleet.agent.task_state``).
- ``TASK_TTL_SECONDS``: how long records are kept (default 7 days).
- ``STATUS_URL_EXPIRY_SECONDS``: lifetime of presigned result URLs (default 900, kept within
  60-43200).
- ``SDFLEET_SANDBOX_LOOPBACK_CALLBACKS``: ``1`` only in ``sdfleet sandbox``, which runs this
  handler in its own process: accept callbacks to 127.0.0.1/::1/localhost
  (``contract_callback.parse_callback(loopback=True)``). ``api_ingress`` never sets it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import boto3
from botocore.config import Config

from sdfleet.agent import contract
from sdfleet.agent.task_state import StateRetryPolicy, TaskStore
from sdfleet.agent.task_state_schema import DEFAULT_TTL_SECONDS

DEFAULT_URL_EXPIRY_SECONDS = 900
MIN_URL_EXPIRY_SECONDS = 60
MAX_URL_EXPIRY_SECONDS = 43200
# API Gateway gives up after 29 s; fail fast enough to answer with our own error.
_BOTO_CONFIG = Config(
    connect_timeout=3,
    read_timeout=8,
    retries={"max_attempts": 3, "mode": "standard"},
)
# Presigned URLs must be SigV4 (required in newer regions and for SSE-KMS objects).
_S3_CONFIG = _BOTO_CONFIG.merge(Config(signature_version="s3v4"))
# The table sits in front of every request: short timeouts, and the store's own retries
# bounded well inside the function's 15 s.
_DYNAMODB_CONFIG = Config(
    connect_timeout=2, read_timeout=3, retries={"max_attempts": 2, "mode": "standard"}
)
LOOPBACK_ENV = "SDFLEET_SANDBOX_LOOPBACK_CALLBACKS"
TABLE_RETRY = StateRetryPolicy(attempts=3, base_delay=0.05, max_delay=0.5, budget_seconds=2.0)


class ConfigError(Exception):
    """The function's environment is broken: a deployment error, not bad input."""


@dataclass(frozen=True)
class Settings:
    topic_arn: str
    bucket: str
    runtimes: tuple[contract.RuntimeInfo, ...]
    region: str | None
    table_name: str
    ttl_seconds: int
    url_expiry_seconds: int
    # The sandbox's loopback callbacks (module docstring); False in every deployed stack.
    loopback_callbacks: bool = False


_settings: Settings | None = None
_clients: dict[str, Any] = {}


def reset() -> None:
    """Forget cached settings and clients (tests change the environment between cases)."""
    global _settings
    _settings = None
    _clients.clear()


def _int_env(name: str, default: int) -> int:
    raw = os.environ.get(name, "")
    if not raw:
        return default
    try:
        return int(raw)
    except ValueError as exc:
        raise ConfigError(f"{name} is not an integer") from exc


def load() -> Settings:
    global _settings
    if _settings is not None:
        return _settings
    topic_arn = os.environ.get("INPUT_TOPIC_ARN", "")
    bucket = os.environ.get("OUTPUT_BUCKET", "")
    table_name = os.environ.get("TASK_TABLE_NAME", "")
    arn_parts = topic_arn.split(":")
    if len(arn_parts) < 6 or arn_parts[0] != "arn" or arn_parts[2] != "sns":
        raise ConfigError("INPUT_TOPIC_ARN is missing or not an SNS topic ARN")
    if not bucket:
        raise ConfigError("OUTPUT_BUCKET is missing")
    if not table_name:
        raise ConfigError("TASK_TABLE_NAME is missing")
    try:
        runtimes = contract.load_runtimes(os.environ.get("RUNTIMES", ""))
    except (ValueError, TypeError, KeyError) as exc:
        raise ConfigError(f"RUNTIMES is invalid: {exc}") from exc
    ttl_seconds = _int_env("TASK_TTL_SECONDS", DEFAULT_TTL_SECONDS)
    if ttl_seconds <= 0:
        raise ConfigError("TASK_TTL_SECONDS must be positive")
    expiry = _int_env("STATUS_URL_EXPIRY_SECONDS", DEFAULT_URL_EXPIRY_SECONDS)
    expiry = min(MAX_URL_EXPIRY_SECONDS, max(MIN_URL_EXPIRY_SECONDS, expiry))
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or arn_parts[3]
    # Cached only once valid: a broken environment is reported on every request.
    _settings = Settings(
        topic_arn=topic_arn,
        bucket=bucket,
        runtimes=tuple(runtimes),
        region=region or None,
        table_name=table_name,
        ttl_seconds=ttl_seconds,
        url_expiry_seconds=expiry,
        loopback_callbacks=os.environ.get(LOOPBACK_ENV) == "1",
    )
    return _settings


def sns(settings: Settings) -> Any:
    if "sns" not in _clients:
        _clients["sns"] = boto3.client("sns", region_name=settings.region, config=_BOTO_CONFIG)
    return _clients["sns"]


def s3(settings: Settings) -> Any:
    if "s3" not in _clients:
        _clients["s3"] = boto3.client("s3", region_name=settings.region, config=_S3_CONFIG)
    return _clients["s3"]


def dynamodb(settings: Settings) -> Any:
    if "dynamodb" not in _clients:
        _clients["dynamodb"] = boto3.client(
            "dynamodb", region_name=settings.region, config=_DYNAMODB_CONFIG
        )
    return _clients["dynamodb"]


def store(settings: Settings) -> TaskStore:
    return TaskStore(
        dynamodb(settings), settings.table_name, ttl_seconds=settings.ttl_seconds, retry=TABLE_RETRY
    )
