"""Webhook deliveries in the sandbox, with the cloud's code: the webhook queue and its DLQ
subscribed to the output topic with ``TaskEvents``' filter policy, a signing secret in the
sandbox's Secrets Manager, and a thread that receives from the queue and hands each batch to the
delivery Lambda's handler (:class:`~sdfleet.components.task_events.webhook.WebhookFunction`).

Two things differ from the cloud, both only here: callbacks may go to 127.0.0.1, ::1 or
localhost (``parse_callback(loopback=True)`` and
:func:`~sdfleet.agent.contract_callback.sandbox_loopback_guard`; every other refused address
stays refused), and an ``http`` loopback callback is POSTed without TLS (a receiver on this
machine has no certificate a client would trust). The secret is new on every run.
"""

from __future__ import annotations

import http.client
import logging
import socket
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sdfleet.agent.contract_callback import Callback, parse_callback, sandbox_loopback_guard
from sdfleet.agent.task_state import TaskStore
from sdfleet.agent.webhooks import SqsQueues
from sdfleet.agent.webhooks_http import ConnectError, DeliveryLimits, HttpsTransport, PinnedRequest
from sdfleet.agent.webhooks_sign import WebhookSecret
from sdfleet.components.builders import fanout as fb
from sdfleet.components.builders import task_events as teb
from sdfleet.components.task_events.webhook import SecretCache, WebhookFunction
from sdfleet.fakes.fleet import client
from sdfleet.sandbox.plane import PREFIX, Plane

log = logging.getLogger("sdfleet.sandbox")

# The sandbox's long poll: a stop is noticed within this many seconds.
RECEIVE_WAIT_SECONDS = 1


@dataclass(frozen=True)
class WebhookPlane:
    queue_url: str
    dlq_url: str
    secret_arn: str
    secret: WebhookSecret


def build_webhooks(plane: Plane) -> WebhookPlane:
    """The webhook queue, its DLQ and the subscription, as ``TaskEvents`` creates them, and a
    fresh signing secret."""
    sqs, sns = client("sqs", plane.endpoint), client("sns", plane.endpoint)
    dlq_url = sqs.create_queue(
        QueueName=f"{PREFIX}-webhooks-dlq",
        Attributes={"MessageRetentionPeriod": str(teb.WEBHOOK_DLQ_RETENTION_SECONDS)},
    )["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])
    queue_url = sqs.create_queue(
        QueueName=f"{PREFIX}-webhooks",
        Attributes={
            "MessageRetentionPeriod": str(teb.WEBHOOK_QUEUE_RETENTION_SECONDS),
            "VisibilityTimeout": str(teb.WEBHOOK_VISIBILITY_TIMEOUT_SECONDS),
            "RedrivePolicy": fb.redrive_policy(
                dlq_arn["Attributes"]["QueueArn"], teb.WEBHOOK_MAX_RECEIVE_COUNT
            ),
        },
    )["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])
    sns.subscribe(
        TopicArn=plane.output_topic_arn,
        Protocol="sqs",
        Endpoint=queue_arn["Attributes"]["QueueArn"],
        Attributes={
            "FilterPolicy": teb.webhook_filter_policy_json(),
            "FilterPolicyScope": teb.WEBHOOK_FILTER_POLICY_SCOPE,
            "RawMessageDelivery": "true" if teb.WEBHOOK_RAW_MESSAGE_DELIVERY else "false",
        },
    )
    secret = WebhookSecret.generate()
    arn = client("secretsmanager", plane.endpoint).create_secret(
        Name=f"{PREFIX}-webhook-secret",
        Description=teb.SECRET_DESCRIPTION,
        SecretString=secret.encoded(),
    )["ARN"]
    return WebhookPlane(queue_url=queue_url, dlq_url=dlq_url, secret_arn=arn, secret=secret)


def loopback_callback(notification: Mapping[str, Any]) -> Callback | None:
    """``WebhookSender.callback_of`` with the sandbox's loopback opt-in."""
    return parse_callback(notification.get("callback"), "notification.callback", loopback=True)


@dataclass
class SandboxTransport:
    """POSTs an ``http`` (loopback) callback in the clear; ``https`` goes to the cloud's
    :class:`HttpsTransport` (system trust store)."""

    https: HttpsTransport

    def post(self, request: PinnedRequest, limits: DeliveryLimits, deadline_at: float) -> int:
        if request.scheme != "http":
            return self.https.post(request, limits, deadline_at)
        remaining = deadline_at - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("no time left for this address")
        try:
            sock = socket.create_connection(
                (request.address, request.port), timeout=min(limits.connect_timeout, remaining)
            )
        except OSError as exc:
            raise ConnectError(type(exc).__name__) from exc
        sock.settimeout(min(limits.read_timeout, remaining))
        conn = http.client.HTTPConnection(request.host, request.port)
        conn.sock = sock  # connected to the checked address: no second lookup
        try:
            conn.request("POST", request.target, body=request.body, headers=dict(request.headers))
            response = conn.getresponse()
            response.read(limits.max_response_bytes)
            return response.status
        finally:
            conn.close()


def webhook_function(plane: Plane, hooks: WebhookPlane, ttl_seconds: int) -> WebhookFunction:
    """The delivery Lambda's handler object, on the sandbox's moto, with the loopback opt-in."""
    store = TaskStore(client("dynamodb", plane.endpoint), plane.table_name, ttl_seconds=ttl_seconds)
    return WebhookFunction(
        secrets=SecretCache(client("secretsmanager", plane.endpoint), hooks.secret_arn),
        queues=SqsQueues(client("sqs", plane.endpoint), hooks.queue_url, hooks.dlq_url),
        store=store,
        sender_options={
            "guard": sandbox_loopback_guard,
            "callback_of": loopback_callback,
            "transport": SandboxTransport(HttpsTransport()).post,
        },
    )


class WebhookThread:
    """Receives from the webhook queue and runs the handler on each batch, as the SQS trigger
    does: records the handler does not report failed are deleted, the others come back after
    the queue's visibility timeout."""

    def __init__(self, function: WebhookFunction, queue_url: str, endpoint: str) -> None:
        self.function = function
        self.queue_url = queue_url
        self._sqs = client("sqs", endpoint)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sandbox-webhooks", daemon=True)

    def start(self) -> WebhookThread:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(30)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.poll()
            except Exception:  # moto hiccup: try again, as the SQS trigger would
                log.exception("the webhook poll failed")
                self._stop.wait(1.0)

    def poll(self) -> int:
        """One receive and the handler's run over it; the number of records received."""
        got = self._sqs.receive_message(
            QueueUrl=self.queue_url,
            MaxNumberOfMessages=teb.WEBHOOK_BATCH_SIZE,
            WaitTimeSeconds=RECEIVE_WAIT_SECONDS,
            AttributeNames=["All"],
        )
        messages = got.get("Messages", [])
        if not messages:
            return 0
        records = [
            {
                "messageId": m["MessageId"],
                "receiptHandle": m["ReceiptHandle"],
                "body": m["Body"],
                "attributes": m.get("Attributes", {}),
                "eventSource": "aws:sqs",
            }
            for m in messages
        ]
        answer = self.function.handle({"Records": records})
        failed = {f["itemIdentifier"] for f in answer.get("batchItemFailures", [])}
        for m in messages:
            if m["MessageId"] not in failed:
                self._sqs.delete_message(QueueUrl=self.queue_url, ReceiptHandle=m["ReceiptHandle"])
        return len(messages)
