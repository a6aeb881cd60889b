"""The agent moves each task's record forward in the task table (moto: DynamoDB, SQS, SNS, S3):
running when it takes the task, completed or failed where it announces the outcome; a
redelivery never undoes a final state, and the table's trouble never fails a task."""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Iterator
from typing import Any
from unittest import mock

import pytest

from sdfleet.agent import task_progress
from sdfleet.agent.contract import result_key
from sdfleet.agent.task_state import StateRetryPolicy, TaskRecord, TaskStore
from sdfleet.components.builders import task_table
from sdfleet.fakes.sdwebui import FakeSdWebUI
from tests.agent.harness import AgentThread, Flaky, Fleet, client

pytestmark = pytest.mark.e2e


@pytest.fixture
def table(fleet: Fleet) -> Iterator[str]:
    ddb = client("dynamodb", fleet.endpoint)
    name = f"tasks-{fleet.suffix}"
    ddb.create_table(**task_table.create_table_request(name))
    ddb.update_time_to_live(**task_table.ttl_request(name))
    yield name
    ddb.delete_table(TableName=name)


def _store(fleet: Fleet, table: str) -> TaskStore:
    return TaskStore(client("dynamodb", fleet.endpoint), table)


def _record(fleet: Fleet, table: str, task_id: str) -> TaskRecord:
    record = _store(fleet, table).load(task_id)
    assert record is not None, f"no record for {task_id}"
    return record


def test_a_task_leaves_its_api_record_completed_with_outputs_timings_and_one_attempt(
    fleet: Fleet, table: str
) -> None:
    task = fleet.task()
    tid = task.metadata.id
    _store(fleet, table).create(tid, fleet.runtime_name, "key-1")  # as the API does
    with (
        FakeSdWebUI(inference_seconds=0.02) as srv,
        AgentThread(fleet, srv.url, TASK_TABLE_NAME=table),
    ):
        fleet.publish(task)
        [note] = fleet.notifications(1, timeout=30)
    assert note["status"] == "completed" and "callback" not in note
    record = _record(fleet, table, tid)
    assert (record.state, record.attempts) == ("completed", 1)
    assert (record.api_key_id, record.created_by) == ("key-1", "api")
    assert record.output_bucket == fleet.bucket
    assert list(record.output_keys) == [f"out/{tid}/{tid}-1.png"]
    assert [f"s3://{fleet.bucket}/{k}" for k in record.output_keys] == note["image_url"]
    assert set(record.timings()) == {"queue_wait_ms", "inference_ms", "total_ms"}
    assert record.queued_at is not None and record.started_at is not None
    assert record.queued_at <= record.started_at <= record.finished_at  # type: ignore[operator]
    assert record.error_code is None


