"""Task-table writes under throttling, 5xx and lost connections: retried, bounded, logged
without secrets, and never raised into a finished task's path by the ``record_*`` variants."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from typing import Any, cast

import boto3
import pytest
from botocore.exceptions import ClientError, EndpointConnectionError
from moto import mock_aws

from sdfleet.agent.logging_setup import JsonFormatter
from sdfleet.agent.task_state import StateRetryPolicy, TaskExists, TaskStateUnavailable, TaskStore
from sdfleet.agent.task_state_retry import is_retryable
from sdfleet.components.builders import task_table

TABLE = "sdfleet-tasks"
SECRET = "AKIAEXAMPLESECRET/20261201/us-east-1/dynamodb/aws4_request"


def client_error(code: str, status: int = 400, message: str = "boom") -> ClientError:
    response: Any = {
        "Error": {"Code": code, "Message": message},
        "ResponseMetadata": {"HTTPStatusCode": status},
    }
    return ClientError(response, "UpdateItem")


THROTTLED = client_error("ProvisionedThroughputExceededException", 400, f"slow down {SECRET}")


class Flaky:
    """moto's client, with scripted failures per operation: ``("before", exc)`` fails the call,
    ``("after", exc)`` applies it and then fails (a 5xx that hides a success), ``("strip", None)``
    drops the item DynamoDB returns with a conditional-check failure."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self.script: dict[str, list[tuple[str, Exception | None]]] = {}
        self.calls: list[str] = []

    def fail(self, op: str, *steps: tuple[str, Exception | None]) -> None:
        self.script.setdefault(op, []).extend(steps)

    def __getattr__(self, op: str) -> Any:
        real = getattr(self.client, op)

        def call(**kw: Any) -> Any:
            self.calls.append(op)
            queue = self.script.get(op)
            when, exc = queue.pop(0) if queue else ("", None)
            if when == "before" and exc is not None:
                raise exc
            if when == "strip":
                try:
                    return real(**kw)
                except ClientError as err:
                    cast(dict[str, Any], err.response).pop("Item", None)
                    raise
            result = real(**kw)
            if when == "after" and exc is not None:
                raise exc
            return result

        return call


@pytest.fixture
def flaky(monkeypatch: pytest.MonkeyPatch) -> Iterator[Flaky]:
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.setenv(key, "testing")
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    with mock_aws():
        client = boto3.client("dynamodb", region_name="us-east-1")
        client.create_table(**task_table.create_table_request(TABLE))
        yield Flaky(client)


class Sleeps:
    def __init__(self, clock: list[float] | None = None) -> None:
        self.slept: list[float] = []
        self.clock = clock

    def __call__(self, seconds: float) -> None:
        self.slept.append(seconds)
        if self.clock is not None:
            self.clock[0] += seconds


def make_store(client: Any, sleeps: Sleeps, **policy: Any) -> TaskStore:
    retry = StateRetryPolicy(sleep=sleeps, rand=lambda: 0.5, **policy)
    return TaskStore(client, TABLE, retry=retry)


def logged(caplog: pytest.LogCaptureFixture) -> list[dict[str, Any]]:
    formatter = JsonFormatter()
    lines = [formatter.format(r) for r in caplog.records if r.name == "agent.task_state"]
    assert all(SECRET not in line and "key-secret" not in line for line in lines)
    return [json.loads(line) for line in lines]


def test_throttled_writes_are_retried_with_jittered_backoff(
    flaky: Flaky, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "agent.task_state")
    sleeps = Sleeps()
    store = make_store(flaky, sleeps)
    flaky.fail("update_item", ("before", THROTTLED), ("before", THROTTLED))
    started = store.mark_running("t1", "sd15")
    assert (started.applied, started.record.attempts) == (True, 1)
    assert flaky.calls.count("update_item") == 3
    # Half of the cap (rand = 0.5): caps 0.1 then 0.2.
    assert sleeps.slept == [0.05, 0.1]
    retries = [e for e in logged(caplog) if e.get("event") == "task_state_retry"]
    assert [e["attempt"] for e in retries] == [1, 2]
    assert {e["error_code"] for e in retries} == {"ProvisionedThroughputExceededException"}
    assert all(e["task_id"] == "t1" and e["op"] == "mark_running" for e in retries)


def test_exhausted_retries_raise_in_the_strict_call_and_are_logged_by_record(
    flaky: Flaky, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "agent.task_state")
    sleeps = Sleeps()
    store = make_store(flaky, sleeps, attempts=3)
    flaky.fail("update_item", *[("before", THROTTLED)] * 3)
    with pytest.raises(TaskStateUnavailable) as caught:
        store.mark_completed("t1", "sd15", ["k"])
    assert (caught.value.attempts, caught.value.code) == (
        3,
        "ProvisionedThroughputExceededException",
    )
    assert len(sleeps.slept) == 2

    flaky.fail("update_item", *[("before", THROTTLED)] * 3)
    assert store.record_completed("t1", "sd15", ["k"]) is None
    failures = [e for e in logged(caplog) if e.get("event") == "task_state_write_failed"]
    assert failures == [
        {
            **{k: failures[0][k] for k in ("ts", "logger", "msg")},
            "level": "ERROR",
            "service": "agent",
            "event": "task_state_write_failed",
            "op": "mark_completed",
            "task_id": "t1",
            "error_code": "ProvisionedThroughputExceededException",
            "attempts": 3,
        }
    ]
    assert store.load("t1") is None  # nothing was written
    # The table recovered: the next write lands.
    assert store.record_completed("t1", "sd15", ["k"]) is not None


