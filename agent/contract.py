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
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

SDWEBUI = "sdwebui"
COMFYUI = "comfyui"
RUNTIME_TYPES: tuple[str, ...] = (SDWEBUI, COMFYUI)

TASKTYPES: dict[str, tuple[str, ...]] = {
    SDWEBUI: ("text-to-image", "image-to-image", "extra-single-image", "extra-batch-images"),
    COMFYUI: ("pipeline",),
}

# \Z, not $: "$" also matches before a trailing newline.
ID_PATTERN = re.compile(r"^[A-Za-z0-9_-]{1,64}\Z")
MAX_PREFIX_CHARS = 512
# API Gateway -> Lambda synchronous payload limit.
MAX_BODY_BYTES = 6 * 1024 * 1024
# SNS carries at most 256 KiB (body + attributes). Above this the content goes to S3, which
# leaves room for the attributes and for JSON escaping in the SNS envelope.
OFFLOAD_THRESHOLD_BYTES = 200 * 1024
# Real requests nest a few levels (ComfyUI node inputs, ControlNet units); the cap keeps
# hostile bodies away from the recursion limit of json.loads/json.dumps.
MAX_JSON_DEPTH = 64
# Bad values are echoed in error messages, cut to this many characters.
MAX_ECHO_CHARS = 80

# Routing keys that v1alpha1 put under `alwayson_scripts`; they are not SD WebUI scripts.
LEGACY_ALWAYSON_KEYS: tuple[str, ...] = (
    "task",
    "sd_model_checkpoint",
    "id_task",
    "save_dir",
    "image_link",
    "uid",
    "override_settings",
    "sd_vae",
)

STATUS_QUEUED = "queued"
STATUS_RUNNING = "running"
STATUS_COMPLETED = "completed"
STATUS_FAILED = "failed"


class ContractError(ValueError):
    """A task that breaks the contract. ``field`` is the JSON path of the offending value."""

    def __init__(self, code: str, message: str, field: str | None, status: int = 400) -> None:
        super().__init__(f"{field or 'body'}: {message}")
        self.code = code
        self.message = message
        self.field = field
        self.status = status

    def to_body(self) -> dict[str, Any]:
        return {"error": {"code": self.code, "message": self.message, "field": self.field}}


@dataclass(frozen=True)
class RuntimeInfo:
    """One configured runtime, as the API Lambda sees it (env ``RUNTIMES``)."""

    name: str
    type: str
    model_filename: str | None = None
    dynamic_model: bool = False

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "type": self.type,
            "modelFilename": self.model_filename,
            "dynamicModel": self.dynamic_model,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> RuntimeInfo:
        return cls(
            name=str(data["name"]),
            type=str(data["type"]),
            model_filename=data.get("modelFilename"),
            dynamic_model=bool(data.get("dynamicModel", False)),
        )


def load_runtimes(raw: str) -> list[RuntimeInfo]:
    """Parse the ``RUNTIMES`` JSON list; ``ValueError`` names what is wrong with it."""
    items = json.loads(raw)
    if not isinstance(items, list) or not items:
        raise ValueError("RUNTIMES must be a non-empty JSON list")
    runtimes: list[RuntimeInfo] = []
    for i, item in enumerate(items):
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            raise ValueError(f"RUNTIMES[{i}] must be an object with a string name")
        if item.get("type") not in RUNTIME_TYPES:
            raise ValueError(
                f"RUNTIMES[{i}].type: {item.get('type')!r} is not one of {', '.join(RUNTIME_TYPES)}"
            )
        model = item.get("modelFilename")
        if model is not None and not isinstance(model, str):
            raise ValueError(f"RUNTIMES[{i}].modelFilename must be a string or null")
        runtimes.append(RuntimeInfo.from_json(item))
    names = [r.name for r in runtimes]
    if len(set(names)) != len(names):
        raise ValueError(f"RUNTIMES has duplicate names: {', '.join(names)}")
    return runtimes


@dataclass
class TaskMetadata:
    id: str
    runtime: str
    tasktype: str
    prefix: str = ""
    context: Any = None

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "runtime": self.runtime,
            "tasktype": self.tasktype,
            "prefix": self.prefix,
            "context": self.context,
        }


