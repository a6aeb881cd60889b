"""When a failed webhook is tried again, and how a wait longer than SQS allows is chained.

The default schedule is the one the Standard Webhooks specification suggests: attempt 1 at
once, then after 5 s, 5 min, 30 min, 2 h, 5 h, 10 h and 10 h: 8 attempts over 27 h 35 min.

SQS delays a message by at most 900 s (``DelaySeconds``), so a retry is re-enqueued on the
delivery queue as a :class:`RetryMessage` carrying the attempt number and ``not_before`` (epoch
seconds). A message received before ``not_before`` is a *hop*: it is sent again with
``DelaySeconds = min(remaining, 900)`` and nothing is delivered, so a 10 h wait is 40 hops.
Re-enqueueing (instead of stretching the visibility timeout) keeps ``ApproximateReceiveCount``
low, so the queue's redrive policy only ever catches messages whose processing crashed.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from typing import Any

# SQS's largest DelaySeconds.
MAX_SQS_DELAY_SECONDS = 900
# Seconds to wait before each attempt; the first is the immediate one.
STANDARD_SCHEDULE: tuple[int, ...] = (0, 5, 300, 1800, 7200, 18000, 36000, 36000)
MIN_SCHEDULE_SECONDS = 24 * 3600
# Marks a retry message on the delivery queue (SNS envelopes never have this key).
RETRY_MARKER = "sdfleetWebhookRetry"
RETRY_VERSION = 1
# "msg_" and an SNS or SQS message id; nothing that could confuse the signed "{id}.{ts}." prefix.
WEBHOOK_ID_PATTERN = re.compile(r"^[A-Za-z0-9_-]{1,160}\Z")


@dataclass(frozen=True)
class RetrySchedule:
    """``delays[i]`` is the wait before attempt ``i + 1``; ``delays[0]`` must be 0."""

    delays: tuple[int, ...] = STANDARD_SCHEDULE

    def __post_init__(self) -> None:
        if not self.delays or self.delays[0] != 0:
            raise ValueError("a retry schedule starts with the immediate attempt (0)")
        if any(d < 0 for d in self.delays):
            raise ValueError("retry delays must not be negative")

    @property
    def attempts(self) -> int:
        return len(self.delays)

    @property
    def total_seconds(self) -> int:
        """From the first attempt to the last."""
        return sum(self.delays)

    def delay_after(self, attempt: int) -> int | None:
        """Seconds from failed ``attempt`` (1-based) to the next one; None when it was the last."""
        if attempt < 1:
            raise ValueError("attempts are numbered from 1")
        return self.delays[attempt] if attempt < len(self.delays) else None


def sqs_delay(not_before: float, now: float) -> int:
    """``DelaySeconds`` for the next hop toward ``not_before``: 0-900, rounded up."""
    remaining = math.ceil(not_before - now)
    return max(0, min(remaining, MAX_SQS_DELAY_SECONDS))


@dataclass(frozen=True)
class RetryMessage:
    """A delivery waiting for its next attempt, as a JSON body on the delivery queue.

    ``body`` is the notification exactly as first received (the signed bytes are the same on
    every attempt); ``webhook_id`` stays the same so receivers deduplicate; ``first_attempt_at``
    and ``last_outcome`` are kept for the record and the dead-letter queue."""

    webhook_id: str
    attempt: int
    not_before: float
    body: str
    first_attempt_at: float
    last_outcome: str

    def to_json(self) -> str:
        return json.dumps(
            {
                RETRY_MARKER: RETRY_VERSION,
                "webhookId": self.webhook_id,
                "attempt": self.attempt,
                "notBefore": self.not_before,
                "firstAttemptAt": self.first_attempt_at,
                "lastOutcome": self.last_outcome,
                "body": self.body,
            },
            separators=(",", ":"),
        )

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RetryMessage:
        """``ValueError`` when ``data`` is not a retry message of this version."""
        if data.get(RETRY_MARKER) != RETRY_VERSION:
            raise ValueError(f"not a version {RETRY_VERSION} webhook retry message")
        webhook_id, attempt, body = data.get("webhookId"), data.get("attempt"), data.get("body")
        if not (isinstance(webhook_id, str) and WEBHOOK_ID_PATTERN.match(webhook_id)):
            raise ValueError("a retry message needs a webhookId of A-Z, a-z, 0-9, '_' or '-'")
        if not isinstance(body, str):
            raise ValueError("a retry message needs a body string")
        if not isinstance(attempt, int) or isinstance(attempt, bool) or attempt < 1:
            raise ValueError("a retry message needs a positive integer attempt")
        return cls(
            webhook_id,
            attempt,
            _number(data, "notBefore"),
            body,
            _number(data, "firstAttemptAt"),
            str(data.get("lastOutcome", "")),
        )


def _number(data: dict[str, Any], key: str) -> float:
    value = data.get(key)
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
        raise ValueError(f"a retry message needs a finite number {key}")
    return float(value)
