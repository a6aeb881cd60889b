"""SQS bookkeeping for held messages: delete, release, the task-state log line, and the X-Ray
header a received message carries."""

from __future__ import annotations

import json
import logging
import threading
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

from sdfleet.agent.contract_callback import Callback
from sdfleet.agent.heartbeat import Heartbeat
from sdfleet.agent.held import Held
from sdfleet.agent.tracing import XRAY_HEADER

log = logging.getLogger("agent.worker")
# Callbacks remembered per message id, from receipt to the final notification. Held has no
# field for it; an agent holds at most a few messages, and a released one is received (and
# its callback read) again, so the oldest entries can go.
MAX_CALLBACKS = 64


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
        held.end_task("released")
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
        log.info(
            "message released",
            extra={
                "fields": {
                    "event": "released",
                    **held.log_fields(),
                    "reason": why,
                    "visibility_s": visibility,
                }
            },
        )

    def log_state(self, held: Held, state: str, **fields: Any) -> None:
        log.info(
            f"task {state}",
            extra={
                "fields": {
                    "event": "task_state",
                    "state": state,
                    **held.log_fields(),
                    "runtime": self.runtime_name,
                    "message_id": held.message_id,
                    **fields,
                }
            },
        )


def trace_header(message: Mapping[str, Any]) -> str | None:
    """The X-Ray header of a received SQS message: the ``AWSTraceHeader`` system attribute
    (set by SNS in AWS, or by SendMessage), else the ``X-Amzn-Trace-Id`` message attribute the
    task API publishes, read from SQS (raw delivery) or from the SNS envelope in the body."""
    header = (message.get("Attributes") or {}).get("AWSTraceHeader")
    if header:
        return str(header)
    attribute = (message.get("MessageAttributes") or {}).get(XRAY_HEADER) or {}
    if attribute.get("StringValue"):
        return str(attribute["StringValue"])
    body = message.get("Body") or ""
    # Inside the envelope's Message (a JSON string) the name's quotes are escaped, so this only
    # matches a MessageAttributes key; anything else is not worth parsing the body for.
    if f'"{XRAY_HEADER}"' not in body:
        return None
    try:
        envelope = json.loads(body)
        if envelope.get("Type") != "Notification":
            return None
        value = envelope["MessageAttributes"][XRAY_HEADER]["Value"]
    except (ValueError, TypeError, KeyError, AttributeError):
        return None
    return value if isinstance(value, str) and value else None


class CallbackMemory:
    """The checked callback of each held task, by message id: written by the receiver thread,
    read and cleared by the uploader."""

    def __init__(self) -> None:
        self._callbacks: OrderedDict[str, Callback] = OrderedDict()
        self._lock = threading.Lock()

    def remember(self, held: Held, callback: Callback | None) -> None:
        """The task's checked callback, for its notifications (None: it has none)."""
        with self._lock:
            self._callbacks.pop(held.message_id, None)
            if callback is not None:
                self._callbacks[held.message_id] = callback
                while len(self._callbacks) > MAX_CALLBACKS:
                    self._callbacks.popitem(last=False)

    def json(self, held: Held) -> dict[str, Any] | None:
        with self._lock:
            callback = self._callbacks.get(held.message_id)
        return callback.to_json() if callback is not None else None

    def forget(self, held: Held) -> None:
        with self._lock:
            self._callbacks.pop(held.message_id, None)
