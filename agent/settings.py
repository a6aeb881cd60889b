"""The queue agent's settings: one table of every environment variable it reads.

Both sides use this table: ``sdfleet.agent.config`` parses the pod's environment through it, and the
workload builder (``sdfleet.components.builders.workload.AgentEnv``) writes the pod's ``env`` from it, so
names and defaults are defined once. Stdlib only (the builder imports it at synth time).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

# The agent reaches the server sidecar over the pod's loopback. 127.0.0.1 rather than
# "localhost": some resolvers try ::1 first while the servers listen on IPv4 only.
SERVER_HOST = "127.0.0.1"
SERVER_PORT = 8080
MIB = 1024 * 1024
# Upper bounds of durations: the agent waits on them (Event.wait, socket timeouts), which
# overflow past ~9.2e9 s; the stack config allows jobs up to 10 h and drains up to 1 h.
HOUR = 3600
DAY = 24 * HOUR

_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off", "")
_OFF = ("off", "none", "disabled")


class ConfigError(ValueError):
    """An environment variable is missing or invalid; ``name`` is the variable."""

    def __init__(self, name: str, message: str) -> None:
        super().__init__(f"{name}: {message}")
        self.name = name


@dataclass(frozen=True)
class Setting:
    """One variable. ``kind``: str, bool, int, float, csv, json or port (an int or "off")."""

    name: str
    kind: str
    default: Any
    doc: str
    minimum: float | None = None
    maximum: float | None = None
    required: bool = False


def _s(
    name: str,
    kind: str,
    default: Any,
    doc: str,
    lo: float | None = None,
    hi: float | None = None,
    required: bool = False,
) -> Setting:
    return Setting(name, kind, default, doc, lo, hi, required)


SETTINGS: tuple[Setting, ...] = (
    _s("SQS_QUEUE_URL", "str", None, "the runtime's SQS queue URL", required=True),
    _s("SNS_TOPIC_ARN", "str", None, "the output SNS topic ARN", required=True),
    _s("S3_BUCKET", "str", None, "the output bucket name", required=True),
    _s("RUNTIME_TYPE", "str", None, "sdwebui or comfyui", required=True),
    _s("RUNTIME_NAME", "str", None, "the runtime name tasks are routed by", required=True),
    _s("AWS_REGION", "str", None, "region (else AWS_DEFAULT_REGION, else the queue URL's)"),
    _s("AWS_DEFAULT_REGION", "str", None, "region when AWS_REGION is unset"),
    _s("API_BASE_URL", "str", None, f"server URL; default http://{SERVER_HOST}:{SERVER_PORT}"),
    _s("DYNAMIC_SD_MODEL", "bool", False, "switch the SD WebUI checkpoint per task"),
    _s("MODEL_FILENAME", "str", None, "checkpoint the server must have loaded (static model)"),
    _s("EXP_CALLBACK_WHEN_RUNNING", "bool", False, "also notify when a task starts running"),
    _s(
        "SDFLEET_SANDBOX_LOOPBACK_CALLBACKS",
        "bool",
        False,
        "sdfleet sandbox only: keep callbacks to 127.0.0.1/::1/localhost (the cloud refuses them)",
    ),
    _s("LOGLEVEL", "str", "INFO", "DEBUG, INFO, WARNING, ERROR or CRITICAL"),
    _s(
        "JOB_TIMEOUT_SECONDS",
        "float",
        600.0,
        "a task's inference is interrupted after this",
        0.1,
        DAY,
    ),
    _s("DRAIN_SECONDS", "float", 90.0, "on SIGTERM: time to finish the running task", 0, HOUR),
    _s("HEARTBEAT_SECONDS", "float", 5.0, "interval of the visibility heartbeat", 0.1, 3600),
    _s(
        "VISIBILITY_EXTENSION_SECONDS",
        "int",
        15,
        "visibility set on receive and by each heartbeat: a crashed agent's task is visible "
        "again at most this long after its last heartbeat",
        1,
        43200,
    ),
    _s("RECEIVE_WAIT_SECONDS", "int", 20, "SQS long-poll wait", 0, 20),
    _s(
        "HEARTBEAT_TIMEOUT_SECONDS",
        "float",
        3.0,
        "connect/read timeout of a heartbeat call",
        0.1,
        30,
    ),
    _s("OUTPUT_RETRIES", "int", 6, "in-place retries of a failed result upload or publish", 0, 20),
    _s(
        "OUTPUT_RETRY_BASE_SECONDS",
        "float",
        0.5,
        "first delay of those retries (doubling)",
        0,
        HOUR,
    ),
    _s("OUTPUT_RETRY_MAX_SECONDS", "float", 8.0, "cap on one delay of those retries", 0, HOUR),
    _s("MAX_INPUT_BYTES", "int", 20 * MIB, "largest single input image", 1),
    _s("INPUT_MAX_TOTAL_BYTES", "int", 64 * MIB, "all inputs of one task together", 1),
    _s("INPUT_FETCH_TIMEOUT_SECONDS", "float", 30.0, "wall-clock deadline of one input", 0.1, HOUR),
    _s(
        "INPUT_TASK_TIMEOUT_SECONDS",
        "float",
        60.0,
        "wall-clock deadline of a task's inputs",
        0.1,
        HOUR,
    ),
    _s(
        "INPUT_CONNECT_TIMEOUT_SECONDS",
        "float",
        5.0,
        "connect timeout of an input fetch",
        0.1,
        HOUR,
    ),
    _s(
        "INPUT_READ_TIMEOUT_SECONDS", "float", 30.0, "per-read timeout of an input fetch", 0.1, HOUR
    ),
    _s("ALLOWED_INPUT_HOSTS", "csv", (), "hosts exempt from the private-address guard"),
    _s("INPUT_S3_BUCKETS", "csv", (), "buckets s3:// inputs may name (besides the output's)"),
    _s("TASK_LIMITS", "json", None, "per-runtime work limits (maxSteps, maxPixels, ...)"),
    _s("HEALTH_PORT", "port", 8081, "liveness/readiness port, or off", 0, 65535),
    _s("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "str", None, "OTLP traces endpoint"),
    _s("OTEL_EXPORTER_OTLP_ENDPOINT", "str", None, "OTLP endpoint (traces fallback)"),
    _s("OTEL_SERVICE_NAME", "str", None, "service name of the spans; default sdfleet-agent-<name>"),
    _s("SERVER_RETRIES", "int", 3, "retries of a failed inference server call", 0, 20),
    _s("RETRY_BASE_SECONDS", "float", 0.5, "first delay of server retries", 0, HOUR),
    _s("RETRY_MAX_SECONDS", "float", 10.0, "cap on one server retry delay", 0, HOUR),
    _s("POISON_VISIBILITY_SECONDS", "int", 1, "first back-off of a poison message", 0, 43200),
    _s("POD_NAME", "str", None, "this pod (downward API metadata.name)"),
    _s("POD_NAMESPACE", "str", None, "this pod's namespace (downward API metadata.namespace)"),
    _s("POD_DELETION_COST", "bool", True, "keep pod-deletion-cost current (idle pods go first)"),
    _s("NODE_NAME", "str", None, "this pod's node (downward API spec.nodeName), for AgentUp"),
    _s(
        "METRICS_LOG_GROUP",
        "str",
        None,
        "CloudWatch Logs group the EMF metric lines are shipped to; unset: EMF lines on stdout",
    ),
    _s(
        "METRICS_FLUSH_SECONDS",
        "float",
        10.0,
        "interval of the metric shipper's PutLogEvents (sooner when a batch is full)",
        1,
        60,
    ),
    _s("TASK_TABLE_NAME", "str", None, "the task state table (DynamoDB); unset: no task state"),
    _s(
        "TASK_TTL_SECONDS",
        "int",
        604800,
        "a task record expires this long after its last write",
        60,
        3650 * DAY,
    ),
    _s(
        "COMFYUI_QUEUE_AHEAD",
        "bool",
        True,
        "ComfyUI: queue the next prompt while one runs (keeps the GPU busy between tasks)",
    ),
)
BY_NAME: dict[str, Setting] = {s.name: s for s in SETTINGS}


def default(name: str) -> Any:
    """The default of a setting (KeyError for a name not in the table)."""
    return BY_NAME[name].default


def default_api_base_url(runtime_type: str, port: int = SERVER_PORT) -> str:
    """The server sidecar's URL as the agent uses it (SD WebUI: its ``/sdapi/v1/`` root)."""
    if runtime_type == "sdwebui":
        return f"http://{SERVER_HOST}:{port}/sdapi/v1/"
    return f"http://{SERVER_HOST}:{port}"


