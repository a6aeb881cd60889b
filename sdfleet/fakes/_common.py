"""Request recording shared by the fake servers."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Call:
    """One HTTP request as the fake saw it; times are ``time.monotonic()`` stamps."""

    method: str
    path: str
    body: Any  # parsed JSON, raw text if not JSON, None if empty
    started: float
    ended: float | None = None
    status: int | None = None
    query: dict[str, str] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)
    # Generation routes only: when the queue lock was acquired (the GPU started working).
    locked_at: float | None = None


class CallLog:
    """Thread-safe list of :class:`Call` with blocking waits (a Condition, no polling)."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._calls: list[Call] = []

    def add(self, call: Call) -> Call:
        with self._cond:
            self._calls.append(call)
            self._cond.notify_all()
        return call

    def finish(self, call: Call, status: int) -> None:
        with self._cond:
            call.status = status
            call.ended = time.monotonic()
            self._cond.notify_all()

    def touch(self) -> None:
        """Wake waiters after a Call was mutated in place."""
        with self._cond:
            self._cond.notify_all()

    def snapshot(self) -> list[Call]:
        with self._cond:
            return list(self._calls)

    def clear(self) -> None:
        with self._cond:
            self._calls.clear()

    def wait_until(
        self, pick: Callable[[list[Call]], list[Call]], n: int, timeout: float, what: str
    ) -> list[Call]:
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                found = pick(self._calls)
                if len(found) >= n:
                    return found
                left = deadline - time.monotonic()
                if left <= 0:
                    seen = [f"{c.method} {c.path} -> {c.status}" for c in self._calls]
                    raise TimeoutError(
                        f"waited {timeout}s for {n} call(s) {what}, got {len(found)}; "
                        f"calls seen: {seen}"
                    )
                self._cond.wait(left)

    def wait_for_calls(
        self, path_suffix: str, n: int = 1, timeout: float = 5.0, *, completed: bool = False
    ) -> list[Call]:
        """Block until ``n`` calls whose path ends with ``path_suffix`` were received
        (``completed=True``: answered). Returns all matching calls."""

        def pick(calls: list[Call]) -> list[Call]:
            return [
                c
                for c in calls
                if c.path.endswith(path_suffix) and (not completed or c.ended is not None)
            ]

        return self.wait_until(pick, n, timeout, f"to '*{path_suffix}'")


def free_port() -> int:
    """A TCP port that was free a moment ago (for servers that must not listen yet)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
