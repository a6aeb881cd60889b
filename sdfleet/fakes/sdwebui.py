"""A faithful fake of the AUTOMATIC1111 SD WebUI API (``/sdapi/v1``) for the queue agent's tests.

Follows /work/shared/reference/inference-apis.md sections A and D.1. Stdlib ``http.server``
(one thread per connection, HTTP/1.1 keep-alive) so it starts and stops in milliseconds.

Usage::

    with FakeSdWebUI(inference_seconds=0.05) as srv:
        httpx.post(srv.url + "/sdapi/v1/txt2img", json={"prompt": "a cat"})
        srv.generation_calls()[0].body["prompt"]

Constructor knobs:

- ``inference_seconds``: wall time of one generation job (split over ``n_iter`` batches).
- ``port``: 0 picks a free port (at ``start()``, or when ``url`` is read first).
- ``models``: checkpoint names relative to the models folder (``"sub/x.safetensors"``) or
  :class:`FakeModel` objects; default three models. ``unhashed_models``: names whose sha256 is
  not known yet, so their title has no `` [hash]`` suffix until they are loaded.
- ``loaded_model``: alias of the checkpoint loaded at start (default: the first).
  ``model_loaded_at_start=False``: the first job pays ``load_seconds`` (background load).
- ``ready``: False means the ``/sdapi`` routes answer 404 ``{"detail":"Not Found"}`` while ``/``
  answers 200 (UI-mode startup phase); flip with ``set_ready(True)``.
- ``image_size``: ``(w, h)`` of every generated image; None (default) uses the request's size.
- ``load_seconds``: time a checkpoint switch holds the queue lock.
- ``api_auth``: ``("user", "pass")`` turns on ``--api-auth`` Basic auth (401 four-key body).
- ``allow_url_images``: False (default) answers 500 "Requests not allowed" for http(s) image
  inputs, so a test catches an agent that forgot to inline them.

Runtime knobs and observations:

- ``calls`` (list of :class:`Call`), ``generation_calls()``, ``wait_for_calls(suffix, n, timeout)``
- ``jobs`` (list of :class:`Job`, one per GPU run), ``wait_for_jobs(n, timeout)``
- ``generation_started`` (Event set when a job starts), ``wait_generation_started(timeout, n)``
- ``fail_next(status, body=None, count=1, path_suffix=None)``: None targets the generation
  routes (the fault fires once the job holds the lock); a suffix targets any route at arrival.
- ``hang_next(count=1)``: the next job(s) run until ``interrupt`` or ``release()``.
- ``drop_next(count=1, path_suffix=None)``: run the job, then send half the response and close
  the connection (the Call gets ``status == -1``).
- ``options`` holds a subset of the real settings; POST ``options`` with a key it lacks gives
  500 ``KeyError`` like upstream, so add keys to ``srv.options`` if a test needs them.
  ``override_settings`` keys it lacks are ignored.
- ``set_ready(bool)``, ``load_fails`` (a checkpoint switch logs and keeps the old model, still
  200 ``null``), ``interrupts`` / ``skips`` (counts), ``model_loads`` (names loaded, in order),
  ``add_model(name)`` (visible after ``refresh-checkpoints``), ``options`` (the live settings).

Images are PNGs from :func:`sdfleet.fakes.images.make_png` seeded with each image's seed and
carrying the infotext in a ``parameters`` chunk. ``samples_format`` other than png is not
emulated.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import copy
import hashlib
import json
import math
import random
import socket
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from sdfleet.fakes._common import Call, CallLog, free_port
from sdfleet.fakes._validate import F, validate_body
from sdfleet.fakes.images import make_png, png_size, png_text, sniff_image_type

__all__ = ["Call", "FakeModel", "FakeSdWebUI", "Job"]

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
class FakeModel:
    """A checkpoint file. ``name`` is relative to the models folder, with its extension."""

    name: str
    hashed: bool = True

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.name.encode()).hexdigest()

    @property
    def shorthash(self) -> str:
        return self.sha256[:10]

    @property
    def legacy_hash(self) -> str:
        return hashlib.sha256(b"legacy:" + self.name.encode()).hexdigest()[:8]

    @property
    def stem(self) -> str:
        base = self.name.rsplit("/", 1)[-1]
        return base.rsplit(".", 1)[0]

    @property
    def model_name(self) -> str:
        return self.name.rsplit(".", 1)[0].replace("/", "_").replace("\\", "_")

    @property
    def title(self) -> str:
        return f"{self.name} [{self.shorthash}]" if self.hashed else self.name

    def aliases(self) -> set[str]:
        out = {self.title, self.name, self.model_name, self.stem, self.legacy_hash}
        if self.hashed:
            out |= {self.shorthash, self.sha256, f"{self.name} [{self.shorthash}]"}
        return out

    def item(self) -> dict[str, Any]:
        return {
            "title": self.title,
            "model_name": self.model_name,
            "hash": self.shorthash if self.hashed else None,
            "sha256": self.sha256 if self.hashed else None,
            "filename": MODELS_DIR + self.name,
            "config": None,
        }


@dataclass
class Job:
    """One run on the fake GPU (a generation route that got the queue lock)."""

    route: str
    started: float
    ended: float | None = None
    interrupted: bool = False
    failed: int | None = None
    images: int = 0
    seeds: list[int] = field(default_factory=list)
    model: str | None = None


@dataclass
class _Reply:
    status: int
    body: bytes
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class _Fault:
    status: int
    body: Any
    remaining: int
    path_suffix: str | None


class _HTTPError(Exception):
    """Raised by a route to answer with A1111's four-key error body."""

    def __init__(self, status: int, error: str, detail: str = "", errors: str = "") -> None:
        super().__init__(detail or errors)
        self.status = status
        self.body = {"error": error, "detail": detail, "body": "", "errors": errors}


