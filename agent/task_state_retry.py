"""Bounded, jittered retries for task-table calls that DynamoDB throttled or failed with a 5xx.

botocore retries too (its own mode and count, from the client's config); this policy sits on
top of it, so a burst of throttling on a hot table does not turn a finished task's state write
into a lost one. Conditional-check failures and client errors (validation, access denied) are
never retried: they do not change on a second try.

Only the AWS error code and HTTP status are logged, never the error message: some AWS messages
quote the signed request (credential scope included).
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from botocore.exceptions import ClientError, HTTPClientError
from botocore.exceptions import ConnectionError as BotoConnectionError

log = logging.getLogger("agent.task_state")
T = TypeVar("T")

# Throttling and server-side codes DynamoDB documents as safe to retry.
RETRYABLE_CODES: frozenset[str] = frozenset(
    {
        "ProvisionedThroughputExceededException",
        "ThrottlingException",
        "RequestLimitExceeded",
        "InternalServerError",
        "InternalFailure",
        "ServiceUnavailable",
        "TransactionConflictException",
    }
)


def error_code(exc: BaseException) -> str:
    """The AWS error code of a ClientError, else the exception's class name."""
    if isinstance(exc, ClientError):
        return str(exc.response.get("Error", {}).get("Code") or "ClientError")
    return type(exc).__name__


def http_status(exc: BaseException) -> int | None:
    if isinstance(exc, ClientError):
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        return int(status) if status is not None else None
    return None


def is_retryable(exc: BaseException) -> bool:
    """Throttling, a 5xx, or a lost connection; never a conditional-check failure."""
    if isinstance(exc, (BotoConnectionError, HTTPClientError)):
        return True
    if not isinstance(exc, ClientError):
        return False
    if error_code(exc) in RETRYABLE_CODES:
        return True
    status = http_status(exc)
    return status is not None and status >= 500


class TaskStateUnavailable(Exception):
    """The task table did not accept a call within the retry policy's attempts and budget."""

    def __init__(self, op: str, task_id: str, attempts: int, cause: BaseException) -> None:
        super().__init__(
            f"{op} for task {task_id} failed after {attempts} attempt(s): {error_code(cause)}"
        )
        self.op = op
        self.task_id = task_id
        self.attempts = attempts
        self.code = error_code(cause)


@dataclass(frozen=True)
class StateRetryPolicy:
    """At most ``attempts`` calls, within ``budget_seconds`` of the first one.

    The delay before retry n is drawn uniformly from [0, min(max_delay, base_delay * 2**(n-1))]
    ("full jitter"), so agents throttled together do not retry together.
    """

    attempts: int = 5
    base_delay: float = 0.1
    max_delay: float = 2.0
    budget_seconds: float = 10.0
    sleep: Callable[[float], None] = field(default=time.sleep, repr=False)
    clock: Callable[[], float] = field(default=time.monotonic, repr=False)
    rand: Callable[[], float] = field(default=random.random, repr=False)

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError("attempts must be at least 1")
        if self.base_delay < 0 or self.max_delay < 0 or self.budget_seconds < 0:
            raise ValueError("delays and budget must not be negative")

    def cap(self, retry_number: int) -> float:
        """The largest delay before retry ``retry_number`` (1-based)."""
        return float(min(self.max_delay, self.base_delay * (2 ** max(0, retry_number - 1))))

    def delay(self, retry_number: int) -> float:
        return self.cap(retry_number) * self.rand()

    def call(self, op: str, task_id: str, fn: Callable[[], T]) -> T:
        """Call ``fn``; retry what :func:`is_retryable` accepts; raise TaskStateUnavailable when
        the attempts or the budget run out. Other exceptions propagate at once."""
        started = self.clock()
        attempt = 0
        while True:
            attempt += 1
            try:
                return fn()
            except Exception as exc:
                if not is_retryable(exc):
                    raise
                wait = self.delay(attempt)
                spent = self.clock() - started
                if attempt >= self.attempts or spent + wait > self.budget_seconds:
                    raise TaskStateUnavailable(op, task_id, attempt, exc) from exc
                log.warning(
                    "task table call failed; retrying",
                    extra={"fields": _fields(op, task_id, attempt, exc, retry_in_s=round(wait, 3))},
                )
                self.sleep(wait)


def _fields(op: str, task_id: str, attempt: int, exc: BaseException, **more: Any) -> dict[str, Any]:
    return {
        "event": "task_state_retry",
        "op": op,
        "task_id": task_id,
        "attempt": attempt,
        "error_code": error_code(exc),
        "http_status": http_status(exc),
        **more,
    }