@dataclass
class Task:
    metadata: TaskMetadata
    content: dict[str, Any] | None = None
    content_ref: str | None = None
    # How the task arrived: "v1alpha2" or "v1alpha1" (legacy).
    api_version: str = "v1alpha2"

    def to_message(self) -> dict[str, Any]:
        body: dict[str, Any] = {"metadata": self.metadata.to_json()}
        if self.content_ref is not None:
            body["content_ref"] = self.content_ref
        else:
            body["content"] = self.content
        return body

    def message_attributes(self) -> dict[str, dict[str, str]]:
        """SNS message attributes: the subscriptions filter on ``runtime``."""
        return {
            "runtime": {"DataType": "String", "StringValue": self.metadata.runtime},
            "tasktype": {"DataType": "String", "StringValue": self.metadata.tasktype},
        }


# --------------------------------------------------------------------------------------------
# Small helpers


def new_task_id() -> str:
    return str(uuid.uuid4())


def _short(value: Any) -> str:
    """``repr`` of a client-supplied value, cut so a hostile value cannot flood a response."""
    text = repr(value)
    if len(text) > MAX_ECHO_CHARS:
        return text[: MAX_ECHO_CHARS - 3] + "..."
    return text


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


def _require_object(value: Any, path: str) -> dict[str, Any]:
    if value is None:
        raise ContractError("missing_field", "is required and must be an object", path)
    if not isinstance(value, dict):
        raise ContractError("invalid_type", f"must be an object, got {_type_name(value)}", path)
    return value


def _optional_string(obj: Mapping[str, Any], key: str, path: str) -> str | None:
    value = obj.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise ContractError(
            "invalid_type", f"must be a string, got {_type_name(value)}", f"{path}.{key}"
        )
    return value


def validate_task_id(value: Any, path: str) -> str:
    if not isinstance(value, str):
        raise ContractError("invalid_type", f"must be a string, got {_type_name(value)}", path)
    if not ID_PATTERN.match(value):
        raise ContractError(
            "invalid_id", "must be 1-64 characters of A-Z, a-z, 0-9, '_' or '-'", path
        )
    return value


def normalise_prefix(value: Any, path: str = "task.metadata.prefix") -> str:
    """Return the prefix without leading/trailing or doubled slashes; refuse traversal."""
    if value is None:
        return ""
    if not isinstance(value, str):
        raise ContractError("invalid_type", f"must be a string, got {_type_name(value)}", path)
    # Bytes too: an S3 key is at most 1024 UTF-8 bytes, and <prefix>/<id>/request.json must fit.
    if (
        len(value) > MAX_PREFIX_CHARS
        or len(value.encode("utf-8", "surrogatepass")) > MAX_PREFIX_CHARS
    ):
        raise ContractError(
            "invalid_prefix", f"must be at most {MAX_PREFIX_CHARS} characters (UTF-8 bytes)", path
        )
    if any(ord(ch) < 0x20 or ch in "\x7f\\" or 0xD800 <= ord(ch) <= 0xDFFF for ch in value):
        raise ContractError(
            "invalid_prefix",
            "must not contain control characters, backslashes or lone surrogates",
            path,
        )
    segments = [seg for seg in value.split("/") if seg]
    if any(seg in (".", "..") for seg in segments):
        raise ContractError("invalid_prefix", "must not contain '.' or '..' segments", path)
    return "/".join(segments)


def task_key_prefix(prefix: str, task_id: str) -> str:
    """The S3 key folder of a task's outputs: ``<prefix>/<id>`` (no leading slash)."""
    return f"{prefix}/{task_id}" if prefix else task_id


def output_location(bucket: str, prefix: str, task_id: str) -> str:
    return f"s3://{bucket}/{task_key_prefix(prefix, task_id)}"


def request_key(prefix: str, task_id: str) -> str:
    """Where an offloaded task's content is stored in the output bucket."""
    return f"{task_key_prefix(prefix, task_id)}/request.json"


def result_key(prefix: str, task_id: str) -> str:
    return f"{task_key_prefix(prefix, task_id)}/{task_id}.out"


def image_key(prefix: str, task_id: str, index: int, ext: str) -> str:
    return f"{task_key_prefix(prefix, task_id)}/{task_id}-{index}.{ext}"


