"""The ComfyUI client's queue operations against the fake server: submit, wait with an idle
hook, dequeue, and an interrupt that only ever stops the prompt it names."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from sdfleet.agent import errors
from sdfleet.agent.contract import Task, TaskMetadata
from sdfleet.agent.errors import TaskError
from sdfleet.agent.inputs import InputFetcher
from sdfleet.agent.servers.base import JobControl, Prepared
from sdfleet.agent.servers.comfyui import ComfyUIServer
from sdfleet.fakes.comfyui import FakeComfyUI
from tests.agent.test_e2e_comfyui import graph

TIMEOUT = 10


@pytest.fixture
def srv() -> Iterator[FakeComfyUI]:
    with FakeComfyUI(execution_seconds=0.05) as fake:
        yield fake


@pytest.fixture
def client(srv: FakeComfyUI) -> Iterator[ComfyUIServer]:
    server = ComfyUIServer(srv.url, InputFetcher(s3=None), poll_seconds=5.0)
    yield server
    server.close()


def prepared(server: ComfyUIServer, seed: int) -> Prepared:
    task = Task(
        metadata=TaskMetadata(id=f"t{seed}", runtime="comfy", tasktype="pipeline"),
        content={"prompt": graph(seed=seed)},
    )
    return server.prepare(task)


def control() -> JobControl:
    return JobControl(timeout_at=time.monotonic() + 60)  # the watchdog's business, not here


def test_two_prompts_queued_and_waited_in_turn(srv: FakeComfyUI, client: ComfyUIServer) -> None:
    first, second = prepared(client, 1), prepared(client, 2)
    srv.hang_next()
    client.submit(first, control())
    idle_calls: list[int] = []

    def idle() -> None:
        # Queue the second prompt from the first one's wait, then let the first end.
        if not idle_calls:
            client.submit(second, control())
            srv.release()
        idle_calls.append(1)

    done = client.wait(first, control(), idle)
    a, b = srv.wait_for_executions(2, TIMEOUT)
    assert a.ended is not None and b.submitted < a.ended
    # The second prompt's terminal event may come while the first is being read: not lost.
    assert client.wait(second, control()).finish().files
    assert done.finish().extra["prompt_id"] == first.payload["prompt_id"]
    assert len(srv.executions) == 2 and idle_calls


def test_dequeue_removes_only_a_prompt_that_has_not_started(
    srv: FakeComfyUI, client: ComfyUIServer
) -> None:
    running, queued = prepared(client, 3), prepared(client, 4)
    srv.hang_next()
    client.submit(running, control())
    srv.wait_for_executions(1, TIMEOUT, finished=False)
    client.submit(queued, control())
    assert client.dequeue(queued) is True
    assert srv.deleted == [queued.payload["prompt_id"]]
    assert client.dequeue(running) is False  # running: it stays and must be waited for
    srv.release()
    srv.wait_for_executions(1, TIMEOUT)
    assert client.dequeue(running) is False  # finished: in the history
    assert [e.prompt_id for e in srv.executions] == [running.payload["prompt_id"]]


def test_interrupt_names_the_running_prompt_and_deletes_a_pending_one(
    srv: FakeComfyUI, client: ComfyUIServer
) -> None:
    running, queued = prepared(client, 5), prepared(client, 6)
    srv.hang_next()
    client.submit(running, control())
    srv.wait_for_executions(1, TIMEOUT, finished=False)
    client.submit(queued, control())
    client.interrupt(queued)  # pending: taken off the queue, nothing interrupted
    assert srv.interrupted_ids == [] and srv.deleted == [queued.payload["prompt_id"]]
    aborted = control()
    aborted.abort("timeout")
    with pytest.raises(TaskError) as caught:
        client.wait(running, aborted)
    assert caught.value.code == errors.TIMEOUT
    assert srv.interrupted_ids == [running.payload["prompt_id"]]
    [run] = srv.wait_for_executions(1, TIMEOUT)
    assert run.interrupted
    client.interrupt(running)  # finished: neither running nor pending, nothing is sent
    assert srv.interrupted_ids == [running.payload["prompt_id"]]
