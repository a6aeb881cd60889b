"""handle_batch and the records a Lambda must survive: unreadable bodies, lost re-enqueues, bugs,
too little time left, fuzzed input, a failing recorder; and the boto3 adapter."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sdfleet.agent.webhooks import (
    DEAD_LETTERED,
    DELIVERED,
    FAILED,
    SKIPPED,
    WAITING,
    AttemptRecord,
    SqsQueues,
    deliver_record,
    handle_batch,
)
from tests.agent.test_webhooks_records import (
    SNS_ID,
    URL,
    Clock,
    FakeQueues,
    Statuses,
    make_sender,
    notification,
    queued_record,
    sns_record,
)

_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=8,
)


@pytest.mark.parametrize(
    "body",
    [
        "not json",
        "[1, 2]",
        json.dumps({"Type": "Notification", "MessageId": "x.y", "Message": "{}"}),
        json.dumps({"Type": "Notification", "MessageId": SNS_ID, "Message": "[]"}),
        json.dumps({"sdfleetWebhookRetry": 1, "webhookId": "a.b", "attempt": 1, "notBefore": 0,
                    "firstAttemptAt": 0, "body": "{}"}),
        json.dumps({"sdfleetWebhookRetry": 1, "webhookId": "m", "attempt": 0, "notBefore": 0,
                    "firstAttemptAt": 0, "body": "{}"}),
        json.dumps({"sdfleetWebhookRetry": 2}),
    ],
)  # fmt: skip
def test_unreadable_records_go_to_the_dead_letter_queue(body: str) -> None:
    queues, clock = FakeQueues(), Clock()
    transport = Statuses()
    sender, _, _ = make_sender(transport, queues, clock)
    result = deliver_record(queued_record(body), sender)
    assert (result.action, result.batch_item_failure) == (DEAD_LETTERED, False)
    assert queues.dead == [body] and transport.requests == []
    queues.fail_dead_letter = True
    assert deliver_record(queued_record(body), sender).batch_item_failure


def test_the_batch_reports_only_records_whose_fate_is_not_durable() -> None:
    queues, clock = FakeQueues(), Clock()
    sender, _, _ = make_sender(Statuses(200, 500), queues, clock)
    queues.fail_requeue = True
    event = {
        "Records": [
            sns_record(notification(task_id="a"), sqs_id="ok", sns_id="s1"),
            sns_record(notification(task_id="b"), sqs_id="retry-lost", sns_id="s2"),
            sns_record(notification(callback={"url": URL, "events": ["running"]}), sqs_id="skip"),
        ]
    }
    assert handle_batch(event, sender) == {"batchItemFailures": [{"itemIdentifier": "retry-lost"}]}


def test_a_bug_fails_only_its_own_record() -> None:
    queues, clock = FakeQueues(), Clock()

    def broken(notification: Any) -> Any:
        if notification["id"] == "b":
            raise RuntimeError("bug")
        return None

    sender, _, _ = make_sender(Statuses(), queues, clock, callback_of=broken)
    event = {
        "Records": [
            sns_record(notification(task_id="a"), sqs_id="one", sns_id="s1"),
            sns_record(notification(task_id="b"), sqs_id="two", sns_id="s2"),
        ]
    }
    assert handle_batch(event, sender) == {"batchItemFailures": [{"itemIdentifier": "two"}]}


def test_records_without_time_left_are_left_to_sqs() -> None:
    queues, clock = FakeQueues(), Clock()
    transport = Statuses()
    sender, _, _ = make_sender(transport, queues, clock)
    left = iter([60_000, 10_000])  # enough for one attempt, then not (20 s deadline + 5 s)
    event = {
        "Records": [
            sns_record(notification(task_id="a"), sqs_id="one", sns_id="s1"),
            sns_record(notification(task_id="b"), sqs_id="two", sns_id="s2"),
        ]
    }
    result = handle_batch(event, sender, remaining_ms=lambda: next(left))
    assert result == {"batchItemFailures": [{"itemIdentifier": "two"}]}
    assert len(transport.requests) == 1


@settings(max_examples=300, deadline=None)
@given(
    body=st.one_of(
        st.text(),
        st.builds(json.dumps, _json),
        st.builds(lambda d: json.dumps({"Type": "Notification", "MessageId": SNS_ID,
                                        "Message": json.dumps(d)}), _json),
        st.builds(lambda d: json.dumps({"sdfleetWebhookRetry": 1, **d}),
                  st.dictionaries(st.sampled_from(["webhookId", "attempt", "notBefore",
                                                   "firstAttemptAt", "body", "lastOutcome"]),
                                  _json)),
    )
)  # fmt: skip
def test_fuzzed_records_never_raise(body: str) -> None:
    queues, clock = FakeQueues(), Clock()
    sender, _, _ = make_sender(Statuses(), queues, clock)
    result = deliver_record(queued_record(body), sender)
    assert result.action in (DELIVERED, SKIPPED, FAILED, DEAD_LETTERED, WAITING)
    assert not result.batch_item_failure


def test_a_recorder_failure_does_not_undo_the_delivery() -> None:
    queues, clock = FakeQueues(), Clock()
    sender, _, _ = make_sender(Statuses(), queues, clock)

    def failing(record: AttemptRecord) -> None:
        raise ConnectionError("dynamodb unavailable")

    sender.recorder = failing
    assert deliver_record(sns_record(notification()), sender).action == DELIVERED


def test_sqs_queues_send_delays_and_dead_letters() -> None:
    calls: list[dict[str, Any]] = []

    class Client:
        def send_message(self, **kw: Any) -> dict[str, str]:
            calls.append(kw)
            return {"MessageId": "m"}

    queues = SqsQueues(Client(), "https://sqs/q", "https://sqs/dlq")
    queues.requeue("{}", 900)
    queues.dead_letter("{}")
    assert calls == [
        {"QueueUrl": "https://sqs/q", "MessageBody": "{}", "DelaySeconds": 900},
        {"QueueUrl": "https://sqs/dlq", "MessageBody": "{}"},
    ]
