"""What the agent's stages pass each other: received messages and their outcomes."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sdfleet.agent.contract import Task
from sdfleet.agent.errors import TaskError
from sdfleet.agent.servers.base import Prepared, RawResult


@dataclass
class Held:
    """One received SQS message and what the stages learnt about it."""

    message_id: str
    receipt_handle: str
    body: str
    receive_count: int
    received_at: float  # monotonic
    queue_wait_ms: int | None
    trace_header: str | None
    task: Task | None = None
    # sha256 of the task as queued (with its content_ref, if offloaded): what a stored result
    # must match to stand in for a redelivery (see sdfleet.agent.outputs.task_digest).
    digest: str | None = None
    prepared: Prepared | None = None
    span: Any = None
    timings: dict[str, int] = field(default_factory=dict)


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
