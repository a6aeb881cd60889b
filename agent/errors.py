"""Task failure codes and the exception that carries them to the result document."""

from __future__ import annotations

from typing import Any

# Codes reported in the notification's ``error.code`` (documented in docs/agent.md#notifications).
INVALID_TASK = "invalid_task"
CONTENT_REF_FAILED = "content_ref_failed"
INPUT_FORBIDDEN = "input_forbidden"
INPUT_TOO_LARGE = "input_too_large"
INPUT_DOWNLOAD_FAILED = "input_download_failed"
MODEL_NOT_FOUND = "model_not_found"
MODEL_LOAD_FAILED = "model_load_failed"
SERVER_REJECTED = "server_rejected"
SERVER_ERROR = "server_error"
SERVER_UNAVAILABLE = "server_unavailable"
VALIDATION_ERROR = "validation_error"
EXECUTION_ERROR = "execution_error"
TIMEOUT = "timeout"
OUTPUT_FAILED = "output_failed"
# Every code above: the ErrorCode metric dimension takes only these (a dimension value per
# code is a custom metric per code, so an unexpected value is published as "other").
CODES = frozenset(v for k, v in dict(globals()).items() if k.isupper() and isinstance(v, str))


def metric_code(code: str) -> str:
    """``code`` as the ErrorCode dimension: a known code, else ``other``."""
    return code if code in CODES else "other"


class TaskError(Exception):
    """A task failed for a reason reported to the client (``code``, ``message``, ``detail``)."""

    def __init__(self, code: str, message: str, detail: Any = None) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.detail = detail

    def to_json(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message, "detail": self.detail}


class ServerUnavailable(Exception):
    """The inference server cannot be reached; the task is released, not failed."""


class Interrupted(Exception):
    """The running job was interrupted on the server because the agent is shutting down."""
