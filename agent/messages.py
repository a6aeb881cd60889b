"""SQS bookkeeping for held messages: delete, release, and the task-state log line."""

from __future__ import annotations

import contextlib
import logging
import threading
from typing import Any

from sdfleet.agent.heartbeat import Heartbeat
from sdfleet.agent.held import Held

log = logging.getLogger("agent.worker")


class MessageBook:
    """Every message the agent holds ends here: deleted (done) or released (visible again)."""

    def __init__(self, sqs: Any, queue_url: str, heartbeat: Heartbeat, runtime_name: str) -> None:
        self.sqs = sqs
        self.queue_url = queue_url
        self.heartbeat = heartbeat
        self.runtime_name = runtime_name
        self.counts = {"completed": 0, "failed": 0, "poison": 0, "released": 0, "republished": 0}
        self._held: dict[str, Held] = {}
        self._lock = threading.Lock()

    def hold(self, held: Held) -> bool:
        """Track a received message; False when this agent holds it already.

        After missed heartbeats SQS may deliver a message again to the agent that is running
        it. Only the newest receipt handle deletes it, so the held one adopts that handle and
        the duplicate is dropped instead of running the task twice.
        """
        with self._lock:
            current = self._held.get(held.message_id)
            if current is None:
                self._held[held.message_id] = held
            else:
                current.receipt_handle = held.receipt_handle
            self.heartbeat.hold(held.message_id, held.receipt_handle)
        if current is not None:
            log.warning(
                "message delivered again while held; kept the running one",
                extra={"fields": {"message_id": held.message_id}},
            )
        return current is None

    def _forget(self, held: Held) -> None:
        with self._lock:
            if self._held.get(held.message_id) is held:
                del self._held[held.message_id]
            self.heartbeat.drop(held.message_id)

    def delete(self, held: Held) -> None:
        try:
            self.sqs.delete_message(QueueUrl=self.queue_url, ReceiptHandle=held.receipt_handle)
        except Exception as exc:
            log.warning(
                "delete failed; the message may be delivered again",
                extra={"fields": {"message_id": held.message_id, "error": str(exc)}},
            )
        finally:
            # After the delete: the heartbeat keeps it hidden until it is gone.
            self._forget(held)

    def release(self, held: Held, why: str, visibility: int = 0, count: bool = True) -> None:
        """Make a held message visible again (now, or after ``visibility`` seconds)."""
        self._forget(held)
        if count:
            self.counts["released"] += 1
        with contextlib.suppress(Exception):
            if held.span is not None:
                held.span.set_attribute("sdfleet.status", "released")
                held.span.end()
        try:
            self.sqs.change_message_visibility(
                QueueUrl=self.queue_url,
                ReceiptHandle=held.receipt_handle,
                VisibilityTimeout=visibility,
            )
        except Exception as exc:
            log.warning(
                "release failed",
                extra={"fields": {"message_id": held.message_id, "error": str(exc)}},
            )
        task_id = held.task.metadata.id if held.task else None
        log.info(
            "message released",
            extra={
                "fields": {
                    "event": "released",
                    "id": task_id,
                    "reason": why,
                    "visibility_s": visibility,
                }
            },
        )

    def log_state(self, held: Held, state: str, **fields: Any) -> None:
        meta = held.task.metadata if held.task else None
        log.info(
            f"task {state}",
            extra={
                "fields": {
                    "event": "task_state",
                    "state": state,
                    "id": meta.id if meta else None,
                    "runtime": self.runtime_name,
                    "message_id": held.message_id,
                    **fields,
                }
            },
        )
