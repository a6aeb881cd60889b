"""Small, pure policies: bounded retry with exponential backoff, and shutdown state."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class RetryPolicy:
    """``attempts`` retries after the first try, delays base*2^n capped at ``max_delay``."""

    retries: int = 3
    base_delay: float = 0.5
    max_delay: float = 10.0

    def delay(self, retry_number: int) -> float:
        """Delay before retry number ``retry_number`` (1-based)."""
        return float(min(self.max_delay, self.base_delay * (2 ** max(0, retry_number - 1))))

    def delays(self) -> list[float]:
        return [self.delay(n) for n in range(1, self.retries + 1)]

    def run(
        self,
        fn: Callable[[], T],
        retryable: Callable[[BaseException], bool],
        *,
        on_retry: Callable[[int, BaseException, float], None] | None = None,
        stop: threading.Event | None = None,
    ) -> T:
        """Call ``fn``; retry on exceptions ``retryable`` accepts; re-raise the last one."""
        attempt = 0
        while True:
            try:
                return fn()
            except Exception as exc:
                attempt += 1
                if attempt > self.retries or not retryable(exc):
                    raise
                wait = self.delay(attempt)
                if on_retry is not None:
                    on_retry(attempt, exc, wait)
                if stop is not None:
                    if stop.wait(wait):
                        raise
                else:
                    time.sleep(wait)


class Backoff:
    """Unbounded waiting with a bounded delay (readiness loops)."""

    def __init__(self, base: float = 0.5, max_delay: float = 10.0) -> None:
        self.base = base
        self.max_delay = max_delay
        self.attempt = 0

    def next_delay(self) -> float:
        self.attempt += 1
        return float(min(self.max_delay, self.base * (2 ** (self.attempt - 1))))

    def reset(self) -> None:
        self.attempt = 0


class ShutdownPolicy:
    """First signal: drain (stop receiving, finish or interrupt the running task within
    ``drain_seconds``). Second signal: exit at once."""

    def __init__(self, drain_seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.drain_seconds = drain_seconds
        self.stopping = threading.Event()
        self._clock = clock
        self._deadline: float | None = None
        self._signals = 0
        self._lock = threading.Lock()

    def request(self) -> bool:
        """Record a stop request; returns True if this is the second one (exit immediately)."""
        with self._lock:
            self._signals += 1
            if self._signals == 1:
                self._deadline = self._clock() + self.drain_seconds
                self.stopping.set()
            return self._signals > 1

    @property
    def drain_deadline(self) -> float | None:
        return self._deadline

    def drain_remaining(self) -> float | None:
        if self._deadline is None:
            return None
        return max(0.0, self._deadline - self._clock())
