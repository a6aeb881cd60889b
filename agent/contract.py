"""The sdfleet task contract: the one definition of a task, shared by the API Lambda, the queue
agent and clients. Standard library only, so the Lambda ships it without dependencies.

Wire format
-----------
The API publishes each task to the input SNS topic as the JSON object
``{"metadata": {...}, "content": {...}}`` (the same task object clients send under ``"task"``)
with the message attributes ``runtime`` and ``tasktype`` (both ``String``). A task whose message
would be too large for SNS is published as ``{"metadata": {...}, "content_ref": "s3://..."}``;
the referenced object holds the content JSON.

SNS delivers to the runtime queues with raw message delivery **off**: each SQS body is the SNS
envelope (``Type``, ``MessageId``, ``Message``, ``Timestamp``, ``MessageAttributes``...). We keep
the envelope because the reference queue agent reads it, and because its ``Timestamp`` (the
publication time) lets the agent report how long a task waited in the queue. The agent also
accepts a raw body (a task published straight to SQS).

Completion notifications (published by the agent on the output topic) are built by
:func:`build_notification`.

JSON is read with :func:`loads_strict`: standard JSON only (no ``NaN``/``Infinity``, no float
overflow), at most :data:`MAX_JSON_DEPTH` levels; with duplicate keys the last one wins. Clients
may not send ``content_ref`` (only the API offloads content). v1alpha1 bodies are translated to
a plain SD WebUI request: the legacy routing keys leave ``alwayson_scripts``, the checkpoint,
``sd_vae`` and legacy ``override_settings`` go to ``override_settings``, and ``image_link`` URLs
become the input images.

The offloaded object's key is unique per request (:func:`request_key`). ComfyUI content is
accepted as the workflow itself (the reference's shape) or as ``{"prompt": workflow}`` and is
always queued in the second shape. Every task is held to its runtime's :class:`Limits`, by the
API and again by the agent (:func:`parse_queue_message`).

Modules: ``contract_base`` (the error type), ``contract_json`` (strict JSON),
``contract_model`` (runtimes, tasks, keys), ``contract_limits`` (work limits),
``contract_comfy`` (ComfyUI workflows), ``contract_content`` (content per runtime type),
``contract_legacy`` (v1alpha1). Import everything from here.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

# The contract is split by concern; every public name stays importable from here.
from sdfleet.agent.contract_base import MAX_ECHO_CHARS as MAX_ECHO_CHARS
from sdfleet.agent.contract_base import MAX_NAME_CHARS as MAX_NAME_CHARS
from sdfleet.agent.contract_base import MAX_URL_CHARS as MAX_URL_CHARS
from sdfleet.agent.contract_base import ContractError as ContractError
from sdfleet.agent.contract_base import check_string, child_path, require_object, short, type_name
from sdfleet.agent.contract_callback import parse_callback
from sdfleet.agent.contract_comfy import MAX_NODE_ID_CHARS as MAX_NODE_ID_CHARS
from sdfleet.agent.contract_comfy import is_bare_workflow as is_bare_workflow
from sdfleet.agent.contract_content import COMFYUI as COMFYUI
from sdfleet.agent.contract_content import SDWEBUI as SDWEBUI
from sdfleet.agent.contract_content import requested_model as requested_model
from sdfleet.agent.contract_content import validate_content as validate_content
from sdfleet.agent.contract_json import MAX_BODY_BYTES as MAX_BODY_BYTES
from sdfleet.agent.contract_json import MAX_JSON_DEPTH as MAX_JSON_DEPTH
from sdfleet.agent.contract_json import MAX_QUEUE_DEPTH as MAX_QUEUE_DEPTH
from sdfleet.agent.contract_json import loads_strict as loads_strict
from sdfleet.agent.contract_json import parse_json_body as parse_json_body
from sdfleet.agent.contract_legacy import LEGACY_ALWAYSON_KEYS as LEGACY_ALWAYSON_KEYS
from sdfleet.agent.contract_legacy import parse_v1alpha1 as parse_v1alpha1
from sdfleet.agent.contract_limits import MAX_SIDE as MAX_SIDE
from sdfleet.agent.contract_limits import Limits as Limits
from sdfleet.agent.contract_model import ID_PATTERN as ID_PATTERN
from sdfleet.agent.contract_model import MAX_CONTEXT_BYTES as MAX_CONTEXT_BYTES
from sdfleet.agent.contract_model import MAX_PREFIX_CHARS as MAX_PREFIX_CHARS
from sdfleet.agent.contract_model import REQUEST_ID_PATTERN as REQUEST_ID_PATTERN
from sdfleet.agent.contract_model import RUNTIME_TYPES as RUNTIME_TYPES
from sdfleet.agent.contract_model import TASKTYPES as TASKTYPES
from sdfleet.agent.contract_model import RuntimeInfo as RuntimeInfo
from sdfleet.agent.contract_model import Task as Task
from sdfleet.agent.contract_model import TaskMetadata as TaskMetadata
from sdfleet.agent.contract_model import check_context as check_context
from sdfleet.agent.contract_model import check_tasktype as check_tasktype
from sdfleet.agent.contract_model import image_key as image_key
from sdfleet.agent.contract_model import load_runtimes as load_runtimes
from sdfleet.agent.contract_model import new_task_id as new_task_id
from sdfleet.agent.contract_model import normalise_prefix as normalise_prefix
from sdfleet.agent.contract_model import output_location as output_location
from sdfleet.agent.contract_model import parse_s3_uri as parse_s3_uri
from sdfleet.agent.contract_model import request_key as request_key
from sdfleet.agent.contract_model import result_key as result_key
from sdfleet.agent.contract_model import runtime_by_name as runtime_by_name
from sdfleet.agent.contract_model import safe_request_id as safe_request_id
from sdfleet.agent.contract_model import task_key_prefix as task_key_prefix
from sdfleet.agent.contract_model import validate_task_id as validate_task_id

# SNS carries at most 256 KiB (body + attributes). Above this the content goes to S3, which
# leaves room for the attributes and for JSON escaping in the SNS envelope.
OFFLOAD_THRESHOLD_BYTES = 200 * 1024
# The final message (inline, or metadata + content_ref) plus its attributes; the rest of SNS's
# 262144 bytes is left for the envelope (ids, signature, URLs) that SQS receives around it.
MAX_MESSAGE_BYTES = 248 * 1024

STATUS_QUEUED = "queued"
STATUS_RUNNING = "running"
STATUS_COMPLETED = "completed"
STATUS_FAILED = "failed"


def parse_task(
    task: Any,
    runtimes: Sequence[RuntimeInfo],
    path: str = "task",
    *,
    generate_id: bool = True,
    allow_content_ref: bool = True,
    loopback_callbacks: bool = False,
) -> Task:
    """Validate a v1alpha2 task object (``{"metadata", "content"}``) against the runtimes.

    ``allow_content_ref`` is False for client requests: only the API writes offloaded request
    objects, so a client must not point the agent at an S3 object of its choosing."""
    task_obj = require_object(task, path)
    for key in task_obj:
        if key not in ("metadata", "content", "content_ref"):
            raise ContractError(
                "unknown_field",
                "unknown task field; allowed: metadata, content",
                child_path(path, str(key)),
            )
    meta = require_object(task_obj.get("metadata"), f"{path}.metadata")
    meta_path = f"{path}.metadata"
    unknown = sorted(set(meta) - {"id", "runtime", "tasktype", "prefix", "context", "callback"})
    if unknown:
        raise ContractError(
            "unknown_field",
            "unknown metadata field; allowed: id, runtime, tasktype, prefix, context, callback",
            f"{meta_path}.{unknown[0]}",
        )
    raw_id = meta.get("id")
    if raw_id is None:
        if not generate_id:
            raise ContractError("missing_field", "is required", f"{meta_path}.id")
        task_id = new_task_id()
    else:
        task_id = validate_task_id(raw_id, f"{meta_path}.id")
    runtime = runtime_by_name(runtimes, meta.get("runtime"), f"{meta_path}.runtime")
    tasktype = check_tasktype(runtime, meta.get("tasktype"), f"{meta_path}.tasktype")
    prefix = normalise_prefix(meta.get("prefix"), f"{meta_path}.prefix")
    metadata = TaskMetadata(
        id=task_id,
        runtime=runtime.name,
        tasktype=tasktype,
        prefix=prefix,
        context=check_context(meta.get("context"), f"{meta_path}.context"),
        callback=_callback(meta.get("callback"), f"{meta_path}.callback", loopback_callbacks),
    )
    if "content_ref" in task_obj and not allow_content_ref:
        raise ContractError(
            "unknown_field",
            "is set by the API only; send the request as content",
            f"{path}.content_ref",
        )
    if "content_ref" in task_obj and "content" not in task_obj:
        ref = task_obj["content_ref"]
        if not isinstance(ref, str):
            raise ContractError("invalid_type", "must be an s3:// URI", f"{path}.content_ref")
        check_string(ref, f"{path}.content_ref", MAX_URL_CHARS)
        try:
            parse_s3_uri(ref)
        except ValueError as exc:
            raise ContractError("invalid_content_ref", str(exc), f"{path}.content_ref") from exc
        return Task(metadata=metadata, content_ref=ref)
    content = check_content(runtime, tasktype, task_obj.get("content"), f"{path}.content")
    return Task(metadata=metadata, content=content)


def _callback(value: Any, path: str, loopback: bool = False) -> dict[str, Any] | None:
    # ``loopback``: the sandbox's opt-in (contract_callback); False everywhere else.
    callback = parse_callback(value, path, loopback=loopback)
    return None if callback is None else callback.to_json()


def check_content(runtime: RuntimeInfo, tasktype: str, content: Any, path: str) -> dict[str, Any]:
    """Every check of a task's content for ``runtime``: shape, limits and the served model.
    The agent applies it to offloaded content too, so both reach the server equally checked."""
    checked = validate_content(runtime.type, tasktype, content, path, runtime.limits)
    if runtime.type == SDWEBUI and not runtime.dynamic_model:
        wanted = requested_model(checked)
        if wanted is not None and runtime.model_filename and wanted != runtime.model_filename:
            raise ContractError(
                "model_not_served",
                f"runtime '{runtime.name}' serves only {runtime.model_filename!r}, "
                f"not {short(wanted)}",
                f"{path}.override_settings.sd_model_checkpoint",
            )
    return checked


def parse_v1alpha2(
    body: Any, runtimes: Sequence[RuntimeInfo], *, loopback_callbacks: bool = False
) -> Task:
    if not isinstance(body, dict):
        raise ContractError(
            "invalid_type", f"the body must be a JSON object, got {type_name(body)}", None
        )
    if "task" not in body:
        raise ContractError("missing_field", "is required: {metadata, content}", "task")
    for key in body:
        if key != "task":
            raise ContractError("unknown_field", "unknown field; the body is {task}", str(key))
    return parse_task(
        body["task"], runtimes, allow_content_ref=False, loopback_callbacks=loopback_callbacks
    )


def message_size(message: Mapping[str, Any]) -> int:
    """Bytes the task occupies once JSON-escaped inside the SNS envelope."""
    return len(json.dumps(json.dumps(message, separators=(",", ":"))).encode("utf-8"))


def encode_message(task: Task) -> str:
    return json.dumps(task.to_message(), separators=(",", ":"))


def attributes_size(attributes: Mapping[str, Mapping[str, str]]) -> int:
    """SNS counts attribute names, data types and values towards the message size."""
    return sum(
        len(name.encode("utf-8"))
        + len(attr["DataType"].encode("utf-8"))
        + len(attr["StringValue"].encode("utf-8"))
        for name, attr in attributes.items()
    )


# Where each metadata field came from, per API version, to name it in a 413.
_METADATA_FIELDS = {
    "v1alpha2": {key: f"task.metadata.{key}" for key in ("id", "runtime", "tasktype", "prefix")}
    | {"context": "task.metadata.context", "callback": "task.metadata.callback"},
    "v1alpha1": {
        "id": "alwayson_scripts.id_task",
        "runtime": "alwayson_scripts.sd_model_checkpoint",
        "tasktype": "alwayson_scripts.task",
        "prefix": "alwayson_scripts.save_dir",
        "context": "alwayson_scripts.uid",
    },
}


def check_message_fits(task: Task) -> int:
    """The message as it will be published (inline, or metadata + ``content_ref``) with its
    attributes must leave room for the SNS envelope in SNS's 256 KiB. Called before anything
    is written to S3. Returns the size; a 413 names the largest metadata field."""
    size = message_size(task.to_message()) + attributes_size(task.message_attributes())
    if size <= MAX_MESSAGE_BYTES:
        return size
    meta = task.metadata.to_json()
    if task.content_ref is None:
        field_path = "task.content" if task.api_version == "v1alpha2" else None
    else:
        biggest = max(meta, key=lambda key: len(json.dumps(meta[key])))
        field_path = _METADATA_FIELDS.get(task.api_version, _METADATA_FIELDS["v1alpha2"])[biggest]
    raise ContractError(
        "payload_too_large",
        f"the queued message would be {size} bytes; at most {MAX_MESSAGE_BYTES} fit in SNS",
        field_path,
        status=413,
    )


# --------------------------------------------------------------------------------------------
# Queue messages (agent side)


@dataclass
class QueueMessage:
    task: Task
    published_at: str | None = None  # ISO-8601 from the SNS envelope
    envelope: bool = False
    # ``metadata.callback`` as queued, unchecked: the agent checks it with
    # ``contract_callback.parse_callback`` and drops a bad one without failing the task.
    callback: Any = None


class PoisonMessage(ValueError):
    """A queue message that can never be processed; ``task_id`` is set if one was recovered."""

    def __init__(self, reason: str, task_id: str | None = None, error: ContractError | None = None):
        super().__init__(reason)
        self.reason = reason
        self.task_id = task_id
        self.error = error


def _recover_id(obj: Any) -> str | None:
    if isinstance(obj, dict):
        for candidate in (
            obj.get("metadata"),
            (obj.get("task") or {}).get("metadata") if isinstance(obj.get("task"), dict) else None,
        ):
            if isinstance(candidate, dict):
                value = candidate.get("id")
                if isinstance(value, str) and ID_PATTERN.match(value):
                    return value
    return None


def parse_queue_message(body: str, runtime: RuntimeInfo) -> QueueMessage:
    """Parse an SQS body (SNS envelope or raw task) and validate it for this runtime."""
    try:
        outer = loads_strict(body, MAX_QUEUE_DEPTH)
    except ValueError as exc:
        raise PoisonMessage(f"body is not JSON: {exc}") from exc
    published_at = None
    is_envelope = (
        isinstance(outer, dict) and outer.get("Type") == "Notification" and ("Message" in outer)
    )
    payload: Any = outer
    if is_envelope:
        stamp = outer.get("Timestamp")
        published_at = stamp if isinstance(stamp, str) else None  # SNS writes ISO-8601 text
        try:
            payload = loads_strict(outer["Message"], MAX_QUEUE_DEPTH)
        except (TypeError, ValueError) as exc:
            raise PoisonMessage(f"SNS Message is not JSON: {exc}") from exc
    if isinstance(payload, dict) and "task" in payload and "metadata" not in payload:
        payload = payload["task"]
    payload, callback = _take_callback(payload)
    task_id = _recover_id(payload)
    try:
        task = parse_task(payload, [runtime], generate_id=False)
    except ContractError as exc:
        raise PoisonMessage(f"{exc.field}: {exc.message}", task_id, exc) from exc
    return QueueMessage(
        task=task, published_at=published_at, envelope=is_envelope, callback=callback
    )


def _take_callback(payload: Any) -> tuple[Any, Any]:
    """The task without ``metadata.callback``, and the callback: whatever it holds, it never
    makes the task a poison message (the agent checks it on its own)."""
    meta = payload.get("metadata") if isinstance(payload, dict) else None
    if not isinstance(meta, dict) or "callback" not in meta:
        return payload, None
    rest = {key: value for key, value in meta.items() if key != "callback"}
    return {**payload, "metadata": rest}, meta["callback"]


# --------------------------------------------------------------------------------------------
# Completion notifications (agent -> output topic)


def build_notification(
    *,
    runtime: str,
    task_id: str,
    status: str,
    image_urls: Sequence[str] = (),
    output_url: str | None = None,
    context: Any = None,
    error: Mapping[str, Any] | None = None,
    timings: Mapping[str, float | int] | None = None,
    attempt: int | None = None,
    callback: Mapping[str, Any] | None = None,
) -> tuple[dict[str, Any], dict[str, dict[str, str]]]:
    """The notification body and its SNS message attributes (``runtime``, ``status``).
    ``callback`` (the task's checked ``metadata.callback``, ``Callback.to_json()``) is added
    only when the task has one: webhook delivery reads it from the notification."""
    body: dict[str, Any] = {
        "runtime": runtime,
        "id": task_id,
        "result": status == STATUS_COMPLETED,
        "status": status,
        "image_url": list(image_urls),
        "output_url": output_url,
        "context": context,
        "error": dict(error) if error else None,
        "timings": dict(timings or {}),
        "attempt": attempt,
    }
    if callback is not None:
        body["callback"] = dict(callback)
    attributes = {
        "runtime": {"DataType": "String", "StringValue": runtime},
        "status": {"DataType": "String", "StringValue": status},
    }
    return body, attributes
