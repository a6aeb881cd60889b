"""``sdfleet load``: the open-loop schedule, the counts and percentiles of its report, and a small
run against the moto-backed stack with an agent thread completing the tasks."""

from __future__ import annotations

import argparse
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sdfleet.cli import main
from sdfleet.client import Client
from sdfleet.client_http import Response
from sdfleet.load import LoadConfig, _template, run_load
from sdfleet.load_report import LoadReport, percentile
from tests.test_cli_tasks import Agent
from tests.test_client_support import API_KEY, Stack, moto_stack


def test_nearest_rank_percentiles() -> None:
    values = [float(v) for v in range(1, 101)]
    assert [percentile(values, p) for p in (50, 95, 99, 100)] == [50, 95, 99, 100]
    assert percentile([3.0], 99) == 3.0 and percentile([], 50) is None


def test_report_json_and_table() -> None:
    report = LoadReport(rate=2, duration_s=5, scheduled=10, sent=10, accepted=8)
    report.rejected.update({"429": 2})
    report.completed, report.unfinished = 6, 1
    report.failed.update({"inference_failed": 1})
    report.latencies_s = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]
    report.server_total_ms = [900.0, 1900.0]
    doc = report.to_json()
    assert doc["rejected"] == {"429": 2} and doc["failed"] == {"inference_failed": 1}
    assert doc["latency_ms"] == {"p50": 3000.0, "p95": 6000.0, "p99": 6000.0, "max": 6000.0}
    assert doc["server_total_ms"]["p50"] == 900.0
    lines = [line.split() for line in report.table().splitlines()]
    assert ["rejected", "429", "2"] in lines and ["failed", "inference_failed", "1"] in lines
    assert ["latency", "ms", "p50", "3000", "p95", "6000", "p99", "6000", "max", "6000"] in lines


class FakeApi:
    """POST: 429 for every 4th task, else accepted; GET: running once, then final (task 1
    fails). Optionally holds every POST until ``release`` is set."""

    def __init__(self, hold: bool = False) -> None:
        self.lock = threading.Condition()
        self.posts = 0
        self.in_post = 0
        self.polls: dict[str, int] = {}
        self.hold = hold
        self.release = threading.Event()

    def __call__(
        self, method: str, url: str, headers: Any, body: Any, timeout: float, max_bytes: int
    ) -> Response:
        if method == "POST":
            with self.lock:
                n = self.posts
                self.posts += 1
                self.in_post += 1
                self.lock.notify_all()
            if self.hold:
                self.release.wait(10)
            if n % 4 == 3:
                return Response(429, b'{"error":{"code":"THROTTLED"}}')
            return Response(200, json.dumps({"id": f"t{n}", "status": "queued"}).encode())
        task_id = url.rsplit("/", 1)[1]
        with self.lock:
            self.polls[task_id] = self.polls.get(task_id, 0) + 1
            first = self.polls[task_id] == 1
        n = int(task_id[1:])
        if first:
            doc: dict[str, Any] = {"id": task_id, "state": "running"}
        elif n == 1:
            doc = {"id": task_id, "state": "failed", "error": {"code": "inference_failed"}}
        else:
            doc = {"id": task_id, "state": "completed", "timings": {"total_ms": 100 * n}}
        return Response(200, json.dumps(doc).encode())


def test_counts_and_server_latency_from_a_fake_api() -> None:
    api = FakeApi()
    client = Client("http://api.invalid", "k", transport=api)
    config = LoadConfig(rate=400, duration=0.02, poll_interval=0.001, drain=30)
    report = run_load(client, lambda i: {"task": {"n": i}}, config)
    doc = report.to_json()
    assert (doc["scheduled"], doc["sent"], doc["accepted"]) == (8, 8, 6)
    assert doc["rejected"] == {"429": 2}
    assert (doc["completed"], doc["failed"], doc["unfinished"]) == (5, {"inference_failed": 1}, 0)
    # Tasks 0, 2, 4, 5, 6 completed with server totals 0, 200, 400, 500, 600 ms.
    assert doc["server_total_ms"] == {"p50": 400.0, "p95": 600.0, "p99": 600.0, "max": 600.0}
    assert all(api.polls[f"t{n}"] == 2 for n in (0, 1, 2, 4, 5, 6))
    latency = doc["latency_ms"]
    assert 0 < latency["p50"] <= latency["p95"] <= latency["p99"] <= latency["max"]


def test_the_schedule_never_waits_for_answers() -> None:
    """Open loop: with every POST held, all eight are in flight at once, each sent on its
    scheduled tick (a fake clock that only the schedule's sleeps move)."""
    api = FakeApi(hold=True)
    now = [0.0]
    sleeps: list[float] = []

    def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        now[0] += seconds

    config = LoadConfig(rate=4, duration=2, poll_interval=0.001, senders=8, drain=0)
    client = Client("http://api.invalid", "k", transport=api)
    result: list[LoadReport] = []
    runner = threading.Thread(
        target=lambda: result.append(
            run_load(client, lambda i: {}, config, clock=lambda: now[0], sleep=sleep)
        )
    )
    runner.start()
    with api.lock:
        assert api.lock.wait_for(lambda: api.in_post == 8, timeout=10)
    assert sleeps == [0.25] * 7  # tick i at i / rate, none waiting for an answer
    api.release.set()
    runner.join(10)
    (report,) = result
    assert report.sent == 8 and max(report.send_lag_s) == 0.0
    assert report.unfinished == 6  # drain 0 on a frozen clock: nothing polled to the end


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    with moto_stack() as built:
        yield built


def test_sdfleet_load_against_the_local_stack(
    stack: Stack, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SDFLEET_API_URL", stack.url)
    monkeypatch.setenv("SDFLEET_API_KEY", API_KEY)
    agent = Agent(stack)
    agent.start()
    try:
        code = main(
            ["load", "--rate", "20", "--duration", "0.5", "--runtime", "sd15", "--json",
             "--poll-interval", "0.05", "--drain", "60"]
        )  # fmt: skip
    finally:
        agent.stop.set()
        agent.join()
    out, err = capsys.readouterr()
    assert code == 0, err
    doc = json.loads(out)
    assert (doc["scheduled"], doc["accepted"], doc["completed"]) == (10, 10, 10)
    assert doc["rejected"] == {} and doc["failed"] == {} and doc["unfinished"] == 0
    assert doc["latency_ms"]["p50"] > 0 and doc["server_total_ms"]["max"] is not None
    assert "10 tasks at 20/s" in err and API_KEY not in out + err

    code = main(["load", "--rate", "0", "--duration", "1", "--runtime", "sd15"])
    assert code == 2 and "must be positive" in capsys.readouterr().err


def test_the_load_template_from_options_or_a_file(tmp_path: Path) -> None:
    options = {"prompt": "p", "steps": 3, "width": None, "height": None}
    args = argparse.Namespace(file=None, runtime="sd15", **options)
    assert _template(args) == {
        "task": {
            "metadata": {"runtime": "sd15", "tasktype": "text-to-image"},
            "content": {"prompt": "p", "steps": 3},
        }
    }
    task = tmp_path / "task.json"
    task.write_text(json.dumps({"task": {"metadata": {"id": "fixed", "runtime": "flux"}}}))
    from_file = _template(argparse.Namespace(file=task, runtime=None, **options))
    assert from_file == {"task": {"metadata": {"runtime": "flux"}}}  # one id per task: none
    overridden = _template(argparse.Namespace(file=task, runtime="sd15", **options))
    assert overridden["task"]["metadata"] == {"runtime": "sd15"}
