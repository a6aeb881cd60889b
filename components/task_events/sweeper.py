"""The DLQ sweeper: every dead-lettered task gets state ``failed`` (code ``dead_lettered``)
and one ``failed`` notification, while its message stays in the DLQ for redrive.

Scheduled every minute (EventBridge). Each run reads every runtime's DLQ without consuming it
(``sdfleet.dlq.peek``: a short visibility, then visible again at once), and for each readable
task calls ``TaskStore.mark_failed(..., "dead_lettered", ...)``. The table deduplicates: only
the call that applied the final state (``Transition.applied``) publishes the notification, so
a task already final (completed, failed by its agent, or swept by an earlier run) is left
alone, and the second run over the same message publishes nothing.

Bounded work: at most ``MAX_MESSAGES`` messages per run over all DLQs, and no new message once
less than ``MARGIN_MS`` of the function's time is left. A DLQ holding more is covered over
several runs (SQS hands out a different sample each time).

A task that ``sdfleet dlq redrive`` put back to ``queued`` (``redriven_at``) is left alone for
``REDRIVE_GRACE_SECONDS`` while the message-move task empties the DLQ; otherwise the sweeper
would fail it again from the message that is about to move.

The notification is the agent's (``sdfleet.agent.contract.build_notification``, the one
builder), with the task's checked ``metadata.callback`` when it has one, so webhook
subscribers hear of it too. A publish that fails after the write applied is logged
(``dead_letter_notification_failed``) and not retried on a later run: the record is final.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from sdfleet.agent import contract_log as cl
from sdfleet.agent.contract import STATUS_FAILED, build_notification
from sdfleet.agent.contract_base import ContractError
from sdfleet.agent.contract_callback import parse_callback
from sdfleet.agent.task_state import TaskStore
from sdfleet.agent.task_state_schema import DEAD_LETTERED, QUEUED
from sdfleet.dlq import peek, task_of

log = logging.getLogger("sdfleet.sweeper")
log.setLevel(logging.INFO)
# In Lambda: this module's and the shared code's lines, as JSON straight to stdout.
cl.lambda_logging(cl.SERVICE_DLQ_SWEEPER)

MAX_MESSAGES = 200
MARGIN_MS = 10_000
REDRIVE_GRACE_SECONDS = 300
# The error message of a dead-lettered task (the status API and the notification show it).
MESSAGE = (
    "the task's message reached the dead-letter queue: its agent failed or stopped on every "
    "delivery ({attempts} start(s) recorded); redrive it with `sdfleet dlq redrive`"
)


@dataclass
class SweepReport:
    seen: int = 0
    failed: list[str] = field(default_factory=list)  # marked and announced by this run
    already_final: int = 0
    redriving: int = 0
    unreadable: int = 0
    publish_errors: int = 0
    out_of_time: bool = False

    def to_json(self) -> dict[str, Any]:
        return {
            "seen": self.seen,
            "failed": self.failed,
            "already_final": self.already_final,
            "redriving": self.redriving,
            "unreadable": self.unreadable,
            "publish_errors": self.publish_errors,
            "out_of_time": self.out_of_time,
        }


@dataclass
class Sweeper:
    sqs: Any
    sns: Any
    store: TaskStore
    dlq_urls: Mapping[str, str]  # runtime -> DLQ URL
    topic_arn: str
    max_messages: int = MAX_MESSAGES
    clock: Callable[[], float] = time.time

    def run(self, remaining_ms: Callable[[], int] | None = None) -> SweepReport:
        report = SweepReport()
        for runtime, url in sorted(self.dlq_urls.items()):
            left = self.max_messages - report.seen
            if left <= 0:
                break
            for message in peek(self.sqs, url, max_messages=left):
                if remaining_ms is not None and remaining_ms() < MARGIN_MS:
                    report.out_of_time = True
                    return report
                report.seen += 1
                self._sweep_one(runtime, str(message.get("Body", "")), report)
        return report

    def _sweep_one(self, runtime: str, body: str, report: SweepReport) -> None:
        task = task_of(body)
        metadata = task.get("metadata") if task is not None else None
        task_id = metadata.get("id") if isinstance(metadata, dict) else None
        if not isinstance(task_id, str) or not task_id or not isinstance(metadata, dict):
            report.unreadable += 1
            return
        record = self.store.load(task_id)
        if record is not None and record.final:
            report.already_final += 1
            return
        if (
            record is not None
            and record.state == QUEUED
            and record.redriven_at is not None
            and self.clock() * 1000 - record.redriven_at < REDRIVE_GRACE_SECONDS * 1000
        ):
            report.redriving += 1
            return
        attempts = record.attempts if record is not None else 0
        transition = self.store.mark_failed(
            task_id, runtime, DEAD_LETTERED, MESSAGE.format(attempts=attempts)
        )
        if not transition.applied:  # another writer got there between the read and the write
            report.already_final += 1
            return
        if self._publish(runtime, task_id, metadata, transition.record.attempts):
            report.failed.append(task_id)
        else:
            report.publish_errors += 1

    def _publish(
        self, runtime: str, task_id: str, metadata: Mapping[str, Any], attempts: int
    ) -> bool:
        body, attributes = build_notification(
            runtime=runtime,
            task_id=task_id,
            status=STATUS_FAILED,
            context=metadata.get("context"),
            error={"code": DEAD_LETTERED, "message": MESSAGE.format(attempts=attempts)},
            attempt=attempts,
            callback=_callback_json(metadata, task_id),
        )
        try:
            self.sns.publish(
                TopicArn=self.topic_arn,
                Message=json.dumps(body, default=str),
                MessageAttributes=attributes,
            )
        except Exception as exc:
            fields = {
                cl.EVENT: "dead_letter_notification_failed",
                cl.TASK_ID: task_id,
                cl.RUNTIME: runtime,
                "error": type(exc).__name__,
            }
            log.error("dead-letter notification not published", extra={"fields": fields})
            return False
        return True


def _callback_json(metadata: Mapping[str, Any], task_id: str) -> dict[str, Any] | None:
    """The task's callback, checked as the agent checks it; a bad one is dropped, not fatal."""
    try:
        callback = parse_callback(metadata.get("callback"), "task.metadata.callback")
    except ContractError as exc:
        fields = {cl.EVENT: "callback_dropped", cl.TASK_ID: task_id, "code": exc.code}
        log.warning("callback dropped", extra={"fields": fields})
        return None
    return None if callback is None else callback.to_json()


