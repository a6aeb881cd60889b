"""Reliability scenarios: nothing is lost, nothing runs twice on a GPU when it can be avoided."""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import pytest

from sdfleet.fakes.sdwebui import FakeSdWebUI
from tests.agent.harness import AgentThread, Fleet

pytestmark = pytest.mark.e2e

RUNTIME_ERROR = {"error": "RuntimeError", "detail": "", "body": "", "errors": "transient"}


def test_long_task_with_two_agents_runs_exactly_once(fleet: Fleet) -> None:
    # 10 s of inference against a 3 s visibility (queue and extension), more than three
    # windows: only the heartbeat keeps the second agent from receiving the task again.
    with (
        FakeSdWebUI(inference_seconds=10.0) as gpu1,
        FakeSdWebUI(inference_seconds=10.0) as gpu2,
        AgentThread(fleet, gpu1.url) as agent1,
        AgentThread(fleet, gpu2.url) as agent2,
    ):
        task = fleet.publish(fleet.task())
        [note] = fleet.notifications(1, timeout=40)
    worker = agent1 if gpu1.generation_calls() else agent2
    assert worker.agent.heartbeat.beats >= 8
    assert worker.agent.heartbeat.max_gap < worker.config.visibility_extension_seconds
    assert note["status"] == "completed" and note["id"] == task.metadata.id
    assert len(gpu1.generation_calls()) + len(gpu2.generation_calls()) == 1
    assert note["attempt"] == 1
    assert fleet.queue_counts() == (0, 0)
    assert fleet.queue_counts(fleet.dlq_url) == (0, 0)


def test_server_5xx_then_success_gives_one_result(fleet: Fleet) -> None:
    with FakeSdWebUI(inference_seconds=0.02) as srv, AgentThread(fleet, srv.url):
        srv.fail_next(500, RUNTIME_ERROR, count=2)
        task = fleet.publish(fleet.task())
        [note] = fleet.notifications(1, timeout=20)
    assert note["status"] == "completed", note
    assert len(srv.generation_calls()) == 3
    tid = task.metadata.id
    assert fleet.keys(f"out/{tid}/") == [f"out/{tid}/{tid}-1.png", f"out/{tid}/{tid}.out"]


def test_5xx_retries_are_bounded(fleet: Fleet) -> None:
    with (
        FakeSdWebUI(inference_seconds=0.01) as srv,
        AgentThread(fleet, srv.url, SERVER_RETRIES="2"),
    ):
        srv.fail_next(503, count=10)
        fleet.publish(fleet.task())
        [note] = fleet.notifications(1, timeout=20)
    assert note["status"] == "failed" and note["error"]["code"] == "server_error"
    assert len(srv.generation_calls()) == 3


def test_dropped_connection_interrupts_before_retrying(fleet: Fleet) -> None:
    with FakeSdWebUI(inference_seconds=0.02) as srv, AgentThread(fleet, srv.url):
        srv.drop_next()
        fleet.publish(fleet.task())
        [note] = fleet.notifications(1, timeout=20)
    assert note["status"] == "completed", note
    posts = [c.path.rsplit("/", 1)[-1] for c in srv.calls if c.method == "POST"]
    assert posts == ["txt2img", "interrupt", "txt2img"]


def test_agent_waits_for_the_server_before_receiving(fleet: Fleet) -> None:
    with FakeSdWebUI(inference_seconds=0.01, ready=False) as srv:
        fleet.publish(fleet.task())
        with AgentThread(fleet, srv.url) as runner:
            srv.wait_for_calls("/options", 3, timeout=20)
            # Still probing, nothing received: the message is visible and not in flight.
            assert fleet.queue_counts() == (1, 0)
            assert not runner.agent.server_ready.is_set()
            assert srv.generation_calls() == []
            srv.set_ready(True)
            [note] = fleet.notifications(1, timeout=30)
    assert note["status"] == "completed"


def test_agent_waits_while_the_server_port_is_closed(fleet: Fleet) -> None:
    srv = FakeSdWebUI(inference_seconds=0.01)
    url = srv.url  # reserves a port number; nothing listens yet
    fleet.publish(fleet.task())
    with AgentThread(fleet, url) as runner:
        deadline = time.monotonic() + 10
        while runner.agent.ready_probes < 3:  # no event to await: the port is closed
            assert time.monotonic() < deadline, "the agent stopped probing"
            time.sleep(0.05)
        assert fleet.queue_counts() == (1, 0)
        with srv:
            [note] = fleet.notifications(1, timeout=30)
    assert note["status"] == "completed"


