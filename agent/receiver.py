"""The receiver stage: long-polls SQS for one message at a time, parses it, skips tasks whose
result is already stored, resolves ``content_ref`` and downloads the inputs. It holds at most one
prepared message ahead of the GPU (a semaphore the GPU stage releases when it takes the task), so
other pods are not starved. With a task table it records each task it takes as running (see
``sdfleet.agent.task_progress``) and checks the task's ``metadata.callback``: a bad callback is
dropped with a warning, the task still runs."""

from __future__ import annotations

import logging
import queue
import threading
import time
from typing import Any

from sdfleet.agent import errors
from sdfleet.agent.completion import Completer
from sdfleet.agent.config import Config
from sdfleet.agent.contract import (
    MAX_BODY_BYTES,
    ContractError,
    PoisonMessage,
    RuntimeInfo,
    Task,
    check_content,
    loads_strict,
    parse_queue_message,
    parse_s3_uri,
    task_key_prefix,
)
from sdfleet.agent.contract_callback import Callback, parse_callback
from sdfleet.agent.errors import ServerUnavailable, TaskError
from sdfleet.agent.held import Finished, Held, Liveness, Republish, RunningNote, ms, queue_wait_ms
from sdfleet.agent.messages import MessageBook, trace_header
from sdfleet.agent.outputs import task_digest
from sdfleet.agent.policies import ShutdownPolicy
from sdfleet.agent.servers.base import InferenceServer
from sdfleet.agent.task_progress import SENT_AT_MS
from sdfleet.agent.tracing import RUNTIME, TASK_ID, Tracing

log = logging.getLogger("agent.worker")


