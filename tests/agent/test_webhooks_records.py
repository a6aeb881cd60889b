"""deliver_record / handle_batch: what an SQS-triggered Lambda does with each record.

A fake clock stands in for time and an in-memory :class:`Queues` for SQS; the first test
delivers over real TLS to the local receiver of ``test_webhooks`` (500, then 200).
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

import pytest

from sdfleet.agent.contract import build_notification
from sdfleet.agent.webhooks import (
    DEAD_LETTERED,
    DELIVERED,
    FAILED,
    RETRY_SCHEDULED,
    SKIPPED,
    WAITING,
    AttemptRecord,
    WebhookSender,
    deliver_record,
)
from sdfleet.agent.webhooks_http import DeliveryLimits, HttpsTransport, PinnedRequest
from sdfleet.agent.webhooks_retry import (
    MAX_SQS_DELAY_SECONDS,
    STANDARD_SCHEDULE,
    RetryMessage,
    RetrySchedule,
    sqs_delay,
)
from sdfleet.agent.webhooks_sign import WebhookSecret
from tests.agent import test_webhooks
from tests.agent.test_webhooks import HOST, Receiver, allow_only, resolve_to, verify

# The TLS receiver's fixtures, shared with test_webhooks.
tls_files = test_webhooks.tls_files
receiver = test_webhooks.receiver

SNS_ID = "6f0f4f1e-3c55-5c1b-9a53-5b1b3f3a8c11"
URL = f"https://{HOST}:8443/in?token=T0KEN"


class FakeQueues:
    def __init__(self) -> None:
        self.sent: list[tuple[str, int]] = []
        self.dead: list[str] = []
        self.fail_requeue = False
        self.fail_dead_letter = False

    def requeue(self, body: str, delay_seconds: int) -> None:
        if self.fail_requeue:
            raise ConnectionError("sqs unavailable")
        self.sent.append((body, delay_seconds))

    def dead_letter(self, body: str) -> None:
        if self.fail_dead_letter:
            raise ConnectionError("sqs unavailable")
        self.dead.append(body)


class Clock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


class Statuses:
    """A transport answering with fixed statuses (then 200), recording what it was sent."""

    def __init__(self, *statuses: int) -> None:
        self.statuses = list(statuses)
        self.requests: list[PinnedRequest] = []

    def __call__(self, request: PinnedRequest, limits: DeliveryLimits, deadline_at: float) -> int:
        self.requests.append(request)
        return self.statuses.pop(0) if self.statuses else 200


def notification(status: str = "completed", callback: Any = None, task_id: str = "task-1") -> str:
    body, _ = build_notification(
        runtime="sd15", task_id=task_id, status=status, image_urls=["s3://b/task-1/task-1-0.png"]
    )
    body["callback"] = {"url": URL} if callback is None else callback
    return json.dumps(body)


def sns_record(message: str, sqs_id: str = "sqs-1", sns_id: str = SNS_ID) -> dict[str, Any]:
    envelope = {
        "Type": "Notification",
        "MessageId": sns_id,
        "TopicArn": "arn:aws:sns:us-east-1:123456789012:sdfleet-output",
        "Message": message,
        "Timestamp": "2026-12-01T22:00:00.000Z",
    }
    return {"messageId": sqs_id, "body": json.dumps(envelope)}


def queued_record(body: str, sqs_id: str = "sqs-2") -> dict[str, Any]:
    return {"messageId": sqs_id, "body": body}


def make_sender(
    transport: Any, queues: FakeQueues, clock: Clock, **kw: Any
) -> tuple[WebhookSender, list[AttemptRecord], WebhookSecret]:
    secret = WebhookSecret.generate()
    records: list[AttemptRecord] = []
    kw.setdefault("resolver", resolve_to("127.0.0.1"))
    kw.setdefault("guard", allow_only("127.0.0.1"))
    sender = WebhookSender(
        secrets=[secret],
        queues=queues,
        transport=transport,
        recorder=records.append,
        clock=clock,
        **kw,
    )
    return sender, records, secret


def test_a_500_is_retried_and_the_receiver_verifies_both_attempts(
    receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    queues, clock = FakeQueues(), Clock()
    sender, records, secret = make_sender(
        HttpsTransport(receiver.client_context).post, queues, clock
    )
    receiver.statuses.append(500)
    message = notification(callback={"url": receiver.url()})
    first = deliver_record(sns_record(message), sender)
    assert (first.action, first.attempt, first.batch_item_failure) == (RETRY_SCHEDULED, 1, False)
    assert first.outcome is not None and first.outcome.code == "http_500"
    got1 = receiver.take()
    [(queued, delay)] = queues.sent
    assert delay == 5
    retry = RetryMessage.from_json(json.loads(queued))
    assert (retry.attempt, retry.webhook_id, retry.last_outcome) == (2, f"msg_{SNS_ID}", "http_500")
    assert retry.not_before == pytest.approx(clock.now + 5)

    clock.now += 5
    second = deliver_record(queued_record(queued), sender)
    assert (second.action, second.attempt) == (DELIVERED, 2)
    got2 = receiver.take()
    for got in (got1, got2):  # the same signed document, the same id, each verified
        assert got.body == message.encode()
        assert got.headers["webhook-id"] == f"msg_{SNS_ID}"
        assert verify(secret, got) == json.loads(message)
    assert int(got2.headers["webhook-timestamp"]) - int(got1.headers["webhook-timestamp"]) == 5
    assert [(r.attempt, r.outcome, r.status_code, r.final) for r in records] == [
        (1, "http_500", 500, False),
        (2, "http_200", 200, True),
    ]
    assert records[0].next_attempt_at == pytest.approx(clock.now)
    assert records[0].task_id == "task-1" and records[0].event == "completed"
    # Logs name the host and outcome, never the secret, signature or the URL's query.
    assert HOST in caplog.text and "http_500" in caplog.text
    for leaked in (secret.encoded()[6:], got1.headers["webhook-signature"][3:], "T0KEN"):
        assert leaked not in caplog.text


def test_the_standard_schedule_covers_a_day() -> None:
    schedule = RetrySchedule()
    assert schedule.delays == STANDARD_SCHEDULE == (0, 5, 300, 1800, 7200, 18000, 36000, 36000)
    assert schedule.attempts == 8 and schedule.total_seconds >= 24 * 3600
    assert [schedule.delay_after(n) for n in range(1, 9)] == [*STANDARD_SCHEDULE[1:], None]
    with pytest.raises(ValueError):
        RetrySchedule((5, 10))
    with pytest.raises(ValueError):
        schedule.delay_after(0)


@pytest.mark.parametrize(
    ("ahead", "delay"), [(0.2, 1), (5, 5), (900, 900), (901, 900), (36000, 900), (-3, 0)]
)
def test_sqs_delays_are_capped_at_900_seconds(ahead: float, delay: int) -> None:
    assert sqs_delay(1000.0 + ahead, 1000.0) == delay <= MAX_SQS_DELAY_SECONDS


def run_until_settled(
    sender: WebhookSender, queues: FakeQueues, clock: Clock, first: dict[str, Any]
) -> tuple[list[str], list[int]]:
    """Feed each re-enqueued message back after its delay, as SQS would; the actions taken."""
    actions: list[str] = []
    delays: list[int] = []
    record = first
    for _ in range(1000):
        result = deliver_record(record, sender)
        actions.append(result.action)
        if result.action not in (WAITING, RETRY_SCHEDULED):
            return actions, delays
        body, delay = queues.sent.pop()
        delays.append(delay)
        clock.now += delay
        record = queued_record(body)
    raise AssertionError("never settled")


def test_a_receiver_down_for_a_day_gets_every_attempt_then_the_dead_letter_queue() -> None:
    queues, clock = FakeQueues(), Clock()
    start = clock.now
    transport = Statuses(*[503] * 8)
    sender, records, _ = make_sender(transport, queues, clock)
    actions, delays = run_until_settled(sender, queues, clock, sns_record(notification()))
    assert len(transport.requests) == 8 and actions.count(RETRY_SCHEDULED) == 7
    assert actions[-1] == DEAD_LETTERED
    assert max(delays) == 900 and clock.now - start == sum(STANDARD_SCHEDULE)
    assert clock.now - start >= 24 * 3600
    # 10 h waits are chained in 900 s hops: 40 messages each, nothing delivered meanwhile.
    assert actions.count(WAITING) == sum(-(-d // 900) for d in STANDARD_SCHEDULE) - 7
    [dead] = queues.dead
    final = RetryMessage.from_json(json.loads(dead))
    assert (final.attempt, final.last_outcome, final.first_attempt_at) == (8, "http_503", start)
    assert [r.attempt for r in records] == list(range(1, 9))
    assert [r.final for r in records] == [False] * 7 + [True]


def test_a_redriven_dead_letter_gets_one_more_attempt() -> None:
    queues, clock = FakeQueues(), Clock()
    sender, _, _ = make_sender(Statuses(503, 503), queues, clock, schedule=RetrySchedule((0, 5)))
    actions, _ = run_until_settled(sender, queues, clock, sns_record(notification()))
    assert actions[-1] == DEAD_LETTERED
    clock.now += 3 * 86400  # an operator redrives it days later
    result = deliver_record(queued_record(queues.dead.pop()), sender)
    assert (result.action, result.attempt) == (DELIVERED, 2)


@pytest.mark.parametrize("status", [400, 401, 404, 410, 302])
def test_other_statuses_end_the_delivery(status: int) -> None:
    queues, clock = FakeQueues(), Clock()
    sender, records, _ = make_sender(Statuses(status), queues, clock)
    result = deliver_record(sns_record(notification()), sender)
    assert result.action == FAILED and not result.batch_item_failure
    assert queues.sent == [] and queues.dead == []
    assert [(r.outcome, r.final) for r in records] == [(f"http_{status}", True)]


@pytest.mark.parametrize(
    ("status", "callback", "delivered"),
    [
        ("running", {"url": URL}, False),
        ("running", {"url": URL, "events": ["running"]}, True),
        ("failed", {"url": URL}, True),
        ("failed", {"url": URL, "events": ["completed"]}, False),
        ("completed", None, False),
    ],
)
def test_only_subscribed_events_are_delivered(status: str, callback: Any, delivered: bool) -> None:
    queues, clock = FakeQueues(), Clock()
    transport = Statuses()
    sender, _, _ = make_sender(transport, queues, clock)
    body = json.loads(notification(status, callback={"url": URL}))
    body["callback"] = callback
    result = deliver_record(sns_record(json.dumps(body)), sender)
    assert result.action == (DELIVERED if delivered else SKIPPED)
    assert len(transport.requests) == int(delivered)


def test_a_callback_that_fails_the_submission_check_is_not_contacted() -> None:
    queues, clock = FakeQueues(), Clock()
    transport = Statuses()
    sender, records, _ = make_sender(transport, queues, clock)
    message = notification(callback={"url": "https://169.254.169.254/latest/meta-data/"})
    result = deliver_record(sns_record(message), sender)
    assert result.action == FAILED and result.detail.startswith("forbidden_address")
    assert transport.requests == [] and queues.sent == []
    assert [(r.outcome, r.final) for r in records] == [("forbidden_address", True)]


def test_a_name_that_resolves_to_a_private_address_at_delivery_is_refused() -> None:
    queues, clock = FakeQueues(), Clock()
    transport = Statuses()
    # The real guard this time: no allowance.
    sender, records, _ = make_sender(
        transport, queues, clock, resolver=resolve_to("10.0.3.7"), guard=allow_only()
    )
    result = deliver_record(sns_record(notification()), sender)
    assert result.action == FAILED and result.outcome is not None
    assert result.outcome.code == "forbidden_address" and "10.0.3.7" in result.outcome.detail
    assert transport.requests == [] and queues.sent == []
    assert records[0].outcome == "forbidden_address"


def test_raw_delivery_and_redelivery_keep_a_stable_webhook_id() -> None:
    queues, clock = FakeQueues(), Clock()
    transport = Statuses(500, 500)
    sender, _, _ = make_sender(transport, queues, clock)
    raw = queued_record(notification(), sqs_id="a1b2c3")
    for _ in range(2):  # SQS hands the same record over twice
        assert deliver_record(raw, sender).action == RETRY_SCHEDULED
    ids = {RetryMessage.from_json(json.loads(b)).webhook_id for b, _ in queues.sent}
    assert ids == {"msg_a1b2c3"}
    assert {r.headers["webhook-id"] for r in transport.requests} == {"msg_a1b2c3"}
