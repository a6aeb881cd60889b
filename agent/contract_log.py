"""One JSON log schema for the queue agent and the Lambdas (docs/logging.md).

Every line is one JSON object: ``ts`` (RFC 3339, UTC, milliseconds, ``Z``), ``level``,
``logger``, ``msg`` and ``service`` always; ``runtime``, ``task_id``, ``trace_id`` (X-Ray form)
and the other known fields when they apply; any further free field. ``LOG_RECORD_SCHEMA`` is
that contract as a JSON Schema, and the tests validate real lines of every service against it.

Standard library only: this module ships in the Lambdas beside ``contract*.py``.

Secrets never reach a line through a field: a field named like a secret (``authorization``,
``x-api-key``, ``password``, ``*_token``, ...) is written as ``"[redacted]"``, at any depth.
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

# -- field names --------------------------------------------------------------------------

TS = "ts"
LEVEL = "level"
LOGGER = "logger"
MSG = "msg"
SERVICE = "service"
RUNTIME = "runtime"
TASK_ID = "task_id"
TRACE_ID = "trace_id"
REQUEST_ID = "request_id"
ERROR_CODE = "error_code"
EVENT = "event"
STATUS = "status"
LATENCY_MS = "latency_ms"
EXC = "exc"
# Set by the formatter alone; a free field of one of these names is kept as ``field_<name>``.
RESERVED = (TS, LEVEL, LOGGER, MSG, SERVICE)
RESERVED_PREFIX = "field_"
# Optional fields with a type in the schema.
OPTIONAL_TYPED = (RUNTIME, TASK_ID, TRACE_ID, REQUEST_ID, ERROR_CODE, EVENT, STATUS, LATENCY_MS)

SERVICE_AGENT = "agent"
SERVICE_TASK_API = "task-api"
SERVICE_DLQ_SWEEPER = "dlq-sweeper"
SERVICE_WEBHOOK_DELIVERY = "webhook-delivery"
SERVICES = (SERVICE_AGENT, SERVICE_TASK_API, SERVICE_DLQ_SWEEPER, SERVICE_WEBHOOK_DELIVERY)
LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")

TS_PATTERN = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{3}Z$"
TRACE_ID_PATTERN = r"^1-[0-9a-f]{8}-[0-9a-f]{24}$"
_TRACE_ID = re.compile(TRACE_ID_PATTERN)
# The Lambda runtime sets it for every invocation: ``Root=1-...;Parent=...;Sampled=1``.
LAMBDA_TRACE_ENV = "_X_AMZN_TRACE_ID"
LAMBDA_FUNCTION_ENV = "AWS_LAMBDA_FUNCTION_NAME"

# -- secrets --------------------------------------------------------------------------------

REDACTED = "[redacted]"
# A key is a secret's when its last words (split on '-' or '_', any case) are one of these.
SECRET_WORDS = (
    "authorization",
    "api_key",
    "apikey",
    "secret",
    "secret_key",
    "password",
    "passwd",
    "token",
    "cookie",
    "private_key",
)


def _any_case(word: str) -> str:
    """``api_key`` -> ``[aA][pP][iI][-_][kK]...``: JSON Schema patterns have no flags."""
    return "".join(f"[{c.lower()}{c.upper()}]" if c.isalpha() else "[-_]" for c in word)


SECRET_KEY_PATTERN = "^(?:.*[-_])?(?:" + "|".join(_any_case(w) for w in SECRET_WORDS) + ")$"
_SECRET_KEY = re.compile(SECRET_KEY_PATTERN)
_MAX_DEPTH = 8


def is_secret_key(key: str) -> bool:
    return bool(_SECRET_KEY.match(key))


def redact(value: Any, depth: int = 0) -> Any:
    """``value`` with every secret-named key's value replaced by ``REDACTED`` (dicts and
    lists, ``_MAX_DEPTH`` deep; deeper structures are cut, not walked)."""
    if depth > _MAX_DEPTH:
        return "[truncated]"
    if isinstance(value, Mapping):
        return {
            str(k): REDACTED if is_secret_key(str(k)) else redact(v, depth + 1)
            for k, v in value.items()
        }
    if isinstance(value, (list, tuple)):
        return [redact(v, depth + 1) for v in value]
    return value


# -- the schema -----------------------------------------------------------------------------

_STRING = {"type": "string", "minLength": 1}
LOG_RECORD_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "sdfleet log record",
    "description": "One JSON log line of the agent or a Lambda (docs/logging.md).",
    "type": "object",
    "required": list(RESERVED),
    "properties": {
        TS: {"type": "string", "pattern": TS_PATTERN},
        LEVEL: {"enum": list(LEVELS)},
        LOGGER: _STRING,
        MSG: {"type": "string"},
        SERVICE: {"enum": list(SERVICES)},
        RUNTIME: {"type": "string", "pattern": r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"},
        TASK_ID: {"type": "string", "pattern": r"^[A-Za-z0-9_-]{1,64}$"},
        TRACE_ID: {"type": "string", "pattern": TRACE_ID_PATTERN},
        REQUEST_ID: _STRING,
        ERROR_CODE: _STRING,
        EVENT: _STRING,
        STATUS: {"type": ["integer", "string"]},
        LATENCY_MS: {"type": "number", "minimum": 0},
        EXC: {"type": "string"},
    },
    # A secret-named field may appear only redacted.
    "patternProperties": {SECRET_KEY_PATTERN: {"const": REDACTED}},
    "additionalProperties": True,
}

# -- trace ids ------------------------------------------------------------------------------


def xray_trace_id(header: str | None, environ: Mapping[str, str] | None = None) -> str | None:
    """The trace id (``1-xxxxxxxx-yyyy...``) of an X-Ray trace header
    (``Root=1-...;Parent=...;Sampled=1``, as in ``AWSTraceHeader`` or ``X-Amzn-Trace-Id``), or
    a bare trace id. ``None`` reads the Lambda's ``_X_AMZN_TRACE_ID``. ``None`` when there is no
    valid one."""
    if header is None:
        header = (os.environ if environ is None else environ).get(LAMBDA_TRACE_ENV)
    if not header:
        return None
    for part in header.split(";"):
        key, _, value = part.strip().partition("=")
        candidate = (value if value else key).lower()
        if (not value or key == "Root") and _TRACE_ID.match(candidate):
            return candidate
    return None


def xray_trace_id_from_int(trace_id: int) -> str | None:
    """An OpenTelemetry 128-bit trace id in X-Ray form (what the awsxray exporter sends);
    ``None`` for the invalid id 0."""
    if not 0 < trace_id < 1 << 128:
        return None
    hexid = f"{trace_id:032x}"
    return f"1-{hexid[:8]}-{hexid[8:]}"


def lambda_context() -> dict[str, Any]:
    """Default fields of a Lambda line: the invocation's trace id."""
    trace_id = xray_trace_id(None)
    return {TRACE_ID: trace_id} if trace_id else {}


