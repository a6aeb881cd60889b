"""The fake SD WebUI's ``/sdapi/v1`` routes: request parsing, options, models, progress."""

from __future__ import annotations

import base64
import binascii
import copy
import json
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler
from typing import Any

from sdfleet.fakes._common import Call
from sdfleet.fakes.images import png_text
from sdfleet.fakes.sdwebui.api import (
    API,
    EXTRA_BATCH_FIELDS,
    EXTRA_SINGLE_FIELDS,
    GENERATION_ROUTES,
    IMG2IMG_FIELDS,
    PNG_INFO_FIELDS,
    SAMPLERS,
    SCHEDULERS,
    SELECTABLE_SCRIPTS,
    TXT2IMG_FIELDS,
    UPSCALERS,
    HTTPError,
    Reply,
    Unprocessable,
    four_key,
    json_bytes,
)
from sdfleet.fakes.sdwebui.jobs import SdWebUIJobs, parse_infotext, zlib_seed


class SdWebUIRoutes(SdWebUIJobs):
    """Maps a request to its handler; ``FakeSdWebUI`` adds the HTTP server around it."""

    def _check_auth(self, h: BaseHTTPRequestHandler) -> None:
        if self.api_auth is None:
            return
        header = h.headers.get("Authorization") or ""
        if not header.lower().startswith("basic "):
            raise HTTPError(401, "HTTPException", "Not authenticated")
        try:
            user, _, pw = base64.b64decode(header[6:]).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            raise HTTPError(401, "HTTPException", "Incorrect username or password") from None
        if (user, pw) != self.api_auth:
            raise HTTPError(401, "HTTPException", "Incorrect username or password")

    def _route(
        self, h: BaseHTTPRequestHandler, method: str, path: str, raw: bytes, call: Call
    ) -> Reply:
        if path in ("/", ""):
            if method != "GET":
                return Reply(405, json_bytes({"detail": "Method Not Allowed"}))
            return Reply(200, b"<html><body>fake webui</body></html>", "text/html")
        with self._mu:
            ready = self._ready
        if not path.startswith(API) or not ready:
            return Reply(404, json_bytes({"detail": "Not Found"}))
        name = path[len(API) :]
        routes = self._routes()
        if name not in routes:
            return Reply(404, json_bytes({"detail": "Not Found"}))
        allowed, handler = routes[name]
        if method not in allowed.split("|"):
            return Reply(405, json_bytes({"detail": "Method Not Allowed"}))
        self._check_auth(h)
        if name not in GENERATION_ROUTES:
            fault = self._take(self._faults, path, False)
            if fault is not None:
                return Reply(fault.status, json_bytes(fault.body))
        body: Any = None
        if method == "POST" and name not in ("interrupt", "skip") and raw:
            try:
                body = json.loads(raw)
            except ValueError as e:
                err = {"loc": ["body", 0], "msg": str(e), "type": "value_error.jsondecode"}
                return Reply(422, json_bytes({"detail": [err]}))
        result = handler(body, call)
        if isinstance(result, Reply):
            return result
        return Reply(200, json_bytes(result))

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

    def _set_options(self, body: Any, call: Call) -> Any:
        if not isinstance(body, dict):
            err = {"loc": ["body"], "msg": "value is not a valid dict", "type": "type_error.dict"}
            return Reply(422, json_bytes({"detail": [err]}))
        ckpt = body.get("sd_model_checkpoint")
        if ckpt is not None and (not isinstance(ckpt, str) or self._resolve(ckpt) is None):
            raise HTTPError(500, "RuntimeError", "", f"model {ckpt!r} not found")
        for key, value in body.items():
            with self._mu:
                known = key in self.options
                old = self.options.get(key)
            if not known:
                if value is None:
                    continue
                raise HTTPError(500, "KeyError", "", repr(key))
            if old == value:
                continue
            if key != "sd_model_checkpoint":
                with self._mu:
                    self.options[key] = value
                continue
            model = self._resolve(value)
            assert model is not None
            if not self._queue.acquire():
                raise HTTPError(500, "RuntimeError", "", "server is shutting down")
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
            raise HTTPError(500, "RuntimeError", "", "server is shutting down")
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

    def _txt2img(self, body: Any, call: Call) -> Any:
        try:
            req = self._validate(TXT2IMG_FIELDS, body)
        except Unprocessable as e:
            return e.reply()
        return self._generate("txt2img", req, call, [])

    def _img2img(self, body: Any, call: Call) -> Any:
        try:
            req = self._validate(IMG2IMG_FIELDS, body)
        except Unprocessable as e:
            return e.reply()
        init = req["init_images"]
        if init is None:
            raise four_key(404, "Init image not found")
        images = [self._decode_image(x) for x in init]
        if req["mask"] is not None:
            self._decode_image(req["mask"])
        if not images:
            raise HTTPError(500, "IndexError", "", "list index out of range")
        if len(images) > req["batch_size"]:
            raise HTTPError(
                500,
                "RuntimeError",
                "",
                f"bad number of images passed: {len(images)}; expecting {req['batch_size']} or less",
            )
        return self._generate("img2img", req, call, images)

    def _extra_single(self, body: Any, call: Call) -> Any:
        try:
            req = self._validate(EXTRA_SINGLE_FIELDS, body)
        except Unprocessable as e:
            return e.reply()
        data = self._decode_image(req["image"])
        self._run(call, "extra-single-image", 1, 1, None, None, True)
        out = self._extras_out(req, data, zlib_seed(data))
        return {"html_info": "<p>fake postprocessing</p>", "image": base64.b64encode(out).decode()}

    def _extra_batch(self, body: Any, call: Call) -> Any:
        try:
            req = self._validate(EXTRA_BATCH_FIELDS, body)
        except Unprocessable as e:
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
        except Unprocessable as e:
            return e.reply()
        if not req["image"]:
            return {"info": "", "items": {}, "parameters": {}}
        data = self._decode_image(req["image"])
        try:
            items = png_text(data)
        except ValueError:
            items = {}
        info = items.pop("parameters", "")
        return {"info": info, "items": items, "parameters": parse_infotext(info)}
