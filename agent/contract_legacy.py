"""v1alpha1: legacy SD WebUI bodies with routing keys under ``alwayson_scripts`` (stdlib only).

Import these through :mod:`sdfleet.agent.contract`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sdfleet.agent.contract_base import (
    MAX_NAME_CHARS,
    MAX_URL_CHARS,
    ContractError,
    check_string,
    optional_string,
    short,
    type_name,
)
from sdfleet.agent.contract_content import SDWEBUI, validate_content
from sdfleet.agent.contract_limits import Limits
from sdfleet.agent.contract_model import (
    RuntimeInfo,
    Task,
    TaskMetadata,
    check_context,
    check_tasktype,
    new_task_id,
    normalise_prefix,
    validate_task_id,
)

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


def _image_links(value: Any, path: str, limits: Limits) -> list[str]:
    """Legacy ``image_link``: a comma-separated string of URLs (or, leniently, a list), at most
    ``limits.max_inputs`` of at most :data:`MAX_URL_CHARS` characters each."""
    if isinstance(value, str):
        links = [link.strip() for link in value.split(",") if link.strip()]
    elif isinstance(value, list) and all(isinstance(link, str) for link in value):
        links = [link.strip() for link in value if link.strip()]
    else:
        raise ContractError("invalid_type", "must be a comma-separated string of image URLs", path)
    if not links:
        raise ContractError("invalid_type", "must name at least one image URL", path)
    for link in links:
        check_string(link, path, MAX_URL_CHARS)
    if len(links) > limits.max_inputs:
        raise ContractError(
            "over_limit",
            f"{len(links)} image URLs is over this runtime's limit of {limits.max_inputs} "
            "(limits.maxInputs)",
            path,
        )
    return links


def _translate_legacy_content(
    body: dict[str, Any], scripts: dict[str, Any], tasktype: str, checkpoint: str, limits: Limits
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
            f"must be an object, got {type_name(body_override)}",
            "override_settings",
        )
    override = dict(body_override or {})
    vae = optional_string(scripts, "sd_vae", "alwayson_scripts", MAX_NAME_CHARS)
    if vae is not None:
        override["sd_vae"] = vae
    legacy_override = scripts.get("override_settings")
    if legacy_override is not None:
        if not isinstance(legacy_override, dict):
            raise ContractError(
                "invalid_type",
                f"must be an object, got {type_name(legacy_override)}",
                "alwayson_scripts.override_settings",
            )
        override.update(legacy_override)
    # The routing checkpoint wins, so a dynamic runtime loads the model the request was routed by.
    override["sd_model_checkpoint"] = checkpoint
    content["override_settings"] = override
    if scripts.get("image_link") is not None:
        links = _image_links(scripts["image_link"], "alwayson_scripts.image_link", limits)
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
            "invalid_type", f"the body must be a JSON object, got {type_name(body)}", None
        )
    scripts = body.get("alwayson_scripts")
    if not isinstance(scripts, dict):
        raise ContractError(
            "missing_field",
            "v1alpha1 needs alwayson_scripts with task and sd_model_checkpoint",
            "alwayson_scripts",
        )
    checkpoint = optional_string(scripts, "sd_model_checkpoint", "alwayson_scripts", MAX_NAME_CHARS)
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
            f"no sdwebui runtime serves {short(checkpoint)} and none loads models "
            f"dynamically; served: {served or 'none'}",
            "alwayson_scripts.sd_model_checkpoint",
        )
    tasktype = scripts.get("task", "text-to-image")
    tasktype = check_tasktype(runtime, tasktype, "alwayson_scripts.task")
    raw_id = scripts.get("id_task")
    task_id = (
        new_task_id() if raw_id is None else validate_task_id(raw_id, "alwayson_scripts.id_task")
    )
    prefix = normalise_prefix(scripts.get("save_dir"), "alwayson_scripts.save_dir")
    context = check_context(scripts.get("uid"), "alwayson_scripts.uid")
    translated = _translate_legacy_content(body, scripts, tasktype, checkpoint, runtime.limits)
    try:
        content = validate_content(runtime.type, tasktype, translated, "body", runtime.limits)
    except ContractError as exc:
        field = exc.field[len("body.") :] if exc.field and exc.field.startswith("body.") else None
        raise ContractError(exc.code, exc.message, field or exc.field, exc.status) from None
    metadata = TaskMetadata(
        id=task_id,
        runtime=runtime.name,
        tasktype=tasktype,
        prefix=prefix,
        context=context,
    )
    return Task(metadata=metadata, content=content, api_version="v1alpha1")
