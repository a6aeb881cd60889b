"""Agent configuration: environment variables parsed once into a frozen dataclass.

Names are compatible with the reference "Stable Diffusion on EKS" queue agent; the new ones have
documented defaults (see the README, "The queue agent"). A missing or invalid variable raises ConfigError, which
``python -m agent`` turns into exit status 2 with a one-line message naming the variable.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from agent.contract import COMFYUI, RUNTIME_TYPES, SDWEBUI

DEFAULT_SDWEBUI_URL = "http://localhost:8080/sdapi/v1/"
DEFAULT_COMFYUI_URL = "http://localhost:8080"
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off", "")
_REGION_IN_URL = re.compile(r"sqs[.-]([a-z0-9-]+)\.amazonaws\.com")


class ConfigError(ValueError):
    """An environment variable is missing or invalid; ``name`` is the variable."""

    def __init__(self, name: str, message: str) -> None:
        super().__init__(f"{name}: {message}")
        self.name = name


@dataclass(frozen=True)
class Config:
    sqs_queue_url: str
    sns_topic_arn: str
    s3_bucket: str
    runtime_type: str
    runtime_name: str
    api_base_url: str
    dynamic_sd_model: bool = False
    callback_when_running: bool = False
    log_level: str = "INFO"
    model_filename: str | None = None
    job_timeout_seconds: float = 600.0
    drain_seconds: float = 90.0
    heartbeat_seconds: float = 20.0
    visibility_extension_seconds: int = 60
    receive_wait_seconds: int = 20
    max_input_bytes: int = 20 * 1024 * 1024
    allowed_input_hosts: frozenset[str] = field(default_factory=frozenset)
    input_connect_timeout: float = 5.0
    input_read_timeout: float = 30.0
    health_port: int | None = 8081
    otlp_endpoint: str | None = None
    server_retries: int = 3
    retry_base_seconds: float = 0.5
    retry_max_seconds: float = 10.0
    poison_visibility_seconds: int = 1
    region: str | None = None

    @property
    def runtime_label(self) -> str:
        return f"{self.runtime_type}/{self.runtime_name}"


def _str(env: Mapping[str, str], name: str, default: str | None = None) -> str | None:
    value = env.get(name)
    if value is None or not value.strip():
        return default
    return value.strip()


def _required(env: Mapping[str, str], name: str, hint: str) -> str:
    value = _str(env, name)
    if value is None:
        raise ConfigError(name, f"is required ({hint})")
    return value


def _bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name)
    if raw is None:
        return default
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ConfigError(name, f"{raw!r} is not a boolean; use true/false, 1/0, yes/no or on/off")


def _number(
    env: Mapping[str, str],
    name: str,
    default: float,
    *,
    minimum: float,
    maximum: float | None = None,
    integer: bool = False,
) -> float:
    raw = _str(env, name)
    if raw is None:
        return default
    try:
        value = float(int(raw)) if integer else float(raw)
    except ValueError:
        kind = "an integer" if integer else "a number"
        raise ConfigError(name, f"{raw!r} is not {kind}") from None
    if value != value or value < minimum or (maximum is not None and value > maximum):
        upper = f" and at most {maximum:g}" if maximum is not None else ""
        raise ConfigError(name, f"{raw!r} is out of range; must be at least {minimum:g}{upper}")
    return value


def normalise_api_base_url(runtime_type: str, raw: str | None) -> str:
    """Accept a full URL or a bare ``host:port``; sdwebui URLs end in ``/sdapi/v1/``."""
    if raw is None:
        return DEFAULT_SDWEBUI_URL if runtime_type == SDWEBUI else DEFAULT_COMFYUI_URL
    url = raw if "://" in raw else f"http://{raw}"
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(
            "API_BASE_URL", f"{raw!r} is not an http(s) URL or host:port (e.g. localhost:8080)"
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


def load_config(env: Mapping[str, str]) -> Config:
    runtime_type = _required(env, "RUNTIME_TYPE", f"one of: {', '.join(RUNTIME_TYPES)}")
    if runtime_type not in RUNTIME_TYPES:
        raise ConfigError(
            "RUNTIME_TYPE", f"{runtime_type!r} is not one of: {', '.join(RUNTIME_TYPES)}"
        )
    queue_url = _required(env, "SQS_QUEUE_URL", "the runtime's SQS queue URL")
    if not queue_url.startswith(("https://", "http://")):
        raise ConfigError("SQS_QUEUE_URL", f"{queue_url!r} is not an http(s) queue URL")
    topic = _required(env, "SNS_TOPIC_ARN", "the output SNS topic ARN")
    if not topic.startswith("arn:"):
        raise ConfigError("SNS_TOPIC_ARN", f"{topic!r} is not an ARN (arn:aws:sns:...)")
    bucket = _required(env, "S3_BUCKET", "the output bucket name")
    if not re.fullmatch(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]", bucket):
        raise ConfigError("S3_BUCKET", f"{bucket!r} is not a valid S3 bucket name")
    runtime_name = _required(env, "RUNTIME_NAME", "the runtime name tasks are routed by")
    level = (_str(env, "LOGLEVEL", "INFO") or "INFO").upper()
    if level not in LOG_LEVELS:
        raise ConfigError("LOGLEVEL", f"{level!r} is not one of: {', '.join(LOG_LEVELS)}")
    health_raw = _str(env, "HEALTH_PORT", "8081")
    health_port: int | None
    if health_raw is not None and health_raw.lower() in ("off", "none", "disabled"):
        health_port = None
    else:
        health_port = int(_number(env, "HEALTH_PORT", 8081, minimum=0, maximum=65535, integer=True))
    hosts = frozenset(
        h.strip().lower()
        for h in (_str(env, "ALLOWED_INPUT_HOSTS", "") or "").split(",")
        if h.strip()
    )
    heartbeat = _number(env, "HEARTBEAT_SECONDS", 20.0, minimum=0.1, maximum=3600)
    extension = int(
        _number(env, "VISIBILITY_EXTENSION_SECONDS", 60, minimum=1, maximum=43200, integer=True)
    )
    if extension <= heartbeat:
        raise ConfigError(
            "VISIBILITY_EXTENSION_SECONDS",
            f"{extension} must be greater than HEARTBEAT_SECONDS ({heartbeat:g}) so a held "
            "message is extended before it expires",
        )
    region = _str(env, "AWS_REGION") or _str(env, "AWS_DEFAULT_REGION")
    if region is None:
        match = _REGION_IN_URL.search(queue_url)
        region = match.group(1) if match else None
    otlp = _str(env, "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or _str(
        env, "OTEL_EXPORTER_OTLP_ENDPOINT"
    )
    return Config(
        sqs_queue_url=queue_url,
        sns_topic_arn=topic,
        s3_bucket=bucket,
        runtime_type=runtime_type,
        runtime_name=runtime_name,
        api_base_url=normalise_api_base_url(runtime_type, _str(env, "API_BASE_URL")),
        dynamic_sd_model=_bool(env, "DYNAMIC_SD_MODEL", False),
        callback_when_running=_bool(env, "EXP_CALLBACK_WHEN_RUNNING", False),
        log_level=level,
        model_filename=_str(env, "MODEL_FILENAME"),
        job_timeout_seconds=_number(env, "JOB_TIMEOUT_SECONDS", 600.0, minimum=0.1),
        drain_seconds=_number(env, "DRAIN_SECONDS", 90.0, minimum=0),
        heartbeat_seconds=heartbeat,
        visibility_extension_seconds=extension,
        receive_wait_seconds=int(
            _number(env, "RECEIVE_WAIT_SECONDS", 20, minimum=0, maximum=20, integer=True)
        ),
        max_input_bytes=int(
            _number(env, "MAX_INPUT_BYTES", 20 * 1024 * 1024, minimum=1, integer=True)
        ),
        allowed_input_hosts=hosts,
        input_connect_timeout=_number(env, "INPUT_CONNECT_TIMEOUT_SECONDS", 5.0, minimum=0.1),
        input_read_timeout=_number(env, "INPUT_READ_TIMEOUT_SECONDS", 30.0, minimum=0.1),
        health_port=health_port,
        otlp_endpoint=otlp,
        server_retries=int(_number(env, "SERVER_RETRIES", 3, minimum=0, maximum=20, integer=True)),
        retry_base_seconds=_number(env, "RETRY_BASE_SECONDS", 0.5, minimum=0),
        retry_max_seconds=_number(env, "RETRY_MAX_SECONDS", 10.0, minimum=0),
        poison_visibility_seconds=int(
            _number(env, "POISON_VISIBILITY_SECONDS", 1, minimum=0, maximum=43200, integer=True)
        ),
        region=region,
    )


__all__ = ["COMFYUI", "SDWEBUI", "Config", "ConfigError", "load_config", "normalise_api_base_url"]