def parse_s3_uri(uri: str) -> tuple[str, str]:
    if not uri.startswith("s3://"):
        raise ValueError(f"not an s3:// URI: {uri!r}")
    bucket, _, key = uri[5:].partition("/")
    if not bucket or not key:
        raise ValueError(f"s3 URI needs a bucket and a key: {uri!r}")
    return bucket, key


def requested_model(content: Mapping[str, Any]) -> str | None:
    """The checkpoint an sdwebui task asks for, v1alpha2 or legacy placement."""
    override = content.get("override_settings")
    if isinstance(override, dict) and isinstance(override.get("sd_model_checkpoint"), str):
        return str(override["sd_model_checkpoint"])
    scripts = content.get("alwayson_scripts")
    if isinstance(scripts, dict) and isinstance(scripts.get("sd_model_checkpoint"), str):
        return str(scripts["sd_model_checkpoint"])
    return None


# --------------------------------------------------------------------------------------------
# Content checks per tasktype. Only what the server would otherwise reject late, or accept
# wrongly (A1111 ignores misspelt fields, so we check the shapes we rely on).


def _check_string_field(content: Mapping[str, Any], key: str, path: str) -> None:
    if key in content and content[key] is not None and not isinstance(content[key], str):
        raise ContractError(
            "invalid_type",
            f"must be a string, got {_type_name(content[key])}",
            f"{path}.{key}",
        )


def _check_image_string(value: Any, path: str) -> None:
    if not isinstance(value, str) or not value:
        raise ContractError(
            "invalid_type", "must be a non-empty string (base64 or an http(s)/s3 URL)", path
        )


def validate_content(runtime_type: str, tasktype: str, content: Any, path: str) -> dict[str, Any]:
    body = _require_object(content, path)
    if runtime_type == SDWEBUI:
        _check_string_field(body, "prompt", path)
        _check_string_field(body, "negative_prompt", path)
        for key in ("override_settings", "alwayson_scripts"):
            if key in body and body[key] is not None and not isinstance(body[key], dict):
                raise ContractError(
                    "invalid_type",
                    f"must be an object, got {_type_name(body[key])}",
                    f"{path}.{key}",
                )
        if tasktype == "image-to-image":
            images = body.get("init_images")
            if not isinstance(images, list) or not images:
                raise ContractError(
                    "missing_field",
                    "image-to-image needs a non-empty list of init images",
                    f"{path}.init_images",
                )
            for i, image in enumerate(images):
                _check_image_string(image, f"{path}.init_images[{i}]")
        elif tasktype == "extra-single-image":
            if "image" not in body:
                raise ContractError(
                    "missing_field", "extra-single-image needs an image", f"{path}.image"
                )
            _check_image_string(body["image"], f"{path}.image")
        elif tasktype == "extra-batch-images":
            items = body.get("imageList")
            if not isinstance(items, list) or not items:
                raise ContractError(
                    "missing_field",
                    "extra-batch-images needs a non-empty imageList",
                    f"{path}.imageList",
                )
            for i, item in enumerate(items):
                item_path = f"{path}.imageList[{i}]"
                if not isinstance(item, dict):
                    raise ContractError("invalid_type", "must be {data, name}", item_path)
                _check_image_string(item.get("data"), f"{item_path}.data")
    elif runtime_type == COMFYUI:
        prompt = body.get("prompt")
        prompt_path = f"{path}.prompt"
        if prompt is None:
            raise ContractError(
                "missing_field",
                "a ComfyUI pipeline needs 'prompt': an API-format workflow object",
                prompt_path,
            )
        if not isinstance(prompt, dict) or not prompt:
            raise ContractError(
                "invalid_type", "must be a non-empty object of node id -> node", prompt_path
            )
        for node_id, node in prompt.items():
            node_path = f"{prompt_path}.{node_id}"
            if not isinstance(node, dict):
                raise ContractError("invalid_type", "a node must be an object", node_path)
            if not isinstance(node.get("class_type"), str) or not node["class_type"]:
                raise ContractError(
                    "missing_field", "a node needs a class_type string", f"{node_path}.class_type"
                )
            if "inputs" in node and not isinstance(node["inputs"], dict):
                raise ContractError("invalid_type", "must be an object", f"{node_path}.inputs")
    return body


