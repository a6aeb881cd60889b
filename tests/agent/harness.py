"""Test (and benchmark) plumbing: a moto server with the real event plane of one runtime.

``Fleet`` builds what the infrastructure builds for a runtime: the input topic, the runtime queue
subscribed with the runtime filter policy (raw delivery off), its DLQ with a redrive policy, the
output topic with a subscriber queue for notifications, and the output bucket.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import boto3

from sdfleet.agent.config import load_config
from sdfleet.agent.contract import Task, TaskMetadata
from sdfleet.components.builders.fanout import (
    FILTER_POLICY_SCOPE,
    RAW_MESSAGE_DELIVERY,
    redrive_policy,
    runtime_filter_policy_json,
)

REGION = "us-east-1"
FAKE_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": REGION,
    "AWS_REGION": REGION,
}

# The required agent settings, for unit tests that build a Config without AWS.
AGENT_ENV = {
    "SQS_QUEUE_URL": "https://sqs.eu-west-1.amazonaws.com/123456789012/sdfleet-sd15",
    "SNS_TOPIC_ARN": "arn:aws:sns:eu-west-1:123456789012:sdfleet-output",
    "S3_BUCKET": "sdfleet-output",
    "RUNTIME_TYPE": "sdwebui",
    "RUNTIME_NAME": "sd15",
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


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
        import sys

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


class AgentThread:
    """An in-process agent (``sdfleet.agent.worker.Agent``) on a thread, wired to the fleet."""

    def __init__(
        self,
        fleet: Fleet,
        api_base_url: str,
        tracing: Any = None,
        *,
        wrap_s3: Callable[[Any], Any] | None = None,
        wrap_sns: Callable[[Any], Any] | None = None,
        pod_cost: Any = None,
        **overrides: str,
    ) -> None:
        """``wrap_s3``/``wrap_sns`` wrap the agent's clients (fault injection, see Flaky)."""
        from sdfleet.agent.__main__ import build_server
        from sdfleet.agent.metrics import Metrics
        from sdfleet.agent.worker import Agent

        self.env = fleet.agent_env(api_base_url, **overrides)
        self.config = load_config(self.env)
        s3 = client("s3", fleet.endpoint)
        self.server = build_server(self.config, s3)
        self.agent = Agent(
            self.config,
            sqs=client("sqs", fleet.endpoint),
            heartbeat_sqs=client("sqs", fleet.endpoint),
            s3=wrap_s3(s3) if wrap_s3 else s3,
            sns=wrap_sns(client("sns", fleet.endpoint))
            if wrap_sns
            else client("sns", fleet.endpoint),
            server=self.server,
            pod_cost=pod_cost,
            metrics=Metrics(self.config.runtime_name, enabled=False),
            tracing=tracing,
        )
        self.exit_code: int | None = None
        self._thread = threading.Thread(target=self._run, name="agent-under-test", daemon=True)

    def _run(self) -> None:
        self.exit_code = self.agent.run()

    def start(self) -> AgentThread:
        self._thread.start()
        return self

    def stop(self, timeout: float = 30.0) -> int | None:
        if not self.agent.shutdown.stopping.is_set():
            self.agent.request_stop()
        self._thread.join(timeout)
        self.server.close()
        if self._thread.is_alive():
            raise TimeoutError("agent did not stop")
        return self.exit_code

    def wait_exit(self, timeout: float) -> int | None:
        self._thread.join(timeout)
        return self.exit_code

    def __enter__(self) -> AgentThread:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class Flaky:
    """A client wrapper whose ``method`` raises for its first ``failures`` calls (a transient
    S3/SNS outage), then passes through; every other method passes through untouched."""

    def __init__(self, inner: Any, method: str, failures: int) -> None:
        self._inner = inner
        self._method = method
        self._left = failures
        self._lock = threading.Lock()
        self.failed = 0
        self.passed = 0

    def __getattr__(self, name: str) -> Any:
        target = getattr(self._inner, name)
        if name != self._method:
            return target

        def call(*args: Any, **kwargs: Any) -> Any:
            with self._lock:
                fail = self._left > 0
                if fail:
                    self._left -= 1
                    self.failed += 1
            if fail:
                from botocore.exceptions import EndpointConnectionError

                raise EndpointConnectionError(endpoint_url="https://injected-outage.invalid")
            result = target(*args, **kwargs)
            with self._lock:
                self.passed += 1
            return result

        return call


def failing(method: str, failures: int) -> tuple[list[Flaky], Callable[[Any], Flaky]]:
    """A ``wrap_s3``/``wrap_sns`` for :class:`AgentThread` whose client's ``method`` fails
    ``failures`` times, and the list that receives the :class:`Flaky` it made."""
    made: list[Flaky] = []

    def wrap(client: Any) -> Flaky:
        made.append(Flaky(client, method, failures))
        return made[-1]

    return made, wrap


class ImageHost:
    """A tiny HTTP server for input images (``/small.png``, ``/big.bin``)."""

    def __init__(self, big: int = 4096) -> None:
        from sdfleet.fakes.images import make_png

        payloads = {"/small.png": make_png(64, 64, 7), "/big.bin": b"\0" * big}

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                data = payloads.get(self.path)
                if data is None:
                    self.send_response(404)
                    self.end_headers()
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        self.port = self.httpd.server_address[1]

    def url(self, path: str, host: str = "127.0.0.1") -> str:
        return f"http://{host}:{self.port}{path}"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def subprocess_env(env: dict[str, str]) -> dict[str, str]:
    """Environment for ``python -m sdfleet.agent`` in a subprocess (PATH etc. kept)."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    return {**base, **env, "PYTHONUNBUFFERED": "1"}
