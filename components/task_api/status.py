"""``GET /v1alpha2/tasks/{id}``: a task's state, timings, error and outputs, for its owner.

A task created with another API key answers exactly like a missing one (404), so a client
cannot learn which ids other clients use. A completed task's outputs come with presigned GET
URLs, signed with the function's own role (``s3:GetObject`` on result objects only), valid for
``STATUS_URL_EXPIRY_SECONDS`` or until the role's session credentials expire, if sooner.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

from sdfleet.agent import contract
from sdfleet.agent.task_state import TaskRecord
from sdfleet.agent.task_state_schema import COMPLETED
from sdfleet.components.task_api import events
from sdfleet.components.task_api import responses as r
from sdfleet.components.task_api import settings as cfg

# Status answers carry short-lived URLs: no cache may keep them.
NO_STORE = {"Cache-Control": "no-store"}


def _iso(ms: int | None) -> str | None:
    if ms is None:
        return None
    moment = datetime.fromtimestamp(ms / 1000, tz=UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def timings(record: TaskRecord) -> dict[str, Any]:
    """Timestamps (RFC 3339, UTC) and the durations ``TaskRecord.timings()`` knows, in ms."""
    return {
        "queued_at": _iso(record.queued_at),
        "started_at": _iso(record.started_at),
        "finished_at": _iso(record.finished_at),
        **record.timings(),
    }


def outputs(record: TaskRecord, settings: cfg.Settings) -> list[dict[str, Any]]:
    """A completed task's objects in output order; a URL only for objects in the stack's
    output bucket (the only bucket the function may read, so the only URLs that work)."""
    bucket = record.output_bucket or settings.bucket
    presign = bucket == settings.bucket
    client = cfg.s3(settings) if presign else None
    items = []
    for key in record.output_keys:
        item: dict[str, Any] = {"key": key, "s3_uri": f"s3://{bucket}/{key}"}
        if client is not None:
            item["url"] = client.generate_presigned_url(
                "get_object",
                Params={"Bucket": bucket, "Key": key},
                ExpiresIn=settings.url_expiry_seconds,
            )
        items.append(item)
    return items


def body(record: TaskRecord, settings: cfg.Settings, now: float | None = None) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "id": record.task_id,
        "state": record.state,
        "runtime": record.runtime,
        "attempts": record.attempts,
        "timings": timings(record),
        "trace_id": record.trace_id,
        "error": (
            {"code": record.error_code, "message": record.error_message}
            if record.error_code is not None
            else None
        ),
    }
    if record.state == COMPLETED:
        doc["outputs"] = outputs(record, settings)
        expires = (time.time() if now is None else now) + settings.url_expiry_seconds
        doc["urls_expire_at"] = _iso(int(expires * 1000))
    return doc


def not_found() -> dict[str, Any]:
    return r.error(404, "not_found", "no task with this id for this API key", "id")


def handle(
    event: dict[str, Any], route: events.Route, settings: cfg.Settings, log: dict[str, Any]
) -> dict[str, Any]:
    try:
        task_id = contract.validate_task_id(route.task_id, "id")
    except contract.ContractError as exc:
        log.update(error_code=exc.code, error_field="id")
        return r.error(exc.status, exc.code, exc.message, "id")
    log["id"] = task_id
    owner = events.api_key_id(event)
    if owner is None:  # API Gateway sets it whenever a key is required
        log["error_code"] = "forbidden"
        return r.error(403, "forbidden", "an API key is required")
    try:
        record = cfg.store(settings).get(task_id, owner)
    except r.TABLE_ERRORS as exc:
        return r.table_failure(exc, "get", log)
    if record is None:
        log["error_code"] = "not_found"
        return not_found()
    log["state"] = record.state
    return r.response(200, body(record, settings), NO_STORE)
