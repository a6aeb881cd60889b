"""Offloaded content (``content_ref``) read by the agent is held to every check an inline task
gets, and only the task's own request object may be read."""

from __future__ import annotations

import json

import pytest

from sdfleet.agent.contract import MAX_BODY_BYTES, Task, request_key
from sdfleet.fakes.sdwebui import FakeSdWebUI
from tests.agent.harness import AgentThread, Fleet

pytestmark = pytest.mark.e2e

STATIC_MODEL = "v1-5-pruned-emaonly.safetensors"


def _offload(fleet: Fleet, task: Task, key: str | None = None, body: bytes | None = None) -> Task:
    """Store the content as the API does and point the task at it."""
    key = key or request_key(task.metadata.prefix, task.metadata.id, "req-1")
    data = body if body is not None else json.dumps(task.content).encode()
    fleet.s3.put_object(Bucket=fleet.bucket, Key=key, Body=data)
    task.content_ref, task.content = f"s3://{fleet.bucket}/{key}", None
    return task


def test_offloaded_content_asking_for_another_model_fails_like_inline_content(
    fleet: Fleet,
) -> None:
    content = {"prompt": "x", "override_settings": {"sd_model_checkpoint": "other.safetensors"}}
    with (
        FakeSdWebUI(inference_seconds=0.01) as srv,
        AgentThread(fleet, srv.url, MODEL_FILENAME=STATIC_MODEL),
    ):
        fleet.publish(fleet.task(content, task_id="inline"))
        fleet.publish(_offload(fleet, fleet.task(content, task_id="offloaded")))
        notes = fleet.notifications(2, timeout=20)
    assert srv.generation_calls() == []
    by_id = {n["id"]: n for n in notes}
    assert by_id["inline"]["status"] == by_id["offloaded"]["status"] == "failed"
    assert by_id["inline"]["error"]["detail"]["code"] == "model_not_served"
    assert by_id["offloaded"]["error"]["detail"]["code"] == "model_not_served"
    assert by_id["offloaded"]["error"]["detail"]["field"] == (
        "content_ref.override_settings.sd_model_checkpoint"
    )


def test_content_ref_to_another_tasks_object_is_refused(fleet: Fleet) -> None:
    victim = fleet.task({"prompt": "someone else's prompt"}, task_id="victim", prefix="tenant-a")
    victim_key = request_key("tenant-a", "victim", "req-1")
    thief = _offload(fleet, fleet.task(victim.content, task_id="thief"), key=victim_key)
    with FakeSdWebUI(inference_seconds=0.01) as srv, AgentThread(fleet, srv.url):
        fleet.publish(thief)
        [note] = fleet.notifications(1, timeout=20)
    assert note["status"] == "failed" and note["error"]["code"] == "content_ref_failed"
    assert "out/thief/" in note["error"]["message"]
    assert srv.generation_calls() == []


def test_content_ref_object_larger_than_any_request_is_not_read(fleet: Fleet) -> None:
    task = fleet.task({"prompt": "x"})
    big = b'{"prompt": "' + b"a" * MAX_BODY_BYTES + b'"}'
    with FakeSdWebUI(inference_seconds=0.01) as srv, AgentThread(fleet, srv.url):
        fleet.publish(_offload(fleet, task, body=big))
        [note] = fleet.notifications(1, timeout=20)
    assert note["status"] == "failed" and note["error"]["code"] == "content_ref_failed"
    assert str(MAX_BODY_BYTES) in note["error"]["message"]
    assert srv.generation_calls() == []
