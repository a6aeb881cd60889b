"""End to end: the next ComfyUI prompt is queued on the server while one runs (moto + the fake).

Timing assertions use the fake's recorded submit/start/end times of each prompt, not sleeps.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from sdfleet.agent.contract import COMFYUI
from sdfleet.fakes.comfyui import FakeComfyUI
from tests.agent.harness import AgentThread, Fleet
from tests.agent.test_e2e_comfyui import graph, pipeline

pytestmark = pytest.mark.e2e


@pytest.fixture
def cfleet(aws_env: Any) -> Fleet:
    return Fleet(aws_env.endpoint, runtime_name="comfy", runtime_type=COMFYUI)


def seeds_run(srv: FakeComfyUI) -> list[int]:
    """The KSampler seed of every prompt that ran (one history entry per run)."""
    return sorted(
        entry["prompt"][2]["3"]["inputs"]["seed"] for entry in srv.history_snapshot().values()
    )


def test_back_to_back_prompts_overlap(cfleet: Fleet) -> None:
    seeds = [31, 32, 33, 34, 35]
    for seed in seeds:
        cfleet.publish(pipeline(cfleet, graph(seed=seed)))
    with FakeComfyUI(execution_seconds=0.4) as srv, AgentThread(cfleet, srv.url):
        notes = cfleet.notifications(len(seeds), timeout=60)
        runs = srv.wait_for_executions(len(seeds), timeout=10)
    assert [n["status"] for n in notes] == ["completed"] * len(seeds)
    assert len(runs) == len(seeds) and seeds_run(srv) == seeds
    for i in range(1, len(runs)):
        before, run = runs[i - 1], runs[i]
        assert before.ended is not None
        # Queued while the previous prompt ran, so ComfyUI started it as that one ended ...
        assert run.submitted < before.ended <= run.started
        # ... and never more than one ahead: the one after was submitted only once it ran.
        if i >= 2:
            ended = runs[i - 2].ended
            assert ended is not None and run.submitted >= ended


def test_stop_mid_queue_gives_the_queued_task_back(cfleet: Fleet) -> None:
    with FakeComfyUI(execution_seconds=0.05) as srv:
        srv.hang_next()  # the first prompt runs until released
        for seed in (41, 42):
            cfleet.publish(pipeline(cfleet, graph(seed=seed)))
        first = AgentThread(cfleet, srv.url, DRAIN_SECONDS="30").start()
        srv.wait_until(lambda: len(srv.submitted) == 2, timeout=20)
        running, pending = srv.queue_ids()
        assert len(running) == 1 and len(pending) == 1
        # The heartbeat keeps the queued task's message hidden too (visibility timeout 3 s,
        # extended by 3 s every 1 s): after 5 beats both messages are still in flight.
        beats = first.agent.heartbeat.beats
        deadline = time.monotonic() + 20
        while first.agent.heartbeat.beats < beats + 5:  # a counter: no event to wait on
            assert time.monotonic() < deadline
            time.sleep(0.1)
        assert cfleet.queue_counts() == (0, 2)
        first.agent.request_stop()
        srv.wait_until(lambda: srv.deleted == pending, timeout=10)
        srv.release()  # the running prompt finishes within the drain
        assert first.stop() == 0
        [done] = cfleet.notifications(1, timeout=20)
        assert done["status"] == "completed" and done["attempt"] == 1
        assert cfleet.queue_counts() == (1, 0)  # released at once, not waiting for a timeout
        with AgentThread(cfleet, srv.url):
            notes = cfleet.notifications(2, timeout=30)
    again = [n for n in notes if n["id"] != done["id"]]
    assert [n["status"] for n in again] == ["completed"] and again[0]["attempt"] == 2
    # Each task's prompt ran exactly once; the deleted one never started.
    assert len(srv.executions) == 2 and seeds_run(srv) == [41, 42]
    assert pending[0] not in {e.prompt_id for e in srv.executions}


def test_job_timeout_interrupts_the_running_prompt_only(cfleet: Fleet) -> None:
    with FakeComfyUI(execution_seconds=0.05) as srv:
        srv.hang_next()
        for seed in (51, 52):
            cfleet.publish(pipeline(cfleet, graph(seed=seed)))
        with AgentThread(cfleet, srv.url, JOB_TIMEOUT_SECONDS="1.5"):
            notes = cfleet.notifications(2, timeout=30)
        hung, after = srv.wait_for_executions(2, timeout=10)
    by_status = {n["status"]: n for n in notes}
    assert by_status["failed"]["error"]["code"] == "timeout"
    assert by_status["completed"]["attempt"] == 1
    assert hung.interrupted and not after.interrupted and after.status_str == "success"
    assert hung.ended is not None and after.submitted < hung.ended  # it was queued meanwhile
    # Every interrupt named the hung prompt (ComfyUI ignores one naming another prompt, and
    # an older build would have hit whichever prompt runs).
    assert srv.interrupted_ids and set(srv.interrupted_ids) == {hung.prompt_id}
    assert srv.deleted == []


def test_a_failed_prompt_does_not_affect_the_queued_one(cfleet: Fleet) -> None:
    with FakeComfyUI(execution_seconds=0.3) as srv:
        # Fails in VAEDecode, after its sampler ran: the next prompt is queued by then.
        srv.fail_next_execution("torch.OutOfMemoryError", "out of memory in VAEDecode", "8")
        for seed in (61, 62):
            cfleet.publish(pipeline(cfleet, graph(seed=seed)))
        with AgentThread(cfleet, srv.url):
            notes = cfleet.notifications(2, timeout=30)
        failed, after = srv.wait_for_executions(2, timeout=10)
    by_status = {n["status"]: n for n in notes}
    assert by_status["failed"]["error"]["code"] == "execution_error"
    assert by_status["completed"]["image_url"]
    assert failed.status_str == "error" and after.status_str == "success"
    assert failed.ended is not None and after.submitted < failed.ended
