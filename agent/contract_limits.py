"""Per-runtime work limits (steps, pixels, images, inputs), shared by the API and the agent.

Standard library only. :class:`Limits` travels in ``RUNTIMES`` (API Lambda) and in the agent's
runtime settings; :func:`check_sdwebui` and :func:`check_comfy_node` enforce it on task content.
Numbers may be JSON numbers or numeric strings (SD WebUI and ComfyUI both coerce strings), so
both are checked; booleans, non-finite and negative values are refused.
"""

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from sdfleet.agent.contract_base import MAX_URL_CHARS, ContractError, child_path, short, type_name

# Sides above this are refused whatever the pixel limit (ComfyUI's own MAX_RESOLUTION).
MAX_SIDE = 16384
# As the agent recognises URLs: a scheme it fetches and no whitespace (so prose is not a URL).
_URL = re.compile(r"^(https?|s3)://\S+\Z", re.IGNORECASE)
# How pydantic (SD WebUI's request models) reads a boolean given as a string.
_TRUE_STRINGS = frozenset({"1", "true", "t", "yes", "y", "on"})
# Keys of an sdwebui ControlNet unit that hold an image (or an {image, mask} object).
_CONTROLNET_IMAGE_KEYS = ("image", "input_image", "mask", "mask_image")


@dataclass(frozen=True)
class Limits:
    """Work one task may ask of a runtime. JSON keys: maxSteps, maxPixels, maxImages,
    maxInputs (pixels per image; images per task; input images or URLs per task)."""

    max_steps: int = 150
    max_pixels: int = 2048 * 2048
    max_images: int = 8
    max_inputs: int = 8

    def __post_init__(self) -> None:
        for item in fields(self):
            _check_limit(getattr(self, item.name), _JSON_KEYS[item.name])

    def to_json(self) -> dict[str, int]:
        return {_JSON_KEYS[item.name]: getattr(self, item.name) for item in fields(self)}

    @classmethod
    def from_json(cls, data: Any) -> "Limits":
        """Missing keys take the defaults; ``ValueError`` names the bad key."""
        if data is None:
            return cls()
        if not isinstance(data, Mapping):
            raise ValueError(f"limits: must be an object, got {type_name(data)}")
        by_key = {key: name for name, key in _JSON_KEYS.items()}
        unknown = sorted(str(k) for k in data if k not in by_key)
        if unknown:
            raise ValueError(
                f"limits.{unknown[0]}: unknown key; allowed: {', '.join(_JSON_KEYS.values())}"
            )
        return cls(**{by_key[key]: value for key, value in data.items()})


_JSON_KEYS = {
    "max_steps": "maxSteps",
    "max_pixels": "maxPixels",
    "max_images": "maxImages",
    "max_inputs": "maxInputs",
}


def _check_limit(value: Any, key: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"limits.{key}: must be a positive integer, got {short(value)}")


def _over(path: str, what: str, limit: int, key: str) -> ContractError:
    return ContractError(
        "over_limit", f"{what} is over this runtime's limit of {limit} (limits.{key})", path
    )


def number(value: Any, path: str, minimum: float, *, lenient: bool = False) -> float | int | None:
    """A finite number >= ``minimum`` from a JSON number or a numeric string. ``lenient``:
    anything else is not ours to judge (None); otherwise it is a 400."""
    parsed: float | int | None = None
    if isinstance(value, bool):
        parsed = None
    elif isinstance(value, (int, float)):
        parsed = value
    elif isinstance(value, str):
        parsed = _numeric_string(value)
    if parsed is None:
        if lenient:
            return None
        raise ContractError("invalid_type", f"must be a number, got {type_name(value)}", path)
    if isinstance(parsed, float) and not math.isfinite(parsed):
        raise ContractError("invalid_number", f"must be a finite number, got {short(value)}", path)
    if parsed < minimum:
        raise ContractError(
            "invalid_number", f"{short(value)} is below the minimum {minimum}", path
        )
    return parsed