def test_poison_messages_reach_the_dlq_and_the_agent_keeps_working(fleet: Fleet) -> None:
    bad_with_id = {
        "metadata": {"id": "poison-1", "runtime": "sd15", "tasktype": "no-such-type"},
        "content": {"prompt": "x"},
    }
    with FakeSdWebUI(inference_seconds=0.01) as srv, AgentThread(fleet, srv.url) as runner:
        fleet.send_raw("this is not json")
        fleet.publish_raw_json(bad_with_id)
        [failure] = fleet.notifications(1, timeout=20, status="failed")
        fleet.wait_dlq(2, timeout=30)
        good = fleet.publish(fleet.task())
        completed = fleet.notifications(1, timeout=20, status="completed")
        assert runner.agent.counts["poison"] >= 2
    assert failure["id"] == "poison-1"
    assert failure["error"]["code"] == "invalid_task"
    assert "tasktype" in failure["error"]["message"]
    assert [n["id"] for n in completed] == [good.metadata.id]
    # One failure notification only, although the message was received several times.
    assert [n["id"] for n in fleet.seen() if n["status"] == "failed"] == ["poison-1"]
    assert fleet.queue_counts() == (0, 0)
    bodies = fleet.drain_dlq()
    assert "this is not json" in bodies
    assert any("poison-1" in body for body in bodies)


def test_duplicate_delivery_writes_the_same_keys(fleet: Fleet) -> None:
    with FakeSdWebUI(inference_seconds=0.01) as srv, AgentThread(fleet, srv.url):
        task = fleet.task(task_id="dup-1")
        fleet.publish(task)
        first = fleet.notifications(1, timeout=20)
        keys_after_first = fleet.keys()
        fleet.publish(task)
        both = fleet.notifications(2, timeout=20)
    assert [n["id"] for n in both] == ["dup-1", "dup-1"]
    assert first[0]["image_url"] == both[1]["image_url"]
    assert fleet.keys() == keys_after_first == ["out/dup-1/dup-1-1.png", "out/dup-1/dup-1.out"]
    assert json.loads(fleet.get("out/dup-1/dup-1.out"))["status"] == "completed"


def test_server_lost_mid_run_releases_and_waits(fleet: Fleet) -> None:
    srv = FakeSdWebUI(inference_seconds=0.01).start()
    port = srv.port
    with AgentThread(fleet, srv.url, SERVER_RETRIES="1") as runner:
        fleet.publish(fleet.task())
        fleet.notifications(1, timeout=20)
        srv.stop()
        probes = runner.agent.ready_probes
        task = fleet.publish(fleet.task())
        deadline = time.monotonic() + 15
        while runner.agent.ready_probes < probes + 2:  # connection refused: no event to await
            assert time.monotonic() < deadline, "the agent did not go back to waiting"
            time.sleep(0.05)
        # Released (visible) and not received again while the server is away.
        assert fleet.queue_counts() == (1, 0)
        with FakeSdWebUI(inference_seconds=0.01, port=port) as back:
            notes = fleet.notifications(2, timeout=30)
    assert notes[1]["id"] == task.metadata.id and notes[1]["status"] == "completed"
    assert len(back.generation_calls()) == 1


class SlowPuts:
    """An S3 client whose put_object stalls for ``seconds`` (a degraded S3 endpoint)."""

    def __init__(self, inner: Any, seconds: float) -> None:
        self._inner = inner
        self._seconds = seconds
        self._never = threading.Event()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def put_object(self, **kwargs: Any) -> Any:
        self._never.wait(self._seconds)  # the stalled call itself, not a test wait
        return self._inner.put_object(**kwargs)


def test_slow_upload_never_lets_the_message_go_to_another_agent(fleet: Fleet) -> None:
    # Each put stalls 2.5 s (image + result document: 5 s, beyond the 3 s extension): only
    # the heartbeat, on its own thread and client, keeps the other agent from the task.
    with (
        FakeSdWebUI(inference_seconds=0.05) as gpu1,
        FakeSdWebUI(inference_seconds=0.05) as gpu2,
        AgentThread(fleet, gpu1.url, wrap_s3=lambda s3: SlowPuts(s3, 2.5)) as agent1,
        AgentThread(fleet, gpu2.url, wrap_s3=lambda s3: SlowPuts(s3, 2.5)) as agent2,
    ):
        task = fleet.publish(fleet.task())
        [note] = fleet.notifications(1, timeout=40)
    assert note["id"] == task.metadata.id and note["attempt"] == 1
    assert len(gpu1.generation_calls()) + len(gpu2.generation_calls()) == 1
    worker = agent1 if gpu1.generation_calls() else agent2
    assert worker.agent.heartbeat.beats >= 3
    assert worker.agent.heartbeat.max_gap < worker.config.visibility_extension_seconds
    assert fleet.queue_counts() == (0, 0)
