"""``POST /v1alpha2`` and ``POST /v1alpha1``: validate a task, record it, publish it.

Order: validate, check the final message size (nothing is written for a 413), create the
task's record (one owner per id: an id that exists is a 409 and nothing is published), then
offload and publish. A failed publish releases the record, so the client may retry with the
same id.

Offloaded content is written with ``ServerSideEncryption=AES256`` explicitly, so the object is
encrypted even if the bucket default were changed. Its key is unique per request
(``<prefix>/<id>/<API Gateway request id>.request.json``) and written with ``IfNoneMatch: *``,
so two requests never share or overwrite an object. An object whose task could not be
published is deleted again (best effort, logged).
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import replace
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from sdfleet.agent import contract
from sdfleet.agent.contract_log import xray_trace_id
from sdfleet.agent.task_state import TaskExists, TaskRecord, TaskStore
from sdfleet.components.task_api import events
from sdfleet.components.task_api import responses as r
from sdfleet.components.task_api import settings as cfg

# Where each API version carries the task id (the contract's field paths).
ID_FIELDS = {"v1alpha2": "task.metadata.id", "v1alpha1": "alwayson_scripts.id_task"}
# The X-Ray trace of the invocation: Lambda sets the variable per invocation (active tracing).
# The task carries it on as an SNS message attribute, which survives SNS -> SQS (the agent's
# parent when SQS has no AWSTraceHeader), and as the Publish's HTTP header.
TRACE_ENV = "_X_AMZN_TRACE_ID"
TRACE_HEADER = "X-Amzn-Trace-Id"
# Root=1-<8 hex>-<24 hex> with optional Parent/Sampled/Lineage/...: printable ASCII, bounded.
_TRACE_HEADER_RE = re.compile(r"Root=1-[0-9a-fA-F]{8}-[0-9a-fA-F]{24}(;[\x21-\x7e]*)?")
_MAX_TRACE_HEADER = 512


class OffloadConflict(Exception):
    """The request's offload key already exists (a replayed request id)."""


def plan(task: contract.Task, settings: cfg.Settings, request_id: str) -> contract.Task:
    """The message to publish: inline, or with its content moved to a per-request key. Its
    final size is checked here, before anything is written (a 413 names the field)."""
    message = task
    if contract.message_size(task.to_message()) > contract.OFFLOAD_THRESHOLD_BYTES:
        key = contract.request_key(task.metadata.prefix, task.metadata.id, request_id)
        message = replace(task, content=None, content_ref=f"s3://{settings.bucket}/{key}")
    contract.check_message_fits(message)
    return message


def publish(
    task: contract.Task, message: contract.Task, settings: cfg.Settings, log: dict[str, Any]
) -> None:
    """Publish ``message``, first writing ``task``'s content to S3 if it was offloaded."""
    key = contract.parse_s3_uri(message.content_ref)[1] if message.content_ref else None
    if key is not None:
        try:
            cfg.s3(settings).put_object(
                Bucket=settings.bucket,
                Key=key,
                Body=json.dumps(task.content, separators=(",", ":")).encode("utf-8"),
                ContentType="application/json",
                ServerSideEncryption="AES256",
                IfNoneMatch="*",
            )
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", ""))
            if code in ("PreconditionFailed", "ConditionalRequestConflict", "412", "409"):
                raise OffloadConflict(code) from exc  # not ours: leave it alone
            _discard(settings, key, log)
            raise
        except BotoCoreError:
            _discard(settings, key, log)  # a timed-out write may still have landed
            raise
        log["offloaded"] = True
    try:
        client = cfg.sns(settings)
        attributes = message.message_attributes()
        header = trace_header()
        if header is not None:
            attributes[TRACE_HEADER] = {"DataType": "String", "StringValue": header}
            send_trace_header(client)
        client.publish(
            TopicArn=settings.topic_arn,
            Message=contract.encode_message(message),
            MessageAttributes=attributes,
        )
    except Exception:
        if key is not None:
            _discard(settings, key, log)
        raise


def trace_header() -> str | None:
    """The invocation's X-Ray header, when there is a valid one (a broken value must not make
    SNS refuse the task)."""
    value = os.environ.get(TRACE_ENV, "").strip()
    if len(value) > _MAX_TRACE_HEADER or not _TRACE_HEADER_RE.fullmatch(value):
        return None
    return value


def sampled_trace_id() -> str | None:
    """The trace id X-Ray will have (the request was sampled), for the task's record."""
    header = trace_header()
    if header is None or "Sampled=1" not in header.split(";"):
        return None
    return xray_trace_id(header)


def send_trace_header(client: Any) -> None:
    """Send the trace as the Publish's ``X-Amzn-Trace-Id`` HTTP header, so X-Ray links the
    SNS segment to the invocation. botocore adds it itself only when it sees the Lambda
    environment; this does not depend on that. Registered once per client."""
    events = getattr(getattr(client, "meta", None), "events", None)
    if events is not None:  # test doubles have none
        events.register(
            "before-call.sns.Publish", _add_trace_header, unique_id="sdfleet-task-api-xray"
        )


def _add_trace_header(params: dict[str, Any], **_: Any) -> None:
    header = trace_header()
    if header is not None:
        params.setdefault("headers", {})[TRACE_HEADER] = header


