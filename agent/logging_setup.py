"""JSON-lines logging on stdout in the shared schema (:mod:`sdfleet.agent.contract_log`,
docs/logging.md). Structured fields go in ``extra={"fields": {...}}``; a line logged inside a
task's span carries that span's trace id (X-Ray form) unless its fields name one."""

from __future__ import annotations

import logging
import sys
from typing import Any, TextIO

from opentelemetry import trace

from sdfleet.agent.contract_log import (
    SERVICE_AGENT,
    TRACE_ID,
    JsonFormatter,
    xray_trace_id_from_int,
)

__all__ = ["JsonFormatter", "json_handler", "setup_logging", "span_context"]


def span_context() -> dict[str, Any]:
    """``trace_id`` of the current OpenTelemetry span, if there is a valid one."""
    trace_id = xray_trace_id_from_int(trace.get_current_span().get_span_context().trace_id)
    return {TRACE_ID: trace_id} if trace_id else {}


def json_handler(
    stream: TextIO | None = None, *, service: str = SERVICE_AGENT, runtime: str | None = None
) -> logging.Handler:
    """The agent's handler: schema lines on ``stream`` (stdout)."""
    handler = logging.StreamHandler(stream or sys.stdout)
    handler.setFormatter(JsonFormatter(service, runtime, context=span_context))
    return handler


def setup_logging(
    level: str = "INFO",
    stream: TextIO | None = None,
    *,
    service: str = SERVICE_AGENT,
    runtime: str | None = None,
) -> None:
    """Replace the root handlers with one JSON-lines handler (called by ``python -m sdfleet.agent``
    with the runtime's name, which every line then carries)."""
    handler = json_handler(stream, service=service, runtime=runtime)
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    # Library chatter (every HTTP request, every botocore retry) is noise at INFO.
    for noisy in ("botocore", "boto3", "urllib3", "httpx", "httpcore", "websocket"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLevelName(level)))