# --------------------------------------------------------------------------------------------
# API requests


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _finite_float(text: str) -> float:
    value = float(text)
    if value in (float("inf"), float("-inf")):
        raise ValueError(f"number out of range: {text[:MAX_ECHO_CHARS]}")
    return value


def _json_depth_ok(value: Any, limit: int) -> bool:
    """Iterative, so checking a hostile document cannot itself hit the recursion limit."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        if depth > limit:
            return False
        stack.extend((child, depth + 1) for child in children if isinstance(child, (dict, list)))
    return True


def loads_strict(raw: str | bytes) -> Any:
    """``json.loads`` limited to standard JSON: no NaN/Infinity constants, no number that
    overflows a float, at most :data:`MAX_JSON_DEPTH` levels. Duplicate keys: the last one
    wins (as in ``json.loads``); the task is re-serialised before publishing, so every later
    reader sees the same value. Raises ``ValueError``."""
    try:
        value = json.loads(raw, parse_constant=_reject_constant, parse_float=_finite_float)
    except RecursionError as exc:
        raise ValueError(f"nested deeper than {MAX_JSON_DEPTH} levels") from exc
    if not _json_depth_ok(value, MAX_JSON_DEPTH):
        raise ValueError(f"nested deeper than {MAX_JSON_DEPTH} levels")
    return value


def parse_json_body(raw: str | bytes | None) -> Any:
    if raw is None or (isinstance(raw, (str, bytes)) and not raw.strip()):
        raise ContractError("invalid_json", "the request body is empty", None)
    size = len(raw.encode("utf-8", "surrogatepass")) if isinstance(raw, str) else len(raw)
    if size > MAX_BODY_BYTES:
        raise ContractError(
            "payload_too_large",
            f"the body is {size} bytes; at most {MAX_BODY_BYTES} are accepted",
            None,
            status=413,
        )
    try:
        return loads_strict(raw)
    except ValueError as exc:  # includes UnicodeDecodeError
        raise ContractError("invalid_json", f"the body is not valid JSON: {exc}", None) from exc


def _runtime_by_name(runtimes: Sequence[RuntimeInfo], name: Any, path: str) -> RuntimeInfo:
    known = ", ".join(r.name for r in runtimes)
    if name is None:
        raise ContractError("missing_field", f"is required; one of: {known}", path)
    if not isinstance(name, str):
        raise ContractError("invalid_type", f"must be a string, one of: {known}", path)
    for runtime in runtimes:
        if runtime.name == name:
            return runtime
    raise ContractError("unknown_runtime", f"{_short(name)} is not one of: {known}", path)


def _check_tasktype(runtime: RuntimeInfo, tasktype: Any, path: str) -> str:
    allowed = TASKTYPES[runtime.type]
    if tasktype is None:
        raise ContractError("missing_field", f"is required; one of: {', '.join(allowed)}", path)
    if tasktype not in allowed:
        raise ContractError(
            "invalid_tasktype",
            f"{_short(tasktype)} is not valid for {runtime.type} runtime '{runtime.name}'; "
            f"one of: {', '.join(allowed)}",
            path,
        )
    return str(tasktype)


def parse_task(
    task: Any,
    runtimes: Sequence[RuntimeInfo],
    path: str = "task",
    *,
    generate_id: bool = True,
    allow_content_ref: bool = True,
) -> Task:
    """Validate a v1alpha2 task object (``{"metadata", "content"}``) against the runtimes.

    ``allow_content_ref`` is False for client requests: only the API writes offloaded request
    objects, so a client must not point the agent at an S3 object of its choosing."""
    task_obj = _require_object(task, path)
    meta = _require_object(task_obj.get("metadata"), f"{path}.metadata")
    meta_path = f"{path}.metadata"
    unknown = sorted(set(meta) - {"id", "runtime", "tasktype", "prefix", "context"})
    if unknown:
        raise ContractError(
            "unknown_field",
            "unknown metadata field; allowed: id, runtime, tasktype, prefix, context",
            f"{meta_path}.{unknown[0]}",
        )
    raw_id = meta.get("id")
    if raw_id is None:
        if not generate_id:
            raise ContractError("missing_field", "is required", f"{meta_path}.id")
        task_id = new_task_id()
    else:
        task_id = validate_task_id(raw_id, f"{meta_path}.id")
    runtime = _runtime_by_name(runtimes, meta.get("runtime"), f"{meta_path}.runtime")
    tasktype = _check_tasktype(runtime, meta.get("tasktype"), f"{meta_path}.tasktype")
    prefix = normalise_prefix(meta.get("prefix"), f"{meta_path}.prefix")
    metadata = TaskMetadata(
        id=task_id,
        runtime=runtime.name,
        tasktype=tasktype,
        prefix=prefix,
        context=meta.get("context"),
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
        try:
            parse_s3_uri(ref)
        except ValueError as exc:
            raise ContractError("invalid_content_ref", str(exc), f"{path}.content_ref") from exc
        return Task(metadata=metadata, content_ref=ref)
    content = validate_content(runtime.type, tasktype, task_obj.get("content"), f"{path}.content")
    if runtime.type == SDWEBUI and not runtime.dynamic_model:
        wanted = requested_model(content)
        if wanted is not None and runtime.model_filename and wanted != runtime.model_filename:
            raise ContractError(
                "model_not_served",
                f"runtime '{runtime.name}' serves only {runtime.model_filename!r}, "
                f"not {_short(wanted)}",
                f"{path}.content.override_settings.sd_model_checkpoint",
            )
    return Task(metadata=metadata, content=content)


def parse_v1alpha2(body: Any, runtimes: Sequence[RuntimeInfo]) -> Task:
    if not isinstance(body, dict):
        raise ContractError(
            "invalid_type", f"the body must be a JSON object, got {_type_name(body)}", None
        )
    if "task" not in body:
        raise ContractError("missing_field", "is required: {metadata, content}", "task")
    return parse_task(body["task"], runtimes, allow_content_ref=False)


def _image_links(value: Any, path: str) -> list[str]:
    """Legacy ``image_link``: a comma-separated string of URLs (or, leniently, a list)."""
    if isinstance(value, str):
        links = [link.strip() for link in value.split(",") if link.strip()]
    elif isinstance(value, list) and all(isinstance(link, str) for link in value):
        links = [link.strip() for link in value if link.strip()]
    else:
        raise ContractError("invalid_type", "must be a comma-separated string of image URLs", path)
    if not links:
        raise ContractError("invalid_type", "must name at least one image URL", path)
    return links


def _translate_legacy_content(
    body: dict[str, Any], scripts: dict[str, Any], tasktype: str, checkpoint: str
) -> dict[str, Any]:
    """The SD WebUI request a v1alpha1 body means. The routing keys are removed from
    ``alwayson_scripts`` (the server answers 422 to an unknown always-on script), settings move
    to ``override_settings`` and ``image_link`` URLs become the task's input images (the agent
    fetches URLs). The body itself is not modified."""
    content = dict(body)
    content["alwayson_scripts"] = {
        key: value for key, value in scripts.items() if key not in LEGACY_ALWAYSON_KEYS
    }
    body_override = body.get("override_settings")
    if body_override is not None and not isinstance(body_override, dict):
        raise ContractError(
            "invalid_type",
            f"must be an object, got {_type_name(body_override)}",
            "override_settings",
        )
    override = dict(body_override or {})
    if isinstance(scripts.get("sd_vae"), str):
        override["sd_vae"] = scripts["sd_vae"]
    legacy_override = scripts.get("override_settings")
    if legacy_override is not None:
        if not isinstance(legacy_override, dict):
            raise ContractError(
                "invalid_type",
                f"must be an object, got {_type_name(legacy_override)}",
                "alwayson_scripts.override_settings",
            )
        override.update(legacy_override)
    # The routing checkpoint wins, so a dynamic runtime loads the model the request was routed by.
    override["sd_model_checkpoint"] = checkpoint
    content["override_settings"] = override
    if scripts.get("image_link") is not None:
        links = _image_links(scripts["image_link"], "alwayson_scripts.image_link")
        if tasktype == "image-to-image" and not content.get("init_images"):
            content["init_images"] = links
        elif tasktype == "extra-single-image" and "image" not in content:
            content["image"] = links[0]
        elif tasktype == "extra-batch-images" and not content.get("imageList"):
            content["imageList"] = [
                {"data": link, "name": f"image-{i}"} for i, link in enumerate(links)
            ]
    return content


def parse_v1alpha1(body: Any, runtimes: Sequence[RuntimeInfo]) -> Task:
    """Translate a legacy SD WebUI request with routing keys under ``alwayson_scripts``.

    Field paths in errors are relative to the body (``alwayson_scripts.task``, ``prompt``)."""
    if not isinstance(body, dict):
        raise ContractError(
            "invalid_type", f"the body must be a JSON object, got {_type_name(body)}", None
        )
    scripts = body.get("alwayson_scripts")
    if not isinstance(scripts, dict):
        raise ContractError(
            "missing_field",
            "v1alpha1 needs alwayson_scripts with task and sd_model_checkpoint",
            "alwayson_scripts",
        )
    checkpoint = _optional_string(scripts, "sd_model_checkpoint", "alwayson_scripts")
    if not checkpoint:
        raise ContractError("missing_field", "is required", "alwayson_scripts.sd_model_checkpoint")
    sdwebui = [r for r in runtimes if r.type == SDWEBUI]
    runtime = next((r for r in sdwebui if r.model_filename == checkpoint), None)
    if runtime is None:
        runtime = next((r for r in sdwebui if r.dynamic_model), None)
    if runtime is None:
        served = ", ".join(sorted({r.model_filename for r in sdwebui if r.model_filename}))
        raise ContractError(
            "unknown_model",
            f"no sdwebui runtime serves {_short(checkpoint)} and none loads models "
            f"dynamically; served: {served or 'none'}",
            "alwayson_scripts.sd_model_checkpoint",
        )
    tasktype = scripts.get("task", "text-to-image")
    tasktype = _check_tasktype(runtime, tasktype, "alwayson_scripts.task")
    raw_id = scripts.get("id_task")
    task_id = (
        new_task_id() if raw_id is None else validate_task_id(raw_id, "alwayson_scripts.id_task")
    )
    prefix = normalise_prefix(scripts.get("save_dir"), "alwayson_scripts.save_dir")
    translated = _translate_legacy_content(body, scripts, tasktype, checkpoint)
    try:
        content = validate_content(runtime.type, tasktype, translated, "body")
    except ContractError as exc:
        field = exc.field[len("body.") :] if exc.field and exc.field.startswith("body.") else None
        raise ContractError(exc.code, exc.message, field or exc.field, exc.status) from None
    metadata = TaskMetadata(
        id=task_id,
        runtime=runtime.name,
        tasktype=tasktype,
        prefix=prefix,
        context=scripts.get("uid"),
    )
    return Task(metadata=metadata, content=content, api_version="v1alpha1")


def message_size(message: Mapping[str, Any]) -> int:
    """Bytes the task occupies once JSON-escaped inside the SNS envelope."""
    return len(json.dumps(json.dumps(message, separators=(",", ":"))).encode("utf-8"))


def encode_message(task: Task) -> str:
    return json.dumps(task.to_message(), separators=(",", ":"))


# --------------------------------------------------------------------------------------------
# Queue messages (agent side)


@dataclass
class QueueMessage:
    task: Task
    published_at: str | None = None  # ISO-8601 from the SNS envelope
    envelope: bool = False


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
        outer = loads_strict(body)
    except ValueError as exc:
        raise PoisonMessage(f"body is not JSON: {exc}") from exc
    published_at = None
    is_envelope = (
        isinstance(outer, dict) and outer.get("Type") == "Notification" and ("Message" in outer)
    )
    payload: Any = outer
    if is_envelope:
        published_at = outer.get("Timestamp")
        try:
            payload = loads_strict(outer["Message"])
        except (TypeError, ValueError) as exc:
            raise PoisonMessage(f"SNS Message is not JSON: {exc}") from exc
    if isinstance(payload, dict) and "task" in payload and "metadata" not in payload:
        payload = payload["task"]
    task_id = _recover_id(payload)
    try:
        task = parse_task(payload, [runtime], generate_id=False)
    except ContractError as exc:
        raise PoisonMessage(f"{exc.field}: {exc.message}", task_id, exc) from exc
    return QueueMessage(task=task, published_at=published_at, envelope=is_envelope)


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
) -> tuple[dict[str, Any], dict[str, dict[str, str]]]:
    """The notification body and its SNS message attributes (``runtime``, ``status``)."""
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
    attributes = {
        "runtime": {"DataType": "String", "StringValue": runtime},
        "status": {"DataType": "String", "StringValue": status},
    }
    return body, attributes
