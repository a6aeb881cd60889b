"""After the GPU: transient S3/SNS failures never rerun inference, and a redelivered task
whose result is stored is announced again without calling the inference server."""

from __future__ import annotations

import json
import threading

import pytest

from sdfleet.agent.contract import request_key
from sdfleet.fakes.sdwebui import FakeSdWebUI
from tests.agent.harness import AgentThread, Fleet, failing

pytestmark = pytest.mark.e2e

FAST = "0.05"  # OUTPUT_RETRY_BASE_SECONDS: quick in-place retries


@pytest.mark.parametrize(
    ("method", "client", "passed"),
    [("put_object", "wrap_s3", 2), ("publish", "wrap_sns", 1)],  # S3: one image + the document
)
def test_a_transient_output_failure_runs_inference_once(
    fleet: Fleet, method: str, client: str, passed: int
) -> None:
    flaky, wrap = failing(method, failures=3)
    with (
        FakeSdWebUI(inference_seconds=0.02) as srv,
        AgentThread(fleet, srv.url, OUTPUT_RETRY_BASE_SECONDS=FAST, **{client: wrap}),  # type: ignore[arg-type]
    ):
        task = fleet.publish(fleet.task())
        [note] = fleet.notifications(1, timeout=30)
    tid = task.metadata.id
    assert note["status"] == "completed" and note["id"] == tid and note["attempt"] == 1
    assert len(srv.generation_calls()) == 1
    assert (flaky[0].failed, flaky[0].passed) == (3, passed)
    assert fleet.keys(f"out/{tid}/") == [f"out/{tid}/{tid}-1.png", f"out/{tid}/{tid}.out"]
    assert fleet.queue_counts() == (0, 0)


def test_publish_retries_exhausted_release_and_redelivery_only_republishes(
    fleet: Fleet,
) -> None:
    # 1 retry: the first delivery gives up after 2 failed publishes and releases the message;
    # the redelivery finds the stored result and publishes it without running the task again.
    flaky, wrap = failing("publish", failures=2)
    with (
        FakeSdWebUI(inference_seconds=0.02) as srv,
        AgentThread(
            fleet, srv.url, wrap_sns=wrap, OUTPUT_RETRIES="1", OUTPUT_RETRY_BASE_SECONDS=FAST
        ) as run,
    ):
        task = fleet.publish(fleet.task())
        [note] = fleet.notifications(1, timeout=30)
    # (Counted after the delete, so read once the agent has stopped.)
    assert run.agent.counts["released"] == 1 and run.agent.counts["republished"] == 1
    assert note["status"] == "completed" and note["id"] == task.metadata.id
    assert note["attempt"] == 2 and flaky[0].failed == 2
    assert len(srv.generation_calls()) == 1
    assert fleet.queue_counts() == (0, 0)


def test_redelivery_of_a_finished_task_republishes_without_inference(fleet: Fleet) -> None:
    with FakeSdWebUI(inference_seconds=0.02) as srv, AgentThread(fleet, srv.url) as run:
        task = fleet.publish(fleet.task({"prompt": "a cat", "seed": 7}, context={"u": 1}))
        [first] = fleet.notifications(1, timeout=20)
        # The same task again, as a redelivered (raw) queue message.
        fleet.send_raw(json.dumps(task.to_message()))
        second = fleet.notifications(2, timeout=20)[1]
    assert run.agent.counts["republished"] == 1
    assert len(srv.generation_calls()) == 1
    assert second["id"] == task.metadata.id and second["status"] == "completed"
    assert second["image_url"] == first["image_url"] and second["context"] == {"u": 1}
    assert second["output_url"] == first["output_url"]
    assert fleet.queue_counts() == (0, 0)  # deleted


def test_redelivery_of_a_finished_offloaded_task_republishes_without_inference(
    fleet: Fleet,
) -> None:
    # The digest must be that of the task as queued (its content_ref), not of the content
    # the agent read from S3, or an offloaded task (e.g. img2img) always runs again.
    task = fleet.task({"prompt": "offloaded", "steps": 3})
    key = request_key(task.metadata.prefix, task.metadata.id, "req-1")
    fleet.s3.put_object(Bucket=fleet.bucket, Key=key, Body=json.dumps(task.content).encode())
    task.content_ref, task.content = f"s3://{fleet.bucket}/{key}", None
    with FakeSdWebUI(inference_seconds=0.02) as srv, AgentThread(fleet, srv.url) as run:
        fleet.publish(task)
        [first] = fleet.notifications(1, timeout=20)
        fleet.send_raw(json.dumps(task.to_message()))
        second = fleet.notifications(2, timeout=20)[1]
    assert first["status"] == "completed", first
    assert run.agent.counts["republished"] == 1
    assert len(srv.generation_calls()) == 1
    assert second["image_url"] == first["image_url"]
    assert fleet.queue_counts() == (0, 0)


