"""Webhook delivery for an SQS-triggered Lambda (standard library only; boto3 is injected).

The delivery queue is subscribed to the output topic (raw message delivery off or on). Each
record is one of:

* an SNS envelope (or a raw notification) from the topic: attempt 1;
* a :class:`~sdfleet.agent.webhooks_retry.RetryMessage` this module re-enqueued: attempt N,
  or a hop toward its ``not_before`` time (see :mod:`sdfleet.agent.webhooks_retry`).

:func:`deliver_record` handles one record and says what became of it; :func:`handle_batch` is
the Lambda's answer with ``ReportBatchItemFailures``: a record is reported failed only when its
fate could not be made durable (a re-enqueue or dead-letter send failed, or a bug), so SQS
redelivers it. A delivery that fails is not a batch failure: its retry is a new message.

The body POSTed is the notification exactly as published (the SNS ``Message``), signed per
Standard Webhooks (:mod:`sdfleet.agent.webhooks_sign`) with the same ``webhook-id`` on every
attempt, so receivers deduplicate the rare second delivery (a Lambda that dies between the POST
and the acknowledgement). The callback is read from the notification's ``callback`` field and
checked again as at submission, then its addresses at delivery
(:mod:`sdfleet.agent.webhooks_http`).

Retries: 5xx, 429 and transport errors, on the schedule; once it is exhausted the retry message
goes to the dead-letter queue (redriving it there gives one more attempt). Other statuses, 3xx
included, and refused addresses end the delivery. Every attempt is handed to ``recorder`` (the
task's last status code and attempt count). Logs name the task, webhook id, host, attempt and
outcome: never the URL's path or query, the headers or the secrets.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from sdfleet.agent.contract_base import ContractError
from sdfleet.agent.contract_callback import Callback, parse_callback
from sdfleet.agent.contract_json import MAX_QUEUE_DEPTH, loads_strict
from sdfleet.agent.netguard import Resolver, address_refused, system_resolver
from sdfleet.agent.webhooks_http import (
    AddressGuard,
    DeliveryLimits,
    DeliveryOutcome,
    Transport,
    deliver,
)
from sdfleet.agent.webhooks_retry import (
    RETRY_MARKER,
    WEBHOOK_ID_PATTERN,
    RetryMessage,
    RetrySchedule,
    sqs_delay,
)
from sdfleet.agent.webhooks_sign import WebhookSecret, webhook_headers

log = logging.getLogger("sdfleet.webhooks")

# What became of a record.
DELIVERED = "delivered"
SKIPPED = "skipped"  # no callback, or the event is not subscribed
WAITING = "waiting"  # a hop toward the next attempt's time
RETRY_SCHEDULED = "retry_scheduled"
FAILED = "failed"  # ended without retry: another status, a refused address, a bad callback
DEAD_LETTERED = "dead_lettered"  # retries exhausted, or an unreadable record
# SQS may hand a delayed message over a little early or late; do not hop for less than this.
HOP_TOLERANCE_SECONDS = 1.0
# Time kept free after the last attempt of a batch (the re-enqueue, the recorder).
BATCH_MARGIN_SECONDS = 5.0


class Queues(Protocol):
    def requeue(self, body: str, delay_seconds: int) -> None: ...

    def dead_letter(self, body: str) -> None: ...


@dataclass
class SqsQueues:
    """:class:`Queues` over a boto3 SQS client: the delivery queue and its dead-letter queue."""

    client: Any
    queue_url: str
    dead_letter_url: str

    def requeue(self, body: str, delay_seconds: int) -> None:
        self.client.send_message(
            QueueUrl=self.queue_url, MessageBody=body, DelaySeconds=delay_seconds
        )

    def dead_letter(self, body: str) -> None:
        self.client.send_message(QueueUrl=self.dead_letter_url, MessageBody=body)


@dataclass(frozen=True)
class AttemptRecord:
    """One delivery attempt, for the task record."""

    task_id: str | None
    webhook_id: str
    event: str
    attempt: int
    outcome: str  # http_<status> or an error class
    status_code: int | None
    at: float
    # No attempt follows (delivered, failed or retries exhausted).
    final: bool
    next_attempt_at: float | None


def callback_from_notification(notification: Mapping[str, Any]) -> Callback | None:
    return parse_callback(notification.get("callback"), "notification.callback")


@dataclass
class WebhookSender:
    """Everything a delivery needs; built once per Lambda container."""

    secrets: Sequence[WebhookSecret]
    queues: Queues
    schedule: RetrySchedule = field(default_factory=RetrySchedule)
    resolver: Resolver = system_resolver
    guard: AddressGuard = address_refused
    transport: Transport | None = None
    limits: DeliveryLimits = field(default_factory=DeliveryLimits)
    recorder: Callable[[AttemptRecord], None] | None = None
    clock: Callable[[], float] = time.time
    callback_of: Callable[[Mapping[str, Any]], Callback | None] = callback_from_notification


@dataclass(frozen=True)
class RecordResult:
    message_id: str
    action: str
    attempt: int | None = None
    outcome: DeliveryOutcome | None = None
    # Report this record in batchItemFailures: SQS redelivers it.
    batch_item_failure: bool = False
    detail: str = ""


@dataclass(frozen=True)
class _Pending:
    """A delivery read from a record: what to send and which attempt this is."""

    retry: RetryMessage
    notification: dict[str, Any]


def deliver_record(record: Mapping[str, Any], sender: WebhookSender) -> RecordResult:
    """Handle one SQS record; never raises for bad input or network trouble."""
    message_id = str(record.get("messageId", ""))
    try:
        pending = _read_record(record, sender.clock())
    except ValueError as exc:
        log.warning("webhook record %s unreadable (%s); dead-lettering", message_id, exc)
        return _dead_letter(sender, message_id, str(record.get("body", "")), None, None, str(exc))
    retry, notification = pending.retry, pending.notification
    task_id = notification.get("id") if isinstance(notification.get("id"), str) else None
    try:
        callback = sender.callback_of(notification)
    except ContractError as exc:
        log.warning(
            "webhook for task %s: callback refused (%s: %s)",
            task_id,
            exc.code,
            exc.field,
            extra={"fields": {"event": "webhook_refused", "task_id": task_id, "code": exc.code}},
        )
        now = sender.clock()
        event_name = str(notification.get("status"))
        _record(
            sender,
            AttemptRecord(task_id, retry.webhook_id, event_name, retry.attempt, exc.code, None,
                          now, True, None),
        )  # fmt: skip
        return RecordResult(message_id, FAILED, detail=f"{exc.code}: {exc.message}")
    event = notification.get("status")
    if callback is None or not isinstance(event, str) or not callback.wants(event):
        return RecordResult(message_id, SKIPPED)
    now = sender.clock()
    if retry.not_before - now > HOP_TOLERANCE_SECONDS:
        return _requeue(sender, message_id, retry, sqs_delay(retry.not_before, now), WAITING)
    body = retry.body.encode("utf-8")
    headers = webhook_headers(sender.secrets, retry.webhook_id, int(now), body)
    outcome = deliver(
        callback,
        headers,
        body,
        resolver=sender.resolver,
        guard=sender.guard,
        transport=sender.transport,
        limits=sender.limits,
    )
    return _after_attempt(sender, message_id, retry, outcome, task_id, event, callback.host)


def handle_batch(
    event: Mapping[str, Any],
    sender: WebhookSender,
    remaining_ms: Callable[[], int] | None = None,
) -> dict[str, Any]:
    """The SQS-triggered Lambda's response (``FunctionResponseTypes: [ReportBatchItemFailures]``).

    ``remaining_ms`` is the Lambda context's ``get_remaining_time_in_millis``: records that
    could not finish an attempt before the function's timeout are left to SQS (reported
    failed, unprocessed) rather than lost with the whole batch to a timeout."""
    failures: list[dict[str, str]] = []
    budget_ms = (sender.limits.deadline + BATCH_MARGIN_SECONDS) * 1000
    for record in event.get("Records", []):
        if remaining_ms is not None and remaining_ms() < budget_ms:
            failures.append({"itemIdentifier": str(record.get("messageId", ""))})
            continue
        try:
            result = deliver_record(record, sender)
        except Exception:  # a bug must not lose the other records' acknowledgements
            log.exception("webhook record %s: unexpected error", record.get("messageId"))
            failures.append({"itemIdentifier": str(record.get("messageId", ""))})
            continue
        if result.batch_item_failure:
            failures.append({"itemIdentifier": result.message_id})
    return {"batchItemFailures": failures}


def _read_record(record: Mapping[str, Any], now: float) -> _Pending:
    raw = record.get("body")
    if not isinstance(raw, str):
        raise ValueError("the record has no body")
    data = loads_strict(raw, MAX_QUEUE_DEPTH)
    if not isinstance(data, dict):
        raise ValueError("the record body is not a JSON object")
    if RETRY_MARKER in data:
        retry = RetryMessage.from_json(data)
    elif data.get("Type") == "Notification" and isinstance(data.get("Message"), str):
        retry = _first_attempt(data["Message"], data.get("MessageId"), now)
    else:  # raw message delivery: the body is the notification
        retry = _first_attempt(raw, record.get("messageId"), now)
    notification = loads_strict(retry.body, MAX_QUEUE_DEPTH)
    if not isinstance(notification, dict):
        raise ValueError("the notification is not a JSON object")
    return _Pending(retry, notification)


def _first_attempt(body: str, message_id: Any, now: float) -> RetryMessage:
    # The SNS (or SQS) message id: stable across SQS redeliveries of the same message.
    if not isinstance(message_id, str) or not WEBHOOK_ID_PATTERN.match(f"msg_{message_id}"):
        raise ValueError("the message has no usable id")
    return RetryMessage(f"msg_{message_id}", 1, now, body, now, "")


def _after_attempt(
    sender: WebhookSender,
    message_id: str,
    retry: RetryMessage,
    outcome: DeliveryOutcome,
    task_id: str | None,
    event: str,
    host: str,
) -> RecordResult:
    now = sender.clock()
    delay = (
        None if outcome.ok or not outcome.retryable else sender.schedule.delay_after(retry.attempt)
    )
    next_at = now + delay if delay is not None else None
    log.info(
        "webhook task=%s id=%s host=%s attempt=%d outcome=%s detail=%s elapsed=%.3f next_at=%s",
        task_id,
        retry.webhook_id,
        host,
        retry.attempt,
        outcome.code,
        outcome.detail,
        outcome.elapsed,
        next_at,
        extra={
            "fields": {
                "event": "webhook_attempt",
                "task_id": task_id,
                "webhook_id": retry.webhook_id,
                "host": host,
                "attempt": retry.attempt,
                "outcome": outcome.code,
                "http_status": outcome.status_code,
                "elapsed_ms": round(outcome.elapsed * 1000, 1),
                "next_at": next_at,
            }
        },
    )
    _record(
        sender,
        AttemptRecord(
            task_id,
            retry.webhook_id,
            event,
            retry.attempt,
            outcome.code,
            outcome.status_code,
            now,
            next_at is None,
            next_at,
        ),
    )
    if outcome.ok:
        return RecordResult(message_id, DELIVERED, retry.attempt, outcome)
    if next_at is None and not outcome.retryable:
        return RecordResult(message_id, FAILED, retry.attempt, outcome, detail=outcome.detail)
    if next_at is None:
        exhausted = RetryMessage(
            retry.webhook_id, retry.attempt, now, retry.body, retry.first_attempt_at, outcome.code
        )
        return _dead_letter(
            sender, message_id, exhausted.to_json(), retry.attempt, outcome, "retries exhausted"
        )
    following = RetryMessage(
        retry.webhook_id,
        retry.attempt + 1,
        next_at,
        retry.body,
        retry.first_attempt_at,
        outcome.code,
    )
    result = _requeue(sender, message_id, following, sqs_delay(next_at, now), RETRY_SCHEDULED)
    return RecordResult(
        message_id, result.action, retry.attempt, outcome, result.batch_item_failure, result.detail
    )


def _requeue(
    sender: WebhookSender, message_id: str, retry: RetryMessage, delay: int, action: str
) -> RecordResult:
    try:
        sender.queues.requeue(retry.to_json(), delay)
    except Exception as exc:  # SQS redelivers the record; its attempt then comes early
        log.warning("webhook %s: re-enqueue failed (%s)", retry.webhook_id, type(exc).__name__)
        return RecordResult(message_id, action, batch_item_failure=True, detail="requeue failed")
    return RecordResult(message_id, action, detail=f"delay {delay} s")


def _dead_letter(
    sender: WebhookSender,
    message_id: str,
    body: str,
    attempt: int | None,
    outcome: DeliveryOutcome | None,
    detail: str,
) -> RecordResult:
    try:
        sender.queues.dead_letter(body)
    except Exception as exc:
        log.warning(
            "webhook record %s: dead-letter send failed (%s)", message_id, type(exc).__name__
        )
        return RecordResult(message_id, DEAD_LETTERED, attempt, outcome, True, detail)
    return RecordResult(message_id, DEAD_LETTERED, attempt, outcome, False, detail)


def _record(sender: WebhookSender, record: AttemptRecord) -> None:
    if sender.recorder is None:
        return
    try:
        sender.recorder(record)
    except Exception as exc:  # the task record is best effort; the delivery stands
        log.warning(
            "webhook %s: recording attempt %d failed (%s)",
            record.webhook_id,
            record.attempt,
            type(exc).__name__,
        )
