"""The event plane of one runtime on a moto server, for the agent's tests and benchmarks.

``Fleet`` builds what the infrastructure builds for a runtime: the input topic, the runtime queue
subscribed with the runtime filter policy (raw delivery off), its DLQ with a redrive policy, the
output topic with a subscriber queue for notifications, and the output bucket. The policies come
from :mod:`sdfleet.components.builders.fanout`, so the fake plane routes as the deployed one.
``MotoServer`` (a thread) and ``MotoProcess`` (its own process) need ``moto[server]``.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import boto3

from sdfleet.agent.contract import Task, TaskMetadata
from sdfleet.components.builders.fanout import (
    FILTER_POLICY_SCOPE,
    RAW_MESSAGE_DELIVERY,
    redrive_policy,
    runtime_filter_policy_json,
)
from sdfleet.fakes._common import free_port

REGION = "us-east-1"

FAKE_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": REGION,
    "AWS_REGION": REGION,
}


class MotoServer:
    """``ThreadedMotoServer`` on 127.0.0.1 and a free port."""

    def __init__(self) -> None:
        from moto.server import ThreadedMotoServer

        self.port = free_port()
        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=self.port, verbose=False)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> MotoServer:
        self._server.start()
        return self

    def stop(self) -> None:
        self._server.stop()

    def env(self) -> dict[str, str]:
        return {"AWS_ENDPOINT_URL": self.endpoint, **FAKE_CREDENTIALS}


class MotoProcess(MotoServer):
    """The moto server in its own process (the benchmark: keeps moto's CPU work out of the
    fake inference server's process, as real AWS would be)."""

    def __init__(self) -> None:
        self.port = free_port()
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self) -> MotoProcess:
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 30
        while True:  # no readiness event from another process: poll the port
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return self
            except OSError:
                if time.monotonic() > deadline or self._proc.poll() is not None:
                    raise RuntimeError("moto server did not start") from None
                time.sleep(0.05)

    def stop(self) -> None:
        if self._proc is not None:
            self._proc.terminate()
            self._proc.wait(10)


def client(service: str, endpoint: str) -> Any:
    return boto3.session.Session(
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        aws_session_token="testing",
        region_name=REGION,
    ).client(service, endpoint_url=endpoint)  # type: ignore[call-overload]


