"""The task record as read from the table, and what a write did (see sdfleet.agent.task_state)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from boto3.dynamodb.types import TypeDeserializer

from sdfleet.agent import task_state_schema as s

_de = TypeDeserializer()


def _int(value: Any) -> int | None:
    return int(value) if isinstance(value, (int, Decimal)) else None


@dataclass(frozen=True)
class TaskRecord:
    task_id: str
    state: str
    runtime: str | None
    api_key_id: str | None
    created_by: str | None
    attempts: int
    queued_at: int | None
    started_at: int | None
    last_started_at: int | None
    finished_at: int | None
    updated_at: int | None
    expires_at: int | None
    error_code: str | None = None
    error_message: str | None = None
    output_bucket: str | None = None
    output_keys: tuple[str, ...] = ()
    webhook_last_status: int | None = None
    webhook_attempts: int = 0
    webhook_last_attempt_at: int | None = None
    write_token: str | None = None
    redriven_at: int | None = None
    trace_id: str | None = None

    @property
    def final(self) -> bool:
        return self.state in s.FINAL_STATES

    @classmethod
    def from_item(cls, item: Mapping[str, Any]) -> TaskRecord:
        """From a low-level item (``{"S": ...}`` attribute values)."""
        plain = {name: _de.deserialize(value) for name, value in item.items()}
        stored_error = plain.get(s.ERROR)
        error: dict[str, Any] = stored_error if isinstance(stored_error, dict) else {}
        return cls(
            task_id=str(plain[s.TASK_ID]),
            state=str(plain.get(s.STATE, "")),
            runtime=plain.get(s.RUNTIME),
            api_key_id=plain.get(s.API_KEY_ID),
            created_by=plain.get(s.CREATED_BY),
            attempts=_int(plain.get(s.ATTEMPTS)) or 0,
            queued_at=_int(plain.get(s.QUEUED_AT)),
            started_at=_int(plain.get(s.STARTED_AT)),
            last_started_at=_int(plain.get(s.LAST_STARTED_AT)),
            finished_at=_int(plain.get(s.FINISHED_AT)),
            updated_at=_int(plain.get(s.UPDATED_AT)),
            expires_at=_int(plain.get(s.EXPIRES_AT)),
            error_code=error.get("code"),
            error_message=error.get("message"),
            output_bucket=plain.get(s.OUTPUT_BUCKET),
            output_keys=tuple(str(k) for k in plain.get(s.OUTPUT_KEYS) or ()),
            webhook_last_status=_int(plain.get(s.WEBHOOK_LAST_STATUS)),
            webhook_attempts=_int(plain.get(s.WEBHOOK_ATTEMPTS)) or 0,
            webhook_last_attempt_at=_int(plain.get(s.WEBHOOK_LAST_ATTEMPT_AT)),
            write_token=plain.get(s.WRITE_TOKEN),
            redriven_at=_int(plain.get(s.REDRIVEN_AT)),
            trace_id=plain.get(s.TRACE_ID),
        )

    def timings(self) -> dict[str, int]:
        """The status API's durations in ms, each only when both ends are known."""
        out: dict[str, int] = {}
        if self.queued_at is not None and self.started_at is not None:
            out["queue_wait_ms"] = max(0, self.started_at - self.queued_at)
        if self.last_started_at is not None and self.finished_at is not None:
            out["inference_ms"] = max(0, self.finished_at - self.last_started_at)
        if self.queued_at is not None and self.finished_at is not None:
            out["total_ms"] = max(0, self.finished_at - self.queued_at)
        return out


@dataclass(frozen=True)
class Transition:
    """What a ``mark_*`` call did. ``applied`` is False when the task was already final;
    ``record`` is the item after the call (the stored one when nothing changed)."""

    applied: bool
    record: TaskRecord

    @property
    def state(self) -> str:
        return self.record.state


class TaskExists(Exception):
    """``create`` found the id taken; ``state`` is the stored task's state."""

    def __init__(self, task_id: str, record: TaskRecord) -> None:
        super().__init__(f"task {task_id} exists ({record.state})")
        self.task_id = task_id
        self.state = record.state
        self.record = record
