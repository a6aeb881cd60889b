"""Response bodies of the task API, and what of a request may appear in a log line.

Privacy: request content (prompts, images) is user data; only contract vocabulary and routing
facts reach a response's echo of a field path or a log line.
"""

from __future__ import annotations

import json
import re
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from sdfleet.agent.task_state import TaskStateUnavailable

# Error codes of transient AWS failures: the client should retry, so 503 instead of 502.
THROTTLING_CODES = frozenset(
    {
        "Throttled",  # SNS Publish
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "RequestLimitExceeded",
        "TooManyRequestsException",
        "SlowDown",
        "ServiceUnavailable",
        "InternalError",
        "InternalFailure",
        "KMSThrottling",  # SNS on an encrypted topic
        "KMSThrottlingException",
    }
)
# Field-path segments that are contract vocabulary. Any other segment is client-chosen (a
# ComfyUI node id, an unknown key) and could be user content, so logs show it as "*".
_LOG_FIELD_WORDS = frozenset(
    {
        "task", "metadata", "content", "content_ref", "id", "runtime", "tasktype", "prefix",
        "context", "prompt", "negative_prompt", "override_settings", "alwayson_scripts",
        "sd_model_checkpoint", "init_images", "image", "imageList", "data", "class_type",
        "inputs", "id_task", "save_dir", "image_link", "uid", "sd_vae", "mask", "steps",
        "width", "height", "batch_size", "n_iter", "hr_second_pass_steps", "hr_scale",
        "hr_resize_x", "hr_resize_y", "args", "input_image", "mask_image",
    }
)  # fmt: skip
_INDEXES = re.compile(r"^(\[\d+\])*$")
# Cut client-chosen text (field paths can hold ComfyUI node ids) in responses and logs.
MAX_FIELD_CHARS = 256
# What the task table's calls raise when the table, not the request, failed.
TABLE_ERRORS = (TaskStateUnavailable, ClientError, BotoCoreError)
# Seconds a client should wait before retrying a 503.
RETRY_AFTER_SECONDS = "1"


def response(status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> dict:
    return {
        "statusCode": status,
        "headers": {"Content-Type": "application/json", **(headers or {})},
        "body": json.dumps(body, separators=(",", ":")),
        "isBase64Encoded": False,
    }


def cut(text: str | None) -> str | None:
    if text is not None and len(text) > MAX_FIELD_CHARS:
        return text[: MAX_FIELD_CHARS - 3] + "..."
    return text


def log_field(field: str | None) -> str | None:
    if field is None:
        return None
    safe = []
    for segment in field.split("."):
        word, bracket, rest = segment.partition("[")
        ok = word in _LOG_FIELD_WORDS and _INDEXES.match(bracket + rest)
        safe.append(segment if ok else "*")
    return cut(".".join(safe))


def error_body(code: str, message: str, field: str | None = None) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "field": cut(field)}}


def error(
    status: int,
    code: str,
    message: str,
    field: str | None = None,
    *,
    extra: dict[str, Any] | None = None,
    **headers: str,
) -> dict:
    """The error shape; ``extra`` adds top-level fields next to ``error`` (409's state)."""
    return response(status, {**error_body(code, message, field), **(extra or {})}, headers)


def unavailable(code: str, message: str) -> dict:
    """A 503 the client may retry after ``Retry-After`` seconds."""
    return response(503, error_body(code, message), {"Retry-After": RETRY_AFTER_SECONDS})


def aws_code(exc: BaseException) -> str:
    """The AWS error code (or the exception's class name): never the message, which can quote
    the signed request."""
    code = getattr(exc, "code", None)  # TaskStateUnavailable carries the last AWS code
    if isinstance(code, str) and code:
        return code
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        return str(response.get("Error", {}).get("Code") or type(exc).__name__)
    return type(exc).__name__


def table_failure(exc: Exception, op: str, log: dict[str, Any]) -> dict:
    """The task table failed (throttled past the retries, unreachable, denied): 503, so the
    client retries; a request is never answered as if its task were recorded."""
    log.update(error_code="task_store_unavailable", table_op=op, aws_error=aws_code(exc))
    return unavailable("task_store_unavailable", "the task store is unavailable; retry later")
