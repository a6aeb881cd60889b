"""The ComfyUI API surface the fake serves: node specs, queue items, error bodies, events."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

SAMPLERS = ["euler", "euler_ancestral", "heun", "dpm_2", "dpmpp_2m", "dpmpp_sde", "ddim", "uni_pc", "lcm"]  # fmt: skip

SCHEDULERS = ["normal", "karras", "exponential", "sgm_uniform", "simple", "ddim_uniform", "beta"]

DEFAULT_CHECKPOINTS = ("v1-5-pruned-emaonly.safetensors", "sd_xl_base_1.0.safetensors")

MAX_UPLOAD = 100 * 1024 * 1024

OOM_TIPS = (
    "Allocation on device \nThis error means you ran out of memory on your GPU.\n\n"
    "TIPS: If the workflow worked before you might have accidentally set the batch_size to a "
    "large number."
)

SENSITIVE_EXTRA = ("auth_token_comfy_org", "api_key_comfy_org")

FILE_TYPES = ("output", "input", "temp")


# class_type -> (required inputs, return types, output_node). A spec is (TYPE, options) where
# TYPE is a string or a combo list; "CKPT" and "INPUT_FILES" are filled in at runtime.
_INT = "INT"

NODE_SPECS: dict[str, tuple[dict[str, tuple[Any, dict[str, Any]]], list[str], bool]] = {
    "CheckpointLoaderSimple": ({"ckpt_name": ("CKPT", {})}, ["MODEL", "CLIP", "VAE"], False),
    "CLIPTextEncode": (
        {"text": ("STRING", {"multiline": True}), "clip": ("CLIP", {})},
        ["CONDITIONING"],
        False,
    ),
    "EmptyLatentImage": (
        {
            "width": (_INT, {"default": 512, "min": 16, "max": 16384, "step": 8}),
            "height": (_INT, {"default": 512, "min": 16, "max": 16384, "step": 8}),
            "batch_size": (_INT, {"default": 1, "min": 1, "max": 4096}),
        },
        ["LATENT"],
        False,
    ),
    "KSampler": (
        {
            "model": ("MODEL", {}),
            "seed": (_INT, {"default": 0, "min": 0, "max": 0xFFFFFFFFFFFFFFFF}),
            "steps": (_INT, {"default": 20, "min": 1, "max": 10000}),
            "cfg": ("FLOAT", {"default": 8.0, "min": 0.0, "max": 100.0}),
            "sampler_name": (SAMPLERS, {}),
            "scheduler": (SCHEDULERS, {}),
            "positive": ("CONDITIONING", {}),
            "negative": ("CONDITIONING", {}),
            "latent_image": ("LATENT", {}),
            "denoise": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 1.0}),
        },
        ["LATENT"],
        False,
    ),
    "VAEDecode": ({"samples": ("LATENT", {}), "vae": ("VAE", {})}, ["IMAGE"], False),
    "VAEEncode": ({"pixels": ("IMAGE", {}), "vae": ("VAE", {})}, ["LATENT"], False),
    "SaveImage": (
        {"images": ("IMAGE", {}), "filename_prefix": ("STRING", {"default": "ComfyUI"})},
        [],
        True,
    ),
    "PreviewImage": ({"images": ("IMAGE", {})}, [], True),
    "LoadImage": ({"image": ("INPUT_FILES", {"image_upload": True})}, ["IMAGE", "MASK"], False),
}


@dataclass(order=True)
class QueueItem:
    number: float
    seq: int
    prompt_id: str = field(compare=False)
    graph: dict[str, Any] = field(compare=False)
    extra_data: dict[str, Any] = field(compare=False)
    outputs: list[str] = field(compare=False)
    client_id: str | None = field(compare=False)
    submitted: float = field(default=0.0, compare=False)  # monotonic time of the POST

    def wire(self) -> list[Any]:
        return [self.number, self.prompt_id, self.graph, self.extra_data, self.outputs]


class Interrupted(Exception):
    pass


class Failed(Exception):
    pass


def now_ms() -> int:
    return int(time.time() * 1000)


def comfy_error(
    typ: str, message: str, details: str = "", extra: dict[str, Any] | None = None
) -> dict[str, Any]:
    return {"type": typ, "message": message, "details": details, "extra_info": extra or {}}


def empty_response(status: int = 200) -> web.Response:
    return web.Response(status=status)


def progress_state(pid: str, nid: str, value: int, max_: int, state: str) -> dict[str, Any]:
    return {
        "prompt_id": pid,
        "nodes": {
            nid: {"value": value, "max": max_, "state": state, "node_id": nid, "prompt_id": pid,
                  "display_node_id": nid, "parent_node_id": None, "real_node_id": nid}
        },
    }  # fmt: skip


def strip_annotation(name: str) -> tuple[str, str | None]:
    """``"x.png [output]"`` -> ("x.png", "output")."""
    for typ in FILE_TYPES:
        suffix = f" [{typ}]"
        if name.endswith(suffix):
            return name[: -len(suffix)], typ
    return name, None
