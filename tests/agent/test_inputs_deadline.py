"""Input fetches end at their wall-clock deadline, even against a dripping server."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from sdfleet.agent.errors import TaskError
from sdfleet.agent.inputs import InputFetcher, inline_sdwebui_inputs
from tests.agent.input_servers import DripServer

LOOPBACK = frozenset({"127.0.0.1"})


@pytest.fixture
def drip() -> Iterator[DripServer]:
    with DripServer(interval=0.5, max_seconds=15.0) as server:
        yield server


def fetcher(**kw: Any) -> InputFetcher:
    # The per-read timeout stays at its 30 s default: it never fires against a drip.
    return InputFetcher(allowed_hosts=LOOPBACK, **kw)


def timed_failure(call: Any) -> tuple[TaskError, float]:
    start = time.monotonic()
    with pytest.raises(TaskError) as info:
        call()
    return info.value, time.monotonic() - start


@pytest.mark.timeout(30)
@pytest.mark.parametrize("path", ["/drip-body", "/drip-headers", "/stall"])
def test_fetch_deadline_ends_a_dripping_or_stalled_download(drip: DripServer, path: str) -> None:
    f = fetcher(fetch_timeout_seconds=1.0)
    error, elapsed = timed_failure(lambda: f.fetch(drip.url(path), "init_images[0]"))
    assert error.code == "input_download_failed"
    assert error.detail["reason"] == "deadline"
    assert error.detail["field"] == "init_images[0]"
    assert "init_images[0]" in error.message and "INPUT_FETCH_TIMEOUT_SECONDS" in error.message
    assert 0.9 <= elapsed < 3.0


@pytest.mark.timeout(30)
def test_task_deadline_covers_all_inputs_together(drip: DripServer) -> None:
    f = fetcher(fetch_timeout_seconds=10.0, task_timeout_seconds=1.0)
    content = {"init_images": [drip.url("/fast"), drip.url("/drip-body")]}
    error, elapsed = timed_failure(lambda: inline_sdwebui_inputs(content, f))
    assert error.code == "input_download_failed"
    assert error.detail["field"] == "init_images[1]"
    assert "INPUT_TASK_TIMEOUT_SECONDS" in error.message
    assert 0.9 <= elapsed < 3.0


@pytest.mark.timeout(30)
def test_task_deadline_already_spent_fails_the_next_input_at_once(drip: DripServer) -> None:
    now = [0.0]
    f = fetcher(task_timeout_seconds=5.0, clock=lambda: now[0])
    with f.task() as inputs:
        assert inputs.fetch(drip.url("/fast"), "a") == b"fast"
        now[0] = 6.0
        error, elapsed = timed_failure(lambda: inputs.fetch(drip.url("/fast"), "b"))
    assert error.detail == {"field": "b", "url": drip.url("/fast"), "reason": "deadline",
                            "deadline_seconds": 5.0}  # fmt: skip
    assert elapsed < 0.5


@pytest.mark.timeout(30)
def test_a_slow_resolver_is_held_to_the_deadline() -> None:
    release = threading.Event()

    def resolver(host: str, port: int) -> list[str]:
        release.wait(10)  # a DNS server that does not answer
        return ["93.184.215.14"]

    f = InputFetcher(resolver=resolver, fetch_timeout_seconds=0.5)
    try:
        error, elapsed = timed_failure(lambda: f.fetch("http://img.example.com/a.png", "mask"))
    finally:
        release.set()
    assert error.code == "input_download_failed" and error.detail["reason"] == "deadline"
    assert elapsed < 2.0


def test_a_fast_input_within_the_deadline_is_returned(drip: DripServer) -> None:
    assert fetcher(fetch_timeout_seconds=5.0).fetch(drip.url("/fast")) == b"fast"
