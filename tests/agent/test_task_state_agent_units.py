"""The agent's task-state and callback plumbing without AWS: a queued callback never poisons a
task, the notification carries it as webhook delivery reads it, and state writes never raise."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest

from sdfleet.agent.config import load_config
from sdfleet.agent.contract import RuntimeInfo, build_notification, parse_queue_message
from sdfleet.agent.contract_callback import parse_callback
from sdfleet.agent.held import Held
from sdfleet.agent.outputs import notification
from sdfleet.agent.receiver import _checked_callback
from sdfleet.agent.task_progress import SENT_AT_MS, TaskProgress
from sdfleet.agent.webhooks import callback_from_notification
from tests.agent.harness import AGENT_ENV

RUNTIME = RuntimeInfo(name="sd15", type="sdwebui")
URL = "https://hooks.example.com/in?token=s3cret"


def _message(callback: Any) -> str:
    meta = {"id": "t1", "runtime": "sd15", "tasktype": "text-to-image", "callback": callback}
    return json.dumps({"metadata": meta, "content": {"prompt": "a cat"}})


@pytest.mark.parametrize("callback", [{"url": URL}, "not an object", {"url": 1, "x": []}, None])
def test_a_queued_callback_is_taken_aside_and_never_poisons_the_task(callback: Any) -> None:
    parsed = parse_queue_message(_message(callback), RUNTIME)
    assert parsed.callback == callback
    assert parsed.task.metadata.id == "t1"
    assert "callback" not in parsed.task.to_message()["metadata"]  # nor in the task digest


def test_the_notification_carries_the_callback_as_webhook_delivery_reads_it() -> None:
    callback = parse_callback({"url": URL, "events": ["running", "completed"]})
    assert callback is not None
    body, _ = notification(
        runtime="sd15",
        task_id="t1",
        status="completed",
        bucket="b",
        prefix="",
        image_urls=[],
        context=None,
        error=None,
        timings={},
        attempt=1,
        callback=callback.to_json(),
    )
    doc = json.loads(body)
    assert doc["callback"] == {"url": URL, "events": ["running", "completed"]}
    assert callback_from_notification(doc) == callback


def test_without_a_callback_the_notification_is_as_before() -> None:
    body, attributes = build_notification(runtime="sd15", task_id="t1", status="failed")
    assert "callback" not in body
    assert list(body) == [
        "runtime",
        "id",
        "result",
        "status",
        "image_url",
        "output_url",
        "context",
        "error",
        "timings",
        "attempt",
    ]
    assert set(attributes) == {"runtime", "status"}


def test_a_bad_callback_is_dropped_naming_the_field_never_the_url(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="agent.worker")
    assert _checked_callback({"url": URL.replace("https", "http")}, "t1") is None
    assert _checked_callback(None, "t1") is None
    assert _checked_callback({"url": URL}, "t1") == parse_callback({"url": URL})
    [record] = caplog.records
    fields = getattr(record, "fields")  # noqa: B009
    assert fields == {
        "event": "callback_dropped",
        "task_id": "t1",
        "trace_id": None,
        "field": "task.metadata.callback.url",
        "code": "insecure_callback_url",
    }
    assert "s3cret" not in record.getMessage()


class _RecordingStore:
    def __init__(self, fail: bool = False) -> None:
        self.calls: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = []
        self.fail = fail

    def __getattr__(self, name: str) -> Any:
        def call(*args: Any, **kwargs: Any) -> None:
            self.calls.append((name, args, kwargs))
            if self.fail:
                raise RuntimeError("a bug in the store")

        return call


def _held() -> Held:
    held = Held("m1", "r1", _message(None), 1, 0.0, None, None)
    held.task = parse_queue_message(held.body, RUNTIME).task
    held.timings[SENT_AT_MS] = 1_800_000_000_000
    return held


def test_the_writes_pass_the_task_the_keys_and_the_sqs_time() -> None:
    store = _RecordingStore()
    progress = TaskProgress(load_config(AGENT_ENV), store)
    held = _held()
    progress.running(held)
    progress.completed(held, ["s3://sdfleet-output/out/t1/t1-1.png"])
    progress.failed(held, {"code": "timeout", "message": "too slow", "detail": None})
    progress.failed_id(held, "t2", "sd15", None)
    sent = {"queued_at_ms": 1_800_000_000_000}
    assert store.calls == [
        ("record_running", ("t1", "sd15"), sent),
        (
            "record_completed",
            ("t1", "sd15", ["out/t1/t1-1.png"]),
            {"output_bucket": "sdfleet-output", **sent},
        ),
        ("record_failed", ("t1", "sd15", "timeout", "too slow"), sent),
        ("record_failed", ("t2", "sd15", "server_error", ""), sent),
    ]


def test_a_bug_in_a_state_write_is_logged_not_raised(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.ERROR, logger="agent.worker")
    progress = TaskProgress(load_config(AGENT_ENV), _RecordingStore(fail=True))
    held = _held()
    progress.running(held)
    progress.completed(held, ["not an s3 uri"])
    events = [getattr(r, "fields")["event"] for r in caplog.records]  # noqa: B009
    assert events == ["task_state_write_failed", "task_state_write_failed"]


def test_without_a_table_nothing_is_written_and_no_client_is_made() -> None:
    progress = TaskProgress.from_config(load_config(AGENT_ENV), dynamodb=object())
    assert not progress.enabled
    progress.running(_held())  # a no-op


def test_with_a_table_the_injected_client_is_used() -> None:
    config = load_config({**AGENT_ENV, "TASK_TABLE_NAME": "tasks", "TASK_TTL_SECONDS": "120"})
    client = object()
    progress = TaskProgress.from_config(config, dynamodb=client)
    assert progress.store is not None and progress.store.client is client
    assert (progress.store.table_name, progress.store.ttl_seconds) == ("tasks", 120)
