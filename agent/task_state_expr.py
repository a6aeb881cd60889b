"""The task table's request shapes: the queued item the API puts, and the forward-only update
every state change is (see ``sdfleet.agent.task_state`` for the schema and the guarantees).

Pure: builds low-level DynamoDB arguments, calls nothing.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sdfleet.agent import task_state_schema as s

# Every attribute goes through ExpressionAttributeNames (state, ttl-like and timestamp words
# are reserved in DynamoDB expressions; one rule for all is simpler than a list).
NAMES: dict[str, str] = {
    "#id": s.TASK_ID,
    "#st": s.STATE,
    "#rt": s.RUNTIME,
    "#cb": s.CREATED_BY,
    "#att": s.ATTEMPTS,
    "#qa": s.QUEUED_AT,
    "#sa": s.STARTED_AT,
    "#lsa": s.LAST_STARTED_AT,
    "#fa": s.FINISHED_AT,
    "#up": s.UPDATED_AT,
    "#exp": s.EXPIRES_AT,
    "#err": s.ERROR,
    "#ob": s.OUTPUT_BUCKET,
    "#ok": s.OUTPUT_KEYS,
    "#wt": s.WRITE_TOKEN,
    "#ec": "code",
    "#rd": s.REDRIVEN_AT,
    "#wls": s.WEBHOOK_LAST_STATUS,
    "#wa": s.WEBHOOK_ATTEMPTS,
    "#wla": s.WEBHOOK_LAST_ATTEMPT_AT,
}
# Out of queued/running or onto no item, and never twice with one call's token (a retry of
# a write that landed behind a 5xx is refused, then recognised by its token).
FORWARD_ONLY = (
    "(attribute_not_exists(#id) OR #st IN (:queued, :running))"
    " AND (attribute_not_exists(#wt) OR #wt <> :tok)"
)
# A put may replace no item, or one past its TTL that DynamoDB has not deleted yet.
ABSENT_OR_EXPIRED = "attribute_not_exists(#id) OR #exp <= :now_s"
# The API frees an id it could not publish: only its own, still queued, record.
OWN_QUEUED = "#wt = :tok AND #st = :queued"
# The one way out of a final state: a task the DLQ sweeper failed as dead-lettered, put back
# when its message is redriven (see TaskStore.requeue_dead_lettered).
DEAD_LETTERED_ONLY = "#st = :failed AND #err.#ec = :dead"
_ALIAS = re.compile(r"#\w+")


@dataclass(frozen=True)
class Change:
    """What one transition writes besides the fields every transition writes."""

    state: str
    sets: tuple[str, ...]
    values: Mapping[str, Any] = field(default_factory=dict)
    adds: tuple[str, ...] = ()


def running() -> Change:
    return Change(
        s.RUNNING,
        ("#sa = if_not_exists(#sa, :now)", "#lsa = :now"),
        {":one": {"N": "1"}},
        adds=("#att :one",),
    )


def completed(output_keys: Sequence[str], output_bucket: str | None) -> Change:
    sets = ["#fa = :now", "#ok = :keys", "#att = if_not_exists(#att, :zero)"]
    values: dict[str, Any] = {
        ":keys": {"L": [{"S": str(k)} for k in output_keys]},
        ":zero": {"N": "0"},
    }
    if output_bucket:
        sets.append("#ob = :bucket")
        values[":bucket"] = {"S": output_bucket}
    return Change(s.COMPLETED, tuple(sets), values)


def failed(code: str, message: str) -> Change:
    if not code:
        raise ValueError("a failed task needs an error code")
    error = {
        "M": {
            "code": {"S": code},
            "message": {"S": str(message)[: s.MAX_ERROR_MESSAGE_CHARS]},
        }
    }
    return Change(
        s.FAILED,
        ("#fa = :now", "#err = :error", "#att = if_not_exists(#att, :zero)"),
        {":error": error, ":zero": {"N": "0"}},
    )


def forward_update(
    change: Change,
    *,
    runtime: str,
    now: float,
    ttl_seconds: int,
    token: str,
    queued_at_ms: int | None,
) -> dict[str, Any]:
    """UpdateItem arguments (without TableName and Key) for ``change``; creates the item when
    absent, keeping any runtime, creator and queue time already stored."""
    sets = [
        "#st = :state",
        "#rt = if_not_exists(#rt, :rt)",
        "#cb = if_not_exists(#cb, :agent)",
        "#up = :now",
        "#exp = :exp",
        "#wt = :tok",
    ]
    values: dict[str, Any] = {
        ":state": {"S": change.state},
        ":rt": {"S": runtime},
        ":agent": {"S": s.CREATED_BY_AGENT},
        ":now": {"N": str(int(now * 1000))},
        ":exp": {"N": str(int(now) + ttl_seconds)},
        ":queued": {"S": s.QUEUED},
        ":running": {"S": s.RUNNING},
        ":tok": {"S": token},
        **change.values,
    }
    if queued_at_ms is not None:
        sets.append("#qa = if_not_exists(#qa, :qa)")
        values[":qa"] = {"N": str(int(queued_at_ms))}
    expression = "SET " + ", ".join([*sets, *change.sets])
    if change.adds:
        expression += " ADD " + ", ".join(change.adds)
    return {
        "UpdateExpression": expression,
        "ConditionExpression": FORWARD_ONLY,
        "ExpressionAttributeNames": names_for(expression, FORWARD_ONLY),
        "ExpressionAttributeValues": values,
    }


def queued_item(
    *,
    task_id: str,
    runtime: str,
    api_key_id: str,
    token: str,
    queued_at_ms: int,
    now: float,
    expires_at: int,
    trace_id: str | None = None,
) -> dict[str, Any]:
    """The low-level item of a task the API accepted."""
    traced = {s.TRACE_ID: {"S": trace_id}} if trace_id else {}
    return {
        **traced,
        s.TASK_ID: {"S": task_id},
        s.STATE: {"S": s.QUEUED},
        s.RUNTIME: {"S": runtime},
        s.API_KEY_ID: {"S": api_key_id},
        s.CREATED_BY: {"S": s.CREATED_BY_API},
        s.WRITE_TOKEN: {"S": token},
        s.ATTEMPTS: {"N": "0"},
        s.QUEUED_AT: {"N": str(int(queued_at_ms))},
        s.UPDATED_AT: {"N": str(int(now * 1000))},
        s.EXPIRES_AT: {"N": str(int(expires_at))},
    }


def names_for(*expressions: str) -> dict[str, str]:
    """The ExpressionAttributeNames the expressions use (DynamoDB refuses unused ones)."""
    used = set(_ALIAS.findall(" ".join(expressions)))
    return {alias: name for alias, name in NAMES.items() if alias in used}


def requeue_update(*, now: float, ttl_seconds: int, token: str) -> dict[str, Any]:
    """UpdateItem arguments moving a dead-lettered failed task back to queued: the error and
    finish time go, the attempts and the first start stay, ``redriven_at`` marks the move."""
    expression = (
        "SET #st = :queued, #up = :now, #rd = :now, #exp = :exp, #wt = :tok REMOVE #err, #fa"
    )
    return {
        "UpdateExpression": expression,
        "ConditionExpression": DEAD_LETTERED_ONLY,
        "ExpressionAttributeNames": names_for(expression, DEAD_LETTERED_ONLY),
        "ExpressionAttributeValues": {
            ":queued": {"S": s.QUEUED},
            ":failed": {"S": s.FAILED},
            ":dead": {"S": s.DEAD_LETTERED},
            ":now": {"N": str(int(now * 1000))},
            ":exp": {"N": str(int(now) + ttl_seconds)},
            ":tok": {"S": token},
        },
    }


def webhook_update(*, status_code: int | None, at_ms: int) -> dict[str, Any]:
    """UpdateItem arguments recording one webhook attempt on an existing record (never
    creating one): one more attempt, its time, and its HTTP status (removed when the attempt
    got none: a timeout, a refused address). State, TTL and write token are left alone."""
    sets = ["#wla = :at"]
    values: dict[str, Any] = {":at": {"N": str(int(at_ms))}, ":one": {"N": "1"}}
    removes = ""
    if status_code is None:
        removes = " REMOVE #wls"
    else:
        sets.append("#wls = :code")
        values[":code"] = {"N": str(int(status_code))}
    expression = "SET " + ", ".join(sets) + " ADD #wa :one" + removes
    condition = "attribute_exists(#id)"
    return {
        "UpdateExpression": expression,
        "ConditionExpression": condition,
        "ExpressionAttributeNames": names_for(expression, condition),
        "ExpressionAttributeValues": values,
    }