def _four_key(status: int, detail: str) -> _HTTPError:
    return _HTTPError(status, "HTTPException", detail, "")


def _json_bytes(obj: Any) -> bytes:
    return json.dumps(obj).encode()


class _QueueLock:
    """A1111's queue lock: waiters block with their connection open; ``stop`` wakes them."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._held = False
        self.waiting = 0
        self.closed = False

    def acquire(self) -> bool:
        with self._cond:
            self.waiting += 1
            try:
                while self._held and not self.closed:
                    self._cond.wait()
                if self.closed:
                    return False
                self._held = True
                return True
            finally:
                self.waiting -= 1

    def release(self) -> None:
        with self._cond:
            self._held = False
            self._cond.notify_all()

    def close(self) -> None:
        with self._cond:
            self.closed = True
            self._cond.notify_all()


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    # Keep-alive connections would make server_close() wait forever for their threads.
    block_on_close = False
    allow_reuse_address = True
    request_queue_size = 128  # the default backlog of 5 stalls bursts of connections
    fake: FakeSdWebUI


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def setup(self) -> None:
        super().setup()
        # Headers and body go out in two writes; Nagle + delayed ACK would add ~40 ms.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.server.fake._track(self.connection, True)

    def finish(self) -> None:
        with contextlib.suppress(OSError):
            super().finish()
        self.server.fake._track(self.connection, False)

    def do_GET(self) -> None:
        self.server.fake._dispatch(self, "GET")

    def do_POST(self) -> None:
        self.server.fake._dispatch(self, "POST")

    def do_PUT(self) -> None:
        self.server.fake._dispatch(self, "PUT")

    def do_DELETE(self) -> None:
        self.server.fake._dispatch(self, "DELETE")

    def do_PATCH(self) -> None:
        self.server.fake._dispatch(self, "PATCH")


class FakeSdWebUI:
    """See the module docstring for the knobs."""

    def __init__(
        self,
        inference_seconds: float = 0.2,
        port: int = 0,
        models: Iterable[str | FakeModel] | None = None,
        loaded_model: str | None = None,
        ready: bool = True,
        image_size: tuple[int, int] | None = None,
        *,
        load_seconds: float = 0.0,
        unhashed_models: Iterable[str] = (),
        model_loaded_at_start: bool = True,
        api_auth: tuple[str, str] | None = None,
        allow_url_images: bool = False,
        host: str = "127.0.0.1",
    ) -> None:
        self.inference_seconds = inference_seconds
        self.load_seconds = load_seconds
        self.image_size = image_size
        self.api_auth = api_auth
        self.allow_url_images = allow_url_images
        self.host = host
        self.port = port
        self.load_fails = False

        unhashed = set(unhashed_models)
        self._disk: list[FakeModel] = []
        for m in models if models is not None else DEFAULT_MODELS:
            model = m if isinstance(m, FakeModel) else FakeModel(m, hashed=m not in unhashed)
            self._disk.append(model)
        if not self._disk:
            raise ValueError("FakeSdWebUI: models must name at least one checkpoint")
        self._models = list(self._disk)

        self.calls_log = CallLog()
        self.jobs: list[Job] = []
        self.interrupts = 0
        self.skips = 0
        self.model_loads: list[str] = []
        self.generation_started = threading.Event()

        self._mu = threading.RLock()  # guards state below (never held while sleeping)
        self._jobs_cond = threading.Condition(self._mu)
        self._queue = _QueueLock()
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._ready = ready
        self._faults: list[_Fault] = []
        self._hangs = 0
        self._drops: list[_Fault] = []
        self._release_epoch = 0
        self._interrupted = False
        self._skipped = False
        self._rng = random.Random(20240601)
        self._job_state: dict[str, Any] | None = None
        self._conns: set[socket.socket] = set()
        self._httpd: _Server | None = None
        self._thread: threading.Thread | None = None

        first = self._disk[0]
        if loaded_model is not None:
            found = self._resolve(loaded_model)
            if found is None:
                raise ValueError(
                    f"FakeSdWebUI: loaded_model={loaded_model!r} matches none of "
                    f"{[m.name for m in self._disk]}"
                )
            first = found
        first.hashed = True  # loading a checkpoint computes its hash
        self._configured = first
        self._loaded: FakeModel | None = first if model_loaded_at_start else None
        self._on_gpu = True
        self.options: dict[str, Any] = {
            "sd_model_checkpoint": first.title,
            "sd_checkpoint_hash": first.sha256,
            "samples_format": "png",
            "return_grid": True,
            "grid_only_if_multiple": True,
            "enable_pnginfo": True,
            "CLIP_stop_at_last_layers": 1,
            "sd_vae": "Automatic",
            "eta_noise_seed_delta": 0,
            "api_enable_requests": True,
            "api_forbid_local_requests": True,
            "sd_checkpoints_limit": 1,
            "sd_checkpoint_cache": 0,
            "jpeg_quality": 80,
            "face_restoration_model": "CodeFormer",
            "samples_save": True,
            "outdir_samples": "",
            "show_progress_every_n_steps": 10,
            "sd_unet": "Automatic",
            "sd_vae_overrides_per_model_preferences": True,
            "eta_ddim": 0.0,
            "eta_ancestral": 1.0,
            "s_noise": 1.0,
            "randn_source": "GPU",
            "token_merging_ratio": 0.0,
            "img2img_color_correction": False,
            "img2img_fix_steps": False,
            "upscaler_for_img2img": None,
            "face_restoration": False,
            "code_former_weight": 0.5,
            "live_previews_enable": True,
            "disable_weights_auto_swap": True,
            "emphasis": "Original",
            "sdxl_refiner_low_aesthetic_score": 2.5,
        }

    # ------------------------------------------------------------------ lifecycle

    @property
    def url(self) -> str:
        if self.port == 0:
            self.port = free_port()
        return f"http://{self.host}:{self.port}"

    @property
    def api_url(self) -> str:
        return self.url + API

    def start(self) -> FakeSdWebUI:
        if self._httpd is not None:
            return self
        httpd = _Server((self.host, self.port), _Handler)
        httpd.fake = self
        self.port = int(httpd.server_address[1])
        self._httpd = httpd
        self._thread = threading.Thread(
            target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        httpd, self._httpd = self._httpd, None
        if httpd is None:
            return
        self._stopping.set()
        self._queue.close()
        self._wake.set()
        httpd.shutdown()
        httpd.server_close()
        with self._mu:
            conns = list(self._conns)
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> FakeSdWebUI:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _track(self, conn: socket.socket, add: bool) -> None:
        with self._mu:
            if add:
                self._conns.add(conn)
            else:
                self._conns.discard(conn)

    # ------------------------------------------------------------------ knobs

    @property
    def calls(self) -> list[Call]:
        return self.calls_log.snapshot()

    def generation_calls(self) -> list[Call]:
        return [c for c in self.calls if _route(c.path) in GENERATION_ROUTES]

    def wait_for_calls(
        self, path_suffix: str, n: int = 1, timeout: float = 5.0, *, completed: bool = False
    ) -> list[Call]:
        return self.calls_log.wait_for_calls(path_suffix, n, timeout, completed=completed)

    def wait_generation_started(self, timeout: float = 5.0, n: int = 1) -> Job:
        """Block until ``n`` jobs have started; returns the n-th."""
        deadline = time.monotonic() + timeout
        with self._jobs_cond:
            while len(self.jobs) < n:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"no generation #{n} started within {timeout}s")
                self._jobs_cond.wait(left)
            return self.jobs[n - 1]

    def wait_for_jobs(self, n: int, timeout: float = 5.0) -> list[Job]:
        """Block until ``n`` jobs have finished on the fake GPU."""
        deadline = time.monotonic() + timeout
        with self._jobs_cond:
            while sum(1 for j in self.jobs if j.ended is not None) < n:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"{n} job(s) not finished within {timeout}s: {self.jobs}")
                self._jobs_cond.wait(left)
            return list(self.jobs)

    def fail_next(
        self,
        status: int,
        body: dict[str, Any] | None = None,
        count: int = 1,
        path_suffix: str | None = None,
    ) -> None:
        """Answer the next ``count`` matching requests with ``status``/``body``. The default body
        is what A1111 sends for that status (500: OutOfMemoryError)."""
        if body is None:
            body = _default_fault_body(status)
        with self._mu:
            self._faults.append(_Fault(status, body, count, path_suffix))

    def hang_next(self, count: int = 1) -> None:
        with self._mu:
            self._hangs += count

    def release(self) -> None:
        """Let hung jobs finish normally."""
        with self._mu:
            self._release_epoch += 1
        self._wake.set()

    def drop_next(self, count: int = 1, path_suffix: str | None = None) -> None:
        with self._mu:
            self._drops.append(_Fault(0, None, count, path_suffix))

    def set_ready(self, ready: bool) -> None:
        with self._mu:
            self._ready = ready

    def add_model(self, name: str, hashed: bool = True) -> FakeModel:
        """Put a checkpoint on 'disk'; ``sd-models`` lists it after ``refresh-checkpoints``."""
        model = FakeModel(name, hashed)
        with self._mu:
            self._disk.append(model)
        return model

    @property
    def loaded_model(self) -> FakeModel | None:
        with self._mu:
            return self._loaded

    @property
    def lock_waiters(self) -> int:
        """Requests currently blocked on the queue lock."""
        return self._queue.waiting

    def gpu_busy_intervals(self) -> list[tuple[float, float]]:
        with self._mu:
            return [(j.started, j.ended) for j in self.jobs if j.ended is not None]

    # ------------------------------------------------------------------ HTTP plumbing

    def _take(self, faults: list[_Fault], path: str, generation: bool) -> _Fault | None:
        with self._mu:
            for f in faults:
                match = (
                    generation
                    if f.path_suffix is None
                    else path.rstrip("/").endswith(f.path_suffix.rstrip("/"))
                )
                if match and f.remaining > 0:
                    f.remaining -= 1
                    if f.remaining == 0:
                        faults.remove(f)
                    return f
        return None

    def _dispatch(self, h: _Handler, method: str) -> None:
        parts = urlsplit(h.path)
        path = parts.path
        query = dict(parse_qsl(parts.query))
        length = int(h.headers.get("Content-Length") or 0)
        raw = h.rfile.read(length) if length else b""
        body: Any = None
        if raw:
            try:
                body = json.loads(raw)
            except ValueError:
                body = raw.decode("utf-8", "replace")
        call = self.calls_log.add(
            Call(
                method=method,
                path=path,
                body=body,
                started=time.monotonic(),
                query=query,
                headers={k.lower(): v for k, v in h.headers.items()},
            )
        )
        t0 = time.perf_counter()
        try:
            reply = self._route(h, method, path, raw, call)
        except _HTTPError as e:
            reply = _Reply(e.status, _json_bytes(e.body))
        except Exception as e:  # the real server turns any exception into a four-key 500
            reply = _Reply(500, _json_bytes(_HTTPError(500, type(e).__name__, "", str(e)).body))
        reply.headers.setdefault("X-Process-Time", f"{time.perf_counter() - t0:.4f}")
        if self._stopping.is_set():  # a stopped server answers nothing
            h.close_connection = True
            with contextlib.suppress(OSError):
                h.connection.shutdown(socket.SHUT_RDWR)
            self.calls_log.finish(call, -1)
            return
        route = _route(path)
        drop = self._take(self._drops, path, route in GENERATION_ROUTES)
        try:
            h.send_response(reply.status)
            h.send_header("Content-Type", reply.content_type)
            h.send_header("Content-Length", str(len(reply.body)))
            for k, v in reply.headers.items():
                h.send_header(k, v)
            h.end_headers()
            if drop is not None:
                h.wfile.write(reply.body[: len(reply.body) // 2])
                h.wfile.flush()
                h.close_connection = True
                with contextlib.suppress(OSError):
                    h.connection.shutdown(socket.SHUT_RDWR)
                self.calls_log.finish(call, -1)
                return
            h.wfile.write(reply.body)
            h.wfile.flush()
        except OSError:
            h.close_connection = True
        self.calls_log.finish(call, reply.status)

    def _check_auth(self, h: _Handler) -> None:
        if self.api_auth is None:
            return
        header = h.headers.get("Authorization") or ""
        if not header.lower().startswith("basic "):
            raise _HTTPError(401, "HTTPException", "Not authenticated")
        try:
            user, _, pw = base64.b64decode(header[6:]).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            raise _HTTPError(401, "HTTPException", "Incorrect username or password") from None
        if (user, pw) != self.api_auth:
            raise _HTTPError(401, "HTTPException", "Incorrect username or password")

    def _route(self, h: _Handler, method: str, path: str, raw: bytes, call: Call) -> _Reply:
        if path in ("/", ""):
            if method != "GET":
                return _Reply(405, _json_bytes({"detail": "Method Not Allowed"}))
            return _Reply(200, b"<html><body>fake webui</body></html>", "text/html")
        with self._mu:
            ready = self._ready
        if not path.startswith(API) or not ready:
            return _Reply(404, _json_bytes({"detail": "Not Found"}))
        name = path[len(API) :]
        routes = self._routes()
        if name not in routes:
            return _Reply(404, _json_bytes({"detail": "Not Found"}))
        allowed, handler = routes[name]
        if method not in allowed.split("|"):
            return _Reply(405, _json_bytes({"detail": "Method Not Allowed"}))
        self._check_auth(h)
        if name not in GENERATION_ROUTES:
            fault = self._take(self._faults, path, False)
            if fault is not None:
                return _Reply(fault.status, _json_bytes(fault.body))
        body: Any = None
        if method == "POST" and name not in ("interrupt", "skip") and raw:
            try:
                body = json.loads(raw)
            except ValueError as e:
                err = {"loc": ["body", 0], "msg": str(e), "type": "value_error.jsondecode"}
                return _Reply(422, _json_bytes({"detail": [err]}))
        result = handler(body, call)
        if isinstance(result, _Reply):
            return result
        return _Reply(200, _json_bytes(result))

    def _routes(self) -> dict[str, tuple[str, Callable[[Any, Call], Any]]]:
        return {
            "txt2img": ("POST", self._txt2img),
            "img2img": ("POST", self._img2img),
            "extra-single-image": ("POST", self._extra_single),
            "extra-batch-images": ("POST", self._extra_batch),
            "png-info": ("POST", self._png_info),
            "progress": ("GET", self._progress),
            "interrupt": ("POST", self._interrupt),
            "skip": ("POST", self._skip),
            "options": ("GET|POST", self._get_options),
            "sd-models": ("GET", self._sd_models),
            "refresh-checkpoints": ("POST", self._refresh_checkpoints),
            "unload-checkpoint": ("POST", self._unload),
            "reload-checkpoint": ("POST", self._reload),
            "memory": ("GET", self._memory),
            "samplers": ("GET", lambda b, c: [{"name": s, "aliases": [], "options": {}} for s in SAMPLERS]),
            "schedulers": ("GET", lambda b, c: [{"name": s.lower().replace(" ", "_"), "label": s, "aliases": None, "default_rho": -1, "need_inner_model": False} for s in SCHEDULERS]),
            "upscalers": ("GET", lambda b, c: [{"name": u, "model_name": None, "model_path": None, "model_url": None, "scale": 4} for u in UPSCALERS]),
            "sd-vae": ("GET", lambda b, c: []),
            "scripts": ("GET", lambda b, c: {"txt2img": list(SELECTABLE_SCRIPTS), "img2img": list(SELECTABLE_SCRIPTS)}),
            "cmd-flags": ("GET", lambda b, c: {"api": True, "nowebui": False, "port": self.port}),
        }  # fmt: skip

    # A POST and GET share "options"; dispatch by method.
    def _get_options(self, body: Any, call: Call) -> Any:
        if call.method == "POST":
            return self._set_options(body, call)
        with self._mu:
            return copy.deepcopy(self.options)

    # ------------------------------------------------------------------ model state

    def _resolve(self, alias: str) -> FakeModel | None:
        with self._mu:
            for m in self._models:
                if m.title == alias:
                    return m
            for m in self._models:
                if alias in m.aliases():
                    return m
        return None

    def _load(self, model: FakeModel) -> bool:
        """Load weights while holding the queue lock. Returns False on an injected failure."""
        if self.load_seconds > 0:
            self._stopping.wait(self.load_seconds)
        with self._mu:
            if self.load_fails:
                return False
            model.hashed = True
            self._loaded = model
            self._on_gpu = True
            self.model_loads.append(model.name)
            return True

    def _set_options(self, body: Any, call: Call) -> Any:
        if not isinstance(body, dict):
            err = {"loc": ["body"], "msg": "value is not a valid dict", "type": "type_error.dict"}
            return _Reply(422, _json_bytes({"detail": [err]}))
        ckpt = body.get("sd_model_checkpoint")
        if ckpt is not None and (not isinstance(ckpt, str) or self._resolve(ckpt) is None):
            raise _HTTPError(500, "RuntimeError", "", f"model {ckpt!r} not found")
        for key, value in body.items():
            with self._mu:
                known = key in self.options
                old = self.options.get(key)
            if not known:
                if value is None:
                    continue
                raise _HTTPError(500, "KeyError", "", repr(key))
            if old == value:
                continue
            if key != "sd_model_checkpoint":
                with self._mu:
                    self.options[key] = value
                continue
            model = self._resolve(value)
            assert model is not None
            if not self._queue.acquire():
                raise _HTTPError(500, "RuntimeError", "", "server is shutting down")
            try:
                call.locked_at = time.monotonic()
                if model is self._loaded:
                    with self._mu:
                        self.options[key] = value
                        self._configured = model
                elif self._load(model):
                    with self._mu:
                        self.options[key] = model.title
                        self.options["sd_checkpoint_hash"] = model.sha256
                        self._configured = model
                # On a load failure A1111 logs, restores the old value and still answers 200.
            finally:
                self._queue.release()
        return None

    def _sd_models(self, body: Any, call: Call) -> Any:
        with self._mu:
            return [m.item() for m in self._models]

    def _refresh_checkpoints(self, body: Any, call: Call) -> Any:
        if not self._queue.acquire():
            raise _HTTPError(500, "RuntimeError", "", "server is shutting down")
        try:
            with self._mu:
                self._models = list(self._disk)
        finally:
            self._queue.release()
        return None

    def _unload(self, body: Any, call: Call) -> Any:
        with self._mu:
            self._on_gpu = False
        return {}

    def _reload(self, body: Any, call: Call) -> Any:
        with self._mu:
            self._on_gpu = True
        return {}

    def _memory(self, body: Any, call: Call) -> Any:
        gib = 1024**3
        stat = {"current": 3 * gib, "peak": 6 * gib}
        return {
            "ram": {"free": 20 * gib, "used": 12 * gib, "total": 32 * gib},
            "cuda": {
                "system": {"free": 10 * gib, "used": 5 * gib, "total": 15 * gib},
                "active": stat,
                "allocated": stat,
                "reserved": {"current": 4 * gib, "peak": 7 * gib},
                "inactive": {"current": 0, "peak": gib},
                "events": {"retries": 0, "oom": 0},
            },
        }

    # ------------------------------------------------------------------ progress / interrupt

    def _progress(self, body: Any, call: Call) -> Any:
        with self._mu:
            js = self._job_state
            interrupted = self._interrupted
            skipped = self._skipped
            if js is None:
                state = {
                    "skipped": False,
                    "interrupted": False,
                    "stopping_generation": False,
                    "job": "",
                    "job_count": 0,
                    "job_timestamp": "0",
                    "job_no": 0,
                    "sampling_step": 0,
                    "sampling_steps": 0,
                }
                return {
                    "progress": 0,
                    "eta_relative": 0,
                    "state": state,
                    "current_image": None,
                    "textinfo": None,
                    "current_task": None,
                }
            now = time.monotonic()
            steps = js["steps"]
            if js["hang"]:
                step = steps // 2
            elif js["per_batch"] > 0:
                step = min(steps, int(steps * (now - js["batch_start"]) / js["per_batch"]))
            else:
                step = steps
            job_count = js["job_count"]
            progress = (js["job_no"] + (step / steps if steps else 1)) / job_count
            elapsed = now - js["started"]
            eta = elapsed / progress - elapsed if progress > 0 else 0.0
            state = {
                "skipped": skipped,
                "interrupted": interrupted,
                "stopping_generation": False,
                "job": js["job"],
                "job_count": job_count,
                "job_timestamp": js["timestamp"],
                "job_no": js["job_no"],
                "sampling_step": step,
                "sampling_steps": steps,
            }
            return {
                "progress": progress,
                "eta_relative": eta,
                "state": state,
                "current_image": None,
                "textinfo": None,
                "current_task": js["task_id"],
            }

    def _interrupt(self, body: Any, call: Call) -> Any:
        with self._mu:
            self.interrupts += 1
            self._interrupted = True
        self._wake.set()
        return {}

    def _skip(self, body: Any, call: Call) -> Any:
        with self._mu:
            self.skips += 1
            self._skipped = True
        self._wake.set()
        return None

    # ------------------------------------------------------------------ jobs

    def _run(
        self,
        call: Call,
        route: str,
        steps: int,
        n_iter: int,
        task_id: str | None,
        override: dict[str, Any] | None,
        restore: bool,
    ) -> tuple[Job, int, FakeModel, dict[str, Any]]:
        """Hold the queue lock for one job. Returns (job, batches that produced images, model,
        the options in effect).
        Raises _HTTPError for injected faults."""
        if not self._queue.acquire():
            raise _HTTPError(500, "RuntimeError", "", "server is shutting down")
        try:
            call.locked_at = time.monotonic()
            self.calls_log.touch()
            fault = self._take(self._faults, call.path, True)
            if fault is not None:
                with self._jobs_cond:
                    job = Job(route, time.monotonic(), time.monotonic(), failed=fault.status)
                    self.jobs.append(job)
                    self._jobs_cond.notify_all()
                self.generation_started.set()
                err = _HTTPError(fault.status, "", "")
                err.body = fault.body
                raise err
            with self._mu:
                self._interrupted = False  # starting a job clears the flag
                self._skipped = False
                hang = self._hangs > 0
                if hang:
                    self._hangs -= 1
                epoch = self._release_epoch
                saved = copy.deepcopy(self.options)
                want = self._configured
            if override:
                with self._mu:
                    for k, v in override.items():
                        if k == "sd_model_checkpoint":
                            continue
                        if k in self.options:
                            self.options[k] = v
                ck = override.get("sd_model_checkpoint")
                if isinstance(ck, str):
                    found = self._resolve(ck)
                    if found is not None:  # an unknown checkpoint override is dropped silently
                        want = found
                        with self._mu:
                            self.options["sd_model_checkpoint"] = found.title
            with self._mu:
                need_load = self._loaded is not want or not self._on_gpu
            if need_load:
                self._load(want)
            with self._mu:
                model = self._loaded or want
            now = time.monotonic()
            job = Job(route, now, model=model.name)
            per_batch = self.inference_seconds / max(n_iter, 1)
            with self._jobs_cond:
                self.jobs.append(job)
                self._job_state = {
                    "job": f"scripts_{route}",
                    "job_count": n_iter,
                    "job_no": 0,
                    "steps": steps,
                    "started": now,
                    "batch_start": now,
                    "per_batch": per_batch,
                    "hang": hang,
                    "timestamp": time.strftime("%Y%m%d%H%M%S"),
                    "task_id": task_id,
                }
                self._jobs_cond.notify_all()
            self.generation_started.set()
            done = n_iter
            for b in range(n_iter):
                with self._mu:
                    assert self._job_state is not None
                    self._job_state["job_no"] = b
                    self._job_state["batch_start"] = time.monotonic()
                deadline = time.monotonic() + per_batch
                if self._sample_batch(deadline, hang, epoch):
                    done = b + 1
                    job.interrupted = True
                    break
            with self._jobs_cond:
                self._job_state = None
                in_effect = dict(self.options)
                if restore:
                    self.options = saved
                job.ended = time.monotonic()
                self._jobs_cond.notify_all()
            return job, done, model, in_effect
        finally:
            self._queue.release()

    def _sample_batch(self, deadline: float, hang: bool, epoch: int) -> bool:
        """Wait out one batch. Returns True if the job was interrupted."""
        while True:
            self._wake.clear()
            with self._mu:
                if self._interrupted or self._stopping.is_set():
                    return True
                if self._skipped:
                    self._skipped = False
                    return False
                released = self._release_epoch != epoch
            left = deadline - time.monotonic()
            if hang and released:
                return False
            if not hang and left <= 0:
                return False
            self._wake.wait(None if hang else left)

    def _validate(self, fields: list[F], body: Any) -> dict[str, Any]:
        values, errors = validate_body(fields, body if body is not None else {})
        if errors:
            raise _Unprocessable(errors)
        return values

    def _txt2img(self, body: Any, call: Call) -> Any:
        try:
            req = self._validate(TXT2IMG_FIELDS, body)
        except _Unprocessable as e:
            return e.reply()
        return self._generate("txt2img", req, call, [])

    def _img2img(self, body: Any, call: Call) -> Any:
        try:
            req = self._validate(IMG2IMG_FIELDS, body)
        except _Unprocessable as e:
            return e.reply()
        init = req["init_images"]
        if init is None:
            raise _four_key(404, "Init image not found")
        images = [self._decode_image(x) for x in init]
        if req["mask"] is not None:
            self._decode_image(req["mask"])
        if not images:
            raise _HTTPError(500, "IndexError", "", "list index out of range")
        if len(images) > req["batch_size"]:
            raise _HTTPError(
                500,
                "RuntimeError",
                "",
                f"bad number of images passed: {len(images)}; expecting {req['batch_size']} or less",
            )
        return self._generate("img2img", req, call, images)

    def _decode_image(self, value: Any) -> bytes:
        if not isinstance(value, str):
            raise _four_key(500, "Invalid encoded image")
        if value.startswith(("http://", "https://")):
            if not self.allow_url_images:
                raise _four_key(500, "Requests not allowed")
            raise _four_key(500, "Invalid image url")
        if value.startswith("data:image/"):
            value = value.split(";", 1)[1].split(",", 1)[-1]
        try:
            data = base64.b64decode(value, validate=False)
        except (binascii.Error, ValueError):
            raise _four_key(500, "Invalid encoded image") from None
        if sniff_image_type(data) is None:
            raise _four_key(500, "Invalid encoded image")
        return data

    def _check_scripts(self, req: dict[str, Any]) -> None:
        name = req.get("script_name")
        if name and name.lower() not in SELECTABLE_SCRIPTS:
            raise _four_key(422, f"Script '{name}' not found")
        always = {s.lower() for s in ALWAYSON_SCRIPTS}
        for key in req.get("alwayson_scripts") or {}:
            if key.lower() in SELECTABLE_SCRIPTS:
                raise _four_key(
                    422, "Cannot have a selectable script in the always on scripts params"
                )
            if key.lower() not in always:
                raise _four_key(422, f"always on script {key} not found")

    def _sampler(self, req: dict[str, Any]) -> str:
        name = req["sampler_name"] or req["sampler_index"]
        if name in SAMPLERS:
            return str(name)
        for sch in SCHEDULERS:  # 1.9+: "DPM++ 2M Karras" = sampler + scheduler
            if name.endswith(" " + sch) and name[: -len(sch) - 1] in SAMPLERS:
                return str(name[: -len(sch) - 1])
        raise _four_key(400, "Sampler not found")

    def _generate(
        self, route: str, req: dict[str, Any], call: Call, init_images: list[bytes]
    ) -> Any:
        sampler = self._sampler(req)
        self._check_scripts(req)
        batch, n_iter = req["batch_size"], req["n_iter"]
        override = req["override_settings"] or {}
        job, done, model, opts = self._run(
            call,
            route,
            req["steps"],
            n_iter,
            req["force_task_id"],
            override,
            req["override_settings_restore_afterwards"],
        )
        n = batch * n_iter
        with self._mu:
            seed = req["seed"] if req["seed"] != -1 else self._rng.randrange(2**32)
            subseed = req["subseed"] if req["subseed"] != -1 else self._rng.randrange(2**32)
        step = 0 if req["subseed_strength"] else 1
        seeds = [seed + i * step for i in range(n)]
        subseeds = [subseed + i for i in range(n)]
        w, h = self.image_size or (req["width"], req["height"])
        produced = done * batch
        infotexts = [
            _infotext(req, sampler, seeds[i], subseeds[i], w, h, model) for i in range(produced)
        ]
        images: list[bytes] = [make_png(w, h, seeds[i], infotexts[i]) for i in range(produced)]
        first = 0
        if req["save_images"] and opts.get("return_grid") and produced > 1:
            cols = math.ceil(math.sqrt(produced))
            rows = math.ceil(produced / cols)
            grid_text = infotexts[0]
            images.insert(0, make_png(w * cols, h * rows, seeds[0] ^ 0x5A5A, grid_text))
            infotexts.insert(0, grid_text)
            first = 1
        job.images = len(images)
        job.seeds = seeds[:produced]
        info = {
            "prompt": req["prompt"],
            "all_prompts": [req["prompt"]] * n,
            "negative_prompt": req["negative_prompt"],
            "all_negative_prompts": [req["negative_prompt"]] * n,
            "seed": seed,
            "all_seeds": seeds,
            "subseed": subseed,
            "all_subseeds": subseeds,
            "subseed_strength": req["subseed_strength"],
            "width": w,
            "height": h,
            "sampler_name": sampler,
            "cfg_scale": req["cfg_scale"],
            "steps": req["steps"],
            "batch_size": batch,
            "restore_faces": bool(req["restore_faces"]),
            "face_restoration_model": None,
            "sd_model_name": model.model_name,
            "sd_model_hash": model.shorthash,
            "sd_vae_name": None,
            "sd_vae_hash": None,
            "seed_resize_from_w": req["seed_resize_from_w"],
            "seed_resize_from_h": req["seed_resize_from_h"],
            "denoising_strength": req["denoising_strength"] if route == "img2img" else None,
            "extra_generation_params": {},
            "index_of_first_image": first,
            "infotexts": infotexts,
            "styles": req["styles"] or [],
            "job_timestamp": time.strftime("%Y%m%d%H%M%S"),
            "clip_skip": opts.get("CLIP_stop_at_last_layers", 1),
            "is_using_inpainting_conditioning": False,
            "version": VERSION,
        }
        params = dict(req)
        if route == "img2img" and not req["include_init_images"]:
            params["init_images"] = None
            params["mask"] = None
        b64 = [base64.b64encode(i).decode() for i in images] if req["send_images"] else []
        return {"images": b64, "parameters": params, "info": json.dumps(info)}

    def _extras_out(self, req: dict[str, Any], data: bytes, seed: int) -> bytes:
        for key in ("upscaler_1", "upscaler_2"):
            if req[key] not in UPSCALERS:
                raise _HTTPError(
                    500, "AssertionError", "", f"could not find upscaler named {req[key]}"
                )
        try:
            w, h = png_size(data)
        except ValueError:
            w, h = 512, 512
        if req["resize_mode"] == 1:
            w, h = req["upscaling_resize_w"], req["upscaling_resize_h"]
        else:
            w, h = int(w * req["upscaling_resize"]), int(h * req["upscaling_resize"])
        if self.image_size:
            w, h = self.image_size
        return make_png(w, h, seed)

    def _extra_single(self, body: Any, call: Call) -> Any:
        try:
            req = self._validate(EXTRA_SINGLE_FIELDS, body)
        except _Unprocessable as e:
            return e.reply()
        data = self._decode_image(req["image"])
        self._run(call, "extra-single-image", 1, 1, None, None, True)
        out = self._extras_out(req, data, zlib_seed(data))
        return {"html_info": "<p>fake postprocessing</p>", "image": base64.b64encode(out).decode()}

    def _extra_batch(self, body: Any, call: Call) -> Any:
        try:
            req = self._validate(EXTRA_BATCH_FIELDS, body)
        except _Unprocessable as e:
            return e.reply()
        inputs = [self._decode_image(item["data"]) for item in req["imageList"]]
        self._run(call, "extra-batch-images", 1, 1, None, None, True)
        outs = [self._extras_out(req, d, zlib_seed(d)) for d in inputs]
        return {
            "html_info": "<p>fake postprocessing</p>",
            "images": [base64.b64encode(o).decode() for o in outs],
        }

    def _png_info(self, body: Any, call: Call) -> Any:
        try:
            req = self._validate(PNG_INFO_FIELDS, body)
        except _Unprocessable as e:
            return e.reply()
        if not req["image"]:
            return {"info": "", "items": {}, "parameters": {}}
        data = self._decode_image(req["image"])
        try:
            items = png_text(data)
        except ValueError:
            items = {}
        info = items.pop("parameters", "")
        return {"info": info, "items": items, "parameters": _parse_infotext(info)}


class _Unprocessable(Exception):
    def __init__(self, errors: list[dict[str, Any]]) -> None:
        super().__init__("422")
        self.errors = errors

    def reply(self) -> _Reply:
        return _Reply(422, _json_bytes({"detail": self.errors}))


def _route(path: str) -> str:
    return path[len(API) :] if path.startswith(API) else ""


def zlib_seed(data: bytes) -> int:
    return int.from_bytes(hashlib.sha256(data).digest()[:4], "big")


def _default_fault_body(status: int) -> dict[str, Any]:
    if status == 500:
        return {"error": "OutOfMemoryError", "detail": "", "body": "", "errors": OOM_MESSAGE}
    if status == 422:
        err = {
            "loc": ["body", "steps"],
            "msg": "value is not a valid integer",
            "type": "type_error.integer",
        }
        return {"detail": [err]}
    if status == 404:
        return {"detail": "Not Found"}
    return {"error": "HTTPException", "detail": f"injected {status}", "body": "", "errors": ""}


def _infotext(
    req: dict[str, Any], sampler: str, seed: int, subseed: int, w: int, h: int, model: FakeModel
) -> str:
    lines = [req["prompt"]]
    if req["negative_prompt"]:
        lines.append(f"Negative prompt: {req['negative_prompt']}")
    pairs = [
        f"Steps: {req['steps']}",
        f"Sampler: {sampler}",
        f"CFG scale: {req['cfg_scale']:g}",
        f"Seed: {seed}",
        f"Size: {w}x{h}",
        f"Model hash: {model.shorthash}",
        f"Model: {model.model_name}",
    ]
    if req["subseed_strength"]:
        pairs += [
            f"Variation seed: {subseed}",
            f"Variation seed strength: {req['subseed_strength']:g}",
        ]
    pairs.append(f"Version: {VERSION}")
    lines.append(", ".join(pairs))
    return "\n".join(lines)


def _parse_infotext(text: str) -> dict[str, Any]:
    if not text:
        return {}
    lines = text.strip().split("\n")
    out: dict[str, Any] = {}
    last = lines[-1]
    body = lines[:-1] if ": " in last and "Steps:" in last else lines
    prompt, neg = [], []
    for line in body:
        if line.startswith("Negative prompt: "):
            neg.append(line[len("Negative prompt: ") :])
        elif neg:
            neg.append(line)
        else:
            prompt.append(line)
    out["Prompt"] = "\n".join(prompt)
    out["Negative prompt"] = "\n".join(neg)
    if body is not lines:
        for pair in last.split(", "):
            key, _, value = pair.partition(": ")
            if key == "Size" and "x" in value:
                a, _, b = value.partition("x")
                out["Size-1"], out["Size-2"] = a, b
            else:
                out[key] = value
    return out