class ReceiverStage:
    """Mixin of :class:`sdfleet.agent.worker.Agent` (the attributes below are the Agent's)."""

    config: Config
    sqs: Any
    s3: Any
    server: InferenceServer
    tracing: Tracing
    shutdown: ShutdownPolicy
    runtime_info: RuntimeInfo
    liveness: Liveness
    server_ready: threading.Event
    book: MessageBook
    completion: Completer
    _ready_lock: threading.Lock
    _slot: threading.Semaphore
    _handoff: queue.Queue[Held]
    _receiver_done: threading.Event

    def _enqueue_upload(self, item: Finished | RunningNote | Republish) -> None:
        raise NotImplementedError

    def _receiver_loop(self) -> None:
        try:
            while not self.shutdown.stopping.is_set():
                self.liveness.touch("receiver", self.config.receive_wait_seconds + 120)
                # Receive nothing while the server is away (the GPU stage is waiting for it).
                if not self.server_ready.wait(0.5):
                    continue
                if not self._slot.acquire(timeout=0.5):
                    continue
                if self.shutdown.stopping.is_set():
                    self._slot.release()
                    break
                try:
                    held = self._receive_one()
                except Exception as exc:
                    self._slot.release()
                    log.warning("receive failed", extra={"fields": {"error": str(exc)}})
                    self.shutdown.stopping.wait(1.0)
                    continue
                if held is None:
                    self._slot.release()
                    continue
                if self.shutdown.stopping.is_set():
                    self.book.release(held, "stopping")
                    self._slot.release()
                    break
                try:
                    prepared = self._prepare(held)
                except Exception as exc:  # a bug must not kill the receiver nor loop fast
                    fields = {"message_id": held.message_id, **held.log_fields()}
                    log.exception("cannot handle message", extra={"fields": fields})
                    self.completion.poison(
                        held, PoisonMessage(f"agent error: {type(exc).__name__}: {exc}")
                    )
                    prepared = False
                handed = False
                if prepared:
                    with self._ready_lock:
                        if self.server_ready.is_set():
                            self._handoff.put(held)
                            handed = True
                    if not handed:
                        self.book.release(held, "server unavailable")
                if not handed:
                    self._slot.release()
        finally:
            self._receiver_done.set()

    def _receive_one(self) -> Held | None:
        response = self.sqs.receive_message(
            QueueUrl=self.config.sqs_queue_url,
            MaxNumberOfMessages=1,
            WaitTimeSeconds=(
                self.config.prefetch_wait_seconds
                if self.book.heartbeat.held()
                else self.config.receive_wait_seconds
            ),
            VisibilityTimeout=self.config.visibility_extension_seconds,
            MessageSystemAttributeNames=[
                "AWSTraceHeader",
                "ApproximateReceiveCount",
                "SentTimestamp",
            ],
            MessageAttributeNames=["All"],
        )
        messages = response.get("Messages") or []
        if not messages:
            return None
        message = messages[0]
        attributes = message.get("Attributes") or {}
        held = Held(
            message_id=message["MessageId"],
            receipt_handle=message["ReceiptHandle"],
            body=message.get("Body") or "",
            receive_count=int(attributes.get("ApproximateReceiveCount", "1")),
            received_at=time.monotonic(),
            queue_wait_ms=None,
            trace_header=trace_header(message),
        )
        if not self.book.hold(held):
            return None  # a second delivery of the task this agent is running
        held.start_trace(
            self.tracing,
            {
                RUNTIME: self.config.runtime_name,
                "messaging.system": "aws_sqs",
                "messaging.message.id": held.message_id,
            },
        )
        held.begin_stage("receive")
        sent = attributes.get("SentTimestamp")
        held.queue_wait_ms = queue_wait_ms(None, sent)
        if isinstance(sent, str) and sent.isdigit():
            held.timings[SENT_AT_MS] = int(sent)
        return held

    def _prepare(self, held: Held) -> bool:
        """Parse and download inputs. False when the message was dealt with here."""
        try:
            parsed = parse_queue_message(held.body, self.runtime_info)
        except PoisonMessage as exc:
            held.end_stage(errors.INVALID_TASK, exc.reason)
            self.completion.poison(held, exc)
            return False
        held.task = parsed.task
        held.digest = task_digest(parsed.task)  # before content_ref is resolved
        wait = queue_wait_ms(parsed.published_at, None)
        if wait is not None:
            held.queue_wait_ms = wait
        meta = parsed.task.metadata
        if held.span is not None:
            held.span.set_attributes(
                {TASK_ID: meta.id, RUNTIME: meta.runtime, "sdfleet.tasktype": meta.tasktype}
            )
        self.book.log_state(
            held, "received", receive_count=held.receive_count, queue_wait_ms=held.queue_wait_ms
        )
        fields = held.log_fields()
        log.debug("task content", extra={"fields": {**fields, "content": parsed.task.content}})
        callback = _checked_callback(
            parsed.callback,
            meta.id,
            loopback=self.config.sandbox_loopback_callbacks,
            trace_id=held.trace_id,
        )
        self.completion.callbacks.remember(held, callback)
        stored = self.completion.stored_result(parsed.task, fields)
        if stored is not None:
            # Already run and stored (the notification or the delete failed last time).
            held.end_stage()
            self._enqueue_upload(Republish(held=held, document=stored))
            return False
        self.completion.progress.running(held)
        held.end_stage()
        fetched = time.monotonic()
        try:
            with held.in_stage("input_fetch", errors.INPUT_DOWNLOAD_FAILED):
                if parsed.task.content_ref is not None:
                    held.task = self._resolve_content_ref(parsed.task)
                held.prepared = self.server.prepare(held.task)
        except TaskError as exc:
            held.timings["download_ms"] = ms(time.monotonic() - fetched)
            self._enqueue_upload(Finished(held=held, error=exc))
            return False
        except ServerUnavailable as exc:
            fields = {**held.log_fields(), "error": str(exc)}
            log.warning("server unavailable while preparing", extra={"fields": fields})
            self.book.release(held, "server unavailable")
            self.shutdown.stopping.wait(1.0)
            return False
        except Exception as exc:
            log.exception("unexpected error while preparing", extra={"fields": held.log_fields()})
            self._enqueue_upload(
                Finished(held=held, error=TaskError(errors.INPUT_DOWNLOAD_FAILED, str(exc)))
            )
            return False
        held.timings["download_ms"] = ms(time.monotonic() - fetched)
        return True

    def _resolve_content_ref(self, task: Task) -> Task:
        """Read the task's offloaded content: only its own request object in the output bucket
        (``<prefix>/<id>/...request.json``, as the API writes it), at most a request's size,
        checked as inline content is."""
        ref = task.content_ref or ""
        meta = task.metadata
        folder = task_key_prefix(meta.prefix, meta.id) + "/"
        try:
            bucket, key = parse_s3_uri(ref)
            if bucket != self.config.s3_bucket:
                # Only the API offloads content, into the output bucket: refuse anything else.
                raise ValueError(f"content_ref must be in s3://{self.config.s3_bucket}/")
            name = key[len(folder) :] if key.startswith(folder) else ""
            if "/" in name or not name.endswith("request.json"):
                raise ValueError(f"content_ref must be a request object under {folder}")
            obj = self.s3.get_object(Bucket=bucket, Key=key)
            if int(obj.get("ContentLength") or 0) > MAX_BODY_BYTES:
                raise ValueError(f"the object is over {MAX_BODY_BYTES} bytes")
            content = loads_strict(obj["Body"].read(MAX_BODY_BYTES + 1))
        except Exception as exc:
            raise TaskError(
                errors.CONTENT_REF_FAILED,
                f"cannot read content_ref {ref}: {exc}",
                {"content_ref": ref},
            ) from exc
        try:
            content = check_content(self.runtime_info, meta.tasktype, content, "content_ref")
        except ContractError as exc:
            raise TaskError(errors.INVALID_TASK, str(exc), exc.to_body()["error"]) from exc
        return Task(metadata=meta, content=content, api_version=task.api_version)


def _checked_callback(
    value: object, task_id: str, *, loopback: bool = False, trace_id: str | None = None
) -> Callback | None:
    """The task's callback when it passes the submission checks; a bad one is dropped with a
    warning naming the field (the task still runs: only its webhooks are lost). ``loopback``:
    the sandbox's opt-in (``SDFLEET_SANDBOX_LOOPBACK_CALLBACKS``)."""
    if value is None:
        return None
    fields = {"event": "callback_dropped", "task_id": task_id, "trace_id": trace_id}
    try:
        return parse_callback(value, loopback=loopback)
    except ContractError as exc:
        fields.update(field=exc.field, code=exc.code)
        log.warning(f"callback dropped: {exc.message}", extra={"fields": fields})
    except Exception as exc:  # never let a hostile callback kill the task
        fields.update(error=type(exc).__name__)
        log.warning("callback dropped", extra={"fields": fields})
    return None