# -- the Lambda ---------------------------------------------------------------------------


def from_environment(env: Mapping[str, str], session: Any = None) -> Sweeper:
    """``DLQ_URLS`` (JSON runtime -> URL), ``OUTPUT_TOPIC_ARN``, ``TASK_TABLE_NAME``,
    ``TASK_TTL_SECONDS``, optional ``MAX_MESSAGES``."""
    import boto3
    from botocore.config import Config

    session = session or boto3.session.Session()
    config = Config(connect_timeout=3, read_timeout=5, retries={"max_attempts": 3})
    urls = json.loads(env["DLQ_URLS"])
    if not isinstance(urls, dict) or not urls:
        raise ValueError("DLQ_URLS must be a non-empty JSON object of runtime -> queue URL")
    store = TaskStore(
        session.client("dynamodb", config=config),
        env["TASK_TABLE_NAME"],
        ttl_seconds=int(env.get("TASK_TTL_SECONDS") or 7 * 24 * 3600),
    )
    return Sweeper(
        sqs=session.client("sqs", config=config),
        sns=session.client("sns", config=config),
        store=store,
        dlq_urls={str(k): str(v) for k, v in urls.items()},
        topic_arn=env["OUTPUT_TOPIC_ARN"],
        max_messages=int(env.get("MAX_MESSAGES") or MAX_MESSAGES),
    )


_sweeper: Sweeper | None = None


def handler(event: Any, context: Any) -> dict[str, Any]:
    """The EventBridge-scheduled entry point; one JSON log line per run."""
    global _sweeper
    if _sweeper is None:
        _sweeper = from_environment(os.environ)
    remaining = getattr(context, "get_remaining_time_in_millis", None)
    report = _sweeper.run(remaining)
    log.info("dlq sweep", extra={"fields": {cl.EVENT: "dlq_sweep", **report.to_json()}})
    return report.to_json()
