"""The pipelined queue loop.

Three stages, each on its own thread, so the GPU never waits for the agent:

* receiver: long-polls SQS for one message at a time, parses it, resolves ``content_ref`` and
  downloads the inputs. It holds at most one prepared message ahead of the GPU (a semaphore
  released when the GPU takes the prepared task), so other pods are not starved.
* GPU stage: one task at a time against the inference server, under a watchdog that interrupts
  the server at the job timeout or at the end of the shutdown drain.
* uploader: decodes the images, writes them and the result document to S3, publishes the
  notification and only then deletes the message.

Every held message (prefetched, running, uploading) is kept invisible by the heartbeat.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from agent import errors
from agent.config import Config
from agent.contract import (
    STATUS_COMPLETED,
    STATUS_FAILED,
    STATUS_RUNNING,
    ContractError,
    PoisonMessage,
    RuntimeInfo,
    Task,
    parse_queue_message,
    parse_s3_uri,
    result_key,
    validate_content,
)
from agent.errors import Interrupted, ServerUnavailable, TaskError
from agent.heartbeat import Heartbeat
from agent.metrics import Metrics
from agent.outputs import TaskOutcome, notification, planned_keys, result_document
from agent.policies import Backoff, ShutdownPolicy
from agent.servers.base import InferenceServer, JobControl, Prepared, RawResult, StartupError
from agent.tracing import Tracing

log = logging.getLogger("agent.worker")

EXIT_OK = 0
EXIT_STARTUP = 3


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


def _queue_wait_ms(published_at: str | None, sent_ms: str | None) -> int | None:
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


def _ms(seconds: float) -> int:
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


class Agent:
    def __init__(
        self,
        config: Config,
        *,
        sqs: Any,
        s3: Any,
        sns: Any,
        server: InferenceServer,
        metrics: Metrics | None = None,
        tracing: Tracing | None = None,
    ) -> None:
        self.config = config
        self.sqs = sqs
        self.s3 = s3
        self.sns = sns
        self.server = server
        self.metrics = metrics or Metrics(config.runtime_name)
        self.tracing = tracing or Tracing.setup(None, "sdfleet-agent")
        self.shutdown = ShutdownPolicy(config.drain_seconds)
        self.runtime_info = RuntimeInfo(
            name=config.runtime_name,
            type=config.runtime_type,
            model_filename=config.model_filename,
            dynamic_model=config.dynamic_sd_model,
        )
        self.heartbeat = Heartbeat(
            sqs, config.sqs_queue_url, config.heartbeat_seconds, config.visibility_extension_seconds
        )
        self.liveness = Liveness()
        self.server_ready = threading.Event()
        # Taken to hand a prepared task to the GPU stage and to mark the server lost, so a
        # task received while the server goes away is never held until it comes back.
        self._ready_lock = threading.Lock()
        self.finished = threading.Event()
        self._slot = threading.Semaphore(1)
        self._handoff: queue.Queue[Held] = queue.Queue()
        self._uploads: queue.Queue[Finished | RunningNote | None] = queue.Queue(maxsize=4)
        self._receiver_done = threading.Event()
        self._threads: list[threading.Thread] = []
        self._current: tuple[JobControl, Prepared] | None = None
        self._current_lock = threading.Lock()
        self._last_gpu_end: float | None = None
        self.ready_probes = 0
        self.counts = {"completed": 0, "failed": 0, "poison": 0, "released": 0}

    # ----------------------------------------------------------------------------------------
    # lifecycle

    def request_stop(self) -> None:
        """Signal handler body: the first call drains, the second exits at once."""
        if self.shutdown.request():
            log.warning("second stop signal: exiting now")
            os._exit(1)
        log.info(
            "stop requested: draining",
            extra={"fields": {"drain_seconds": self.config.drain_seconds}},
        )

    def run(self) -> int:
        """Block until shut down; return the process exit status."""
        self.heartbeat.start()
        try:
            if not self._wait_ready():
                return EXIT_OK
            if self.config.model_filename and not self.config.dynamic_sd_model:
                try:
                    self.server.verify_static_model(self.config.model_filename)
                except StartupError as exc:
                    log.error(str(exc), extra={"fields": {"event": "startup_failed"}})
                    return EXIT_STARTUP
            self._start_thread("receiver", self._receiver_loop)
            self._start_thread("uploader", self._uploader_loop)
            self._start_thread("watchdog", self._watchdog_loop)
            log.info("agent started", extra={"fields": {"runtime": self.config.runtime_label}})
            self._gpu_loop()
            self._receiver_done.wait(self.config.receive_wait_seconds + 60)
            self._release_handoff()
            self._uploads.put(None)
            for thread in self._threads:
                thread.join(timeout=120)
            log.info("agent stopped", extra={"fields": dict(self.counts)})
            return EXIT_OK
        finally:
            self.finished.set()
            self.heartbeat.stop()
            self.tracing.shutdown()

    def _start_thread(self, name: str, target: Any) -> None:
        thread = threading.Thread(target=target, name=name, daemon=True)
        thread.start()
        self._threads.append(thread)

    def _wait_ready(self) -> bool:
        backoff = Backoff(base=min(0.5, self.config.retry_base_seconds or 0.5), max_delay=10.0)
        self.server_ready.clear()
        started = time.monotonic()
        while not self.shutdown.stopping.is_set():
            # Waiting for the server is progress, not a stuck loop (the GPU stage waits here
            # too when the server goes away mid-run).
            self.liveness.touch("gpu", 60)
            self.ready_probes += 1
            if self.server.probe():
                self.server_ready.set()
                log.info(
                    "inference server ready",
                    extra={"fields": {"waited_ms": _ms(time.monotonic() - started)}},
                )
                return True
            delay = backoff.next_delay()
            log.info(
                "waiting for the inference server",
                extra={
                    "fields": {
                        "url": self.config.api_base_url,
                        "attempt": backoff.attempt,
                        "retry_in_s": delay,
                    }
                },
            )
            if self.shutdown.stopping.wait(delay):
                break
        return False

    # ----------------------------------------------------------------------------------------
    # health

    def live(self) -> tuple[bool, dict[str, object]]:
        stuck = self.liveness.stuck()
        dead = (
            [t.name for t in self._threads if not t.is_alive()]
            if not self.finished.is_set()
            else []
        )
        if not self.heartbeat.alive() and not self.finished.is_set():
            dead.append("heartbeat")
        return (not stuck and not dead), {"stuck": stuck, "dead": dead}

    def ready(self) -> tuple[bool, dict[str, object]]:
        ok, detail = self.live()
        server = self.server_ready.is_set()
        stopping = self.shutdown.stopping.is_set()
        return ok and server and not stopping, {
            **detail,
            "server_ready": server,
            "stopping": stopping,
        }

    # ----------------------------------------------------------------------------------------
    # receiver

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
                    self._release(held, "stopping")
                    self._slot.release()
                    break
                try:
                    prepared = self._prepare(held)
                except Exception as exc:  # a bug must not kill the receiver nor loop fast
                    log.exception(
                        "cannot handle message", extra={"fields": {"message_id": held.message_id}}
                    )
                    self._poison(held, PoisonMessage(f"agent error: {type(exc).__name__}: {exc}"))
                    prepared = False
                handed = False
                if prepared:
                    with self._ready_lock:
                        if self.server_ready.is_set():
                            self._handoff.put(held)
                            handed = True
                    if not handed:
                        self._release(held, "server unavailable")
                if not handed:
                    self._slot.release()
        finally:
            self._receiver_done.set()

    def _receive_one(self) -> Held | None:
        response = self.sqs.receive_message(
            QueueUrl=self.config.sqs_queue_url,
            MaxNumberOfMessages=1,
            WaitTimeSeconds=self.config.receive_wait_seconds,
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
            trace_header=attributes.get("AWSTraceHeader"),
        )
        self.heartbeat.hold(held.message_id, held.receipt_handle)
        held.queue_wait_ms = _queue_wait_ms(None, attributes.get("SentTimestamp"))
        return held

    def _prepare(self, held: Held) -> bool:
        """Parse and download inputs. False when the message was dealt with here."""
        started = time.monotonic()
        try:
            parsed = parse_queue_message(held.body, self.runtime_info)
        except PoisonMessage as exc:
            self._poison(held, exc)
            return False
        held.task = parsed.task
        wait = _queue_wait_ms(parsed.published_at, None)
        if wait is not None:
            held.queue_wait_ms = wait
        meta = parsed.task.metadata
        held.span = self.tracing.start_task_span(
            held.trace_header,
            {
                "sdfleet.task.id": meta.id,
                "sdfleet.runtime": meta.runtime,
                "sdfleet.tasktype": meta.tasktype,
                "messaging.message.id": held.message_id,
            },
        )
        self._log_state(
            held, "received", receive_count=held.receive_count, queue_wait_ms=held.queue_wait_ms
        )
        log.debug("task content", extra={"fields": {"id": meta.id, "content": parsed.task.content}})
        try:
            if parsed.task.content_ref is not None:
                held.task = self._resolve_content_ref(parsed.task)
            held.prepared = self.server.prepare(held.task)
        except TaskError as exc:
            held.timings["download_ms"] = _ms(time.monotonic() - started)
            self._enqueue_upload(Finished(held=held, error=exc))
            return False
        except ServerUnavailable as exc:
            log.warning("server unavailable while preparing", extra={"fields": {"error": str(exc)}})
            self._release(held, "server unavailable")
            self.shutdown.stopping.wait(1.0)
            return False
        except Exception as exc:
            log.exception("unexpected error while preparing", extra={"fields": {"id": meta.id}})
            self._enqueue_upload(
                Finished(held=held, error=TaskError(errors.INPUT_DOWNLOAD_FAILED, str(exc)))
            )
            return False
        held.timings["download_ms"] = _ms(time.monotonic() - started)
        return True

    def _resolve_content_ref(self, task: Task) -> Task:
        ref = task.content_ref or ""
        try:
            bucket, key = parse_s3_uri(ref)
            if bucket != self.config.s3_bucket:
                # Only the API offloads content, into the output bucket: refuse anything else.
                raise ValueError(f"content_ref must be in s3://{self.config.s3_bucket}/")
            obj = self.s3.get_object(Bucket=bucket, Key=key)
            content = json.loads(obj["Body"].read())
        except Exception as exc:
            raise TaskError(
                errors.CONTENT_REF_FAILED,
                f"cannot read content_ref {ref}: {exc}",
                {"content_ref": ref},
            ) from exc
        try:
            content = validate_content(
                self.config.runtime_type, task.metadata.tasktype, content, "content_ref"
            )
        except ContractError as exc:
            raise TaskError(errors.INVALID_TASK, str(exc), exc.to_body()["error"]) from exc
        return Task(metadata=task.metadata, content=content, api_version=task.api_version)

    def _poison(self, held: Held, exc: PoisonMessage) -> None:
        """Leave the message for redrive to the DLQ, with a growing visibility so we do not
        spin on it; notify once (first receive) when the id is known."""
        self.counts["poison"] += 1
        log.warning(
            "poison message",
            extra={
                "fields": {
                    "event": "poison",
                    "message_id": held.message_id,
                    "id": exc.task_id,
                    "reason": exc.reason,
                    "receive_count": held.receive_count,
                }
            },
        )
        if exc.task_id and held.receive_count <= 1:
            detail = exc.error.to_body()["error"] if exc.error else None
            body, attributes = notification(
                runtime=self.config.runtime_name,
                task_id=exc.task_id,
                status=STATUS_FAILED,
                bucket=self.config.s3_bucket,
                prefix="",
                image_urls=[],
                context=None,
                error={"code": errors.INVALID_TASK, "message": exc.reason, "detail": detail},
                timings={},
                attempt=held.receive_count,
                with_output=False,
            )
            try:
                self.sns.publish(
                    TopicArn=self.config.sns_topic_arn, Message=body, MessageAttributes=attributes
                )
            except Exception as err:
                log.warning("poison notification failed", extra={"fields": {"error": str(err)}})
        visibility = min(
            43200, self.config.poison_visibility_seconds * 2 ** (held.receive_count - 1)
        )
        self._release(held, "poison", visibility=visibility, count=False)
        self.metrics.emit({"TasksFailed": 1}, reason="poison")

    # ----------------------------------------------------------------------------------------
    # GPU stage

    def _gpu_loop(self) -> None:
        pending: list[Finished] = []
        while True:
            self.liveness.touch("gpu", 5.0 + self.config.receive_wait_seconds + 60)
            if pending and self._handoff.empty():
                # Nothing to hand off to the GPU: upload right away.
                self._flush(pending)
            try:
                held = self._handoff.get(timeout=0.2)
            except queue.Empty:
                if self.shutdown.stopping.is_set():
                    self._flush(pending)
                    return
                continue
            if self.shutdown.stopping.is_set():
                self._slot.release()
                self._flush(pending)
                self._release(held, "stopping")
                continue
            released = threading.Event()

            def on_sent(batch: list[Finished] = pending, done: threading.Event = released) -> None:
                self._slot.release()
                done.set()
                self._flush(batch)

            pending = []
            result = self._run_on_gpu(held, on_sent)
            if not released.is_set():  # the job never reached the server
                on_sent()
            if result is not None:
                pending.append(result)

    def _flush(self, pending: list[Finished]) -> None:
        while pending:
            self._enqueue_upload(pending.pop(0))

    def _run_on_gpu(self, held: Held, on_sent: Any) -> Finished | None:
        assert held.prepared is not None
        prepared = held.prepared
        if self.config.callback_when_running:
            self._enqueue_upload(RunningNote(held=held))
        started = time.monotonic()
        gap = None if self._last_gpu_end is None else started - self._last_gpu_end
        control = JobControl(timeout_at=started + self.config.job_timeout_seconds, on_sent=on_sent)
        self.liveness.touch(
            "gpu", self.config.job_timeout_seconds + self.config.drain_seconds + 120
        )
        with self._current_lock:
            self._current = (control, prepared)
        self._log_state(held, "running")
        span = self.tracing.child(held.span, "inference") if held.span is not None else None
        result = Finished(held=held)
        try:
            result.raw = self.server.run(prepared, control)
        except TaskError as exc:
            result.error = exc
        except Interrupted:
            control.sent()
            self._release(held, "interrupted for shutdown")
            return None
        except ServerUnavailable as exc:
            control.sent()
            log.warning(
                "inference server unavailable; releasing the task and waiting",
                extra={"fields": {"id": prepared.task.metadata.id, "error": str(exc)}},
            )
            with self._ready_lock:
                self.server_ready.clear()
            self._release(held, "server unavailable")
            # Let other pods have the prefetched task rather than holding it while we wait.
            self._release_handoff()
            self._wait_ready()
            return None
        except Exception as exc:
            log.exception(
                "unexpected inference error", extra={"fields": {"id": prepared.task.metadata.id}}
            )
            result.error = TaskError(errors.SERVER_ERROR, f"{type(exc).__name__}: {exc}")
        finally:
            with self._current_lock:
                self._current = None
            self._last_gpu_end = time.monotonic()
            if span is not None:
                span.end()
        held.timings["inference_ms"] = _ms(self._last_gpu_end - started)
        if gap is not None:
            held.timings["gpu_idle_gap_us"] = int(gap * 1e6)
        return result

    def _watchdog_loop(self) -> None:
        """Interrupt the running job at its timeout, or when the shutdown drain runs out."""
        while not self.finished.is_set():
            with self._current_lock:
                current = self._current
            if current is not None:
                control, prepared = current
                reason = None
                if time.monotonic() >= control.timeout_at:
                    reason = "timeout"
                elif self.shutdown.stopping.is_set() and self.shutdown.drain_remaining() == 0:
                    reason = "shutdown"
                if reason and control.abort(reason):
                    log.warning(
                        "interrupting the running job",
                        extra={"fields": {"id": prepared.task.metadata.id, "reason": reason}},
                    )
                    self.server.interrupt(prepared)
            if (
                self._receiver_done.is_set()
                and self._handoff.empty()
                and current is None
                and (self.shutdown.stopping.is_set())
            ):
                return
            time.sleep(0.05)

    # ----------------------------------------------------------------------------------------
    # uploader

    def _enqueue_upload(self, item: Finished | RunningNote) -> None:
        self._uploads.put(item)

    def _uploader_loop(self) -> None:
        while True:
            self.liveness.touch("uploader", 3600)
            item = self._uploads.get()
            if item is None:
                return
            try:
                if isinstance(item, RunningNote):
                    self._publish_running(item.held)
                else:
                    self._complete(item)
            except Exception:
                log.exception("uploader error")

    def _publish_running(self, held: Held) -> None:
        assert held.task is not None
        meta = held.task.metadata
        body, attributes = notification(
            runtime=meta.runtime,
            task_id=meta.id,
            status=STATUS_RUNNING,
            bucket=self.config.s3_bucket,
            prefix=meta.prefix,
            image_urls=[],
            context=meta.context,
            error=None,
            timings={},
            attempt=held.receive_count,
            with_output=False,
        )
        self.sns.publish(
            TopicArn=self.config.sns_topic_arn, Message=body, MessageAttributes=attributes
        )

    def _complete(self, item: Finished) -> None:
        held = item.held
        assert held.task is not None
        meta = held.task.metadata
        started = time.monotonic()
        error = item.error
        outcome = TaskOutcome()
        if error is None and item.raw is not None:
            try:
                outcome = item.raw.finish()
            except TaskError as exc:
                error = exc
            except Exception as exc:
                error = TaskError(errors.SERVER_ERROR, f"unreadable server response: {exc}")
        if error is not None:
            outcome.error = error.to_json()
        status = STATUS_FAILED if error is not None else STATUS_COMPLETED
        bucket = self.config.s3_bucket
        try:
            keys = planned_keys(meta.prefix, meta.id, outcome.files)
            for key, file in zip(keys, outcome.files, strict=True):
                self.s3.put_object(
                    Bucket=bucket, Key=key, Body=file.data, ContentType=file.content_type
                )
            image_urls = [f"s3://{bucket}/{key}" for key in keys]
            held.timings["upload_ms"] = _ms(time.monotonic() - started)
            timings = self._timings(held)
            self.s3.put_object(
                Bucket=bucket,
                Key=result_key(meta.prefix, meta.id),
                Body=result_document(
                    task_id=meta.id,
                    runtime=meta.runtime,
                    status=status,
                    outcome=outcome,
                    image_urls=image_urls,
                    timings=timings,
                    attempt=held.receive_count,
                ),
                ContentType="application/json",
            )
            body, attributes = notification(
                runtime=meta.runtime,
                task_id=meta.id,
                status=status,
                bucket=bucket,
                prefix=meta.prefix,
                image_urls=image_urls,
                context=meta.context,
                error=outcome.error,
                timings=timings,
                attempt=held.receive_count,
            )
            self.sns.publish(
                TopicArn=self.config.sns_topic_arn, Message=body, MessageAttributes=attributes
            )
        except Exception as exc:
            # Not deleted: the message comes back after its visibility and is retried.
            log.error(
                "could not store or announce the result; the task will be retried",
                extra={"fields": {"id": meta.id, "error": str(exc)}},
            )
            self.heartbeat.drop(held.message_id)
            return
        self._delete(held)
        self.counts[status] += 1
        self._log_state(held, status, timings=timings, images=len(image_urls), error=outcome.error)
        values: dict[str, float] = {
            "TasksCompleted" if status == STATUS_COMPLETED else "TasksFailed": 1
        }
        if "inference_ms" in timings:
            values["InferenceMs"] = timings["inference_ms"]
        if held.queue_wait_ms is not None:
            values["QueueWaitMs"] = held.queue_wait_ms
        if "gpu_idle_gap_us" in held.timings:
            values["GpuIdleGapMs"] = held.timings["gpu_idle_gap_us"] / 1000
        self.metrics.emit(values, id=meta.id)
        if held.span is not None:
            held.span.set_attribute("sdfleet.status", status)
            held.span.end()

    def _timings(self, held: Held) -> dict[str, int]:
        timings: dict[str, int] = {
            "queue_wait_ms": held.queue_wait_ms if held.queue_wait_ms is not None else 0,
            "download_ms": held.timings.get("download_ms", 0),
            "inference_ms": held.timings.get("inference_ms", 0),
            "upload_ms": held.timings.get("upload_ms", 0),
        }
        timings["total_ms"] = _ms(time.monotonic() - held.received_at)
        return timings

    # ----------------------------------------------------------------------------------------
    # message bookkeeping

    def _delete(self, held: Held) -> None:
        self.heartbeat.drop(held.message_id)
        try:
            self.sqs.delete_message(
                QueueUrl=self.config.sqs_queue_url, ReceiptHandle=held.receipt_handle
            )
        except Exception as exc:
            log.warning(
                "delete failed; the message may be delivered again",
                extra={"fields": {"message_id": held.message_id, "error": str(exc)}},
            )

    def _release(self, held: Held, why: str, visibility: int = 0, count: bool = True) -> None:
        """Make a held message visible again (now, or after ``visibility`` seconds)."""
        self.heartbeat.drop(held.message_id)
        if count:
            self.counts["released"] += 1
        with contextlib.suppress(Exception):
            if held.span is not None:
                held.span.set_attribute("sdfleet.status", "released")
                held.span.end()
        try:
            self.sqs.change_message_visibility(
                QueueUrl=self.config.sqs_queue_url,
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

    def _release_handoff(self) -> None:
        while True:
            try:
                held = self._handoff.get_nowait()
            except queue.Empty:
                return
            self._slot.release()
            self._release(held, "not started")

    def _log_state(self, held: Held, state: str, **fields: Any) -> None:
        meta = held.task.metadata if held.task else None
        log.info(
            f"task {state}",
            extra={
                "fields": {
                    "event": "task_state",
                    "state": state,
                    "id": meta.id if meta else None,
                    "runtime": self.config.runtime_name,
                    "message_id": held.message_id,
                    **fields,
                }
            },
        )
