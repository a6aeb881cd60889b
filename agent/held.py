"""What the agent's stages pass each other: received messages and their outcomes."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sdfleet.agent.contract import Task
from sdfleet.agent.errors import TaskError
from sdfleet.agent.servers.base import Prepared, RawResult
from sdfleet.agent.tracing import (
    STATUS,
    XRAY_HEADER,
    Tracing,
    end_span,
    span_header,
    span_trace_id,
)


@dataclass
class Held:
    """One received SQS message and what the stages learnt about it."""

    message_id: str
    receipt_handle: str
    body: str
    receive_count: int
    received_at: float  # monotonic
    queue_wait_ms: int | None
    trace_header: str | None  # the X-Ray header the message came with (the parent)
    task: Task | None = None
    # sha256 of the task as queued (with its content_ref, if offloaded): what a stored result
    # must match to stand in for a redelivery (see sdfleet.agent.outputs.task_digest).
    digest: str | None = None
    prepared: Prepared | None = None
    span: Any = None  # the task's root span (sdfleet.tracing)
    stage: Any = None  # its open stage span (receive, input_fetch, ...), if any
    tracing: Tracing | None = None  # what started ``span``, for its stages
    timings: dict[str, int] = field(default_factory=dict)

    @property
    def task_id(self) -> str | None:
        return self.task.metadata.id if self.task is not None else None

    @property
    def trace_id(self) -> str | None:
        """The task's X-Ray trace id (``1-xxxxxxxx-...``), when it has one."""
        return span_trace_id(self.span, self.trace_header)

    def log_fields(self, task_id: str | None = None) -> dict[str, Any]:
        """The fields of every log line about this task (``task_id``: when not yet parsed)."""
        return {"task_id": self.task_id or task_id, "trace_id": self.trace_id}

    def trace_attribute(self) -> dict[str, dict[str, str]]:
        """The ``X-Amzn-Trace-Id`` SNS message attribute naming the task span (or nothing)."""
        header = span_header(self.span, self.trace_header)
        return {XRAY_HEADER: {"DataType": "String", "StringValue": header}} if header else {}

    def start_trace(self, tracing: Tracing, attributes: dict[str, Any]) -> None:
        """Start the task span, a child of the header the message came with."""
        self.tracing = tracing
        self.span = tracing.start_task_span(self.trace_header, attributes)

    def begin_stage(self, name: str) -> None:
        self.end_stage()
        if self.span is not None and self.tracing is not None:
            self.stage = self.tracing.child(self.span, name)

    @contextmanager
    def in_stage(self, name: str, failure_code: str) -> Iterator[None]:
        """A stage span around the block; an exception ends it as failed (a TaskError with its
        own code, anything else with ``failure_code``) and goes on."""
        self.begin_stage(name)
        try:
            yield
        except TaskError as exc:
            self.end_stage(exc.code, exc.message)
            raise
        except BaseException as exc:
            self.end_stage(failure_code, f"{type(exc).__name__}: {exc}")
            raise
        self.end_stage()

    def end_stage(self, code: str | None = None, message: str | None = None) -> None:
        end_span(self.stage, code, message)
        self.stage = None

    def end_task(self, status: str, code: str | None = None, message: str | None = None) -> None:
        """End the open stage and the task span (``code``: the task failed with it)."""
        self.end_stage(code, message)
        if self.span is not None and self.span.is_recording():
            self.span.set_attribute(STATUS, status)
        end_span(self.span, code, message)


@dataclass
class Finished:
    held: Held
    raw: RawResult | None = None
    error: TaskError | None = None


@dataclass
class RunningNote:
    held: Held


@dataclass
class Republish:
    """A redelivered task whose complete result is already stored: announce it again."""

    held: Held
    document: dict[str, Any]


def queue_wait_ms(published_at: str | None, sent_ms: str | None) -> int | None:
    now = time.time()
    if published_at:
        try:
            stamp = datetime.fromisoformat(published_at.replace("Z", "+00:00")).timestamp()
            return max(0, int((now - stamp) * 1000))
        except ValueError:
            pass
    if sent_ms and sent_ms.isdigit():
        return max(0, int(now * 1000) - int(sent_ms))
    return None


def ms(seconds: float) -> int:
    return round(seconds * 1000)


class Liveness:
    """Named timestamps; a stage is stuck when its stamp is older than its allowance."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._stamps: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()
        self._clock = clock

    def touch(self, name: str, allowance: float) -> None:
        with self._lock:
            self._stamps[name] = (self._clock(), allowance)

    def clear(self, name: str) -> None:
        with self._lock:
            self._stamps.pop(name, None)

    def stuck(self) -> list[str]:
        now = self._clock()
        with self._lock:
            return [n for n, (at, allow) in self._stamps.items() if now - at > allow]