def test_the_time_budget_stops_retries_before_the_attempts_run_out(flaky: Flaky) -> None:
    now = [0.0]
    sleeps = Sleeps(now)
    retry = StateRetryPolicy(
        attempts=10, base_delay=1.0, max_delay=8.0, budget_seconds=3.0,
        sleep=sleeps, clock=lambda: now[0], rand=lambda: 1.0,
    )  # fmt: skip
    store = TaskStore(flaky, TABLE, retry=retry)
    flaky.fail("update_item", *[("before", THROTTLED)] * 10)
    with pytest.raises(TaskStateUnavailable) as caught:
        store.mark_running("t1", "sd15")
    # Delays 1 and 2 fit in 3 s; the third (4 s) would not.
    assert sleeps.slept == [1.0, 2.0]
    assert caught.value.attempts == 3


def test_client_errors_are_not_retried(flaky: Flaky, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "agent.task_state")
    sleeps = Sleeps()
    store = make_store(flaky, sleeps)
    denied = client_error("AccessDeniedException", 400, f"not allowed {SECRET}")
    flaky.fail("update_item", ("before", denied))
    with pytest.raises(ClientError):
        store.mark_running("t1", "sd15")
    assert (flaky.calls.count("update_item"), sleeps.slept) == (1, [])
    flaky.fail("update_item", ("before", denied))
    assert store.record_running("t1", "sd15") is None
    (failure,) = [e for e in logged(caplog) if e.get("event") == "task_state_write_failed"]
    assert (failure["error_code"], failure["attempts"]) == ("AccessDeniedException", None)


@pytest.mark.parametrize(
    ("exc", "retryable"),
    [
        (client_error("ThrottlingException"), True),
        (client_error("RequestLimitExceeded"), True),
        (client_error("InternalServerError", 500), True),
        (client_error("SomethingNew", 503), True),
        (client_error("SomethingNew", 400), False),
        (client_error("ConditionalCheckFailedException"), False),
        (client_error("ValidationException"), False),
        (EndpointConnectionError(endpoint_url="https://dynamodb"), True),
        (ValueError("bug"), False),
    ],
)
def test_what_is_retried(exc: Exception, retryable: bool) -> None:
    assert is_retryable(exc) is retryable


def test_a_lost_connection_is_retried(flaky: Flaky) -> None:
    sleeps = Sleeps()
    store = make_store(flaky, sleeps)
    flaky.fail("get_item", ("before", EndpointConnectionError(endpoint_url="https://dynamodb")))
    assert store.load("t1") is None
    assert len(sleeps.slept) == 1


def test_a_create_that_succeeded_behind_a_5xx_is_not_a_conflict(flaky: Flaky) -> None:
    store = make_store(flaky, Sleeps())
    flaky.fail("put_item", ("after", client_error("InternalServerError", 500)))
    record = store.create("t1", "sd15", "key-secret-a")
    assert (record.state, record.api_key_id) == ("queued", "key-secret-a")
    assert flaky.calls.count("put_item") == 2
    with pytest.raises(TaskExists):
        store.create("t1", "sd15", "key-secret-a")  # a new create call is a conflict


def test_transitions_that_landed_behind_a_5xx_count_once_and_stay_applied(flaky: Flaky) -> None:
    store = make_store(flaky, Sleeps())
    hidden = client_error("InternalServerError", 500)
    flaky.fail("update_item", ("after", hidden))
    started = store.mark_running("t1", "sd15")
    assert (started.applied, started.record.attempts) == (True, 1)  # not 2
    assert flaky.calls.count("update_item") == 2
    # A sweeper whose final write landed behind a 5xx still sees it applied (and notifies).
    flaky.fail("update_item", ("after", hidden))
    failed = store.mark_failed("t1", "sd15", "dead_lettered", "in the DLQ")
    assert (failed.applied, failed.state, failed.record.attempts) == (True, "failed", 1)
    # A later call (new token) is a no-op as usual.
    assert store.mark_failed("t1", "sd15", "dead_lettered", "in the DLQ").applied is False


def test_a_conflict_without_the_returned_item_reads_it_back(flaky: Flaky) -> None:
    store = make_store(flaky, Sleeps())
    store.create("t1", "sd15", "key-secret-a")
    store.mark_completed("t1", "sd15", ["k"])
    with pytest.raises(TaskExists):
        store.create("t1", "sd15", "key-secret-b")
    assert "get_item" not in flaky.calls  # DynamoDB returned the item with the failure
    flaky.fail("put_item", ("strip", None))
    with pytest.raises(TaskExists) as caught:
        store.create("t1", "sd15", "key-secret-b")
    assert caught.value.state == "completed"
    flaky.fail("update_item", ("strip", None))
    assert store.mark_running("t1", "sd15").state == "completed"
    assert flaky.calls.count("get_item") == 2


def test_record_variants_report_no_ops(flaky: Flaky, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "agent.task_state")
    store = make_store(flaky, Sleeps())
    first = store.record_failed("t1", "sd15", "timeout", "too slow", queued_at_ms=5)
    assert first is not None and (first.applied, first.record.queued_at) == (True, 5)
    again = store.record_completed("t1", "sd15", ["k"])
    assert again is not None and (again.applied, again.state) == (False, "failed")
    (noop,) = [e for e in logged(caplog) if e.get("event") == "task_state_noop"]
    assert (noop["op"], noop["state"]) == ("mark_completed", "failed")


def test_the_policy_rejects_nonsense_and_caps_delays() -> None:
    with pytest.raises(ValueError):
        StateRetryPolicy(attempts=0)
    with pytest.raises(ValueError):
        StateRetryPolicy(base_delay=-1)
    policy = StateRetryPolicy(base_delay=0.1, max_delay=0.5, rand=lambda: 1.0)
    assert [policy.delay(n) for n in range(1, 6)] == [0.1, 0.2, 0.4, 0.5, 0.5]