def raw(env: Mapping[str, str], name: str) -> str | None:
    """The stripped value, None when unset or blank."""
    if name not in BY_NAME:
        raise KeyError(f"{name} is not an agent setting")
    value = env.get(name)
    if value is None or not value.strip():
        return None
    return value.strip()


def _number(setting: Setting, text: str, integer: bool) -> float:
    try:
        value = float(int(text)) if integer else float(text)
    except ValueError:
        kind = "an integer" if integer else "a number"
        raise ConfigError(setting.name, f"{text!r} is not {kind}") from None
    low, high = setting.minimum, setting.maximum
    out = not math.isfinite(value) or (low is not None and value < low)
    if out or (high is not None and value > high):
        bounds = f"at least {low:g}" if low is not None else "a number"
        upper = f" and at most {high:g}" if high is not None else ""
        raise ConfigError(setting.name, f"{text!r} is out of range; must be {bounds}{upper}")
    return value


def parse(env: Mapping[str, str], name: str) -> Any:
    """The typed value of ``name`` from ``env`` (its default when unset); ConfigError if bad."""
    setting = BY_NAME[name]
    text = raw(env, name)
    if text is None:
        if setting.required:
            raise ConfigError(name, f"is required ({setting.doc})")
        if setting.kind == "bool" and env.get(name) is not None:
            return False  # set but blank
        return setting.default
    kind = setting.kind
    if kind == "str":
        return text
    if kind == "bool":
        if text.lower() in _TRUE:
            return True
        if text.lower() in _FALSE:
            return False
        raise ConfigError(name, f"{text!r} is not a boolean; use true/false, 1/0, yes/no or on/off")
    if kind == "int":
        return int(_number(setting, text, integer=True))
    if kind == "float":
        return _number(setting, text, integer=False)
    if kind == "port":
        if text.lower() in _OFF:
            return None
        return int(_number(setting, text, integer=True))
    if kind == "csv":
        return tuple(part.strip() for part in text.split(",") if part.strip())
    if kind == "json":
        try:
            return json.loads(text)
        except ValueError as exc:
            raise ConfigError(name, f"is not valid JSON ({exc})") from None
    raise AssertionError(f"unknown setting kind {kind!r}")


def to_env_value(name: str, value: Any) -> str:
    """How the builder writes a value so that ``parse`` reads it back."""
    kind = BY_NAME[name].kind
    if kind == "bool":
        return "true" if value else "false"
    if kind == "csv":
        return ",".join(value)
    if kind == "json":
        return json.dumps(value, separators=(",", ":"), sort_keys=True)
    if kind == "port" and value is None:
        return "off"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


__all__ = [
    "BY_NAME",
    "SERVER_HOST",
    "SERVER_PORT",
    "SETTINGS",
    "ConfigError",
    "Setting",
    "default",
    "default_api_base_url",
    "parse",
    "raw",
    "to_env_value",
]