def test_a_task_sent_straight_to_sns_gets_its_record_from_the_agent(
    fleet: Fleet, table: str
) -> None:
    with (
        FakeSdWebUI(inference_seconds=0.02) as srv,
        AgentThread(fleet, srv.url, TASK_TABLE_NAME=table, TASK_TTL_SECONDS="3600"),
    ):
        task = fleet.publish(fleet.task())
        fleet.notifications(1, timeout=30)
    record = _record(fleet, table, task.metadata.id)
    assert (record.state, record.attempts, record.runtime) == ("completed", 1, "sd15")
    assert (record.created_by, record.api_key_id) == ("agent", None)
    # The SQS SentTimestamp stands in for the API's acceptance time.
    assert record.queued_at is not None and record.queued_at <= record.started_at  # type: ignore[operator]
    assert record.expires_at is not None and record.updated_at is not None
    assert abs(record.expires_at - (record.updated_at // 1000 + 3600)) <= 1


def test_a_failing_task_leaves_the_record_failed_with_the_error_code(
    fleet: Fleet, table: str
) -> None:
    with (
        FakeSdWebUI(inference_seconds=0.01) as srv,
        AgentThread(fleet, srv.url, TASK_TABLE_NAME=table),
    ):
        srv.fail_next(500)
        task = fleet.publish(fleet.task())
        [note] = fleet.notifications(1, timeout=30)
    assert note["status"] == "failed"
    record = _record(fleet, table, task.metadata.id)
    assert (record.state, record.attempts) == ("failed", 1)
    assert record.error_code == note["error"]["code"] == "server_error"
    assert record.error_message == note["error"]["message"]
    assert record.output_keys == () and record.finished_at is not None


def test_a_poison_message_with_an_id_is_recorded_failed_as_invalid_task(
    fleet: Fleet, table: str
) -> None:
    tid = uuid.uuid4().hex
    bad = {"metadata": {"id": tid, "runtime": "sd15", "tasktype": "nope"}, "content": {}}
    with FakeSdWebUI() as srv, AgentThread(fleet, srv.url, TASK_TABLE_NAME=table):
        fleet.publish_raw_json(bad)
        [note] = fleet.notifications(1, timeout=30)
    assert note["status"] == "failed" and note["error"]["code"] == "invalid_task"
    record = _record(fleet, table, tid)
    assert (record.state, record.error_code, record.attempts) == ("failed", "invalid_task", 0)


def test_redelivery_after_completion_changes_nothing(fleet: Fleet, table: str) -> None:
    """Redelivered once with the result stored (announced again), then once more without it
    (run again: a redelivered running): the record stays as the first completion left it."""
    with (
        FakeSdWebUI(inference_seconds=0.02) as srv,
        AgentThread(fleet, srv.url, TASK_TABLE_NAME=table) as run,
    ):
        task = fleet.publish(fleet.task())
        tid = task.metadata.id
        fleet.notifications(1, timeout=30)
        first = _record(fleet, table, tid)
        fleet.send_raw(json.dumps(task.to_message()))
        fleet.notifications(2, timeout=30)
        fleet.s3.delete_object(Bucket=fleet.bucket, Key=result_key("out", tid))
        fleet.send_raw(json.dumps(task.to_message()))
        fleet.notifications(3, timeout=30)
    assert run.agent.counts["republished"] == 1
    assert len(srv.generation_calls()) == 2  # the last redelivery did run
    assert _record(fleet, table, tid) == first
    assert (first.state, first.attempts) == ("completed", 1)


def test_a_missing_table_never_fails_the_task(
    fleet: Fleet, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="agent.task_state")
    with (
        FakeSdWebUI(inference_seconds=0.02) as srv,
        AgentThread(fleet, srv.url, TASK_TABLE_NAME="no-such-table"),
    ):
        task = fleet.publish(fleet.task())
        [note] = fleet.notifications(1, timeout=30)
    assert note["status"] == "completed" and note["id"] == task.metadata.id
    assert fleet.queue_counts() == (0, 0)
    failed = [r for r in caplog.records if _event(r) == "task_state_write_failed"]
    assert {_fields(r)["op"] for r in failed} == {"mark_running", "mark_completed"}
    assert {_fields(r)["error_code"] for r in failed} == {"ResourceNotFoundException"}


def test_an_unreachable_table_is_retried_then_the_task_completes(
    fleet: Fleet, table: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="agent.task_state")
    made: list[Flaky] = []

    def unreachable(config: Any) -> Flaky:
        made.append(Flaky(client("dynamodb", fleet.endpoint), "update_item", failures=1000))
        return made[-1]

    fast = StateRetryPolicy(attempts=3, base_delay=0.01, max_delay=0.02)
    with (
        mock.patch.object(task_progress, "dynamodb_client", unreachable),
        mock.patch("sdfleet.agent.task_state.StateRetryPolicy", return_value=fast),
        FakeSdWebUI(inference_seconds=0.02) as srv,
        AgentThread(fleet, srv.url, TASK_TABLE_NAME=table),
    ):
        task = fleet.publish(fleet.task())
        [note] = fleet.notifications(1, timeout=30)
    assert note["status"] == "completed"
    assert made[0].failed == 6  # running and completed, 3 attempts each
    assert _store(fleet, table).load(task.metadata.id) is None
    failed = [_fields(r) for r in caplog.records if _event(r) == "task_state_write_failed"]
    assert [(f["op"], f["attempts"]) for f in failed] == [
        ("mark_running", 3),
        ("mark_completed", 3),
    ]


def test_without_a_table_no_client_is_made_and_the_task_runs(fleet: Fleet) -> None:
    def refuse(config: Any) -> Any:
        raise AssertionError("no DynamoDB client without TASK_TABLE_NAME")

    with (
        mock.patch.object(task_progress, "dynamodb_client", refuse),
        FakeSdWebUI(inference_seconds=0.02) as srv,
        AgentThread(fleet, srv.url) as run,
    ):
        fleet.publish(fleet.task())
        [note] = fleet.notifications(1, timeout=30)
    assert note["status"] == "completed" and "callback" not in note
    assert not run.agent.completion.progress.enabled


def test_the_notification_carries_the_callback(fleet: Fleet, table: str) -> None:
    task = fleet.task()
    message = task.to_message()
    message["metadata"]["callback"] = {"url": "https://hooks.example.com/in?t=1"}
    with (
        FakeSdWebUI(inference_seconds=0.02) as srv,
        AgentThread(fleet, srv.url, TASK_TABLE_NAME=table, EXP_CALLBACK_WHEN_RUNNING="true"),
    ):
        fleet.publish_raw_json(message)
        notes = fleet.notifications(2, timeout=30)
    assert [n["status"] for n in notes] == ["running", "completed"]
    for note in notes:
        assert note["callback"] == {
            "url": "https://hooks.example.com/in?t=1",
            "events": ["completed", "failed"],
        }
    assert _record(fleet, table, task.metadata.id).state == "completed"


@pytest.mark.parametrize(
    ("callback", "field"),
    [
        ({"url": "http://hooks.example.com/in"}, "task.metadata.callback.url"),
        ({"url": "https://10.0.0.1/in"}, "task.metadata.callback.url"),
        (
            {"url": "https://hooks.example.com/", "events": ["done"]},
            "task.metadata.callback.events[0]",
        ),
        ("https://hooks.example.com/", "task.metadata.callback"),
    ],
)
def test_a_bad_callback_is_dropped_with_a_warning_and_the_task_runs(
    fleet: Fleet, caplog: pytest.LogCaptureFixture, callback: Any, field: str
) -> None:
    caplog.set_level(logging.WARNING, logger="agent.worker")
    task = fleet.task()
    message = task.to_message()
    message["metadata"]["callback"] = callback
    with FakeSdWebUI(inference_seconds=0.02) as srv, AgentThread(fleet, srv.url):
        fleet.publish_raw_json(message)
        [note] = fleet.notifications(1, timeout=30)
    assert note["status"] == "completed" and "callback" not in note
    [dropped] = [_fields(r) for r in caplog.records if _event(r) == "callback_dropped"]
    assert dropped["field"] == field and dropped["task_id"] == task.metadata.id


def _fields(record: logging.LogRecord) -> dict[str, Any]:
    return dict(getattr(record, "fields", {}))


def _event(record: logging.LogRecord) -> Any:
    return _fields(record).get("event")
