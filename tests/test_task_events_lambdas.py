"""The task-event Lambdas against moto (SQS, SNS, DynamoDB, Secrets Manager).

A task whose agent is killed on every attempt: its message is received maxReceiveCount times
and never deleted, so SQS's own redrive policy moves it to the DLQ. One sweeper run marks it
failed (dead_lettered) and publishes exactly one failed notification, the message staying in
the DLQ; a second run publishes nothing. The notification carries the task's callback, so the
webhook queue (subscribed to the output topic with the component's filter policy) gets it and
the webhook Lambda delivers it, signed, to a local HTTPS receiver and records the attempt.
Redrive puts the task back to queued and the message back in its queue.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws

from sdfleet.agent.task_state import TaskStore
from sdfleet.agent.webhooks import SqsQueues
from sdfleet.agent.webhooks_http import HttpsTransport
from sdfleet.agent.webhooks_sign import WebhookSecret
from sdfleet.components.builders import fanout, task_events, task_table
from sdfleet.components.task_events.sweeper import REDRIVE_GRACE_SECONDS, Sweeper
from sdfleet.components.task_events.webhook import SecretCache, WebhookFunction
from sdfleet.dlq import requeue_dead_lettered
from tests.agent import test_webhooks
from tests.agent.test_webhooks import Receiver, allow_only, resolve_to, verify
from tests.test_dlq_cli import FakeMover

tls_files = test_webhooks.tls_files
receiver = test_webhooks.receiver

REGION = "us-east-1"
TABLE = "sdfleet-tasks-events"
MAX_RECEIVES = 3


class Stack:
    """The queues, topic, table and secret the two Lambdas work with."""

    def __init__(self) -> None:
        self.sqs: Any = boto3.client("sqs", region_name=REGION)
        self.sns = boto3.client("sns", region_name=REGION)
        self.ddb = boto3.client("dynamodb", region_name=REGION)
        self.secrets = boto3.client("secretsmanager", region_name=REGION)
        self.ddb.create_table(**task_table.create_table_request(TABLE))
        self.store = TaskStore(self.ddb, TABLE)
        self.dlq_url, self.dlq_arn = self.queue("sd15-dlq")
        self.url, self.arn = self.queue(
            "sd15", RedrivePolicy=fanout.redrive_policy(self.dlq_arn, MAX_RECEIVES)
        )
        self.topic = self.sns.create_topic(Name="sdfleet-output")["TopicArn"]
        # Everything on the output topic (what a client subscribes), and the webhook queue.
        self.all_url, all_arn = self.queue("all-notifications")
        self.sns.subscribe(
            TopicArn=self.topic,
            Protocol="sqs",
            Endpoint=all_arn,
            Attributes={"RawMessageDelivery": "true"},
        )
        self.hook_dlq_url, _ = self.queue("webhooks-dlq")
        self.hook_url, hook_arn = self.queue("webhooks")
        self.sns.subscribe(
            TopicArn=self.topic,
            Protocol="sqs",
            Endpoint=hook_arn,
            Attributes={
                "RawMessageDelivery": "false",
                "FilterPolicyScope": task_events.WEBHOOK_FILTER_POLICY_SCOPE,
                "FilterPolicy": task_events.webhook_filter_policy_json(),
            },
        )
        self.secret = WebhookSecret.generate()
        self.secret_arn = self.secrets.create_secret(
            Name="sdfleet-webhooks", SecretString=self.secret.encoded()
        )["ARN"]

    def queue(self, name: str, **attributes: str) -> tuple[str, str]:
        url = self.sqs.create_queue(QueueName=name, Attributes=attributes)["QueueUrl"]
        got = self.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])
        return url, got["Attributes"]["QueueArn"]

    def sweeper(self) -> Sweeper:
        return Sweeper(self.sqs, self.sns, self.store, {"sd15": self.dlq_url}, self.topic)

    def count(self, url: str) -> int:
        got = self.sqs.get_queue_attributes(
            QueueUrl=url,
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )["Attributes"]
        return int(got["ApproximateNumberOfMessages"]) + int(
            got["ApproximateNumberOfMessagesNotVisible"]
        )

    def drain(self, url: str) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        while got := self.sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get(
            "Messages", []
        ):
            for m in got:
                self.sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])
            out.extend(got)
        return out

    def kill_agent_every_time(self, task: dict[str, Any]) -> None:
        """Publish the task as the input topic would (an SNS envelope) and let an agent take
        it and die on every delivery: it marks the task running, never deletes the message."""
        envelope = {"Type": "Notification", "MessageId": "m-1", "Message": json.dumps(task)}
        self.sqs.send_message(QueueUrl=self.url, MessageBody=json.dumps(envelope))
        task_id = task["metadata"]["id"]
        for _ in range(MAX_RECEIVES + 1):  # the receive after the last allowed one moves it
            got = self.sqs.receive_message(QueueUrl=self.url, VisibilityTimeout=0)
            for _message in got.get("Messages", []):
                self.store.mark_running(task_id, "sd15")
        assert self.count(self.url) == 0 and self.count(self.dlq_url) == 1


def task(task_id: str, callback_url: str | None = None) -> dict[str, Any]:
    metadata: dict[str, Any] = {"id": task_id, "runtime": "sd15", "tasktype": "text-to-image"}
    metadata["context"] = {"order": 7}
    if callback_url:
        metadata["callback"] = {"url": callback_url, "events": ["completed", "failed"]}
    return {"metadata": metadata, "content": {"prompt": "a lighthouse"}}


@pytest.fixture
def stack(monkeypatch: pytest.MonkeyPatch) -> Iterator[Stack]:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(name, "testing")
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    with mock_aws():
        yield Stack()


def test_a_task_killed_on_every_attempt_gets_one_final_word_and_a_webhook(
    stack: Stack, receiver: Receiver
) -> None:
    stack.store.create("doomed", "sd15", "key-1")
    stack.kill_agent_every_time(task("doomed", receiver.url()))

    first = stack.sweeper().run()
    assert first.failed == ["doomed"] and first.seen == 1
    record = stack.store.load("doomed")
    assert record is not None
    assert (record.state, record.error_code, record.attempts) == ("failed", "dead_lettered", 3)
    [published] = [json.loads(m["Body"]) for m in stack.drain(stack.all_url)]
    assert (published["id"], published["status"], published["result"]) == (
        "doomed",
        "failed",
        False,
    )
    assert published["error"]["code"] == "dead_lettered"
    assert published["attempt"] == 3 and published["context"] == {"order": 7}
    assert published["callback"] == {"url": receiver.url(), "events": ["completed", "failed"]}
    assert stack.count(stack.dlq_url) == 1  # still there, for redrive

    second = stack.sweeper().run()
    assert (second.failed, second.already_final, second.seen) == ([], 1, 1)
    assert stack.drain(stack.all_url) == []
    assert stack.count(stack.dlq_url) == 1

    # The webhook queue got the notification (it carries a callback); the Lambda delivers it.
    records = [
        {"messageId": m["MessageId"], "body": m["Body"]} for m in stack.drain(stack.hook_url)
    ]
    assert len(records) == 1
    function = WebhookFunction(
        secrets=SecretCache(stack.secrets, stack.secret_arn),
        queues=SqsQueues(stack.sqs, stack.hook_url, stack.hook_dlq_url),
        store=stack.store,
        sender_options={
            "resolver": resolve_to("127.0.0.1"),
            "guard": allow_only("127.0.0.1"),
            "transport": HttpsTransport(receiver.client_context).post,
        },
    )
    assert function.handle({"Records": records}, lambda: 60_000) == {"batchItemFailures": []}
    got = receiver.take()
    assert verify(stack.secret, got) == published  # the standardwebhooks library's check
    assert got.headers["webhook-id"].startswith("msg_")
    record = stack.store.load("doomed")
    assert record is not None
    assert (record.webhook_attempts, record.webhook_last_status) == (1, 200)
    assert record.webhook_last_attempt_at is not None
    assert (record.state, record.error_code) == ("failed", "dead_lettered")  # untouched


def test_redrive_puts_the_task_back_to_queued_and_the_message_back_in_its_queue(
    stack: Stack,
) -> None:
    stack.store.create("again", "sd15", "key-1")
    stack.kill_agent_every_time(task("again"))
    assert stack.sweeper().run().failed == ["again"]
    assert stack.drain(stack.hook_url) == []  # no callback: the filter keeps it off
    stack.drain(stack.all_url)

    done = requeue_dead_lettered(
        stack.sqs, {"sd15": stack.dlq_url}, stack.store.requeue_dead_lettered
    )
    assert done.requeued == ("again",)
    record = stack.store.load("again")
    assert record is not None and (record.state, record.error_code) == ("queued", None)

    # While the move runs, the sweeper leaves the requeued task alone (no second failure).
    waiting = stack.sweeper().run()
    assert (waiting.failed, waiting.redriving) == ([], 1)
    assert stack.drain(stack.all_url) == []

    FakeMover(stack.sqs).start(stack.dlq_arn, stack.arn)
    assert stack.count(stack.dlq_url) == 0
    [moved] = stack.sqs.receive_message(QueueUrl=stack.url)["Messages"]
    assert json.loads(json.loads(moved["Body"])["Message"])["metadata"]["id"] == "again"
    assert stack.store.mark_running("again", "sd15").applied  # the agent moves it forward


def test_the_grace_ends_and_a_task_dead_lettered_again_is_failed_again(stack: Stack) -> None:
    now = [0.0]
    stack.store.clock = lambda: now[0] + 1_800_000_000
    stack.store.create("twice", "sd15", "key-1")
    stack.kill_agent_every_time(task("twice"))
    sweeper = stack.sweeper()
    sweeper.clock = stack.store.clock
    assert sweeper.run().failed == ["twice"]
    assert stack.store.requeue_dead_lettered("twice").applied  # type: ignore[union-attr]
    assert sweeper.run().redriving == 1
    now[0] += REDRIVE_GRACE_SECONDS + 1
    assert sweeper.run().failed == ["twice"]
    assert len(stack.drain(stack.all_url)) == 2


def test_finished_unreadable_and_unknown_tasks_in_the_dlq(stack: Stack) -> None:
    stack.store.create("done", "sd15", "key-1")
    stack.store.mark_completed("done", "sd15", ["k/done-0.png"])
    for body in (json.dumps(task("done")), json.dumps(task("sns-only")), "not a task"):
        stack.sqs.send_message(QueueUrl=stack.dlq_url, MessageBody=body)
    report = stack.sweeper().run()
    assert (report.seen, report.already_final, report.unreadable) == (3, 1, 1)
    # A task sent straight to SNS has no record: the sweeper's write creates it, failed.
    assert report.failed == ["sns-only"]
    record = stack.store.load("sns-only")
    assert record is not None and (record.state, record.created_by) == ("failed", "agent")
    [only] = stack.drain(stack.all_url)
    assert json.loads(only["Body"])["id"] == "sns-only"
    assert stack.count(stack.dlq_url) == 3


def test_work_is_bounded_per_run(stack: Stack) -> None:
    for i in range(5):
        stack.sqs.send_message(QueueUrl=stack.dlq_url, MessageBody=json.dumps(task(f"t-{i}")))
    sweeper = stack.sweeper()
    sweeper.max_messages = 2
    assert len(sweeper.run().failed) == 2
    assert sweeper.run(lambda: 1_000).out_of_time  # too little time left: nothing started
    sweeper.max_messages = 10
    assert len(sweeper.run().failed) == 3
    assert len(stack.drain(stack.all_url)) == 5


def test_an_unreadable_secret_fails_the_batch_and_sends_nothing(stack: Stack) -> None:
    stack.secrets.put_secret_value(SecretId=stack.secret_arn, SecretString="not-a-secret")
    function = WebhookFunction(
        secrets=SecretCache(stack.secrets, stack.secret_arn),
        queues=SqsQueues(stack.sqs, stack.hook_url, stack.hook_dlq_url),
    )
    event = {"Records": [{"messageId": "a", "body": "{}"}, {"messageId": "b", "body": "{}"}]}
    assert function.handle(event) == {
        "batchItemFailures": [{"itemIdentifier": "a"}, {"itemIdentifier": "b"}]
    }
    assert stack.count(stack.hook_dlq_url) == 0


def test_the_secret_is_cached_then_read_again(stack: Stack) -> None:
    now = [0.0]
    cache = SecretCache(stack.secrets, stack.secret_arn, ttl=300, clock=lambda: now[0])
    assert cache.get() == (stack.secret,)
    rotated = WebhookSecret.generate()
    stack.secrets.put_secret_value(
        SecretId=stack.secret_arn, SecretString=f"{rotated.encoded()} {stack.secret.encoded()}"
    )
    now[0] = 299
    assert cache.get() == (stack.secret,)
    now[0] = 300
    assert cache.get() == (rotated, stack.secret)
