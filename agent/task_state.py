"""The task table: one DynamoDB item per task id, moved forward only.

Item schema (attribute names in ``sdfleet.agent.task_state_schema``; times in epoch ms, N)::

    task_id          S   partition key (no sort key, no index)
    state            S   queued | running | completed | failed
    runtime          S   the runtime the task was sent to
    api_key_id       S   API Gateway apiKeyId of the creator; absent for tasks sent to SNS
    created_by       S   "api" (POST) or "agent" (task sent straight to SNS)
    write_token      S   random per call (create or mark_*), the same across its retries
    attempts         N   how many times an agent started the task (0 until the first start)
    queued_at        N   accepted by the API, or the SQS SentTimestamp the agent passes
    started_at       N   first start
    last_started_at  N   latest start (inference time = finished_at - last_started_at)
    finished_at      N   completed or failed
    updated_at       N   latest write
    error            M   {code: S, message: S}, failed tasks only (message cut at 2048 chars)
    output_bucket    S   completed tasks, when the caller passes it
    output_keys      L   completed tasks: S3 keys of the images, in output order
    expires_at       N   epoch SECONDS, the table's TTL attribute: latest write + ttl_seconds
    webhook_last_status, webhook_attempts, webhook_last_attempt_at   N   webhook delivery:
                     the latest attempt's HTTP status (absent when it got none), attempts
                     so far (all events), the latest attempt's time (record_webhook_attempt)
    redriven_at      N   ``requeue_dead_lettered``: when a dead-lettered task was put back

Guarantees:

* ``create`` is a conditional put: an id that exists raises :class:`TaskExists` carrying the
  stored state, and nothing is overwritten (an item past its TTL but not yet deleted counts as
  absent).
* ``mark_*`` are conditional updates allowed only out of ``queued``/``running`` or onto no
  item (a task sent straight to SNS gets its record from the agent's first write). ``running``
  may repeat and adds one attempt each time; ``completed``/``failed`` are final, and a later
  write of any state is a no-op reported as ``Transition(applied=False)``, not an error. Only
  the call that applied a final state sees ``applied=True``: the DLQ sweeper dedupes on it.
* ``requeue_dead_lettered`` is the one way out of a final state, and only out of ``failed``
  with code ``dead_lettered`` (the DLQ sweeper's): ``sdfleet dlq redrive`` puts the task back
  to ``queued`` so its status is truthful while it runs again.
* ``get`` answers None for an absent, expired, or another key's task, so the API answers 404
  alike.
* ``release`` (API, PutItem only) frees the id of a task the API created but could not
  publish: its own record, still queued, is rewritten as expired, which every read and
  ``create`` treat as absent, so the client can retry with the same id.
* Throttling and 5xx are retried (``StateRetryPolicy``). The strict methods raise
  ``TaskStateUnavailable`` once retries run out; the ``record_*`` variants log and return None,
  for paths (a finished task) that must not fail because the table did.

* A write that landed but answered 5xx is retried; its retry finds its own ``write_token``
  (the condition refuses a second write with the same token) and reports the first one as
  applied: a retried ``running`` counts one attempt, and a retried final write still sees
  ``applied=True`` (so a sweeper whose write landed behind a 5xx still notifies).
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Sequence
from typing import Any

from botocore.exceptions import ClientError

from sdfleet.agent import task_state_expr as expr
from sdfleet.agent import task_state_schema as s
from sdfleet.agent.task_state_record import TaskExists, TaskRecord, Transition
from sdfleet.agent.task_state_retry import StateRetryPolicy, TaskStateUnavailable, error_code

__all__ = [
    "StateRetryPolicy",
    "TaskExists",
    "TaskRecord",
    "TaskStateUnavailable",
    "TaskStore",
    "Transition",
]

log = logging.getLogger("agent.task_state")


def _conditional_failure(exc: BaseException) -> bool:
    return error_code(exc) == "ConditionalCheckFailedException"


class TaskStore:
    """The task table through an injected low-level DynamoDB client (``boto3.client("dynamodb")``)."""

    def __init__(
        self,
        client: Any,
        table_name: str,
        *,
        ttl_seconds: int = s.DEFAULT_TTL_SECONDS,
        retry: StateRetryPolicy | None = None,
        clock: Callable[[], float] = time.time,
        token: Callable[[], str] = lambda: uuid.uuid4().hex,
    ) -> None:
        if not table_name:
            raise ValueError("table_name is required")
        if ttl_seconds <= 0:
            raise ValueError("ttl_seconds must be positive")
        self.client = client
        self.table_name = table_name
        self.ttl_seconds = int(ttl_seconds)
        self.retry = retry or StateRetryPolicy()
        self.clock = clock
        self.token = token

    # -- reads ---------------------------------------------------------------------------
    def get(self, task_id: str, api_key_id: str | None) -> TaskRecord | None:
        """The task if it exists, has not expired and ``api_key_id`` created it; else None."""
        if not api_key_id:
            return None
        record = self.load(task_id)
        if record is None or record.api_key_id != api_key_id:
            return None
        return record

    def load(self, task_id: str) -> TaskRecord | None:
        """The task whoever owns it, for trusted callers (agent, sweeper); never for clients."""
        _check_id(task_id)
        item = self._get_item(task_id)
        if not item:
            return None
        record = TaskRecord.from_item(item)
        # Expired items linger until DynamoDB's sweep (typically up to two days).
        if record.expires_at is not None and record.expires_at <= int(self.clock()):
            return None
        return record

    # -- API: create, release ------------------------------------------------------------
    def create(
        self,
        task_id: str,
        runtime: str,
        api_key_id: str,
        *,
        queued_at_ms: int | None = None,
        trace_id: str | None = None,
    ) -> TaskRecord:
        """Record a queued task (owner ``api_key_id``, X-Ray ``trace_id``); TaskExists if taken."""
        _check_id(task_id)
        if not runtime or not api_key_id:
            raise ValueError("runtime and api_key_id are required")
        now = self.clock()
        token = self.token()
        item = expr.queued_item(
            task_id=task_id,
            runtime=runtime,
            api_key_id=api_key_id,
            token=token,
            queued_at_ms=int(now * 1000) if queued_at_ms is None else queued_at_ms,
            now=now,
            expires_at=int(now) + self.ttl_seconds,
            trace_id=trace_id,
        )
        try:
            self._put("create", item, expr.ABSENT_OR_EXPIRED, {":now_s": {"N": str(int(now))}})
        except ClientError as exc:
            if not _conditional_failure(exc):
                raise
            existing = self._existing(task_id, exc)
            if existing.write_token == token:
                return existing  # our own put, answered 5xx and retried
            log.info(
                "task id exists",
                extra={"fields": dict(event="task_exists", task_id=task_id, state=existing.state)},
            )
            raise TaskExists(task_id, existing) from None
        return TaskRecord.from_item(item)

    def release(self, record: TaskRecord) -> bool:
        """Free the id of a task this API call created but could not publish. False when the
        record is no longer this call's queued record (an agent got the task after all)."""
        if record.state != s.QUEUED or not record.write_token or not record.runtime:
            return False
        now = self.clock()
        item = expr.queued_item(
            task_id=record.task_id,
            runtime=record.runtime,
            api_key_id=record.api_key_id or "",
            token=record.write_token,
            queued_at_ms=record.queued_at or int(now * 1000),
            now=now,
            expires_at=int(now) - 1,
            trace_id=record.trace_id,
        )
        values = {":tok": {"S": record.write_token}, ":queued": {"S": s.QUEUED}}
        try:
            self._put("release", item, expr.OWN_QUEUED, values)
        except ClientError as exc:
            if _conditional_failure(exc):
                return False
            raise
        return True

    # -- transitions (agent, sweeper) ----------------------------------------------------
    def mark_running(
        self, task_id: str, runtime: str, *, queued_at_ms: int | None = None
    ) -> Transition:
        """An agent starts (or restarts) the task: one more attempt."""
        return self._advance("mark_running", task_id, runtime, queued_at_ms, expr.running())

    def mark_completed(
        self,
        task_id: str,
        runtime: str,
        output_keys: Sequence[str],
        *,
        output_bucket: str | None = None,
        queued_at_ms: int | None = None,
    ) -> Transition:
        change = expr.completed(output_keys, output_bucket)
        return self._advance("mark_completed", task_id, runtime, queued_at_ms, change)

    def mark_failed(
        self,
        task_id: str,
        runtime: str,
        code: str,
        message: str,
        *,
        queued_at_ms: int | None = None,
    ) -> Transition:
        change = expr.failed(code, message)
        return self._advance("mark_failed", task_id, runtime, queued_at_ms, change)

    # -- redrive and webhooks ------------------------------------------------------------
    def requeue_dead_lettered(self, task_id: str) -> Transition | None:
        """Put a task the DLQ sweeper failed (``dead_lettered``) back to ``queued`` as its
        message is redriven: the one exception to forward-only, allowed from exactly that
        state, so a task that failed any other way, or completed, stays final. Not applied
        (``applied=False``, the stored record) for any other state; None when there is no
        record."""
        _check_id(task_id)
        token = self.token()
        update = expr.requeue_update(now=self.clock(), ttl_seconds=self.ttl_seconds, token=token)
        try:
            response = self._update("requeue", task_id, update)
        except ClientError as exc:
            if not _conditional_failure(exc):
                raise
            item = exc.response.get("Item") or self._get_item(task_id)
            if not isinstance(item, dict) or not item:
                return None
            existing = TaskRecord.from_item(item)
            return Transition(applied=existing.write_token == token, record=existing)
        return Transition(applied=True, record=TaskRecord.from_item(response["Attributes"]))

    def record_webhook_attempt(self, task_id: str, status_code: int | None, at_ms: int) -> bool:
        """Count one webhook delivery attempt on the task (its HTTP status, if any, and time).
        False when the task has no record (a task the table never saw): nothing is created."""
        _check_id(task_id)
        update = expr.webhook_update(status_code=status_code, at_ms=at_ms)
        try:
            self._update("webhook_attempt", task_id, update)
        except ClientError as exc:
            if _conditional_failure(exc):
                return False
            raise
        return True

    # -- lenient variants: a finished task never fails because the table did -------------
    def record_running(
        self, task_id: str, runtime: str, *, queued_at_ms: int | None = None
    ) -> Transition | None:
        return self._lenient(
            "mark_running",
            task_id,
            lambda: self.mark_running(task_id, runtime, queued_at_ms=queued_at_ms),
        )

    def record_completed(
        self,
        task_id: str,
        runtime: str,
        output_keys: Sequence[str],
        *,
        output_bucket: str | None = None,
        queued_at_ms: int | None = None,
    ) -> Transition | None:
        return self._lenient(
            "mark_completed",
            task_id,
            lambda: self.mark_completed(
                task_id,
                runtime,
                output_keys,
                output_bucket=output_bucket,
                queued_at_ms=queued_at_ms,
            ),
        )

    def record_failed(
        self,
        task_id: str,
        runtime: str,
        code: str,
        message: str,
        *,
        queued_at_ms: int | None = None,
    ) -> Transition | None:
        return self._lenient(
            "mark_failed",
            task_id,
            lambda: self.mark_failed(task_id, runtime, code, message, queued_at_ms=queued_at_ms),
        )

    # -- internals -----------------------------------------------------------------------
    def _advance(
        self, op: str, task_id: str, runtime: str, queued_at_ms: int | None, change: expr.Change
    ) -> Transition:
        """One conditional UpdateItem that creates the item when absent (upsert)."""
        _check_id(task_id)
        if not runtime:
            raise ValueError("runtime is required")
        token = self.token()
        update = expr.forward_update(
            change,
            runtime=runtime,
            now=self.clock(),
            ttl_seconds=self.ttl_seconds,
            token=token,
            queued_at_ms=queued_at_ms,
        )
        try:
            response = self._update(op, task_id, update)
        except ClientError as exc:
            if not _conditional_failure(exc):
                raise
            existing = self._existing(task_id, exc)
            if existing.write_token == token:
                return Transition(applied=True, record=existing)  # landed behind a 5xx
            fields = dict(event="task_state_noop", op=op, task_id=task_id, state=existing.state)
            log.info("task already final; state unchanged", extra={"fields": fields})
            return Transition(applied=False, record=existing)
        return Transition(applied=True, record=TaskRecord.from_item(response["Attributes"]))

    def _update(self, op: str, task_id: str, update: dict[str, Any]) -> Any:
        return self.retry.call(
            op,
            task_id,
            lambda: self.client.update_item(
                TableName=self.table_name,
                Key={s.TASK_ID: {"S": task_id}},
                ReturnValues="ALL_NEW",
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
                **update,
            ),
        )

    def _put(self, op: str, item: dict[str, Any], condition: str, values: dict[str, Any]) -> None:
        task_id = item[s.TASK_ID]["S"]
        self.retry.call(
            op,
            task_id,
            lambda: self.client.put_item(
                TableName=self.table_name,
                Item=item,
                ConditionExpression=condition,
                ExpressionAttributeNames=expr.names_for(condition),
                ExpressionAttributeValues=values,
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            ),
        )

    def _existing(self, task_id: str, exc: ClientError) -> TaskRecord:
        """The item that failed the condition: from the error when DynamoDB returned it
        (ReturnValuesOnConditionCheckFailure), else read back."""
        item = exc.response.get("Item") or self._get_item(task_id)
        if not isinstance(item, dict) or not item:
            raise TaskStateUnavailable("read-back", task_id, 1, exc)  # deleted meanwhile (TTL)
        return TaskRecord.from_item(item)

    def _get_item(self, task_id: str) -> dict[str, Any] | None:
        response = self.retry.call(
            "get",
            task_id,
            lambda: self.client.get_item(
                TableName=self.table_name, Key={s.TASK_ID: {"S": task_id}}, ConsistentRead=True
            ),
        )
        item = response.get("Item")
        return item if isinstance(item, dict) else None

    def _lenient(self, op: str, task_id: str, fn: Callable[[], Transition]) -> Transition | None:
        try:
            return fn()
        except Exception as exc:
            code = exc.code if isinstance(exc, TaskStateUnavailable) else error_code(exc)
            fields: dict[str, Any] = dict(event="task_state_write_failed", op=op, task_id=task_id)
            fields.update(error_code=code, attempts=getattr(exc, "attempts", None))
            log.error("task state not recorded", extra={"fields": fields})
            return None


def _check_id(task_id: str) -> None:
    # DynamoDB caps a partition key at 2048 bytes; the contract's ids are far shorter.
    if not isinstance(task_id, str) or not task_id or len(task_id.encode("utf-8")) > 2048:
        raise ValueError("task_id must be a non-empty string of at most 2048 bytes")
