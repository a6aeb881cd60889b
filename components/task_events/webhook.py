"""The webhook delivery Lambda: SQS-triggered (``ReportBatchItemFailures``) by the queue
subscribed to the output topic, it hands each batch to ``sdfleet.agent.webhooks.handle_batch``.

The subscription keeps raw message delivery off: each record is the SNS envelope, whose
``MessageId`` gives the ``webhook-id`` every attempt of one notification shares. Retries are
re-enqueued on the same queue and exhausted ones sent to its dead-letter queue
(``SqsQueues``).

Signing secrets are read from Secrets Manager (``WEBHOOK_SECRET_ARN``: whitespace-separated
``whsec_`` values, newest first) and cached for ``SECRET_CACHE_SECONDS``, so a rotation reaches
every warm container within that time without a call per batch. An unreadable secret fails the
whole batch (every record reported failed, redelivered by SQS): nothing is sent unsigned.

Each attempt is recorded on the task (``TaskStore.record_webhook_attempt``: attempts, last
HTTP status, time) when ``TASK_TABLE_NAME`` is set; the record is best effort and never
changes the delivery.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sdfleet.agent import contract_log as cl
from sdfleet.agent.task_state import TaskStore
from sdfleet.agent.webhooks import AttemptRecord, SqsQueues, WebhookSender, handle_batch
from sdfleet.agent.webhooks_sign import SecretError, WebhookSecret, parse_secrets

log = logging.getLogger("sdfleet.webhooks")
log.setLevel(logging.INFO)
# In the Lambda, this module's and the delivery code's lines (sdfleet.agent.webhooks, the task
# store) are schema lines straight to stdout (docs/logging.md).
cl.lambda_logging(cl.SERVICE_WEBHOOK_DELIVERY)

SECRET_CACHE_SECONDS = 300.0


@dataclass
class SecretCache:
    """The stack's signing secrets, read again once ``ttl`` seconds old."""

    client: Any  # boto3 secretsmanager
    secret_id: str
    ttl: float = SECRET_CACHE_SECONDS
    clock: Callable[[], float] = time.monotonic
    _value: tuple[WebhookSecret, ...] = field(default=(), init=False)
    _read_at: float | None = field(default=None, init=False)

    def get(self) -> tuple[WebhookSecret, ...]:
        now = self.clock()
        if self._read_at is None or now - self._read_at >= self.ttl:
            stored = self.client.get_secret_value(SecretId=self.secret_id).get("SecretString")
            if not isinstance(stored, str):
                raise SecretError("the webhook secret has no string value")
            self._value = parse_secrets(stored)
            self._read_at = now
        return self._value


def attempt_recorder(store: TaskStore) -> Callable[[AttemptRecord], None]:
    """``WebhookSender.recorder``: one attempt on the task's record (if it has one)."""

    def record(attempt: AttemptRecord) -> None:
        if attempt.task_id is None:
            return
        store.record_webhook_attempt(attempt.task_id, attempt.status_code, int(attempt.at * 1000))

    return record


@dataclass
class WebhookFunction:
    """Everything one container keeps between batches. ``sender_options`` are extra
    ``WebhookSender`` fields (tests pass a resolver, guard and transport)."""

    secrets: SecretCache
    queues: SqsQueues
    store: TaskStore | None = None
    sender_options: Mapping[str, Any] = field(default_factory=dict)

    def sender(self, secrets: Sequence[WebhookSecret]) -> WebhookSender:
        recorder = attempt_recorder(self.store) if self.store is not None else None
        return WebhookSender(
            secrets=secrets, queues=self.queues, recorder=recorder, **dict(self.sender_options)
        )

    def handle(
        self, event: Mapping[str, Any], remaining_ms: Callable[[], int] | None = None
    ) -> dict[str, Any]:
        try:
            secrets = self.secrets.get()
        except Exception as exc:  # nothing is sent unsigned: SQS redelivers the batch
            fields = {cl.EVENT: "webhook_secret_unreadable", "error": type(exc).__name__}
            log.error("webhook secret unreadable", extra={"fields": fields})
            return {
                "batchItemFailures": [
                    {"itemIdentifier": str(r.get("messageId", ""))}
                    for r in event.get("Records", [])
                ]
            }
        return handle_batch(event, self.sender(secrets), remaining_ms)


def from_environment(env: Mapping[str, str], session: Any = None) -> WebhookFunction:
    """``WEBHOOK_SECRET_ARN``, ``WEBHOOK_QUEUE_URL``, ``WEBHOOK_DLQ_URL``, optional
    ``TASK_TABLE_NAME`` and ``SECRET_CACHE_SECONDS``."""
    import boto3
    from botocore.config import Config

    session = session or boto3.session.Session()
    config = Config(connect_timeout=3, read_timeout=5, retries={"max_attempts": 3})
    sqs = session.client("sqs", config=config)
    table = env.get("TASK_TABLE_NAME")
    return WebhookFunction(
        secrets=SecretCache(
            session.client("secretsmanager", config=config),
            env["WEBHOOK_SECRET_ARN"],
            ttl=float(env.get("SECRET_CACHE_SECONDS") or SECRET_CACHE_SECONDS),
        ),
        queues=SqsQueues(sqs, env["WEBHOOK_QUEUE_URL"], env["WEBHOOK_DLQ_URL"]),
        store=TaskStore(session.client("dynamodb", config=config), table) if table else None,
    )


_function: WebhookFunction | None = None


def handler(event: Any, context: Any) -> dict[str, Any]:
    global _function
    if _function is None:
        _function = from_environment(os.environ)
    return _function.handle(event, getattr(context, "get_remaining_time_in_millis", None))