# -- the formatter --------------------------------------------------------------------------


def iso_ms(created: float) -> str:
    """RFC 3339 UTC with milliseconds: ``2026-12-02T01:02:03.456Z``."""
    seconds = int(created)
    millis = min(int((created - seconds) * 1000), 999)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{millis:03d}Z"


class JsonFormatter(logging.Formatter):
    """One JSON object per record. Structured fields come from ``extra={"fields": {...}}``;
    ``service`` and ``runtime`` from the constructor; ``context`` (called per record) gives
    default fields such as the current trace id. Free fields override the context's fields,
    never ``ts``, ``level``, ``logger``, ``msg`` or ``service``, nor a constructor ``runtime``
    (a clashing one is kept as ``field_<name>``)."""

    def __init__(
        self,
        service: str = SERVICE_AGENT,
        runtime: str | None = None,
        context: Callable[[], Mapping[str, Any]] | None = None,
    ) -> None:
        super().__init__()
        self.service = service
        self.runtime = runtime
        self.context = context

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            TS: iso_ms(record.created),
            LEVEL: record.levelname,
            LOGGER: record.name,
            MSG: record.getMessage(),
            SERVICE: self.service,
        }
        if self.runtime:
            entry[RUNTIME] = self.runtime
        if self.context is not None:
            entry.update(self.context())
        fields = getattr(record, "fields", None)
        if isinstance(fields, Mapping):
            for key, value in redact(fields).items():
                if value is None and key in OPTIONAL_TYPED:
                    continue  # unknown: absent rather than a null the schema would refuse
                entry[RESERVED_PREFIX + key if self._reserved(key, value) else key] = value
        if record.exc_info:
            entry[EXC] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str, separators=(",", ":"))

    def _reserved(self, key: str, value: Any) -> bool:
        # A process given a runtime (the agent) serves only that one: a free field naming
        # another is kept aside rather than mislabelling the line.
        return key in RESERVED or (key == RUNTIME and bool(self.runtime) and value != self.runtime)


# -- Lambda output --------------------------------------------------------------------------


class StdoutHandler(logging.StreamHandler[Any]):
    """Writes to ``sys.stdout`` as it is at each record (the Lambda's stdout, or a test's
    capture), so every line is a CloudWatch event of its own, with no runtime prefix."""

    def __init__(self) -> None:
        super().__init__(sys.stdout)

    def emit(self, record: logging.LogRecord) -> None:
        self.stream = sys.stdout  # Handler.handle holds the lock here
        super().emit(record)


# Every logger of our code in a Lambda: its own (sdfleet.task_api, sdfleet.sweeper,
# sdfleet.webhooks) and the shared modules' (agent.task_state).
LAMBDA_LOGGERS = ("sdfleet", "agent")


def lambda_logging(
    service: str,
    loggers: Iterable[str] = LAMBDA_LOGGERS,
    environ: Mapping[str, str] | None = None,
) -> list[logging.Logger]:
    """In the Lambda runtime only (``AWS_LAMBDA_FUNCTION_NAME`` set), ``loggers`` write schema
    lines straight to stdout and stop propagating: the functions' log format is Text, whose
    root handler prefixes every line (``[INFO]\\t<time>\\t<request id>\\t``) and so would break
    the JSON. Elsewhere (the sandbox's in-process task API, tests) nothing changes: the host's
    logging decides. Idempotent; returns the loggers it configured."""
    if not (os.environ if environ is None else environ).get(LAMBDA_FUNCTION_ENV):
        return []
    configured = [logging.getLogger(name) for name in loggers]
    for logger in configured:
        _own_handler(logger, service)
        if logger.level == logging.NOTSET:
            logger.setLevel(logging.INFO)
    return configured


def _own_handler(logger: logging.Logger, service: str) -> None:
    if not any(isinstance(h, StdoutHandler) for h in logger.handlers):
        handler = StdoutHandler()
        handler.setFormatter(JsonFormatter(service, context=lambda_context))
        logger.addHandler(handler)
    logger.propagate = False
