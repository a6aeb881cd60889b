"""The SD WebUI API surface the fake serves: constants, request fields, replies and errors."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from sdfleet.fakes._validate import F

API = "/sdapi/v1/"
GENERATION_ROUTES = ("txt2img", "img2img", "extra-single-image", "extra-batch-images")
MODELS_DIR = "/stable-diffusion-webui/models/Stable-diffusion/"
VERSION = "v1.10.1"

SAMPLERS = (
    "DPM++ 2M", "DPM++ SDE", "DPM++ 2M SDE", "DPM++ 2M SDE Heun", "DPM++ 2S a", "DPM++ 3M SDE",
    "Euler a", "Euler", "LMS", "Heun", "DPM2", "DPM2 a", "DPM fast", "DPM adaptive", "Restart",
    "DDIM", "DDIM CFG++", "PLMS", "UniPC", "LCM",
)  # fmt: skip
SCHEDULERS = (
    "Automatic", "Uniform", "Karras", "Exponential", "Polyexponential", "SGM Uniform",
    "KL Optimal", "Align Your Steps", "Simple", "Normal", "DDIM", "Beta",
)  # fmt: skip
UPSCALERS = ("None", "Lanczos", "Nearest", "ESRGAN_4x", "LDSR", "R-ESRGAN 4x+", "SwinIR 4x")
ALWAYSON_SCRIPTS = (
    "ControlNet", "Refiner", "Seed", "Sampler", "Extra options", "Soft Inpainting", "Hypertile",
)  # fmt: skip
SELECTABLE_SCRIPTS = ("prompt matrix", "prompts from file or textbox", "x/y/z plot")
DEFAULT_MODELS = (
    "v1-5-pruned-emaonly.safetensors",
    "sd_xl_base_1.0.safetensors",
    "anime/dreamshaper_8.safetensors",
)
OOM_MESSAGE = (
    "CUDA out of memory. Tried to allocate 2.00 GiB (GPU 0; 14.58 GiB total capacity; "
    "11.20 GiB already allocated; 1.05 GiB free)"
)

_COMMON = [
    F("prompt", "str", ""),
    F("negative_prompt", "str", ""),
    F("styles", "list[str]", None),
    F("seed", "int", -1),
    F("subseed", "int", -1),
    F("subseed_strength", "float", 0.0),
    F("seed_resize_from_h", "int", -1),
    F("seed_resize_from_w", "int", -1),
    F("sampler_name", "str", None),
    F("scheduler", "str", None),
    F("batch_size", "int", 1),
    F("n_iter", "int", 1),
    F("steps", "int", 50),
    F("cfg_scale", "float", 7.0),
    F("width", "int", 512),
    F("height", "int", 512),
    F("restore_faces", "bool", None),
    F("tiling", "bool", None),
    F("do_not_save_samples", "bool", False),
    F("do_not_save_grid", "bool", False),
    F("eta", "float", None),
    F("denoising_strength", "float", 0.75),
    F("s_min_uncond", "float", None),
    F("s_churn", "float", None),
    F("s_tmax", "float", None),
    F("s_tmin", "float", None),
    F("s_noise", "float", None),
    F("override_settings", "dict", None),
    F("override_settings_restore_afterwards", "bool", True),
    F("refiner_checkpoint", "str", None),
    F("refiner_switch_at", "float", None),
    F("disable_extra_networks", "bool", False),
    F("comments", "dict", None),
    F("sampler_index", "str", "Euler"),
    F("script_name", "str", None),
    F("script_args", "list", []),
    F("send_images", "bool", True),
    F("save_images", "bool", False),
    F("alwayson_scripts", "dict", {}),
    F("force_task_id", "str", None),
    F("infotext", "str", None),
]
TXT2IMG_FIELDS = [
    *_COMMON,
    F("enable_hr", "bool", False),
    F("firstphase_width", "int", 0),
    F("firstphase_height", "int", 0),
    F("hr_scale", "float", 2.0),
    F("hr_upscaler", "str", None),
    F("hr_second_pass_steps", "int", 0),
    F("hr_resize_x", "int", 0),
    F("hr_resize_y", "int", 0),
    F("hr_checkpoint_name", "str", None),
    F("hr_sampler_name", "str", None),
    F("hr_scheduler", "str", None),
    F("hr_prompt", "str", ""),
    F("hr_negative_prompt", "str", ""),
]
IMG2IMG_FIELDS = [
    *_COMMON,
    F("init_images", "list", None),
    F("resize_mode", "int", 0),
    F("image_cfg_scale", "float", None),
    F("mask", "str", None),
    F("mask_blur_x", "int", 4),
    F("mask_blur_y", "int", 4),
    F("mask_blur", "int", None),
    F("inpainting_fill", "int", 0),
    F("inpaint_full_res", "bool", True),
    F("inpaint_full_res_padding", "int", 0),
    F("inpainting_mask_invert", "int", 0),
    F("initial_noise_multiplier", "float", None),
    F("latent_mask", "str", None),
    F("include_init_images", "bool", False),
]
_EXTRAS = [
    F("resize_mode", "int", 0, choices=(0, 1)),
    F("show_extras_results", "bool", True),
    F("gfpgan_visibility", "float", 0.0, ge=0, le=1),
    F("codeformer_visibility", "float", 0.0, ge=0, le=1),
    F("codeformer_weight", "float", 0.0, ge=0, le=1),
    F("upscaling_resize", "float", 2.0, ge=1, le=8),
    F("upscaling_resize_w", "int", 512, ge=1),
    F("upscaling_resize_h", "int", 512, ge=1),
    F("upscaling_crop", "bool", True),
    F("upscaler_1", "str", "None"),
    F("upscaler_2", "str", "None"),
    F("extras_upscaler_2_visibility", "float", 0.0, ge=0, le=1),
    F("upscale_first", "bool", False),
]
EXTRA_SINGLE_FIELDS = [*_EXTRAS, F("image", "str", "")]
EXTRA_BATCH_FIELDS = [*_EXTRAS, F("imageList", "items", [])]
PNG_INFO_FIELDS = [F("image", "str", "")]


@dataclass
class Reply:
    status: int
    body: bytes
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)


class HTTPError(Exception):
    """Raised by a route to answer with A1111's four-key error body."""

    def __init__(self, status: int, error: str, detail: str = "", errors: str = "") -> None:
        super().__init__(detail or errors)
        self.status = status
        self.body = {"error": error, "detail": detail, "body": "", "errors": errors}


def four_key(status: int, detail: str) -> HTTPError:
    return HTTPError(status, "HTTPException", detail, "")


def json_bytes(obj: Any) -> bytes:
    return json.dumps(obj).encode()


class Unprocessable(Exception):
    def __init__(self, errors: list[dict[str, Any]]) -> None:
        super().__init__("422")
        self.errors = errors

    def reply(self) -> Reply:
        return Reply(422, json_bytes({"detail": self.errors}))


def route_name(path: str) -> str:
    """The route under ``/sdapi/v1/`` ("" for any other path)."""
    return path[len(API) :] if path.startswith(API) else ""