def test_stored_result_of_another_task_or_with_a_missing_image_is_not_reused(
    fleet: Fleet,
) -> None:
    with FakeSdWebUI(inference_seconds=0.02) as srv, AgentThread(fleet, srv.url):
        task = fleet.publish(fleet.task({"prompt": "a cat"}, task_id="same-id"))
        fleet.notifications(1, timeout=20)
        # Same id, other content: a different task, it runs.
        fleet.publish(fleet.task({"prompt": "a dog"}, task_id="same-id"))
        fleet.notifications(2, timeout=20)
        assert len(srv.generation_calls()) == 2
        # The stored result now belongs to "a dog"; remove its image: incomplete, it runs.
        fleet.s3.delete_object(Bucket=fleet.bucket, Key="out/same-id/same-id-1.png")
        fleet.publish(fleet.task({"prompt": "a dog"}, task_id="same-id"))
        fleet.notifications(3, timeout=20)
    assert [c.body["prompt"] for c in srv.generation_calls()] == ["a cat", "a dog", "a dog"]
    assert task.metadata.id == "same-id"
    assert fleet.keys("out/same-id/") == ["out/same-id/same-id-1.png", "out/same-id/same-id.out"]


def test_direct_sns_task_over_the_runtime_limits_fails_without_the_server(
    fleet: Fleet,
) -> None:
    limits = json.dumps({"maxSteps": 10, "maxImages": 2})
    with (
        FakeSdWebUI(inference_seconds=0.01) as srv,
        AgentThread(fleet, srv.url, TASK_LIMITS=limits) as run,
    ):
        # Published straight to the input topic: the API's checks never saw it.
        fleet.publish(fleet.task({"prompt": "x", "steps": 50}, task_id="too-many-steps"))
        fleet.publish(fleet.task({"prompt": "x", "batch_size": 4}, task_id="too-many-images"))
        failures = fleet.notifications(2, timeout=20, status="failed")
        fleet.wait_dlq(2, timeout=30)
        assert run.agent.counts["poison"] >= 2
    assert srv.generation_calls() == []
    by_id = {n["id"]: n for n in failures}
    assert set(by_id) == {"too-many-steps", "too-many-images"}
    for note in by_id.values():
        assert note["error"]["code"] == "invalid_task"
    assert "limit of 10" in by_id["too-many-steps"]["error"]["message"]
    assert "maxImages" in by_id["too-many-images"]["error"]["message"]


class RecordingPodCost:
    """Stands in for sdfleet.agent.pod_cost.PodDeletionCost: records busy/idle calls."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.cond = threading.Condition()

    def _record(self, what: str) -> None:
        with self.cond:
            self.calls.append(what)
            self.cond.notify_all()

    def busy(self) -> None:
        self._record("busy")

    def idle(self) -> None:
        self._record("idle")

    def close(self) -> None:
        self._record("close")

    def wait_for(self, calls: list[str], timeout: float) -> None:
        with self.cond:
            assert self.cond.wait_for(lambda: self.calls[: len(calls)] == calls, timeout), (
                self.calls
            )


def test_pod_is_marked_busy_while_it_holds_a_task(fleet: Fleet) -> None:
    cost = RecordingPodCost()
    with (
        FakeSdWebUI(inference_seconds=0.01) as srv,
        AgentThread(fleet, srv.url, pod_cost=cost),
    ):
        srv.hang_next()  # the job runs until released
        fleet.publish(fleet.task())
        srv.wait_generation_started(timeout=20)
        cost.wait_for(["idle", "busy"], timeout=10)  # idle at start, busy while running
        srv.release()
        fleet.notifications(1, timeout=20)
        cost.wait_for(["idle", "busy", "idle"], timeout=10)
    assert cost.calls == ["idle", "busy", "idle", "close"]
