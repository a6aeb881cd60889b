"""The visibility heartbeat: its own client, fast retry, busy/idle reporting."""

from __future__ import annotations

import threading
import time
from typing import Any

from sdfleet.agent.config import load_config
from sdfleet.agent.heartbeat import Heartbeat
from sdfleet.agent.occupancy import OccupancyReporter
from tests.agent.harness import AGENT_ENV

BASE = AGENT_ENV


class FakeSqs:
    """Records ChangeMessageVisibilityBatch calls; the first ``failures`` raise."""

    def __init__(self, failures: int = 0) -> None:
        self.failures = failures
        self.calls: list[tuple[float, list[dict[str, Any]]]] = []
        self.cond = threading.Condition()

    def change_message_visibility_batch(self, QueueUrl: str, Entries: list[Any]) -> Any:
        with self.cond:
            self.calls.append((time.monotonic(), Entries))
            self.cond.notify_all()
            if len(self.calls) <= self.failures:
                raise ConnectionError("read timeout")
        return {"Successful": [{"Id": e["Id"]} for e in Entries], "Failed": []}

    def wait_calls(self, n: int, timeout: float) -> list[float]:
        with self.cond:
            assert self.cond.wait_for(lambda: len(self.calls) >= n, timeout), self.calls
            return [at for at, _ in self.calls]


def test_a_failed_beat_is_retried_soon_not_after_a_whole_interval() -> None:
    sqs = FakeSqs(failures=1)
    beat = Heartbeat(sqs, "q", interval=0.5, extension=2, retry_delay=0.05)
    beat.hold("m1", "r1")
    beat.start()
    try:
        first, second, third = sqs.wait_calls(3, timeout=5)
    finally:
        beat.stop()
    assert second - first < 0.3  # retried after retry_delay (0.05 s), not 0.5 s
    assert third - second >= 0.45  # back to the interval once it succeeded
    assert beat.failures == 1
    assert sqs.calls[-1][1] == [{"Id": "0", "ReceiptHandle": "r1", "VisibilityTimeout": 2}]


def test_every_held_message_is_extended_in_batches_of_ten() -> None:
    sqs = FakeSqs()
    beat = Heartbeat(sqs, "q", interval=5, extension=15)
    for i in range(12):
        beat.hold(f"m{i}", f"r{i}")
    assert beat.beat() is True
    assert [len(entries) for _, entries in sqs.calls] == [10, 2]
    assert {e["VisibilityTimeout"] for _, entries in sqs.calls for e in entries} == {15}


def test_busy_is_reported_on_the_first_hold_and_idle_on_the_last_drop() -> None:
    changes: list[bool] = []
    beat = Heartbeat(FakeSqs(), "q", interval=5, extension=15, on_busy=changes.append)
    beat.hold("a", "ra")
    beat.hold("b", "rb")
    beat.drop("a")
    beat.drop("a")  # dropping twice changes nothing
    assert changes == [True]
    beat.drop("b")
    assert changes == [True, False]


def test_occupancy_reporter_applies_the_latest_state_off_the_callers_thread() -> None:
    entered = threading.Event()
    proceed = threading.Event()
    calls: list[str] = []

    class SlowSink:
        def busy(self) -> None:
            calls.append("busy")

        def idle(self) -> None:
            calls.append("idle")
            if len(calls) == 1:
                entered.set()
                proceed.wait(5)  # a slow Kubernetes API call

        def close(self) -> None:
            calls.append("close")

    reporter = OccupancyReporter(SlowSink()).start()
    assert entered.wait(5)
    # The API is stuck in the first call; set() must not block the caller.
    reporter.set(True)
    reporter.set(False)
    reporter.set(True)
    proceed.set()
    reporter.close()
    assert calls[0] == "idle" and calls[-1] == "close"
    assert calls[-2] == "busy"  # latest state wins; intermediate states may be skipped
    assert reporter.applied[-1] is True


def test_the_heartbeat_has_its_own_fast_failing_sqs_client() -> None:
    from sdfleet.agent.__main__ import aws_clients

    config = load_config({**BASE, "AWS_REGION": "eu-west-1"})
    clients = aws_clients(config)
    beat_config = clients.heartbeat_sqs.meta.config
    assert clients.heartbeat_sqs is not clients.sqs
    # Not the long poll's connection pool.
    assert clients.heartbeat_sqs._endpoint.http_session is not clients.sqs._endpoint.http_session
    assert beat_config.connect_timeout <= 3 and beat_config.read_timeout <= 3
    assert beat_config.retries["total_max_attempts"] == 1
    # The long poll keeps a read timeout above its wait.
    assert clients.sqs.meta.config.read_timeout > config.receive_wait_seconds


def test_default_recovery_bound_and_margin() -> None:
    config = load_config(BASE)
    # A crashed agent's message is visible again at most one extension after its last beat.
    assert config.visibility_extension_seconds <= 20
    # A healthy agent survives a beat whose call times out, plus the retry one second later.
    assert (
        config.heartbeat_seconds + config.heartbeat_timeout_seconds + 1.0
        < config.visibility_extension_seconds
    )


def test_pod_cost_is_off_when_switched_off_or_outside_a_cluster() -> None:
    from sdfleet.agent.__main__ import pod_cost

    env = {**BASE, "POD_NAME": "p", "POD_NAMESPACE": "n"}
    assert pod_cost(load_config({**env, "POD_DELETION_COST": "false"}), env) is None
    assert pod_cost(load_config(env), env) is None  # no KUBERNETES_SERVICE_HOST
