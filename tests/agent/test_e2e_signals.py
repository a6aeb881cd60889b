"""``python -m sdfleet.agent`` as a subprocess: signals, kill -9, health endpoints, config errors."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from sdfleet.fakes.sdwebui import FakeSdWebUI
from tests.agent.harness import AgentThread, Fleet, free_port, subprocess_env

pytestmark = pytest.mark.e2e
REPO = Path(__file__).resolve().parents[2]


class AgentProcess:
    def __init__(self, env: dict[str, str]) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "sdfleet.agent"],
            cwd=REPO,
            env=subprocess_env(env),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def wait(self, timeout: float) -> int:
        return self.proc.wait(timeout)

    def output(self) -> tuple[str, str]:
        out, err = self.proc.communicate(timeout=10)
        return out, err

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


@pytest.fixture
def processes() -> Iterator[list[AgentProcess]]:
    started: list[AgentProcess] = []
    yield started
    for proc in started:
        proc.kill()


def _events(stdout: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]


def test_sigterm_mid_task_finishes_within_drain(
    fleet: Fleet, processes: list[AgentProcess]
) -> None:
    port = free_port()
    with FakeSdWebUI(inference_seconds=2.0) as srv:
        proc = AgentProcess(fleet.agent_env(srv.url, DRAIN_SECONDS="30", HEALTH_PORT=str(port)))
        processes.append(proc)
        task = fleet.publish(fleet.task())
        srv.wait_generation_started(timeout=30)
        ready = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=5)
        assert ready.status_code == 200 and ready.json()["server_ready"] is True
        assert httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5).status_code == 200
        proc.proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
        [note] = fleet.notifications(1, timeout=10)
    assert note["status"] == "completed" and note["id"] == task.metadata.id
    assert srv.interrupts == 0
    assert fleet.queue_counts() == (0, 0)
    out, _ = proc.output()
    events = _events(out)
    states = [e.get("state") for e in events if e.get("event") == "task_state"]
    assert states == ["received", "running", "completed"]
    [emf] = [e for e in events if "_aws" in e and "TasksCompleted" in e]
    assert emf["Runtime"] == "sd15" and emf["InferenceMs"] >= 2000
    assert "a cat" not in out  # prompts are logged at DEBUG only


def test_sigterm_past_drain_interrupts_and_releases(
    fleet: Fleet, processes: list[AgentProcess]
) -> None:
    with FakeSdWebUI(inference_seconds=0.05) as gpu1, FakeSdWebUI(inference_seconds=0.05) as gpu2:
        gpu1.hang_next()
        proc = AgentProcess(fleet.agent_env(gpu1.url, DRAIN_SECONDS="0.5"))
        processes.append(proc)
        task = fleet.publish(fleet.task())
        gpu1.wait_generation_started(timeout=30)
        # A second task is prefetched behind the running one and must be released at once.
        second = fleet.publish(fleet.task())
        deadline = time.monotonic() + 15
        while fleet.queue_counts() != (0, 2):  # no event: wait until agent 1 holds both
            assert time.monotonic() < deadline, fleet.queue_counts()
            time.sleep(0.05)
        proc.proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
        assert gpu1.interrupts == 1
        # Released with visibility 0: a second agent completes both without waiting for expiry.
        released_at = time.monotonic()
        with AgentThread(fleet, gpu2.url):
            notes = fleet.notifications(2, timeout=20)
        assert time.monotonic() - released_at < 10
    assert sorted(n["id"] for n in notes) == sorted([task.metadata.id, second.metadata.id])
    assert all(n["status"] == "completed" for n in notes)
    assert len(gpu2.generation_calls()) == 2
    assert fleet.queue_counts() == (0, 0)


def test_kill_9_mid_task_is_completed_by_another_agent(
    fleet: Fleet, processes: list[AgentProcess]
) -> None:
    heartbeat, extension, wait = 1, 3, 1
    with FakeSdWebUI(inference_seconds=0.05) as gpu1, FakeSdWebUI(inference_seconds=0.05) as gpu2:
        gpu1.hang_next()
        proc = AgentProcess(fleet.agent_env(gpu1.url))
        processes.append(proc)
        task = fleet.publish(fleet.task())
        gpu1.wait_generation_started(timeout=30)
        with AgentThread(fleet, gpu2.url):
            proc.proc.send_signal(signal.SIGKILL)
            proc.wait(10)
            killed_at = time.monotonic()
            [note] = fleet.notifications(1, timeout=30)
            recovered = time.monotonic() - killed_at
    assert note["status"] == "completed" and note["id"] == task.metadata.id
    assert note["attempt"] == 2
    # The visibility the dead agent last set runs out, then one poll (moto re-checks
    # visibility once a second).
    assert recovered < extension + heartbeat + wait + 3.0, recovered
    assert len(gpu2.generation_calls()) == 1


def test_second_signal_exits_at_once(fleet: Fleet, processes: list[AgentProcess]) -> None:
    with FakeSdWebUI(inference_seconds=0.05) as srv:
        srv.hang_next()
        port = free_port()
        proc = AgentProcess(fleet.agent_env(srv.url, DRAIN_SECONDS="60", HEALTH_PORT=str(port)))
        processes.append(proc)
        fleet.publish(fleet.task())
        srv.wait_generation_started(timeout=30)
        proc.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 10
        while not httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=5).json()["stopping"]:
            assert time.monotonic() < deadline, "first signal not handled"
            time.sleep(0.05)
        proc.proc.send_signal(signal.SIGTERM)
        assert proc.wait(5) == 1
        srv.release()
    # Nothing was deleted: the task comes back after its visibility expires.
    assert fleet.queue_counts()[0] + fleet.queue_counts()[1] == 1


@pytest.mark.parametrize(
    ("override", "name"),
    [
        ({"SQS_QUEUE_URL": ""}, "SQS_QUEUE_URL"),
        ({"RUNTIME_TYPE": "invokeai"}, "RUNTIME_TYPE"),
        ({"HEARTBEAT_SECONDS": "soon"}, "HEARTBEAT_SECONDS"),
        ({"DYNAMIC_SD_MODEL": "maybe"}, "DYNAMIC_SD_MODEL"),
    ],
)
def test_bad_config_exits_2_naming_the_variable(
    fleet: Fleet, override: dict[str, str], name: str
) -> None:
    env = fleet.agent_env("http://127.0.0.1:9", **override)
    result = subprocess.run(
        [sys.executable, "-m", "sdfleet.agent"],
        cwd=REPO,
        env=subprocess_env(env),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and name in lines[0], result.stderr


def test_bench_smoke() -> None:
    from sdfleet.agent.bench import run

    result = run(tasks=3, inference_seconds=0.05, size=64)
    assert result["completed"] == 3
    assert 0 < result["busy_fraction"] <= 1
    assert result["agent_peak_rss_mib"] > 10
    # Telemetry on, as deployed: a metric document per task (and heartbeats), spans exported.
    assert result["emf_documents_stored"] >= 3
    assert result["otlp_span_requests"] >= 1 and result["otlp_kib"] > 0
