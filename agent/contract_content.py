"""Content checks per runtime type and task type (standard library only).

Only what the server would otherwise reject late, or accept wrongly (A1111 ignores misspelt
fields, so we check the shapes we rely on), plus the runtime's work limits.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sdfleet.agent.contract_base import (
    MAX_NAME_CHARS,
    ContractError,
    check_string,
    require_object,
    type_name,
)
from sdfleet.agent.contract_comfy import normalise_comfy_content
from sdfleet.agent.contract_limits import Limits, check_extras, check_sdwebui, pydantic_true

SDWEBUI = "sdwebui"
COMFYUI = "comfyui"


def requested_model(content: Mapping[str, Any]) -> str | None:
    """The checkpoint an sdwebui task asks for, v1alpha2 or legacy placement."""
    override = content.get("override_settings")
    if isinstance(override, dict) and isinstance(override.get("sd_model_checkpoint"), str):
        return str(override["sd_model_checkpoint"])
    scripts = content.get("alwayson_scripts")
    if isinstance(scripts, dict) and isinstance(scripts.get("sd_model_checkpoint"), str):
        return str(scripts["sd_model_checkpoint"])
    return None


def _check_string_field(content: Mapping[str, Any], key: str, path: str) -> None:
    if key in content and content[key] is not None and not isinstance(content[key], str):
        raise ContractError(
            "invalid_type",
            f"must be a string, got {type_name(content[key])}",
            f"{path}.{key}",
        )


def _check_image_string(value: Any, path: str) -> None:
    if not isinstance(value, str) or not value:
        raise ContractError(
            "invalid_type", "must be a non-empty string (base64 or an http(s)/s3 URL)", path
        )


def _non_empty_list(body: Mapping[str, Any], key: str, path: str, what: str) -> list[Any]:
    """``body[key]``, which must be a non-empty list (``what`` says what the task needs)."""
    items = body.get(key)
    if not isinstance(items, list) or not items:
        raise ContractError("missing_field", what, f"{path}.{key}")
    return items


def _check_sdwebui_shape(tasktype: str, body: dict[str, Any], path: str) -> None:
    _check_string_field(body, "prompt", path)
    _check_string_field(body, "negative_prompt", path)
    for key in ("override_settings", "alwayson_scripts"):
        if key in body and body[key] is not None and not isinstance(body[key], dict):
            raise ContractError(
                "invalid_type", f"must be an object, got {type_name(body[key])}", f"{path}.{key}"
            )
    restore = body.get("override_settings_restore_afterwards")
    if restore is not None and not pydantic_true(restore):
        raise ContractError(
            "not_allowed",
            "must be true (the default): the server would keep this task's settings for "
            "later tasks",
            f"{path}.override_settings_restore_afterwards",
        )
    override = body.get("override_settings") or {}
    for key in ("sd_model_checkpoint", "sd_vae"):
        check_string(override.get(key), f"{path}.override_settings.{key}", MAX_NAME_CHARS)
    if tasktype == "image-to-image":
        images = _non_empty_list(
            body, "init_images", path, "image-to-image needs a non-empty list of init images"
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
        items = _non_empty_list(
            body, "imageList", path, "extra-batch-images needs a non-empty imageList"
        )
        for i, item in enumerate(items):
            item_path = f"{path}.imageList[{i}]"
            if not isinstance(item, dict):
                raise ContractError("invalid_type", "must be {data, name}", item_path)
            _check_image_string(item.get("data"), f"{item_path}.data")


def validate_content(
    runtime_type: str,
    tasktype: str,
    content: Any,
    path: str,
    limits: Limits | None = None,
) -> dict[str, Any]:
    """The content, checked against the runtime's limits (the defaults when None) and, for
    ComfyUI, normalised to ``{"prompt": workflow, ...}``."""
    body = require_object(content, path)
    limits = limits if limits is not None else Limits()
    if runtime_type == SDWEBUI:
        _check_sdwebui_shape(tasktype, body, path)
        check_sdwebui(body, path, limits)
        if tasktype.startswith("extra-"):
            check_extras(body, path, limits)
        return body
    if runtime_type == COMFYUI:
        return normalise_comfy_content(body, path, limits)
    return body
