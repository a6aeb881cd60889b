"""The task model: runtimes, task objects, ids, prefixes and S3 keys (standard library only).

Import these through :mod:`sdfleet.agent.contract`.
"""

import json
import re
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sdfleet.agent.contract_base import ContractError, short, type_name
from sdfleet.agent.contract_content import COMFYUI, SDWEBUI
from sdfleet.agent.contract_limits import Limits

RUNTIME_TYPES: tuple[str, ...] = (SDWEBUI, COMFYUI)

TASKTYPES: dict[str, tuple[str, ...]] = {
    SDWEBUI: ("text-to-image", "image-to-image", "extra-single-image", "extra-batch-images"),
    COMFYUI: ("pipeline",),
}

# \Z, not $: "$" also matches before a trailing newline.
ID_PATTERN = re.compile(r"^[A-Za-z0-9_-]{1,64}\Z")
MAX_PREFIX_CHARS = 512
# metadata.context (and v1alpha1 uid), as compact JSON with non-ASCII escaped.
MAX_CONTEXT_BYTES = 8 * 1024
# An API Gateway request id (a UUID) names the offloaded request object.
REQUEST_ID_PATTERN = re.compile(r"^[A-Za-z0-9-]{1,64}\Z")


@dataclass(frozen=True)
class RuntimeInfo:
    """One configured runtime, as the API Lambda (env ``RUNTIMES``) and the agent see it."""

    name: str
    type: str
    model_filename: str | None = None
    dynamic_model: bool = False
    limits: Limits = field(default_factory=Limits)

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "type": self.type,
            "modelFilename": self.model_filename,
            "dynamicModel": self.dynamic_model,
            "limits": self.limits.to_json(),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "RuntimeInfo":
        """``limits`` may be absent (the defaults); a bad one is a ``ValueError``."""
        return cls(
            name=str(data["name"]),
            type=str(data["type"]),
            model_filename=data.get("modelFilename"),
            dynamic_model=bool(data.get("dynamicModel", False)),
            limits=Limits.from_json(data.get("limits")),
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
        try:
            runtimes.append(RuntimeInfo.from_json(item))
        except ValueError as exc:
            raise ValueError(f"RUNTIMES[{i}].{exc}") from exc
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
    # The checked ``metadata.callback`` (``Callback.to_json()``); absent from the message
    # when the client gave none, so messages without one are unchanged.
    callback: dict[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        body = {
            "id": self.id,
            "runtime": self.runtime,
            "tasktype": self.tasktype,
            "prefix": self.prefix,
            "context": self.context,
        }
        if self.callback is not None:
            body["callback"] = self.callback
        return body


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
# Ids, prefixes, keys


def new_task_id() -> str:
    return str(uuid.uuid4())


def validate_task_id(value: Any, path: str) -> str:
    if not isinstance(value, str):
        raise ContractError("invalid_type", f"must be a string, got {type_name(value)}", path)
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
        raise ContractError("invalid_type", f"must be a string, got {type_name(value)}", path)
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


def safe_request_id(value: Any) -> str:
    """The API Gateway request id when it is a safe key segment, else a fresh uuid4."""
    if isinstance(value, str) and REQUEST_ID_PATTERN.match(value):
        return value
    return str(uuid.uuid4())


def request_key(prefix: str, task_id: str, request_id: str | None = None) -> str:
    """Where an offloaded task's content is stored in the output bucket, unique per request:
    ``<prefix>/<id>/<request id>.request.json`` (a fresh uuid4 without a valid request id), so
    two requests with the same task id never share an object."""
    return f"{task_key_prefix(prefix, task_id)}/{safe_request_id(request_id)}.request.json"


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


# --------------------------------------------------------------------------------------------
# Routing fields


def runtime_by_name(runtimes: Sequence[RuntimeInfo], name: Any, path: str) -> RuntimeInfo:
    """Bounded by membership: only a configured name passes (the echo of others is cut)."""
    known = ", ".join(r.name for r in runtimes)
    if name is None:
        raise ContractError("missing_field", f"is required; one of: {known}", path)
    if not isinstance(name, str):
        raise ContractError("invalid_type", f"must be a string, one of: {known}", path)
    for runtime in runtimes:
        if runtime.name == name:
            return runtime
    raise ContractError("unknown_runtime", f"{short(name)} is not one of: {known}", path)


def check_tasktype(runtime: RuntimeInfo, tasktype: Any, path: str) -> str:
    allowed = TASKTYPES[runtime.type]
    if tasktype is None:
        raise ContractError("missing_field", f"is required; one of: {', '.join(allowed)}", path)
    if tasktype not in allowed:
        raise ContractError(
            "invalid_tasktype",
            f"{short(tasktype)} is not valid for {runtime.type} runtime '{runtime.name}'; "
            f"one of: {', '.join(allowed)}",
            path,
        )
    return str(tasktype)


def check_context(value: Any, path: str) -> Any:
    """Any JSON value, at most :data:`MAX_CONTEXT_BYTES` as compact JSON (as published)."""
    if value is None:
        return None
    size = len(json.dumps(value, separators=(",", ":")).encode("utf-8"))
    if size > MAX_CONTEXT_BYTES:
        raise ContractError(
            "too_long",
            f"is {size} bytes as JSON; at most {MAX_CONTEXT_BYTES} are allowed",
            path,
        )
    return value