@dataclass
class Fleet:
    """One runtime's queues, topics and bucket on the moto server at ``endpoint``."""

    endpoint: str
    runtime_name: str = "sd15"
    runtime_type: str = "sdwebui"
    visibility_timeout: int = 3
    max_receive_count: int = 3
    suffix: str = field(default_factory=lambda: uuid.uuid4().hex[:8])

    def __post_init__(self) -> None:
        self.sqs = client("sqs", self.endpoint)
        self.sns = client("sns", self.endpoint)
        self.s3 = client("s3", self.endpoint)
        s = self.suffix
        self.bucket = f"out-{s}"
        self.s3.create_bucket(Bucket=self.bucket)
        self.input_topic = self.sns.create_topic(Name=f"in-{s}")["TopicArn"]
        self.output_topic = self.sns.create_topic(Name=f"out-{s}")["TopicArn"]
        self.dlq_url = self.sqs.create_queue(QueueName=f"dlq-{s}")["QueueUrl"]
        dlq_arn = self._arn(self.dlq_url)
        self.queue_url = self.sqs.create_queue(
            QueueName=f"q-{s}",
            Attributes={
                "VisibilityTimeout": str(self.visibility_timeout),
                "RedrivePolicy": redrive_policy(dlq_arn, self.max_receive_count),
            },
        )["QueueUrl"]
        self.sns.subscribe(
            TopicArn=self.input_topic,
            Protocol="sqs",
            Endpoint=self._arn(self.queue_url),
            Attributes={
                "FilterPolicy": runtime_filter_policy_json(self.runtime_name),
                "FilterPolicyScope": FILTER_POLICY_SCOPE,
                "RawMessageDelivery": "true" if RAW_MESSAGE_DELIVERY else "false",
            },
            ReturnSubscriptionArn=True,
        )
        self.notify_url = self.sqs.create_queue(QueueName=f"notify-{s}")["QueueUrl"]
        self.sns.subscribe(
            TopicArn=self.output_topic,
            Protocol="sqs",
            Endpoint=self._arn(self.notify_url),
            Attributes={"RawMessageDelivery": "false"},
        )
        self._seen: list[dict[str, Any]] = []
        self._lock = threading.Lock()

    def _arn(self, queue_url: str) -> str:
        attrs = self.sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])
        return str(attrs["Attributes"]["QueueArn"])

    # -- tasks -------------------------------------------------------------------------------
    def task(
        self,
        content: dict[str, Any] | None = None,
        *,
        task_id: str | None = None,
        tasktype: str = "text-to-image",
        prefix: str = "out",
        context: Any = None,
        runtime: str | None = None,
    ) -> Task:
        return Task(
            metadata=TaskMetadata(
                id=task_id or uuid.uuid4().hex,
                runtime=runtime or self.runtime_name,
                tasktype=tasktype,
                prefix=prefix,
                context=context,
            ),
            content=content if content is not None else {"prompt": "a cat", "steps": 4},
        )

    def publish(self, task: Task) -> Task:
        """As the API does: the task JSON on the input topic with its message attributes."""
        self.sns.publish(
            TopicArn=self.input_topic,
            Message=json.dumps(task.to_message()),
            MessageAttributes=task.message_attributes(),
        )
        return task

    def publish_raw_json(self, message: dict[str, Any]) -> None:
        """Publish an arbitrary (possibly invalid) task object, routed to this runtime."""
        self.sns.publish(
            TopicArn=self.input_topic,
            Message=json.dumps(message),
            MessageAttributes={"runtime": {"DataType": "String", "StringValue": self.runtime_name}},
        )

    def drain_dlq(self) -> list[str]:
        bodies: list[str] = []
        while True:
            response = self.sqs.receive_message(
                QueueUrl=self.dlq_url, MaxNumberOfMessages=10, WaitTimeSeconds=0
            )
            messages = response.get("Messages", [])
            if not messages:
                return bodies
            for message in messages:
                bodies.append(message["Body"])
                self.sqs.delete_message(
                    QueueUrl=self.dlq_url, ReceiptHandle=message["ReceiptHandle"]
                )

    def send_raw(self, body: str) -> None:
        self.sqs.send_message(QueueUrl=self.queue_url, MessageBody=body)

    # -- notifications -----------------------------------------------------------------------
    def notifications(
        self, n: int, timeout: float, status: str | None = None
    ) -> list[dict[str, Any]]:
        """Wait for ``n`` notifications (optionally with ``status``); returns all seen so far
        that match. Each has ``_attributes`` with the SNS message attributes."""
        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                matching = [m for m in self._seen if status is None or m["status"] == status]
            if len(matching) >= n:
                return matching
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(
                    f"{len(matching)}/{n} notifications (status={status}) within {timeout}s: "
                    f"{self._seen}"
                )
            response = self.sqs.receive_message(
                QueueUrl=self.notify_url,
                MaxNumberOfMessages=10,
                WaitTimeSeconds=max(1, min(2, int(left))),
            )
            for message in response.get("Messages", []):
                envelope = json.loads(message["Body"])
                body = json.loads(envelope["Message"])
                body["_attributes"] = {
                    k: v["Value"] for k, v in envelope.get("MessageAttributes", {}).items()
                }
                with self._lock:
                    self._seen.append(body)
                self.sqs.delete_message(
                    QueueUrl=self.notify_url, ReceiptHandle=message["ReceiptHandle"]
                )

    def seen(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self._seen)

    def keys(self, prefix: str = "") -> list[str]:
        response = self.s3.list_objects_v2(Bucket=self.bucket, Prefix=prefix)
        return sorted(obj["Key"] for obj in response.get("Contents", []))

    def get(self, key: str) -> bytes:
        return bytes(self.s3.get_object(Bucket=self.bucket, Key=key)["Body"].read())

    def queue_counts(self, url: str | None = None) -> tuple[int, int]:
        attrs = self.sqs.get_queue_attributes(
            QueueUrl=url or self.queue_url,
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )["Attributes"]
        return int(attrs["ApproximateNumberOfMessages"]), int(
            attrs["ApproximateNumberOfMessagesNotVisible"]
        )

    def wait_dlq(self, n: int, timeout: float) -> list[dict[str, Any]]:
        """Messages moved to the DLQ (moto moves them on the next receive from the queue)."""
        deadline = time.monotonic() + timeout
        while True:
            visible, hidden = self.queue_counts(self.dlq_url)
            if visible + hidden >= n:
                return [{"visible": visible}]
            if time.monotonic() > deadline:
                raise TimeoutError(f"{visible + hidden}/{n} messages in the DLQ after {timeout}s")
            time.sleep(0.2)

    def agent_env(self, api_base_url: str, **overrides: str) -> dict[str, str]:
        env = {
            "SQS_QUEUE_URL": self.queue_url,
            "SNS_TOPIC_ARN": self.output_topic,
            "S3_BUCKET": self.bucket,
            "RUNTIME_TYPE": self.runtime_type,
            "RUNTIME_NAME": self.runtime_name,
            "API_BASE_URL": api_base_url,
            "AWS_ENDPOINT_URL": self.endpoint,
            **FAKE_CREDENTIALS,
            "HEARTBEAT_SECONDS": "1",
            "VISIBILITY_EXTENSION_SECONDS": "3",
            "HEARTBEAT_TIMEOUT_SECONDS": "0.5",  # a hung beat still ends within the extension
            "RECEIVE_WAIT_SECONDS": "1",
            "RETRY_BASE_SECONDS": "0.05",
            "RETRY_MAX_SECONDS": "0.2",
            "POISON_VISIBILITY_SECONDS": "0",
            "HEALTH_PORT": "0",
            "LOGLEVEL": "INFO",
        }
        env.update(overrides)
        return env
