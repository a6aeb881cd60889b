"""kill -9: a task held by a dead agent runs on another agent within one visibility extension."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sdfleet.agent.config import load_config
from sdfleet.fakes.sdwebui import FakeSdWebUI
from tests.agent.harness import AGENT_ENV, Fleet, subprocess_env

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]


def test_prefetch_poll_ends_before_a_held_message_can_expire() -> None:
    config = load_config(AGENT_ENV)
    assert config.receive_wait_seconds == 20  # idle polls stay long
    # Issued at most one heartbeat after the last extension, it ends before the expiry.
    assert (
        config.heartbeat_seconds + config.prefetch_wait_seconds
        < config.visibility_extension_seconds
    )


def test_killed_agents_task_runs_elsewhere_within_one_extension(fleet: Fleet) -> None:
    # A 20 s long poll, as in production: a poll left open by the killed agent must not
    # capture the message when it becomes visible again.
    speed = {"HEARTBEAT_SECONDS": "1", "VISIBILITY_EXTENSION_SECONDS": "4"}
    procs: list[subprocess.Popen[bytes]] = []

    def start_agent(url: str) -> None:
        env = fleet.agent_env(url, RECEIVE_WAIT_SECONDS="20", **speed)
        procs.append(
            subprocess.Popen(
                [sys.executable, "-m", "sdfleet.agent"],
                env=subprocess_env(env),
                stdout=subprocess.DEVNULL,
                cwd=ROOT,
            )
        )

    with FakeSdWebUI(inference_seconds=0.05) as gpu_a, FakeSdWebUI(inference_seconds=0.05) as gpu_b:
        gpu_a.hang_next()
        fleet.publish(fleet.task())
        try:
            start_agent(gpu_a.url)
            gpu_a.wait_generation_started(timeout=30)
            start_agent(gpu_b.url)
            gpu_b.wait_for_calls("/options", 1, timeout=30)
            procs[0].send_signal(signal.SIGKILL)
            killed = time.monotonic()
            procs[0].wait(10)
            job = gpu_b.wait_generation_started(timeout=30)
            gpu_a.release()
            [note] = fleet.notifications(1, timeout=20)
        finally:
            for proc in procs:
                if proc.poll() is None:
                    proc.send_signal(signal.SIGTERM)
                    proc.wait(30)
    # Visible again at most 4 s after the last extension, plus moto's 1 s poll granularity.
    assert job.started - killed < 4 + 1.5
    assert note["status"] == "completed" and note["attempt"] == 2
