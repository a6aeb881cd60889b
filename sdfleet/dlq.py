"""Dead-lettered tasks: list them per runtime without consuming them, and send them back.

Listing without consuming. SQS has no peek: a message is only seen by receiving it, which
hides it for a visibility timeout. ``VisibilityTimeout=0`` would leave it visible, but then
every further receive of the same listing may return the same messages again and the listing
never reaches the rest of the queue. So a listing receives with a *short* visibility
(``HOLD_SECONDS``), which keeps the messages it has seen out of its own later receives, and
in a ``finally`` sets every one of them back to visible (``ChangeMessageVisibility`` 0) as
soon as the listing ends. Nothing is deleted; if the process dies mid-listing the messages
come back by themselves after ``HOLD_SECONDS``. What this costs: each listing adds one to
the messages' ``ApproximateReceiveCount`` (a DLQ has no redrive policy, so the count moves
nothing), and a consumer of the DLQ (the dead-letter sweeper) may miss them for at most
``HOLD_SECONDS``, which it tolerates as it runs every few minutes. Approximate counts alone
(``ApproximateNumberOfMessages``) would not show task ids or reasons.

Why a task is there: the task table's record (state ``failed`` with its error code and
message, and the attempt count) when a table is known; a body that is not a readable task is
reported as such.

Redrive uses SQS's message-move task (``StartMessageMoveTask``) from the DLQ back to its
runtime's queue, behind :class:`MessageMover` (moto does not implement the API; tests fake it).
Before the move, :func:`requeue_dead_lettered` puts the tasks the sweeper failed as
``dead_lettered`` back to ``queued`` in the task table (the sweeper leaves a task so marked
alone for a grace period while the move runs: ``REDRIVE_GRACE_SECONDS`` in
``sdfleet.components.task_events.sweeper``).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from typing import Any, Protocol

HOLD_SECONDS = 30
DEFAULT_MAX_MESSAGES = 1000
_SYSTEM_ATTRIBUTES = [
    "ApproximateReceiveCount",
    "ApproximateFirstReceiveTimestamp",
    "SentTimestamp",
]


@dataclass(frozen=True)
class DeadLetter:
    runtime: str
    message_id: str
    task_id: str | None
    receive_count: int
    first_receive_age_s: float | None
    sent_age_s: float | None
    state: str | None = None  # the task table's state
    attempts: int | None = None
    reason: str | None = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def task_of(body: str) -> dict[str, Any] | None:
    """The task object in a queue body (an SNS envelope or a raw task, with or without the
    ``{"task": ...}`` wrapper), if the body is readable JSON holding one."""
    try:
        outer = json.loads(body)
        payload = outer
        if isinstance(outer, dict) and outer.get("Type") == "Notification":
            payload = json.loads(outer["Message"])
    except (ValueError, TypeError, KeyError, RecursionError):
        return None
    if isinstance(payload, dict) and isinstance(payload.get("task"), dict):
        payload = payload["task"]
    return payload if isinstance(payload, dict) else None


def task_id_of(body: str) -> str | None:
    """The task id in a queue body, if one is readable."""
    task = task_of(body)
    metadata = task.get("metadata") if task is not None else None
    task_id = metadata.get("id") if isinstance(metadata, dict) else None
    return task_id if isinstance(task_id, str) and task_id else None


def peek(
    sqs: Any,
    queue_url: str,
    *,
    max_messages: int = DEFAULT_MAX_MESSAGES,
    hold_seconds: int = HOLD_SECONDS,
) -> list[dict[str, Any]]:
    """Every message of the queue (up to ``max_messages``), left in it and visible again."""
    seen: dict[str, dict[str, Any]] = {}
    handles: list[str] = []
    try:
        while len(seen) < max_messages:
            got = sqs.receive_message(
                QueueUrl=queue_url,
                MaxNumberOfMessages=min(10, max_messages - len(seen)),
                VisibilityTimeout=hold_seconds,
                WaitTimeSeconds=0,
                MessageSystemAttributeNames=_SYSTEM_ATTRIBUTES,
            ).get("Messages", [])
            if not got:
                break
            for message in got:
                handles.append(message["ReceiptHandle"])
                seen.setdefault(message["MessageId"], message)
    finally:
        release(sqs, queue_url, handles)
    return list(seen.values())


def release(sqs: Any, queue_url: str, handles: list[str]) -> None:
    """Make received messages visible again at once."""
    for start in range(0, len(handles), 10):
        batch = handles[start : start + 10]
        sqs.change_message_visibility_batch(
            QueueUrl=queue_url,
            Entries=[
                {"Id": str(i), "ReceiptHandle": h, "VisibilityTimeout": 0}
                for i, h in enumerate(batch)
            ],
        )


def _age(attributes: Mapping[str, str], name: str, now: float) -> float | None:
    raw = attributes.get(name)
    return round(now - int(raw) / 1000, 1) if raw and raw.isdigit() else None


def describe(
    runtime: str,
    message: Mapping[str, Any],
    lookup: Callable[[str], Any] | None,
    now: float,
) -> DeadLetter:
    attributes = message.get("Attributes") or {}
    task_id = task_id_of(str(message.get("Body", "")))
    state = attempts = reason = None
    if task_id is None:
        reason = "the body is not a readable task"
    elif lookup is not None:
        record = lookup(task_id)
        if record is None:
            reason = "no task record (expired, or never created)"
        else:
            state, attempts = record.state, record.attempts
            if record.error_code:
                reason = f"{record.error_code}: {record.error_message or ''}".rstrip(": ")
    return DeadLetter(
        runtime=runtime,
        message_id=str(message.get("MessageId", "")),
        task_id=task_id,
        receive_count=int(attributes.get("ApproximateReceiveCount", 0)),
        first_receive_age_s=_age(attributes, "ApproximateFirstReceiveTimestamp", now),
        sent_age_s=_age(attributes, "SentTimestamp", now),
        state=state,
        attempts=attempts,
        reason=reason,
    )


def list_dead_letters(
    sqs: Any,
    dlq_urls: Mapping[str, str],
    *,
    lookup: Callable[[str], Any] | None = None,
    max_messages: int = DEFAULT_MAX_MESSAGES,
    clock: Callable[[], float] = time.time,
) -> list[DeadLetter]:
    """Every runtime's dead letters, described; the queues keep them."""
    out: list[DeadLetter] = []
    for runtime, url in sorted(dlq_urls.items()):
        messages = peek(sqs, url, max_messages=max_messages)
        now = clock()
        out.extend(describe(runtime, m, lookup, now) for m in messages)
    return out