def _discard(settings: cfg.Settings, key: str, log: dict[str, Any]) -> None:
    """Best effort: an offloaded object whose task was never queued must not stay behind."""
    try:
        cfg.s3(settings).delete_object(Bucket=settings.bucket, Key=key)
        log["offload_cleanup"] = "deleted"
    except (ClientError, BotoCoreError) as exc:
        error = exc.response.get("Error", {}) if isinstance(exc, ClientError) else {}
        log["offload_cleanup"] = f"failed: {error.get('Code') or type(exc).__name__}"


def success_body(task: contract.Task, settings: cfg.Settings, version: str) -> dict[str, Any]:
    meta = task.metadata
    location = contract.output_location(settings.bucket, meta.prefix, meta.id)
    if version == "v1alpha1":
        checkpoint = contract.requested_model(task.content or {})
        return {
            "id_task": meta.id,
            "sd_model_checkpoint": checkpoint,
            "output_location": location,
        }
    return {"id": meta.id, "runtime": meta.runtime, "output_location": location, "status": "queued"}


def _parse(
    event: dict[str, Any], version: str, settings: cfg.Settings, log: dict[str, Any]
) -> contract.Task | dict[str, Any]:
    """The validated task, or the 4xx response for the client."""
    try:
        raw = events.raw_body(event)
        if isinstance(raw, str):
            log["bytes"] = len(raw.encode("utf-8", "surrogatepass"))
        else:
            log["bytes"] = len(raw or b"")
        body = contract.parse_json_body(raw)
        if version == "v1alpha2":
            return contract.parse_v1alpha2(
                body, settings.runtimes, loopback_callbacks=settings.loopback_callbacks
            )
        return contract.parse_v1alpha1(body, settings.runtimes)
    except contract.ContractError as exc:
        log.update(error_code=exc.code, error_field=r.log_field(exc.field))
        return r.error(exc.status, exc.code, exc.message, exc.field)
    except (ValueError, TypeError, RecursionError) as exc:
        # A gap in validation: still the client's input, never a 5xx.
        log.update(error_code="invalid_request", unexpected=type(exc).__name__)
        return r.error(400, "invalid_request", "the request could not be parsed")


def task_exists(exc: TaskExists, version: str, log: dict[str, Any], owner: str) -> dict[str, Any]:
    """409: the id is taken. Its state and status location only for the key that owns it:
    another stack client learns that the id is used, nothing about the task."""
    log.update(error_code="task_exists")
    if exc.record.api_key_id != owner:
        return r.error(
            409,
            "task_exists",
            "a task with this id exists; use a new id",
            ID_FIELDS[version],
            extra={"id": exc.task_id},
        )
    location = events.status_path(exc.task_id)
    return r.error(
        409,
        "task_exists",
        f"a task with this id exists (state {exc.state}); use a new id or read its status",
        ID_FIELDS[version],
        extra={"id": exc.task_id, "state": exc.state, "location": location},
        # Relative to the request URL (RFC 9110), so the stage path is kept.
        Location=location.lstrip("/"),
    )


def handle(
    event: dict[str, Any], version: str, settings: cfg.Settings, log: dict[str, Any]
) -> dict[str, Any]:
    task = _parse(event, version, settings, log)
    if not isinstance(task, contract.Task):
        return task
    meta = task.metadata
    log.update(id=meta.id, runtime=meta.runtime, tasktype=meta.tasktype)
    owner = events.api_key_id(event)
    if owner is None:  # API Gateway sets it whenever a key is required
        log["error_code"] = "forbidden"
        return r.error(403, "forbidden", "an API key is required")
    try:
        message = plan(task, settings, events.request_id(event))
    except contract.ContractError as exc:  # the final message would not fit in SNS
        log.update(error_code=exc.code, error_field=r.log_field(exc.field))
        return r.error(exc.status, exc.code, exc.message, exc.field)
    store = cfg.store(settings)
    try:
        record = store.create(meta.id, meta.runtime, owner, trace_id=sampled_trace_id())
    except TaskExists as exc:
        return task_exists(exc, version, log, owner)
    except r.TABLE_ERRORS as exc:
        return r.table_failure(exc, "create", log)
    try:
        publish(task, message, settings, log)
    except Exception as exc:
        _release(store, record, log)
        return _publish_failure(exc, log)
    return r.response(200, success_body(task, settings, version))


def _release(store: TaskStore, record: TaskRecord, log: dict[str, Any]) -> None:
    """Free the id for a retry; a failure here leaves the id taken until the record expires."""
    try:
        log["released"] = store.release(record)
    except Exception as exc:
        log["released"] = f"failed: {r.aws_code(exc)}"


def _publish_failure(exc: Exception, log: dict[str, Any]) -> dict[str, Any]:
    if isinstance(exc, contract.ContractError):
        log.update(error_code=exc.code, error_field=r.log_field(exc.field))
        return r.error(exc.status, exc.code, exc.message, exc.field)
    if isinstance(exc, OffloadConflict):
        log.update(error_code="request_conflict", aws_error=str(exc))
        return r.error(
            409, "request_conflict", "this request id was already used; send the request again"
        )
    if isinstance(exc, ClientError):
        code = str(exc.response.get("Error", {}).get("Code", "Unknown"))
        log.update(error_code="publish_failed", aws_error=code, aws_operation=exc.operation_name)
        if code in r.THROTTLING_CODES:
            return r.unavailable("publish_failed", "the task queue is busy; retry later")
        return r.error(502, "publish_failed", "the task could not be queued")
    if isinstance(exc, BotoCoreError):  # connection errors, timeouts
        log.update(error_code="publish_failed", aws_error=type(exc).__name__)
        return r.unavailable("publish_failed", "the task queue is unreachable; retry later")
    raise exc
