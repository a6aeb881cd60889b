"""The sandbox's webhook deliveries on their own (moto): the output topic's filter policy, the
delivery handler's signature, the loopback allowance and what it still refuses."""

from __future__ import annotations

import http.server
import json
import threading
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import standardwebhooks

from sdfleet.fakes.fleet import MotoServer, client
from sdfleet.sandbox.plane import Plane, build_plane
from sdfleet.sandbox.run import load_config as load_stack
from sdfleet.sandbox.webhooks import WebhookPlane, WebhookThread, build_webhooks, webhook_function

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def world() -> Iterator[tuple[Plane, WebhookPlane]]:
    server = MotoServer().start()
    # Threaded moto servers in one process share their state: start from an empty one and
    # leave an empty one to the next module.
    reset = urllib.request.Request(f"{server.endpoint}/moto-api/reset", b"")
    urllib.request.urlopen(reset).close()
    plane = build_plane(server.endpoint, load_stack(ROOT, "dev"))
    yield plane, build_webhooks(plane)
    urllib.request.urlopen(reset).close()
    server.stop()


class Receiver(http.server.ThreadingHTTPServer):
    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.received: list[tuple[str, dict[str, str], bytes]] = []
        self.arrived = threading.Event()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class Handler(http.server.BaseHTTPRequestHandler):
    server: Receiver

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("content-length", "0")))
        self.server.received.append(
            (self.path, {k.lower(): v for k, v in self.headers.items()}, body)
        )
        self.send_response(200)
        self.end_headers()
        self.server.arrived.set()

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.shutdown()
    server.server_close()


def publish(plane: Plane, notification: dict[str, Any]) -> None:
    sns = client("sns", plane.endpoint)
    sns.publish(TopicArn=plane.output_topic_arn, Message=json.dumps(notification))


def test_only_notifications_with_a_callback_are_delivered_signed_to_loopback(
    world: tuple[Plane, WebhookPlane], receiver: Receiver
) -> None:
    plane, hooks = world
    pump = WebhookThread(webhook_function(plane, hooks, 3600), hooks.queue_url, plane.endpoint)
    publish(plane, {"id": "no-hook", "status": "completed"})
    refused = {"url": "https://10.0.0.7:8443/hook"}  # private: refused at delivery too
    publish(plane, {"id": "private", "status": "completed", "callback": refused})
    hook = {"url": f"{receiver.url}/in?token=abc"}
    publish(plane, {"id": "t-1", "status": "completed", "callback": hook})
    handled = 0
    for _ in range(10):  # long polls (1 s each) until both filtered-in records are handled
        handled += pump.poll()
        if handled >= 2:
            break
    assert handled == 2  # the notification without a callback never reached the queue
    assert receiver.arrived.is_set()
    ((path, headers, body),) = receiver.received
    assert path == "/in?token=abc"
    payload = standardwebhooks.Webhook(hooks.secret.encoded()).verify(body, headers)
    assert isinstance(payload, dict) and payload["id"] == "t-1"
    sqs = client("sqs", plane.endpoint)
    for url in (hooks.queue_url, hooks.dlq_url):  # delivered and refused: nothing left over
        attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
        assert attrs["ApproximateNumberOfMessages"] == "0"
        assert attrs["ApproximateNumberOfMessagesNotVisible"] == "0"


def test_the_thread_delivers_until_stopped(
    world: tuple[Plane, WebhookPlane], receiver: Receiver
) -> None:
    plane, hooks = world
    pump = WebhookThread(webhook_function(plane, hooks, 3600), hooks.queue_url, plane.endpoint)
    pump.start()
    try:
        hook = {"url": f"http://localhost:{receiver.server_address[1]}/x", "events": ["failed"]}
        publish(plane, {"id": "t-2", "status": "failed", "callback": hook})
        assert receiver.arrived.wait(30)
    finally:
        pump.stop()
    assert not pump._thread.is_alive()