@dataclass(frozen=True)
class Requeued:
    """What a redrive did to the task table: ids put back to queued, and the rest left as
    they were (another final state, no record, or no readable id)."""

    requeued: tuple[str, ...]
    unchanged: tuple[str, ...]
    unreadable: int


def requeue_dead_lettered(
    sqs: Any,
    dlq_urls: Mapping[str, str],
    requeue: Callable[[str], Any],
    *,
    max_messages: int = DEFAULT_MAX_MESSAGES,
) -> Requeued:
    """Before a redrive: every task in the DLQs (read without consuming) that the sweeper
    failed as ``dead_lettered`` goes back to ``queued`` (``TaskStore.requeue_dead_lettered``),
    so an agent that takes the moved message finds an open record and the status API tells
    the truth. Done before the move, not after, so an agent never finds it failed."""
    requeued: list[str] = []
    unchanged: list[str] = []
    unreadable = 0
    for _runtime, url in sorted(dlq_urls.items()):
        for message in peek(sqs, url, max_messages=max_messages):
            task_id = task_id_of(str(message.get("Body", "")))
            if task_id is None:
                unreadable += 1
                continue
            done = requeue(task_id)
            (requeued if done is not None and done.applied else unchanged).append(task_id)
    return Requeued(tuple(requeued), tuple(unchanged), unreadable)


class MessageMover(Protocol):
    """SQS's message-move task API (``StartMessageMoveTask``, ``ListMessageMoveTasks``)."""

    def start(self, source_arn: str, destination_arn: str | None) -> str: ...

    def tasks(self, source_arn: str) -> list[dict[str, Any]]: ...


class SqsMessageMover:
    def __init__(self, sqs: Any) -> None:
        self.sqs = sqs

    def start(self, source_arn: str, destination_arn: str | None) -> str:
        request: dict[str, Any] = {"SourceArn": source_arn}
        if destination_arn:  # else SQS moves each message back to the queue it came from
            request["DestinationArn"] = destination_arn
        return str(self.sqs.start_message_move_task(**request)["TaskHandle"])

    def tasks(self, source_arn: str) -> list[dict[str, Any]]:
        found = self.sqs.list_message_move_tasks(SourceArn=source_arn, MaxResults=10)
        return list(found.get("Results", []))


@dataclass(frozen=True)
class Redrive:
    runtime: str
    source_arn: str
    destination_arn: str | None
    task_handle: str


def redrive(
    mover: MessageMover,
    dlq_arns: Mapping[str, str],
    queue_arns: Mapping[str, str],
) -> list[Redrive]:
    """Start moving every runtime's dead letters back to its queue; one move task each."""
    started = []
    for runtime, source in sorted(dlq_arns.items()):
        destination = queue_arns.get(runtime)
        handle = mover.start(source, destination)
        started.append(Redrive(runtime, source, destination, handle))
    return started
