"""Visibility heartbeat: every held message (prefetched, running or being uploaded) has its
visibility extended well before it expires, so no other pod receives it while we work on it.

The heartbeat runs on its own thread and does nothing but ChangeMessageVisibilityBatch, through
its own SQS client (short timeouts, no SDK retries: see ``sdfleet.agent.__main__.aws_clients``), so the
long-poll receive, an upload or the GPU stage can never delay it. A failed beat is retried after
``retry_delay`` instead of a whole interval: with the defaults (5 s beats, 15 s extension) a held
message survives two failed beats.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

log = logging.getLogger("agent.heartbeat")


class Heartbeat:
    def __init__(
        self,
        sqs: Any,
        queue_url: str,
        interval: float,
        extension: int,
        *,
        retry_delay: float = 1.0,
        on_busy: Callable[[bool], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.sqs = sqs
        self.queue_url = queue_url
        self.interval = interval
        self.extension = extension
        self.retry_delay = min(retry_delay, interval)
        self._on_busy = on_busy
        self._clock = clock
        self._held: dict[str, str] = {}  # message id -> receipt handle
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.beats = 0
        self.failures = 0
        # Longest time between two successful beats while a message was held (seconds).
        self.max_gap = 0.0
        self._last_ok: float | None = None

    def hold(self, message_id: str, receipt_handle: str) -> None:
        with self._lock:
            was_idle = not self._held
            self._held[message_id] = receipt_handle
            if was_idle:
                self._last_ok = self._clock()  # the receive itself set the visibility
                if self._on_busy is not None:
                    self._on_busy(True)

    def drop(self, message_id: str) -> None:
        with self._lock:
            if self._held.pop(message_id, None) is not None and not self._held:
                self._last_ok = None
                if self._on_busy is not None:
                    self._on_busy(False)

    def held(self) -> dict[str, str]:
        with self._lock:
            return dict(self._held)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="heartbeat", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _loop(self) -> None:
        delay = self.interval
        while not self._stop.wait(delay):
            ok = self.beat()
            delay = self.interval if ok else self.retry_delay

    def beat(self) -> bool:
        """Extend every held message; False when a call failed (retry soon)."""
        held = list(self.held().items())
        ok = True
        for start in range(0, len(held), 10):
            batch = held[start : start + 10]
            if not self._extend(batch):
                ok = False
        self.beats += 1
        if ok and held:
            now = self._clock()
            with self._lock:
                if self._last_ok is not None:
                    self.max_gap = max(self.max_gap, now - self._last_ok)
                if self._held:
                    self._last_ok = now
        elif not ok:
            self.failures += 1
        return ok

    def _extend(self, batch: list[tuple[str, str]]) -> bool:
        entries = [
            {"Id": str(i), "ReceiptHandle": handle, "VisibilityTimeout": self.extension}
            for i, (_, handle) in enumerate(batch)
        ]
        try:
            result = self.sqs.change_message_visibility_batch(
                QueueUrl=self.queue_url, Entries=entries
            )
        except Exception as exc:
            log.warning("visibility heartbeat failed", extra={"fields": {"error": str(exc)}})
            return False
        for failed in result.get("Failed", []):
            # A refused entry (typically a message deleted meanwhile) is not retried soon.
            message_id = batch[int(failed["Id"])][0]
            log.warning(
                "visibility heartbeat refused for a held message",
                extra={
                    "fields": {
                        "message_id": message_id,
                        "code": failed.get("Code"),
                        "error": failed.get("Message"),
                    }
                },
            )
        return True
