"""The task table: one owner per id, forward-only states, records for tasks sent to SNS."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws

from sdfleet.agent import task_state_expr as expr
from sdfleet.agent import task_state_schema as schema
from sdfleet.agent.task_state import (
    StateRetryPolicy,
    TaskExists,
    TaskRecord,
    TaskStore,
)
from sdfleet.components.builders import task_table

TABLE = "sdfleet-tasks"
T0 = 1_800_000_000.0  # a fixed wall clock, epoch seconds


class Clock:
    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def ddb(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.setenv(key, "testing")
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    with mock_aws():
        client = boto3.client("dynamodb", region_name="us-east-1")
        client.create_table(**task_table.create_table_request(TABLE))
        client.update_time_to_live(**task_table.ttl_request(TABLE))
        yield client


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def store(ddb: Any, clock: Clock) -> TaskStore:
    return TaskStore(ddb, TABLE, clock=clock, retry=StateRetryPolicy(sleep=lambda _s: None))


def raw(ddb: Any, task_id: str) -> dict[str, Any]:
    return dict(ddb.get_item(TableName=TABLE, Key={"task_id": {"S": task_id}})["Item"])


# -- create -----------------------------------------------------------------------------------
def test_create_records_a_queued_task_owned_by_the_key(store: TaskStore, ddb: Any) -> None:
    record = store.create("t1", "sd15", "key-a")
    assert (record.state, record.runtime, record.api_key_id) == ("queued", "sd15", "key-a")
    assert (record.attempts, record.created_by) == (0, "api")
    assert record.queued_at == int(T0 * 1000)
    item = raw(ddb, "t1")
    # The TTL attribute is a number of epoch seconds, 7 days out by default.
    assert item["expires_at"] == {"N": str(int(T0) + 7 * 24 * 3600)}
    assert store.get("t1", "key-a") == TaskRecord.from_item(item)


def test_the_table_ttl_is_on_the_attribute_the_store_writes(ddb: Any) -> None:
    ttl = ddb.describe_time_to_live(TableName=TABLE)["TimeToLiveDescription"]
    assert ttl["TimeToLiveStatus"] == "ENABLED"
    assert ttl["AttributeName"] == schema.EXPIRES_AT


def test_ttl_duration_is_configurable(ddb: Any, clock: Clock) -> None:
    store = TaskStore(ddb, TABLE, ttl_seconds=3600, clock=clock)
    assert store.create("t1", "sd15", "key-a").expires_at == int(T0) + 3600
    with pytest.raises(ValueError):
        TaskStore(ddb, TABLE, ttl_seconds=0)


def test_a_second_create_raises_task_exists_with_the_stored_state(
    store: TaskStore, ddb: Any
) -> None:
    store.create("t1", "sd15", "key-a")
    with pytest.raises(TaskExists) as caught:
        store.create("t1", "sdxl", "key-b")
    assert caught.value.state == "queued"
    assert caught.value.task_id == "t1"
    store.mark_running("t1", "sd15")
    with pytest.raises(TaskExists) as again:
        store.create("t1", "sd15", "key-a")
    assert again.value.state == "running"
    # Nothing was overwritten: still key-a's sd15 task.
    stored = TaskRecord.from_item(raw(ddb, "t1"))
    assert (stored.api_key_id, stored.runtime, stored.attempts) == ("key-a", "sd15", 1)


def test_an_id_taken_by_a_task_sent_straight_to_sns_answers_task_exists(store: TaskStore) -> None:
    store.mark_completed("t1", "sd15", ["out/t1/t1-1.png"])
    with pytest.raises(TaskExists) as caught:
        store.create("t1", "sd15", "key-a")
    assert caught.value.state == "completed"
    assert "key-a" not in str(caught.value)


def test_an_expired_record_is_absent_and_its_id_can_be_used_again(
    store: TaskStore, clock: Clock
) -> None:
    store.create("t1", "sd15", "key-a")
    store.mark_completed("t1", "sd15", ["k"])
    clock.now += schema.DEFAULT_TTL_SECONDS + 1  # expired, not yet swept by DynamoDB
    assert store.get("t1", "key-a") is None
    assert store.load("t1") is None
    fresh = store.create("t1", "sdxl", "key-b")
    # The put replaced the whole item: nothing of key-a's task is left.
    assert (fresh.state, fresh.api_key_id, fresh.output_keys) == ("queued", "key-b", ())
    assert store.get("t1", "key-b") is not None
    assert store.get("t1", "key-a") is None


def test_create_rejects_missing_fields(store: TaskStore) -> None:
    for args in (("", "sd15", "k"), ("t1", "", "k"), ("t1", "sd15", ""), ("x" * 2049, "s", "k")):
        with pytest.raises(ValueError):
            store.create(*args)


# -- get ----------------------------------------------------------------------------------------
def test_get_answers_none_for_another_key_absent_ids_and_no_key(store: TaskStore) -> None:
    store.create("t1", "sd15", "key-a")
    assert store.get("t1", "key-a") is not None
    assert store.get("t1", "key-b") is None
    assert store.get("t1", None) is None
    assert store.get("t1", "") is None
    assert store.get("nope", "key-a") is None


# -- forward-only transitions ------------------------------------------------------------------
def test_running_repeats_and_counts_attempts_then_completed_is_final(
    store: TaskStore, clock: Clock
) -> None:
    store.create("t1", "sd15", "key-a")
    clock.now += 2
    first = store.mark_running("t1", "sd15")
    assert (first.applied, first.state, first.record.attempts) == (True, "running", 1)
    clock.now += 3
    second = store.mark_running("t1", "sd15")  # a redelivery after a crash
    assert (second.applied, second.record.attempts) == (True, 2)
    assert second.record.started_at == int((T0 + 2) * 1000)
    assert second.record.last_started_at == int((T0 + 5) * 1000)
    clock.now += 4
    done = store.mark_completed("t1", "sd15", ["o/t1/t1-1.png", "o/t1/t1-2.png"], output_bucket="b")
    assert (done.applied, done.state) == (True, "completed")
    assert done.record.output_keys == ("o/t1/t1-1.png", "o/t1/t1-2.png")
    assert done.record.output_bucket == "b"
    assert done.record.timings() == {"queue_wait_ms": 2000, "inference_ms": 4000, "total_ms": 9000}

    clock.now += 10
    late = store.mark_running("t1", "sd15")  # a redelivered running after the end
    assert (late.applied, late.state, late.record.attempts) == (False, "completed", 2)
    failed = store.mark_failed("t1", "sd15", "timeout", "too slow")
    assert (failed.applied, failed.state, failed.record.error_code) == (False, "completed", None)
    again = store.mark_completed("t1", "sd15", ["other"])
    assert (again.applied, again.record.output_keys) == (False, done.record.output_keys)
    assert store.get("t1", "key-a") == done.record


def test_failed_is_final_and_carries_code_and_message(store: TaskStore) -> None:
    store.create("t1", "sd15", "key-a")
    store.mark_running("t1", "sd15")
    failed = store.mark_failed("t1", "sd15", "server_error", "x" * 5000)
    assert (failed.applied, failed.state, failed.record.error_code) == (
        True,
        "failed",
        "server_error",
    )
    assert failed.record.error_message == "x" * schema.MAX_ERROR_MESSAGE_CHARS
    # Only the first final write applies: the DLQ sweeper notifies on `applied` alone.
    swept = store.mark_failed("t1", "sd15", "dead_lettered", "in the DLQ")
    assert (swept.applied, swept.record.error_code) == (False, "server_error")
    assert store.mark_completed("t1", "sd15", ["k"]).applied is False
    assert store.mark_running("t1", "sd15").state == "failed"
    with pytest.raises(ValueError):
        store.mark_failed("t2", "sd15", "", "no code")


def test_every_write_moves_the_expiry_forward(store: TaskStore, clock: Clock) -> None:
    store.create("t1", "sd15", "key-a")
    clock.now += 3600
    done = store.mark_completed("t1", "sd15", ["k"])
    assert done.record.expires_at == int(T0) + 3600 + schema.DEFAULT_TTL_SECONDS


# -- tasks sent straight to SNS ---------------------------------------------------------------
def test_the_agent_creates_the_record_of_a_task_sent_straight_to_sns(
    store: TaskStore, ddb: Any, clock: Clock
) -> None:
    sent_ms = int((T0 - 30) * 1000)  # the SQS SentTimestamp
    started = store.mark_running("sns-1", "sdxl", queued_at_ms=sent_ms)
    assert started.applied
    record = started.record
    assert (record.state, record.runtime, record.created_by) == ("running", "sdxl", "agent")
    assert (record.api_key_id, record.attempts, record.queued_at) == (None, 1, sent_ms)
    assert raw(ddb, "sns-1")["expires_at"] == {"N": str(int(T0) + schema.DEFAULT_TTL_SECONDS)}
    # No API key owns it: the status API answers 404 to every key.
    assert store.get("sns-1", "key-a") is None
    assert store.load("sns-1") == record

    clock.now += 1
    done = store.mark_completed("sns-1", "sdxl", ["k"], queued_at_ms=sent_ms + 999)
    assert done.applied
    assert done.record.queued_at == sent_ms  # if_not_exists: the first value stays
    assert done.record.timings()["queue_wait_ms"] == 30_000
    assert store.mark_running("sns-1", "sdxl").applied is False


def test_a_final_write_alone_creates_the_record(store: TaskStore) -> None:
    # The running write was lost (the table was throttled); the final word still lands.
    done = store.mark_completed("sns-2", "sd15", ["k"])
    assert (done.applied, done.state, done.record.attempts) == (True, "completed", 0)
    assert done.record.started_at is None
    failed = store.mark_failed("sns-3", "sd15", "dead_lettered", "in the DLQ")
    assert (failed.applied, failed.state, failed.record.created_by) == (True, "failed", "agent")


def test_the_agent_keeps_the_api_owner_and_runtime(store: TaskStore) -> None:
    store.create("t1", "sd15", "key-a")
    record = store.mark_running("t1", "other-runtime").record
    assert (record.api_key_id, record.runtime, record.created_by) == ("key-a", "sd15", "api")


# -- release: the API could not publish ---------------------------------------------------------
def test_release_frees_the_id_of_an_unpublished_task(store: TaskStore) -> None:
    record = store.create("t1", "sd15", "key-a")
    assert store.release(record) is True
    assert store.get("t1", "key-a") is None
    assert store.load("t1") is None
    # The client's retry with the same id is accepted.
    assert store.create("t1", "sd15", "key-a").state == "queued"
    # A stale record (an earlier create's) no longer matches: nothing is released.
    assert store.release(record) is False
    assert store.get("t1", "key-a") is not None


def test_release_leaves_a_task_an_agent_already_started(store: TaskStore) -> None:
    record = store.create("t1", "sd15", "key-a")
    store.mark_running("t1", "sd15")  # the publish had landed behind an error
    assert store.release(record) is False
    loaded = store.load("t1")
    assert loaded is not None and loaded.state == "running"


def test_a_released_task_that_runs_after_all_comes_back(store: TaskStore) -> None:
    record = store.create("t1", "sd15", "key-a")
    assert store.release(record)
    started = store.mark_running("t1", "sd15")
    assert (started.applied, started.record.api_key_id) == (True, "key-a")
    assert store.get("t1", "key-a") == started.record


def test_expressions_name_exactly_the_attributes_they_use() -> None:
    update = expr.forward_update(
        expr.completed(["k"], None),
        runtime="sd15",
        now=T0,
        ttl_seconds=60,
        token="t",
        queued_at_ms=None,
    )
    assert "#ob" not in update["ExpressionAttributeNames"]
    assert "#qa" not in update["ExpressionAttributeNames"]
    assert set(update["ExpressionAttributeNames"].values()) >= {
        "state",
        "expires_at",
        "write_token",
    }
    assert expr.names_for(expr.ABSENT_OR_EXPIRED) == {"#id": "task_id", "#exp": "expires_at"}
