"""The task store's two writes for task events (moto DynamoDB): requeue_dead_lettered, the one
way out of a final state, and record_webhook_attempt."""

from __future__ import annotations

from collections.abc import Iterator

import boto3
import pytest
from moto import mock_aws

from sdfleet.agent.task_state import TaskStore
from sdfleet.components.builders import task_table

TABLE = "sdfleet-tasks-store-events"


@pytest.fixture
def store(monkeypatch: pytest.MonkeyPatch) -> Iterator[TaskStore]:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(name, "testing")
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    with mock_aws():
        ddb = boto3.client("dynamodb", region_name="us-east-1")
        ddb.create_table(**task_table.create_table_request(TABLE))
        yield TaskStore(ddb, TABLE)


def test_only_a_dead_lettered_failure_is_requeued(store: TaskStore) -> None:
    store.create("dl", "sd15", "k")
    store.mark_running("dl", "sd15")
    store.mark_failed("dl", "sd15", "dead_lettered", "gone")
    done = store.requeue_dead_lettered("dl")
    assert done is not None and done.applied
    record = done.record
    assert (record.state, record.error_code, record.finished_at) == ("queued", None, None)
    assert record.attempts == 1 and record.started_at is not None
    assert record.redriven_at is not None
    # Requeued once: a second call (a second redrive run) changes nothing.
    again = store.requeue_dead_lettered("dl")
    assert again is not None and not again.applied and again.state == "queued"

    store.create("bad", "sd15", "k")
    store.mark_failed("bad", "sd15", "execution_error", "boom")
    store.create("ok", "sd15", "k")
    store.mark_completed("ok", "sd15", ["a.png"])
    for task_id, state in (("bad", "failed"), ("ok", "completed")):
        kept = store.requeue_dead_lettered(task_id)
        assert kept is not None and (kept.applied, kept.state) == (False, state)
    assert store.requeue_dead_lettered("missing") is None


def test_webhook_attempts_are_counted_on_existing_records_only(store: TaskStore) -> None:
    store.create("t", "sd15", "k")
    store.mark_completed("t", "sd15", ["a.png"])
    before = store.load("t")
    assert store.record_webhook_attempt("t", 500, 1_000)
    assert store.record_webhook_attempt("t", None, 2_000)  # a timeout: no status
    record = store.load("t")
    assert record is not None and before is not None
    assert (record.webhook_attempts, record.webhook_last_status) == (2, None)
    assert record.webhook_last_attempt_at == 2_000
    assert store.record_webhook_attempt("t", 200, 3_000)
    record = store.load("t")
    assert record is not None and (record.webhook_attempts, record.webhook_last_status) == (3, 200)
    # The state, its token and expiry are the state writes' own.
    assert (record.state, record.write_token, record.expires_at) == (
        "completed",
        before.write_token,
        before.expires_at,
    )
    assert not store.record_webhook_attempt("never-seen", 200, 1)
    assert store.load("never-seen") is None
