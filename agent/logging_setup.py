"""JSON-lines logging on stdout. Structured fields go in ``extra={"fields": {...}}``."""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any, TextIO


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        created = time.gmtime(record.created)
        entry: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", created) + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            entry.update(fields)
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str, separators=(",", ":"))


def setup_logging(level: str = "INFO", stream: TextIO | None = None) -> None:
    """Replace the root handlers with one JSON-lines handler (called by ``python -m sdfleet.agent``)."""
    handler = logging.StreamHandler(stream or sys.stdout)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    # Library chatter (every HTTP request, every botocore retry) is noise at INFO.
    for noisy in ("botocore", "boto3", "urllib3", "httpx", "httpcore", "websocket"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLevelName(level)))