def _numeric_string(text: str) -> float | int | None:
    """The number a server would read from ``text`` (ComfyUI and pydantic call int()/float()),
    whatever its length: leading zeros must not hide a large value. Python's int() refuses
    over 4300 digits; float() reads any length (and overflows to inf, refused later)."""
    text = text.strip()
    try:
        return int(text) if text.lstrip("+-").isdigit() else float(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        return None


def check_steps(value: Any, path: str, limits: Limits, minimum: float = 1) -> None:
    steps = number(value, path, minimum)
    if steps is not None and steps > limits.max_steps:
        raise _over(path, short(value), limits.max_steps, "maxSteps")


def check_size(width: float, height: float, path: str, limits: Limits) -> None:
    for side in (width, height):
        if side > MAX_SIDE:
            raise ContractError(
                "invalid_number", f"{short(side)} pixels is over the maximum side {MAX_SIDE}", path
            )
    pixels = width * height
    if pixels > limits.max_pixels:
        raise _over(
            path,
            f"{short(width)}x{short(height)} = {short(pixels)} pixels",
            limits.max_pixels,
            "maxPixels",
        )


def check_images(count: float, path: str, what: str, limits: Limits) -> None:
    if count > limits.max_images:
        raise _over(path, what, limits.max_images, "maxImages")


def check_inputs(slots: list[tuple[str, Any]], limits: Limits) -> None:
    """``slots``: (path, value) of every input image; URLs are also length-capped."""
    for path, value in slots:
        if isinstance(value, str) and _URL.match(value) and len(value) > MAX_URL_CHARS:
            raise ContractError(
                "too_long",
                f"a URL of {len(value)} characters; at most {MAX_URL_CHARS} are allowed",
                path,
            )
    if len(slots) > limits.max_inputs:
        raise _over(
            slots[limits.max_inputs][0],
            f"{len(slots)} input images",
            limits.max_inputs,
            "maxInputs",
        )


def is_url(value: Any) -> bool:
    return isinstance(value, str) and bool(_URL.match(value))


# --------------------------------------------------------------------------------------------
# SD WebUI


# (container, key, field path relative to the content) of one image in a task.
Slot = tuple[Any, Any, str]


def sdwebui_image_slots(content: Mapping[str, Any]) -> list[Slot]:
    """Every place an sdwebui task carries an image: init images, mask, single image, batch
    items and ControlNet unit images (also ``{image, mask}`` objects). The agent inlines the
    URLs it finds here; the API counts the non-empty ones as input images."""
    slots: list[Slot] = []
    images = content.get("init_images")
    if isinstance(images, list):
        slots.extend((images, i, f"init_images[{i}]") for i in range(len(images)))
    slots.extend((content, key, key) for key in ("mask", "image") if key in content)
    items = content.get("imageList")
    if isinstance(items, list):
        slots.extend(
            (item, "data", f"imageList[{i}].data")
            for i, item in enumerate(items)
            if isinstance(item, dict) and "data" in item
        )
    scripts = content.get("alwayson_scripts")
    if isinstance(scripts, dict):
        for name, script in scripts.items():
            if isinstance(name, str) and name.lower() == "controlnet":
                args = script.get("args") if isinstance(script, dict) else None
                base = child_path("alwayson_scripts", name)
                for u, unit in enumerate(args if isinstance(args, list) else []):
                    if isinstance(unit, dict):
                        slots.extend(_unit_slots(unit, f"{base}.args[{u}]"))
    return slots


def _unit_slots(unit: dict[str, Any], path: str) -> list[Slot]:
    slots: list[Slot] = []
    for key in _CONTROLNET_IMAGE_KEYS:
        value = unit.get(key)
        if isinstance(value, dict):
            slots.extend((value, k, f"{path}.{key}.{k}") for k in ("image", "mask") if k in value)
        elif key in unit:
            slots.append((unit, key, f"{path}.{key}"))
    return slots


def sdwebui_input_slots(content: Mapping[str, Any], path: str) -> list[tuple[str, Any]]:
    """(field path, value) of every non-empty image of the task, as counted against
    ``maxInputs``."""
    return [
        (f"{path}.{where}", container[key])
        for container, key, where in sdwebui_image_slots(content)
        if container[key]
    ]


def check_sdwebui(content: Mapping[str, Any], path: str, limits: Limits) -> None:
    """Steps (and hires steps), size (and hires size), images per task, input images."""
    if "steps" in content:
        check_steps(content["steps"], f"{path}.steps", limits)
    if content.get("hr_second_pass_steps") is not None:  # 0: as many as the first pass
        check_steps(content["hr_second_pass_steps"], f"{path}.hr_second_pass_steps", limits, 0)
    width = _dimension(content, "width", path)
    height = _dimension(content, "height", path)
    check_size(width, height, f"{path}.width", limits)
    if pydantic_true(content.get("enable_hr")):
        check_size(*_hires_size(content, width, height, path), f"{path}.hr_scale", limits)
    batch = _count(content, "batch_size", path)
    iterations = _count(content, "n_iter", path)
    check_images(
        batch * iterations,
        f"{path}.batch_size",
        f"batch_size {short(batch)} x n_iter {short(iterations)} = {short(batch * iterations)} "
        "images",
        limits,
    )
    check_inputs(sdwebui_input_slots(content, path), limits)


def check_extras(content: Mapping[str, Any], path: str, limits: Limits) -> None:
    """Extras with ``resize_mode`` 1 resize to ``upscaling_resize_w`` x ``_h`` (default 512).
    (Mode 0 scales the input by ``upscaling_resize``, at most 8 on the server; the input's
    own size is not known here.)"""
    mode = content.get("resize_mode")
    # pydantic reads Literal[0, 1] by dict lookup, so true is 1 there too.
    if mode is not True and number(mode, f"{path}.resize_mode", 0, lenient=True) != 1:
        return
    width = _dimension(content, "upscaling_resize_w", path)
    height = _dimension(content, "upscaling_resize_h", path)
    check_size(width, height, f"{path}.upscaling_resize_w", limits)


def pydantic_true(value: Any) -> bool:
    """A boolean as SD WebUI's request models (pydantic) read it."""
    if isinstance(value, str):
        return value.strip().lower() in _TRUE_STRINGS
    return isinstance(value, (bool, int, float)) and bool(value)


def _dimension(content: Mapping[str, Any], key: str, path: str) -> float:
    """A side in pixels; SD WebUI's default is 512."""
    if content.get(key) is None:
        return 512
    value = number(content[key], f"{path}.{key}", 1)
    return value if value is not None else 512


def _count(content: Mapping[str, Any], key: str, path: str) -> float:
    if content.get(key) is None:
        return 1
    value = number(content[key], f"{path}.{key}", 1)
    return value if value is not None else 1


def _hires_size(
    content: Mapping[str, Any], width: float, height: float, path: str
) -> tuple[float, float]:
    """The second pass's size: hr_resize_x/y when set (one of them keeps the aspect ratio),
    else width and height times hr_scale (default 2)."""
    scale = _side(content.get("hr_scale"), f"{path}.hr_scale", 2)
    rx = _side(content.get("hr_resize_x"), f"{path}.hr_resize_x", 0)
    ry = _side(content.get("hr_resize_y"), f"{path}.hr_resize_y", 0)
    if rx and ry:
        return rx, ry
    if rx:
        return rx, rx * height / width
    if ry:
        return ry * width / height, ry
    return width * scale, height * scale


def _side(value: Any, path: str, default: float) -> float:
    """A non-negative size or factor, bounded before any arithmetic (no float overflow)."""
    parsed = default if value is None else number(value, path, 0) or 0
    if parsed > MAX_SIDE:
        raise ContractError(
            "invalid_number", f"{short(value)} is over the maximum {MAX_SIDE}", path
        )
    return parsed


# --------------------------------------------------------------------------------------------
# ComfyUI


@dataclass
class ComfyTotals:
    """What a whole workflow asks for, accumulated node by node."""

    images: float = 0
    steps: float = 0
    inputs: list[tuple[str, Any]] = field(default_factory=list)


def check_comfy_node(
    class_type: str, inputs: Mapping[str, Any], path: str, limits: Limits, totals: ComfyTotals
) -> None:
    """Pragmatic: any node's numeric ``steps`` (summed over the workflow: each sampler node
    is another pass), ``width`` x ``height`` and ``batch_size`` (summed as images); links and
    non-numeric strings are left to ComfyUI. LoadImage* nodes and URL-valued inputs count as
    input images."""
    steps = number(inputs.get("steps"), f"{path}.steps", 0, lenient=True)
    if steps is not None:
        totals.steps += steps
        if totals.steps > limits.max_steps:
            raise _over(
                f"{path}.steps",
                f"{short(totals.steps)} steps in this workflow",
                limits.max_steps,
                "maxSteps",
            )
    width = number(inputs.get("width"), f"{path}.width", 0, lenient=True)
    height = number(inputs.get("height"), f"{path}.height", 0, lenient=True)
    if width is not None or height is not None:
        check_size(width or 0, height or 0, f"{path}.width", limits)
    batch = number(inputs.get("batch_size"), f"{path}.batch_size", 0, lenient=True)
    if batch is not None:
        totals.images += batch
        check_images(
            totals.images,
            f"{path}.batch_size",
            f"{short(totals.images)} images in this workflow",
            limits,
        )
    found = totals.inputs
    if class_type.startswith("LoadImage") and isinstance(inputs.get("image"), str):
        found.append((f"{path}.image", inputs["image"]))
    found.extend(
        (child_path(path, key), value)
        for key, value in inputs.items()
        if is_url(value) and not (class_type.startswith("LoadImage") and key == "image")
    )
    check_inputs(found, limits)
