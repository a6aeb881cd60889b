"""The EMF shipper against CloudWatch Logs (moto, in process), and the EMF spec checker."""

from __future__ import annotations

import itertools
import json
import logging
import threading
import time
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError, EndpointConnectionError
from moto import mock_aws

from sdfleet.agent.config import load_config
from sdfleet.agent.metrics import CATALOG, NAMESPACE, EmfError, Metrics, emf_document
from sdfleet.agent.metrics import extract_metrics as extract
from sdfleet.agent.metrics_sink import (
    BATCH_MAX_BYTES,
    BATCH_MAX_EVENTS,
    EVENT_OVERHEAD_BYTES,
    LogShipper,
)
from tests.agent.harness import AGENT_ENV

GROUP = "/sdfleet/demo-dev/sd15/agent-metrics"
STREAM = "sd15-7d9f-abcde"


class Spy:
    """The moto client, recording PutLogEvents/CreateLogStream calls (and their HTTP
    headers); ``failures`` are raised by the next PutLogEvents calls instead."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self.meta = client.meta
        self.batches: list[list[dict[str, Any]]] = []
        self.creates = 0
        self.failures: list[Exception] = []
        self.headers: list[dict[str, str]] = []
        self.cond = threading.Condition()
        client.meta.events.register("before-send.logs.PutLogEvents", self._sent)

    def _sent(self, request: Any, **_: Any) -> None:
        self.headers.append({k.lower(): _text(v) for k, v in request.headers.items()})

    def put_log_events(self, **kwargs: Any) -> Any:
        with self.cond:
            self.cond.notify_all()
            if self.failures:
                raise self.failures.pop(0)
        response = self.client.put_log_events(**kwargs)
        with self.cond:
            self.batches.append(kwargs["logEvents"])
            self.cond.notify_all()
        return response

    def create_log_stream(self, **kwargs: Any) -> Any:
        self.creates += 1
        return self.client.create_log_stream(**kwargs)

    def wait_batches(self, count: int, timeout: float = 10.0) -> None:
        with self.cond:
            assert self.cond.wait_for(lambda: len(self.batches) >= count, timeout)

    def stored(self) -> list[str]:
        events = self.client.get_log_events(
            logGroupName=GROUP, logStreamName=STREAM, startFromHead=True, limit=10000
        )["events"]
        return [e["message"] for e in events]


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _throttled() -> ClientError:
    error = {"Error": {"Code": "ThrottlingException", "Message": "Rate exceeded"}}
    return ClientError(error, "PutLogEvents")  # type: ignore[arg-type]


@pytest.fixture
def spy() -> Iterator[Spy]:
    with mock_aws():
        client = boto3.client("logs", region_name="eu-west-1")
        client.create_log_group(logGroupName=GROUP)
        yield Spy(client)


@pytest.fixture
def shipper(spy: Spy) -> Iterator[LogShipper]:
    ship = LogShipper(spy, GROUP, STREAM, flush_seconds=3600, close_timeout_seconds=2)
    yield ship
    ship.close()


def _warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]


def test_lines_emitted_through_metrics_reach_the_stream_in_order_as_valid_emf(
    spy: Spy, shipper: LogShipper
) -> None:
    metrics = Metrics("sd15", sink=shipper.put)
    metrics.emit({"QueueWaitMs": 12, "InferenceMs": 3400.5, "EndToEndMs": 3600}, task_id="t1")
    metrics.emit({"TasksCompleted": 1})
    metrics.emit({"TasksFailed": 1}, dimensions={"ErrorCode": "server_error"}, task_id="t2")
    metrics.emit({"AgentUp": 1}, dimensions={"CapacityType": "spot"}, NodeName="ip-10-0-1-2")
    assert shipper.flush(10)
    stored = spy.stored()
    assert [json.loads(m).get("task_id") for m in stored] == ["t1", None, "t2", None]
    assert len(spy.batches) == 1 and spy.creates == 1
    # Every request carried the header that makes CloudWatch extract the metrics.
    assert [h.get("x-amzn-logs-format") for h in spy.headers] == ["json/emf"]
    found = set().union(*(extract(m) for m in stored))
    runtime = frozenset({("Runtime", "sd15")})
    assert (NAMESPACE, "InferenceMs", runtime) in found
    assert (NAMESPACE, "TasksFailed", runtime | {("ErrorCode", "server_error")}) in found
    assert (NAMESPACE, "AgentUp", runtime | {("CapacityType", "spot")}) in found
    assert len(found) == 8 and shipper.sent == 4 and shipper.dropped == 0


def test_batches_keep_to_the_count_size_and_time_order_limits(spy: Spy) -> None:
    now = time.time()
    ticks = itertools.chain([now - 1.0] * 5, itertools.repeat(now - 2.0))  # the clock steps back
    shipper = LogShipper(spy, GROUP, STREAM, flush_seconds=3600, clock=lambda: next(ticks))
    try:
        for i in range(BATCH_MAX_EVENTS + 50):
            shipper.put(f'{{"n":{i}}}')
        spy.wait_batches(1)  # a full batch goes out without waiting for the interval
        assert shipper.flush(10)
        counts = [len(b) for b in spy.batches]
        assert counts[0] == BATCH_MAX_EVENTS and sum(counts) == BATCH_MAX_EVENTS + 50
        assert max(counts) == BATCH_MAX_EVENTS
        small = len(spy.batches)
        stamps = [e["timestamp"] for b in spy.batches for e in b]
        assert stamps == sorted(stamps)  # never backwards, though the clock went back
        big = "x" * 200_000
        for _ in range(12):
            shipper.put(big)
        assert shipper.flush(10)
    finally:
        shipper.close()
    # 5 lines of 200,026 bytes fit 1 MiB, 6 do not: the first batch is taken when 6 wait.
    big_counts = [len(b) for b in spy.batches[small:]]
    assert big_counts[0] == BATCH_MAX_BYTES // (200_000 + EVENT_OVERHEAD_BYTES) == 5
    assert sum(big_counts) == 12 and max(big_counts) == 5
    for batch in spy.batches:
        assert sum(len(e["message"]) + EVENT_OVERHEAD_BYTES for e in batch) <= BATCH_MAX_BYTES
    assert shipper.sent == BATCH_MAX_EVENTS + 50 + 12 and shipper.dropped == 0


def test_a_batch_spans_less_than_a_day(spy: Spy) -> None:
    now = time.time()
    ticks = iter([now - 30 * 3600, now - 30 * 3600 + 1, now - 3600])
    shipper = LogShipper(spy, GROUP, STREAM, flush_seconds=3600, clock=lambda: next(ticks))
    try:
        for i in range(3):
            shipper.put(f'{{"n":{i}}}')
        assert shipper.flush(10)
    finally:
        shipper.close()
    assert [len(b) for b in spy.batches] == [2, 1]


@pytest.mark.parametrize(
    "failure",
    [_throttled(), EndpointConnectionError(endpoint_url="https://logs.eu-west-1.amazonaws.com")],
    ids=["throttled", "network"],
)
def test_a_failed_put_keeps_the_lines_and_sends_them_at_the_next_flush(
    spy: Spy, shipper: LogShipper, failure: Exception, caplog: pytest.LogCaptureFixture
) -> None:
    spy.failures = [failure]
    with caplog.at_level(logging.INFO, logger="agent.metrics_sink"):
        shipper.put('{"n":1}')
        assert not shipper.flush(10)  # failed: kept
        shipper.put('{"n":2}')
        assert shipper.flush(10)
    assert spy.stored() == ['{"n":1}', '{"n":2}']
    assert shipper.sent == 2 and shipper.dropped == 0
    [warning] = _warnings(caplog)
    assert "kept and retried" in warning
    assert any("again" in r.getMessage() for r in caplog.records if r.levelno == logging.INFO)


def test_the_interval_flushes_without_being_asked(spy: Spy) -> None:
    shipper = LogShipper(spy, GROUP, STREAM, flush_seconds=0.2)
    try:
        shipper.put('{"n":1}')
        spy.wait_batches(1)
    finally:
        shipper.close()
    assert spy.stored() == ['{"n":1}']


def test_a_deleted_stream_is_created_again(spy: Spy, shipper: LogShipper) -> None:
    shipper.put('{"n":1}')
    assert shipper.flush(10)
    spy.client.delete_log_stream(logGroupName=GROUP, logStreamName=STREAM)
    shipper.put('{"n":2}')
    assert shipper.flush(10)
    assert spy.stored() == ['{"n":2}'] and spy.creates == 2


def test_an_existing_stream_is_used(spy: Spy, shipper: LogShipper) -> None:
    spy.client.create_log_stream(logGroupName=GROUP, logStreamName=STREAM)  # a restarted pod
    shipper.put('{"n":1}')
    assert shipper.flush(10)
    assert spy.stored() == ['{"n":1}']


def test_a_missing_log_group_keeps_the_lines_and_names_it(
    spy: Spy, shipper: LogShipper, caplog: pytest.LogCaptureFixture
) -> None:
    spy.client.delete_log_group(logGroupName=GROUP)
    with caplog.at_level(logging.WARNING, logger="agent.metrics_sink"):
        shipper.put('{"n":1}')
        assert not shipper.flush(10)
        assert not shipper.flush(10)
    [warning] = _warnings(caplog)  # once, not per flush
    assert GROUP in warning and "METRICS_LOG_GROUP" in warning
    spy.client.create_log_group(logGroupName=GROUP)
    assert shipper.flush(10)
    assert spy.stored() == ['{"n":1}']


def test_a_full_buffer_drops_the_oldest_with_a_warning_naming_the_count(
    spy: Spy, caplog: pytest.LogCaptureFixture
) -> None:
    shipper = LogShipper(spy, GROUP, STREAM, flush_seconds=3600, max_events=5)
    try:
        spy.failures = [_throttled()]
        with caplog.at_level(logging.WARNING, logger="agent.metrics_sink"):
            for i in range(4):
                shipper.put(f'{{"n":{i}}}')
            assert not shipper.flush(10)  # kept: 0-3
            for i in range(4, 8):
                shipper.put(f'{{"n":{i}}}')  # 3 more than fit: 0, 1, 2 go
            assert shipper.flush(10)
        assert [json.loads(m)["n"] for m in spy.stored()] == [3, 4, 5, 6, 7]
        assert shipper.dropped == 3
        assert any("dropped 3 EMF lines" in w for w in _warnings(caplog))
    finally:
        shipper.close()


def test_the_buffer_is_bounded_in_bytes_too(spy: Spy, caplog: pytest.LogCaptureFixture) -> None:
    line = "y" * 974  # 1000 bytes with the per-event overhead
    shipper = LogShipper(spy, GROUP, STREAM, flush_seconds=3600, max_bytes=3000)
    try:
        with caplog.at_level(logging.WARNING, logger="agent.metrics_sink"):
            for _ in range(5):
                shipper.put(line)
            assert shipper.flush(10)
    finally:
        shipper.close()
    assert len(spy.stored()) == 3 and shipper.dropped == 2
    assert any("dropped 2 EMF lines" in w for w in _warnings(caplog))


def test_close_flushes_what_is_left_then_drops_with_a_warning(
    spy: Spy, caplog: pytest.LogCaptureFixture
) -> None:
    shipper = LogShipper(spy, GROUP, STREAM, flush_seconds=3600)
    for i in range(3):
        shipper.put(f'{{"n":{i}}}')
    shipper.close()
    assert not shipper._thread.is_alive()
    assert [json.loads(m)["n"] for m in spy.stored()] == [0, 1, 2]
    with caplog.at_level(logging.WARNING, logger="agent.metrics_sink"):
        shipper.put('{"late":1}')
    assert shipper.dropped == 1 and "after shutdown" in _warnings(caplog)[0]


def test_close_is_bounded_when_cloudwatch_cannot_be_reached(
    spy: Spy, caplog: pytest.LogCaptureFixture
) -> None:
    shipper = LogShipper(spy, GROUP, STREAM, flush_seconds=3600, close_timeout_seconds=0.3)
    spy.failures = [_throttled() for _ in range(1000)]
    shipper.put('{"n":1}')
    started = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="agent.metrics_sink"):
        shipper.close()
    assert time.monotonic() - started < 3
    assert any("1 EMF lines not shipped at shutdown" in w for w in _warnings(caplog))


def test_a_refused_batch_is_dropped_not_retried_forever(
    spy: Spy, shipper: LogShipper, caplog: pytest.LogCaptureFixture
) -> None:
    bad = {"Error": {"Code": "InvalidParameterException", "Message": "bad"}}
    spy.failures = [ClientError(bad, "PutLogEvents")]  # type: ignore[arg-type]
    with caplog.at_level(logging.WARNING, logger="agent.metrics_sink"):
        shipper.put('{"n":1}')
        assert shipper.flush(10)
    assert shipper.dropped == 1 and spy.stored() == []
    assert any("refused a batch of 1" in w for w in _warnings(caplog))


def test_events_cloudwatch_rejects_as_too_old_are_reported(
    spy: Spy, caplog: pytest.LogCaptureFixture
) -> None:
    old = time.time() - 15 * 24 * 3600  # PutLogEvents takes events of the last 14 days
    shipper = LogShipper(spy, GROUP, STREAM, flush_seconds=3600, clock=lambda: old)
    try:
        with caplog.at_level(logging.WARNING, logger="agent.metrics_sink"):
            shipper.put('{"n":1}')
            assert shipper.flush(10)
    finally:
        shipper.close()
    assert any("rejected" in w and "clock" in w for w in _warnings(caplog))


def test_main_ships_only_with_a_log_group(spy: Spy) -> None:
    from sdfleet.agent.__main__ import metrics_shipper

    env = {**AGENT_ENV, "AWS_REGION": "eu-west-1"}
    assert metrics_shipper(load_config(env), env) is None  # EMF lines on stdout
    env = {**env, "METRICS_LOG_GROUP": GROUP, "POD_NAME": STREAM, "METRICS_FLUSH_SECONDS": "7"}
    shipper = metrics_shipper(load_config(env), env)
    try:
        assert (shipper.log_group, shipper.log_stream) == (GROUP, STREAM)
        assert shipper.flush_seconds == 7
        Metrics("sd15", sink=shipper.put).emit({"TasksCompleted": 1})
        assert shipper.flush(10)
    finally:
        shipper.close()
    [message] = spy.stored()
    assert extract(message) == {(NAMESPACE, "TasksCompleted", frozenset({("Runtime", "sd15")}))}


# -- the EMF checker --------------------------------------------------------------------------


def test_every_catalogue_metric_is_valid_emf_under_its_dimension_sets() -> None:
    dims = {"ErrorCode": "timeout", "CapacityType": "on-demand"}
    for name, spec in CATALOG.items():
        document = emf_document("sd15", {name: 1.0}, dims, {"task_id": "t"}, timestamp_ms=1)
        expected = {(NAMESPACE, name, frozenset((d, {**dims, "Runtime": "sd15"}[d]) for d in s))
                    for s in spec.dimension_sets}  # fmt: skip
        assert extract(json.dumps(document)) == expected, name


def _valid() -> dict[str, Any]:
    return {
        "_aws": {
            "Timestamp": 1_700_000_000_000,
            "CloudWatchMetrics": [
                {
                    "Namespace": "ns",
                    "Dimensions": [["Runtime"]],
                    "Metrics": [{"Name": "M", "Unit": "Count"}],
                }
            ],
        },
        "Runtime": "sd15",
        "M": 1,
    }


def test_the_checker_accepts_value_lists_and_no_dimensions() -> None:
    document = _valid()
    document["M"] = [1, 2.5]
    document["_aws"]["CloudWatchMetrics"][0]["Dimensions"] = []
    assert extract(document) == {("ns", "M", frozenset())}


def _set(path: str, value: Any) -> dict[str, Any]:
    document = _valid()
    node: Any = document
    keys = path.split(".")
    for key in keys[:-1]:
        node = node[int(key)] if key.isdigit() else node[key]
    if value is KeyError:
        del node[keys[-1]]
    else:
        node[keys[-1] if not keys[-1].isdigit() else int(keys[-1])] = value
    return document


DIRECTIVE = "_aws.CloudWatchMetrics.0"


@pytest.mark.parametrize(
    ("document", "fragment"),
    [
        ("not json", "not JSON"),
        ([1], "JSON object"),
        (_set("_aws", KeyError), "_aws"),
        (_set("_aws.Timestamp", 1.5), "Timestamp"),
        (_set("_aws.Timestamp", "1700000000000"), "Timestamp"),
        (_set("_aws.Timestamp", KeyError), "Timestamp"),
        (_set("_aws.CloudWatchMetrics", {}), "CloudWatchMetrics"),
        (_set(f"{DIRECTIVE}.Namespace", KeyError), "Namespace"),
        (_set(f"{DIRECTIVE}.Namespace", " "), "Namespace"),
        (_set(f"{DIRECTIVE}.Dimensions", ["Runtime"]), "Dimensions"),
        (_set(f"{DIRECTIVE}.Dimensions", [[f"D{i}" for i in range(31)]]), "at most 30"),
        (_set(f"{DIRECTIVE}.Metrics", [{"Name": f"M{i}"} for i in range(101)]), "at most 100"),
        (_set(f"{DIRECTIVE}.Metrics", [{"Unit": "Count"}]), "Name"),
        (_set(f"{DIRECTIVE}.Metrics", [{"Name": "M", "Unit": "Hours"}]), "unit"),
        (_set(f"{DIRECTIVE}.Metrics", [{"Name": "M", "StorageResolution": 5}]), "Resolution"),
        (_set("Runtime", KeyError), "dimension 'Runtime'"),
        (_set("Runtime", 15), "dimension 'Runtime'"),
        (_set("M", KeyError), "metric 'M'"),
        (_set("M", "1"), "metric 'M'"),
        (_set("M", True), "metric 'M'"),
        (_set("M", float("nan")), "metric 'M'"),
        (_set("M", list(range(101))), "metric 'M'"),
    ],
)
def test_the_checker_names_what_breaks_the_spec(document: Any, fragment: str) -> None:
    with pytest.raises(EmfError, match=fragment):
        extract(document)


def test_importing_the_metrics_modules_has_no_side_effects() -> None:
    import subprocess
    import sys

    code = (
        "import threading, sdfleet.agent.metrics_sink, sdfleet.agent.node_info, "
        "sdfleet.agent.kube_api; assert threading.active_count() == 1"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
