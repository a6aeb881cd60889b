"""A message SQS delivers again to the agent already running it is not run twice."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws

from sdfleet.agent.heartbeat import Heartbeat
from sdfleet.agent.held import Held
from sdfleet.agent.messages import MessageBook


@pytest.fixture
def queue() -> Iterator[tuple[Any, str]]:
    with mock_aws():
        sqs = boto3.client("sqs", region_name="us-east-1")
        url = sqs.create_queue(QueueName="sd15")["QueueUrl"]
        yield sqs, url


def _receive(sqs: Any, url: str) -> Held:
    (message,) = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=1)["Messages"]
    return Held(
        message_id=message["MessageId"],
        receipt_handle=message["ReceiptHandle"],
        body=message["Body"],
        receive_count=1,
        received_at=time.monotonic(),
        queue_wait_ms=None,
        trace_header=None,
    )


def test_a_second_delivery_adopts_the_new_handle_and_is_not_held_twice(
    queue: tuple[Any, str],
) -> None:
    sqs, url = queue
    heartbeat = Heartbeat(sqs, url, interval=5, extension=15)
    book = MessageBook(sqs, url, heartbeat, "sd15")
    sqs.send_message(QueueUrl=url, MessageBody="{}")
    first = _receive(sqs, url)
    assert book.hold(first)
    # Missed heartbeats: the message became visible and this agent received it again.
    sqs.change_message_visibility(
        QueueUrl=url, ReceiptHandle=first.receipt_handle, VisibilityTimeout=0
    )
    again = _receive(sqs, url)
    assert again.message_id == first.message_id
    assert again.receipt_handle != first.receipt_handle

    assert book.hold(again) is False  # the receiver drops the duplicate
    assert first.receipt_handle == again.receipt_handle  # the running one deletes with it
    assert heartbeat.held() == {first.message_id: again.receipt_handle}

    book.delete(first)
    assert heartbeat.held() == {}
    attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    assert attrs["ApproximateNumberOfMessages"] == "0"
    assert attrs["ApproximateNumberOfMessagesNotVisible"] == "0"


def test_a_released_message_can_be_held_again(queue: tuple[Any, str]) -> None:
    sqs, url = queue
    heartbeat = Heartbeat(sqs, url, interval=5, extension=15)
    book = MessageBook(sqs, url, heartbeat, "sd15")
    sqs.send_message(QueueUrl=url, MessageBody="{}")
    first = _receive(sqs, url)
    assert book.hold(first)
    book.release(first, "test")
    assert heartbeat.held() == {}
    assert book.hold(_receive(sqs, url))
