"""The agent's side of the task table: it moves each task's state forward as it runs it.

* ``running`` when the receiver takes a task (after parsing it, before downloading its inputs);
  each start counts one attempt.
* ``completed`` once the result document is stored, just before the notification is published:
  from then on a redelivery only announces the stored result again, so the state cannot change,
  and a client told "completed" finds the record completed.
* ``failed`` right after the failure notification is published: until it is announced, a
  released message runs the task again and may still complete it.

Every write is a lenient ``record_*`` of :class:`~sdfleet.agent.task_state.TaskStore`: retried
within its budget, then logged as ``task_state_write_failed``; a task is never failed, retried
or held back because its state could not be written. The store is forward-only, so a
redelivered ``running`` never undoes ``completed``, and the first write for a task sent straight
to SNS creates its record. Without ``TASK_TABLE_NAME`` nothing is written (no client is made).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from sdfleet.agent.config import Config
from sdfleet.agent.contract import parse_s3_uri
from sdfleet.agent.held import Held

log = logging.getLogger("agent.worker")

# held.timings key of the SQS SentTimestamp (epoch ms): the queued time of a record the agent
# creates (a task sent straight to SNS; the API's own record keeps its time).
SENT_AT_MS = "sqs_sent_at_ms"


def dynamodb_client(config: Config) -> Any:
    """A DynamoDB client made like the agent's other clients (the config's region; boto3 reads
    ``AWS_ENDPOINT_URL``), with short timeouts: a state write sits on the task's path and the
    store retries on top of botocore."""
    import boto3
    from botocore.config import Config as BotoConfig

    boto_config = BotoConfig(
        retries={"mode": "standard", "max_attempts": 3},
        connect_timeout=3,
        read_timeout=5,
        max_pool_connections=4,
    )
    session = boto3.session.Session(region_name=config.region)
    return session.client("dynamodb", config=boto_config)


class TaskProgress:
    """The state writes of one agent; a no-op when ``store`` is None."""

    def __init__(self, config: Config, store: Any = None) -> None:
        self.config = config
        self.store = store

    @classmethod
    def from_config(cls, config: Config, dynamodb: Any = None) -> TaskProgress:
        """``dynamodb``: the client to use (default: :func:`dynamodb_client`); only made when
        the config names a table."""
        if not config.task_table_name:
            return cls(config)
        from sdfleet.agent.task_state import TaskStore

        client = dynamodb if dynamodb is not None else dynamodb_client(config)
        store = TaskStore(client, config.task_table_name, ttl_seconds=config.task_ttl_seconds)
        return cls(config, store)

    @property
    def enabled(self) -> bool:
        return self.store is not None

    def running(self, held: Held) -> None:
        if self.store is None or held.task is None:
            return
        store, meta = self.store, held.task.metadata
        self._safely(
            "running",
            meta.id,
            lambda: store.record_running(meta.id, meta.runtime, queued_at_ms=_sent_at(held)),
        )

    def completed(self, held: Held, image_urls: Sequence[str]) -> None:
        if self.store is None or held.task is None:
            return
        store, meta = self.store, held.task.metadata
        self._safely(
            "completed",
            meta.id,
            lambda: store.record_completed(
                meta.id,
                meta.runtime,
                [parse_s3_uri(str(url))[1] for url in image_urls],
                output_bucket=self.config.s3_bucket,
                queued_at_ms=_sent_at(held),
            ),
        )

    def failed(self, held: Held, error: Mapping[str, Any] | None) -> None:
        if held.task is None:
            return
        meta = held.task.metadata
        self.failed_id(held, meta.id, meta.runtime, error)

    def failed_id(
        self, held: Held, task_id: str, runtime: str, error: Mapping[str, Any] | None
    ) -> None:
        """A failure by id: a poison message has an id but no parsed task."""
        if self.store is None:
            return
        store = self.store
        error = error or {}
        code = str(error.get("code") or "server_error")
        message = str(error.get("message") or "")
        self._safely(
            "failed",
            task_id,
            lambda: store.record_failed(
                task_id, runtime, code, message, queued_at_ms=_sent_at(held)
            ),
        )

    @staticmethod
    def _safely(state: str, task_id: str, write: Callable[[], object]) -> None:
        """The store's ``record_*`` never raise; this also keeps a bug here off the task."""
        try:
            write()
        except Exception:
            fields = {"event": "task_state_write_failed", "state": state, "task_id": task_id}
            log.exception("task state not recorded", extra={"fields": fields})


def _sent_at(held: Held) -> int | None:
    return held.timings.get(SENT_AT_MS)


__all__ = ["SENT_AT_MS", "TaskProgress", "dynamodb_client"]
