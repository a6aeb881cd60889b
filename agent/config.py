"""Agent configuration: environment variables parsed once into a frozen dataclass.

Every variable, with its type, default and bounds, is defined once in ``sdfleet.agent.settings`` (the
workload builder writes the pod's env from the same table). A missing or invalid variable raises
ConfigError, which ``python -m sdfleet.agent`` turns into exit status 2 with a one-line message naming
the variable.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from sdfleet.agent import settings as s
from sdfleet.agent.contract import COMFYUI, SDWEBUI, Limits
from sdfleet.agent.settings import ConfigError

DEFAULT_SDWEBUI_URL = s.default_api_base_url(SDWEBUI)
DEFAULT_COMFYUI_URL = s.default_api_base_url(COMFYUI)
RUNTIME_TYPES = (SDWEBUI, COMFYUI)
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
_REGION_IN_URL = re.compile(r"sqs[.-]([a-z0-9-]+)\.amazonaws\.com")
_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
_TABLE = re.compile(r"[A-Za-z0-9_.-]{3,255}")
_LOG_GROUP = re.compile(r"[A-Za-z0-9_./#-]{1,512}")


def _d(name: str) -> Any:
    return s.default(name)


@dataclass(frozen=True)
class Config:
    sqs_queue_url: str
    sns_topic_arn: str
    s3_bucket: str
    runtime_type: str
    runtime_name: str
    api_base_url: str
    dynamic_sd_model: bool = _d("DYNAMIC_SD_MODEL")
    callback_when_running: bool = _d("EXP_CALLBACK_WHEN_RUNNING")
    # Set by ``sdfleet sandbox`` only; the webhook Lambda refuses loopback callbacks anyway.
    sandbox_loopback_callbacks: bool = _d("SDFLEET_SANDBOX_LOOPBACK_CALLBACKS")
    log_level: str = _d("LOGLEVEL")
    model_filename: str | None = None
    job_timeout_seconds: float = _d("JOB_TIMEOUT_SECONDS")
    drain_seconds: float = _d("DRAIN_SECONDS")
    heartbeat_seconds: float = _d("HEARTBEAT_SECONDS")
    visibility_extension_seconds: int = _d("VISIBILITY_EXTENSION_SECONDS")
    heartbeat_timeout_seconds: float = _d("HEARTBEAT_TIMEOUT_SECONDS")
    receive_wait_seconds: int = _d("RECEIVE_WAIT_SECONDS")
    output_retries: int = _d("OUTPUT_RETRIES")
    output_retry_base_seconds: float = _d("OUTPUT_RETRY_BASE_SECONDS")
    output_retry_max_seconds: float = _d("OUTPUT_RETRY_MAX_SECONDS")
    max_input_bytes: int = _d("MAX_INPUT_BYTES")
    input_max_total_bytes: int = _d("INPUT_MAX_TOTAL_BYTES")
    input_fetch_timeout: float = _d("INPUT_FETCH_TIMEOUT_SECONDS")
    input_task_timeout: float = _d("INPUT_TASK_TIMEOUT_SECONDS")
    allowed_input_hosts: frozenset[str] = field(default_factory=frozenset)
    input_s3_buckets: frozenset[str] = field(default_factory=frozenset)
    input_connect_timeout: float = _d("INPUT_CONNECT_TIMEOUT_SECONDS")
    input_read_timeout: float = _d("INPUT_READ_TIMEOUT_SECONDS")
    # TASK_LIMITS (camelCase JSON of sdfleet.agent.contract.Limits); missing keys take the defaults.
    task_limits: Limits = field(default_factory=Limits)
    health_port: int | None = _d("HEALTH_PORT")
    otlp_endpoint: str | None = None
    otel_service_name: str | None = None
    server_retries: int = _d("SERVER_RETRIES")
    retry_base_seconds: float = _d("RETRY_BASE_SECONDS")
    retry_max_seconds: float = _d("RETRY_MAX_SECONDS")
    poison_visibility_seconds: int = _d("POISON_VISIBILITY_SECONDS")
    region: str | None = None
    pod_name: str | None = None
    pod_namespace: str | None = None
    pod_deletion_cost: bool = _d("POD_DELETION_COST")
    # The task state table; None: the agent keeps no task state (older stacks, direct use).
    task_table_name: str | None = None
    task_ttl_seconds: int = _d("TASK_TTL_SECONDS")
    comfyui_queue_ahead: bool = _d("COMFYUI_QUEUE_AHEAD")
    node_name: str | None = None
    # None: EMF metric lines go to stdout (sandbox, tests); else shipped to this log group.
    metrics_log_group: str | None = None
    metrics_flush_seconds: float = _d("METRICS_FLUSH_SECONDS")

    @property
    def prefetch_wait_seconds(self) -> int:
        """Long-poll wait while a task is held. A poll still open when the agent dies may
        take the task's message for itself once it is visible again (moto does; SQS may
        deliver into a dropped connection too): ending every such poll before the held
        message can expire (one extension after the last beat) keeps recovery within one
        extension."""
        cap = int(self.visibility_extension_seconds - self.heartbeat_seconds - 1)
        return max(0, min(self.receive_wait_seconds, cap))

    @property
    def service_name(self) -> str:
        """The agent's OpenTelemetry service name (OTEL_SERVICE_NAME, else per runtime)."""
        return self.otel_service_name or f"sdfleet-agent-{self.runtime_name}"


