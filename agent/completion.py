"""The end of a task: store images and the result document, notify, then delete the message.

Once the GPU has run, its result must not be thrown away because S3 or SNS hiccuped: every put
and publish is retried in place with capped exponential backoff while the heartbeat keeps the
message hidden. Only when the retries are exhausted is the message released for another try.

Redelivery is idempotent: a task whose result document is already stored and complete (same
task digest, status completed, every listed image present) is announced again and deleted
without calling the inference server.

With a task table (``TASK_TABLE_NAME``) the final state is written here too
(:mod:`sdfleet.agent.task_progress`): ``completed`` once the result document is stored, before
the notification; ``failed`` after the failure notification. A notification carries the
task's checked ``metadata.callback`` when it has one.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from typing import Any, TypeVar

from sdfleet.agent import errors
from sdfleet.agent.config import Config
from sdfleet.agent.contract import (
    STATUS_COMPLETED,
    STATUS_FAILED,
    STATUS_RUNNING,
    PoisonMessage,
    Task,
    parse_s3_uri,
    result_key,
)
from sdfleet.agent.errors import TaskError
from sdfleet.agent.held import Finished, Held, Republish, ms
from sdfleet.agent.messages import CallbackMemory, MessageBook
from sdfleet.agent.metrics import Metrics
from sdfleet.agent.outputs import (
    TaskOutcome,
    notification,
    planned_keys,
    result_document,
    task_digest,
)
from sdfleet.agent.policies import RetryPolicy
from sdfleet.agent.task_progress import SENT_AT_MS, TaskProgress
from sdfleet.agent.tracing import install_header_hook

log = logging.getLogger("agent.worker")
T = TypeVar("T")
# Catalogue metric -> the Held.timings key that measures it.
STAGE_METRICS = {
    "InputFetchMs": "download_ms",
    "InferenceMs": "inference_ms",
    "UploadMs": "upload_ms",
}


def _missing(exc: BaseException) -> bool:
    """Not stored. Without s3:ListBucket (the pod role has none) S3 answers a missing key with
    403 AccessDenied rather than 404, so both mean "no stored result"."""
    code = str(getattr(exc, "response", {}).get("Error", {}).get("Code", ""))
    return code in ("NoSuchKey", "404", "NotFound", "AccessDenied", "403")


class Completer:
    def __init__(
        self,
        config: Config,
        *,
        s3: Any,
        sns: Any,
        book: MessageBook,
        metrics: Metrics,
        retry: RetryPolicy | None = None,
        progress: TaskProgress | None = None,
        dynamodb: Any = None,
    ) -> None:
        """``progress``: the task-state writer (default: from the config, with ``dynamodb`` as
        its client when given; nothing is written without ``TASK_TABLE_NAME``)."""
        self.config = config
        self.s3 = s3
        self.sns = sns
        self.book = book
        self.metrics = metrics
        self.retry = retry or RetryPolicy(
            config.output_retries, config.output_retry_base_seconds, config.output_retry_max_seconds
        )
        self.progress = progress or TaskProgress.from_config(config, dynamodb)
        # Notifications carry the task's trace as an attribute; send it as the header too.
        install_header_hook(sns)
        # The tasks' checked callbacks, for their notifications.
        self.callbacks = CallbackMemory()

    # -- retries -----------------------------------------------------------------------------
    def _retried(self, what: str, held: Held, call: Callable[[], T]) -> T:
        def on_retry(attempt: int, exc: BaseException, delay: float) -> None:
            log.warning(
                f"{what} failed; retrying in place",
                extra={
                    "fields": {
                        "event": "output_retry",
                        **held.log_fields(),
                        "attempt": attempt,
                        "retry_in_s": delay,
                        "error": str(exc),
                    }
                },
            )

        return self.retry.run(call, lambda _exc: True, on_retry=on_retry)

    def _publish(self, held: Held, body: str, attributes: dict[str, Any]) -> None:
        """Publish a notification (retried in place) in the task's ``notify`` span."""
        with held.in_stage("notify", errors.OUTPUT_FAILED):
            self._retried("notification", held, lambda: self._send(held, body, attributes))

    def _send(self, held: Held, body: str, attributes: dict[str, Any]) -> None:
        self.sns.publish(
            TopicArn=self.config.sns_topic_arn,
            Message=body,
            MessageAttributes={**attributes, **held.trace_attribute()},
        )

    # -- idempotent redelivery ---------------------------------------------------------------
    def stored_result(
        self, task: Task, log_fields: dict[str, Any] | None = None
    ) -> dict[str, Any] | None:
        """The stored result document when it is complete for this very task, else None.
        ``log_fields``: the task's (``Held.log_fields``) for the warning."""
        meta = task.metadata
        bucket = self.config.s3_bucket
        try:
            obj = self.s3.get_object(Bucket=bucket, Key=result_key(meta.prefix, meta.id))
            doc = json.loads(obj["Body"].read())
        except Exception as exc:
            if not _missing(exc):
                log.warning(
                    "cannot read a stored result; running the task",
                    extra={"fields": {"task_id": meta.id, **(log_fields or {}), "error": str(exc)}},
                )
            return None
        if (
            not isinstance(doc, dict)
            or doc.get("status") != STATUS_COMPLETED
            or doc.get("task_digest") != task_digest(task)
            or not isinstance(doc.get("image_url"), list)
        ):
            return None
        try:
            for url in doc["image_url"]:
                url_bucket, key = parse_s3_uri(str(url))
                self.s3.head_object(Bucket=url_bucket, Key=key)
        except Exception:
            return None  # an output is missing: run again
        return doc

    def republish(self, item: Republish) -> None:
        held, doc = item.held, item.document
        body, attributes = self._notification(
            held, STATUS_COMPLETED, image_urls=doc["image_url"], timings=doc.get("timings")
        )
        # The stored result is final: record it (again; it may not have been recorded).
        self.progress.completed(held, doc["image_url"])
        try:
            self._publish(held, body, attributes)
        except Exception as exc:
            self._give_up(held, exc)
            return
        self.callbacks.forget(held)
        self.book.delete(held)
        self.book.counts["republished"] += 1
        self.book.log_state(held, "republished", images=len(doc["image_url"]))
        held.end_task("republished")

    # -- notifications -----------------------------------------------------------------------
    def _notification(
        self,
        held: Held,
        status: str,
        *,
        image_urls: list[str] | None = None,
        error: dict[str, Any] | None = None,
        timings: dict[str, int] | None = None,
        with_output: bool = True,
    ) -> tuple[str, dict[str, dict[str, str]]]:
        """The notification of a held task (its id, runtime, prefix, context and callback)."""
        assert held.task is not None
        meta = held.task.metadata
        return notification(
            runtime=meta.runtime,
            task_id=meta.id,
            status=status,
            bucket=self.config.s3_bucket,
            prefix=meta.prefix,
            image_urls=image_urls or [],
            context=meta.context,
            error=error,
            timings=timings or {},
            attempt=held.receive_count,
            with_output=with_output,
            callback=self.callbacks.json(held),
        )

    def publish_running(self, held: Held) -> None:
        body, attributes = self._notification(held, STATUS_RUNNING, with_output=False)
        self._send(held, body, attributes)

    def poison(self, held: Held, exc: PoisonMessage) -> None:
        """Leave the message for redrive to the DLQ, with a growing visibility so we do not
        spin on it; notify once (first receive) when the id is known."""
        self.book.counts["poison"] += 1
        fields = held.log_fields(exc.task_id)
        log.warning(
            "poison message",
            extra={
                "fields": {
                    "event": "poison",
                    "message_id": held.message_id,
                    **fields,
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
                self._send(held, body, attributes)
            except Exception as err:
                log.warning(
                    "poison notification failed", extra={"fields": {**fields, "error": str(err)}}
                )
            # A poison message never runs: its failure is final whether or not it was announced.
            self.progress.failed_id(
                held,
                exc.task_id,
                self.config.runtime_name,
                {"code": errors.INVALID_TASK, "message": exc.reason},
            )
        visibility = min(
            43200, self.config.poison_visibility_seconds * 2 ** (held.receive_count - 1)
        )
        held.end_task(STATUS_FAILED, errors.INVALID_TASK, exc.reason)
        self.book.release(held, "poison", visibility=visibility, count=False)
        if held.receive_count <= 1:  # one failure per task, however often it comes back
            self.metrics.emit(
                {"TasksFailed": 1},
                dimensions={"ErrorCode": errors.INVALID_TASK},
                reason="poison",
                **fields,
            )

    # -- completion --------------------------------------------------------------------------
    def complete(self, item: Finished) -> None:
        held = item.held
        assert held.task is not None
        meta = held.task.metadata
        started = time.monotonic()
        outcome, error = self._outcome(item)
        status = STATUS_FAILED if error is not None else STATUS_COMPLETED
        try:
            with held.in_stage("upload", errors.OUTPUT_FAILED):
                image_urls = self._store_images(held, outcome)
                held.timings["upload_ms"] = ms(time.monotonic() - started)
                timings = self.timings(held)
                document = result_document(
                    task_id=meta.id,
                    runtime=meta.runtime,
                    status=status,
                    outcome=outcome,
                    image_urls=image_urls,
                    timings=timings,
                    attempt=held.receive_count,
                    digest=held.digest,
                )
                self._retried(
                    "storing the result document",
                    held,
                    lambda: self.s3.put_object(
                        Bucket=self.config.s3_bucket,
                        Key=result_key(meta.prefix, meta.id),
                        Body=document,
                        ContentType="application/json",
                    ),
                )
            body, attributes = self._notification(
                held, status, image_urls=image_urls, error=outcome.error, timings=timings
            )
            if error is None:
                self.progress.completed(held, image_urls)  # the stored result stands
            self._publish(held, body, attributes)
        except Exception as exc:
            self._give_up(held, exc)
            return
        if error is not None:
            self.progress.failed(held, outcome.error)  # final once announced
        self.callbacks.forget(held)
        self.book.delete(held)
        self.book.counts[status] += 1
        self.book.log_state(
            held, status, timings=timings, images=len(image_urls), error=outcome.error
        )
        self._emit(held, error)

    def _outcome(self, item: Finished) -> tuple[TaskOutcome, TaskError | None]:
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
        return outcome, error

    def _store_images(self, held: Held, outcome: TaskOutcome) -> list[str]:
        assert held.task is not None
        bucket = self.config.s3_bucket
        keys = planned_keys(held.task.metadata.prefix, held.task.metadata.id, outcome.files)
        for key, file in zip(keys, outcome.files, strict=True):
            self._retried(
                "storing an image",
                held,
                lambda key=key, file=file: self.s3.put_object(  # type: ignore[misc]
                    Bucket=bucket, Key=key, Body=file.data, ContentType=file.content_type
                ),
            )
        return [f"s3://{bucket}/{key}" for key in keys]

    def _give_up(self, held: Held, exc: BaseException) -> None:
        fields = {**held.log_fields(), "error": str(exc), "retries": self.retry.retries}
        log.error(
            "could not store or announce the result after retries; releasing the task",
            extra={"fields": fields},
        )
        self.book.release(held, "output failed")

    def _emit(self, held: Held, error: TaskError | None) -> None:
        """The task's metrics (sdfleet.agent.metrics.CATALOG), then the end of its span."""
        values: dict[str, float] = {"TasksCompleted" if error is None else "TasksFailed": 1}
        # Only what was measured: a task that failed fetching its inputs never ran inference.
        for name, key in STAGE_METRICS.items():
            if key in held.timings:
                values[name] = held.timings[key]
        if held.queue_wait_ms is not None:
            values["QueueWaitMs"] = held.queue_wait_ms
        if "gpu_idle_gap_us" in held.timings:
            values["GpuIdleGapMs"] = held.timings["gpu_idle_gap_us"] / 1000
        if SENT_AT_MS in held.timings:  # the SQS SentTimestamp: when the task was submitted
            values["EndToEndMs"] = max(0, int(time.time() * 1000) - held.timings[SENT_AT_MS])
        dimensions = None if error is None else {"ErrorCode": errors.metric_code(error.code)}
        self.metrics.emit(values, dimensions=dimensions, **held.log_fields())
        if error is None:
            held.end_task(STATUS_COMPLETED)
        else:
            held.end_task(STATUS_FAILED, error.code, error.message)

    @staticmethod
    def timings(held: Held) -> dict[str, int]:
        timings: dict[str, int] = {
            "queue_wait_ms": held.queue_wait_ms if held.queue_wait_ms is not None else 0,
            "download_ms": held.timings.get("download_ms", 0),
            "inference_ms": held.timings.get("inference_ms", 0),
            "upload_ms": held.timings.get("upload_ms", 0),
        }
        timings["total_ms"] = ms(time.monotonic() - held.received_at)
        return timings
