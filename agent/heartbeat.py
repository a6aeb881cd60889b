"""Visibility heartbeat: every held message (running, prefetched or being uploaded) has its
visibility extended well before it expires, so no other pod receives it while we work on it."""

from __future__ import annotations

import logging
import threading
from typing import Any

log = logging.getLogger("agent.heartbeat")


class Heartbeat:
    def __init__(self, sqs: Any, queue_url: str, interval: float, extension: int) -> None:
        self.sqs = sqs
        self.queue_url = queue_url
        self.interval = interval
        self.extension = extension
        self._held: dict[str, str] = {}  # message id -> receipt handle
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.beats = 0

    def hold(self, message_id: str, receipt_handle: str) -> None:
        with self._lock:
            self._held[message_id] = receipt_handle

    def drop(self, message_id: str) -> None:
        with self._lock:
            self._held.pop(message_id, None)

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
        while not self._stop.wait(self.interval):
            self.beat()

    def beat(self) -> None:
        held = list(self.held().items())
        for start in range(0, len(held), 10):
            batch = held[start : start + 10]
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
                continue
            for failed in result.get("Failed", []):
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
        self.beats += 1