def normalise_api_base_url(runtime_type: str, raw: str | None) -> str:
    """Accept a full URL or a bare ``host:port``; sdwebui URLs end in ``/sdapi/v1/``."""
    if raw is None:
        return s.default_api_base_url(runtime_type)
    url = raw if "://" in raw else f"http://{raw}"
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(
            "API_BASE_URL", f"{raw!r} is not an http(s) URL or host:port (e.g. 127.0.0.1:8080)"
        )
    try:
        parts.port  # noqa: B018 - validates the port
    except ValueError:
        raise ConfigError("API_BASE_URL", f"{raw!r} has an invalid port") from None
    base = f"{parts.scheme}://{parts.netloc}{parts.path}"
    if runtime_type == SDWEBUI:
        if parts.path in ("", "/"):
            base = f"{parts.scheme}://{parts.netloc}/sdapi/v1/"
        return base if base.endswith("/") else base + "/"
    return base.rstrip("/")


def _identity(env: Mapping[str, str]) -> dict[str, Any]:
    """The runtime's queue, topic, bucket, type and name (all required)."""
    runtime_type = s.parse(env, "RUNTIME_TYPE")
    if runtime_type not in RUNTIME_TYPES:
        raise ConfigError(
            "RUNTIME_TYPE", f"{runtime_type!r} is not one of: {', '.join(RUNTIME_TYPES)}"
        )
    queue_url = s.parse(env, "SQS_QUEUE_URL")
    if not queue_url.startswith(("https://", "http://")):
        raise ConfigError("SQS_QUEUE_URL", f"{queue_url!r} is not an http(s) queue URL")
    topic = s.parse(env, "SNS_TOPIC_ARN")
    if not topic.startswith("arn:"):
        raise ConfigError("SNS_TOPIC_ARN", f"{topic!r} is not an ARN (arn:aws:sns:...)")
    bucket = s.parse(env, "S3_BUCKET")
    if not _BUCKET.fullmatch(bucket):
        raise ConfigError("S3_BUCKET", f"{bucket!r} is not a valid S3 bucket name")
    return {
        "runtime_type": runtime_type,
        "sqs_queue_url": queue_url,
        "sns_topic_arn": topic,
        "s3_bucket": bucket,
        "runtime_name": s.parse(env, "RUNTIME_NAME"),
    }


def _visibility(env: Mapping[str, str]) -> dict[str, Any]:
    heartbeat = s.parse(env, "HEARTBEAT_SECONDS")
    extension = s.parse(env, "VISIBILITY_EXTENSION_SECONDS")
    if extension < 2 * heartbeat:
        raise ConfigError(
            "VISIBILITY_EXTENSION_SECONDS",
            f"{extension} must be greater than HEARTBEAT_SECONDS ({heartbeat:g}), at least "
            "twice it, so a held message survives one missed heartbeat",
        )
    timeout = s.parse(env, "HEARTBEAT_TIMEOUT_SECONDS")
    # A hung beat lasts up to connect + read timeout; it must end, and leave time to retry,
    # before the message it failed to extend expires.
    if heartbeat + 2 * timeout >= extension:
        raise ConfigError(
            "HEARTBEAT_TIMEOUT_SECONDS",
            f"{timeout:g} is too long: HEARTBEAT_SECONDS ({heartbeat:g}) plus a timed-out beat "
            f"(connect + read, 2 x {timeout:g}) must stay under VISIBILITY_EXTENSION_SECONDS "
            f"({extension})",
        )
    return {
        "heartbeat_seconds": heartbeat,
        "visibility_extension_seconds": extension,
        "heartbeat_timeout_seconds": timeout,
    }


def _task_limits(env: Mapping[str, str]) -> Limits:
    value = s.parse(env, "TASK_LIMITS")
    try:
        return Limits.from_json(value)
    except (TypeError, ValueError) as exc:
        raise ConfigError("TASK_LIMITS", f"{value!r}: {exc}") from None


def _region(env: Mapping[str, str], queue_url: str) -> str | None:
    region: str | None = s.parse(env, "AWS_REGION") or s.parse(env, "AWS_DEFAULT_REGION")
    if region is None:
        match = _REGION_IN_URL.search(queue_url)
        region = match.group(1) if match else None
    return region


def _task_table(env: Mapping[str, str]) -> str | None:
    name: str | None = s.parse(env, "TASK_TABLE_NAME")
    if name is not None and not _TABLE.fullmatch(name):
        raise ConfigError(
            "TASK_TABLE_NAME", f"{name!r} is not a DynamoDB table name (3-255 of A-Z a-z 0-9 _ . -)"
        )
    return name


def _log_group(env: Mapping[str, str]) -> str | None:
    name: str | None = s.parse(env, "METRICS_LOG_GROUP")
    if name is not None and not _LOG_GROUP.fullmatch(name):
        raise ConfigError(
            "METRICS_LOG_GROUP",
            f"{name!r} is not a CloudWatch Logs group name (1-512 of A-Z a-z 0-9 _ - . / #)",
        )
    return name


def load_config(env: Mapping[str, str]) -> Config:
    identity = _identity(env)
    level = s.parse(env, "LOGLEVEL").upper()
    if level not in LOG_LEVELS:
        raise ConfigError("LOGLEVEL", f"{level!r} is not one of: {', '.join(LOG_LEVELS)}")
    plain = {
        name.lower(): s.parse(env, name)
        for name in (
            "DYNAMIC_SD_MODEL",
            "MODEL_FILENAME",
            "JOB_TIMEOUT_SECONDS",
            "DRAIN_SECONDS",
            "RECEIVE_WAIT_SECONDS",
            "OUTPUT_RETRIES",
            "OUTPUT_RETRY_BASE_SECONDS",
            "OUTPUT_RETRY_MAX_SECONDS",
            "MAX_INPUT_BYTES",
            "INPUT_MAX_TOTAL_BYTES",
            "HEALTH_PORT",
            "SERVER_RETRIES",
            "RETRY_BASE_SECONDS",
            "RETRY_MAX_SECONDS",
            "POISON_VISIBILITY_SECONDS",
            "POD_NAME",
            "POD_NAMESPACE",
            "POD_DELETION_COST",
            "TASK_TTL_SECONDS",
            "COMFYUI_QUEUE_AHEAD",
            "NODE_NAME",
            "METRICS_FLUSH_SECONDS",
            "OTEL_SERVICE_NAME",
        )
    }
    return Config(
        **identity,
        **plain,
        **_visibility(env),
        api_base_url=normalise_api_base_url(identity["runtime_type"], s.parse(env, "API_BASE_URL")),
        callback_when_running=s.parse(env, "EXP_CALLBACK_WHEN_RUNNING"),
        sandbox_loopback_callbacks=s.parse(env, "SDFLEET_SANDBOX_LOOPBACK_CALLBACKS"),
        log_level=level,
        input_fetch_timeout=s.parse(env, "INPUT_FETCH_TIMEOUT_SECONDS"),
        input_task_timeout=s.parse(env, "INPUT_TASK_TIMEOUT_SECONDS"),
        allowed_input_hosts=frozenset(h.lower() for h in s.parse(env, "ALLOWED_INPUT_HOSTS")),
        input_s3_buckets=frozenset(s.parse(env, "INPUT_S3_BUCKETS")),
        input_connect_timeout=s.parse(env, "INPUT_CONNECT_TIMEOUT_SECONDS"),
        input_read_timeout=s.parse(env, "INPUT_READ_TIMEOUT_SECONDS"),
        task_limits=_task_limits(env),
        otlp_endpoint=s.parse(env, "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
        or s.parse(env, "OTEL_EXPORTER_OTLP_ENDPOINT"),
        region=_region(env, identity["sqs_queue_url"]),
        task_table_name=_task_table(env),
        metrics_log_group=_log_group(env),
    )


__all__ = ["COMFYUI", "SDWEBUI", "Config", "ConfigError", "load_config", "normalise_api_base_url"]
