"""The fake GPU: one job at a time under the queue lock, its images, seeds and infotext."""

from __future__ import annotations

import base64
import binascii
import copy
import hashlib
import json
import math
import time
from typing import Any, NoReturn

from sdfleet.fakes._common import Call
from sdfleet.fakes._validate import F, validate_body
from sdfleet.fakes.images import make_png, png_size, sniff_image_type
from sdfleet.fakes.sdwebui.api import (
    ALWAYSON_SCRIPTS,
    SAMPLERS,
    SCHEDULERS,
    SELECTABLE_SCRIPTS,
    UPSCALERS,
    VERSION,
    HTTPError,
    Unprocessable,
    four_key,
)
from sdfleet.fakes.sdwebui.faults import Fault
from sdfleet.fakes.sdwebui.state import FakeModel, Job, SdWebUIState


class SdWebUIJobs(SdWebUIState):
    """Generation work: the routes call ``_run`` (the GPU) and ``_generate`` (the reply)."""

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
        Raises HTTPError for injected faults."""
        if not self._queue.acquire():
            raise HTTPError(500, "RuntimeError", "", "server is shutting down")
        try:
            call.locked_at = time.monotonic()
            self.calls_log.touch()
            fault = self._take(self._faults, call.path, True)
            if fault is not None:
                self._fail_job(route, fault)
            with self._mu:
                self._interrupted = False  # starting a job clears the flag
                self._skipped = False
            hang, epoch = self._take_hang()
            saved, want = self._apply_override(override)
            with self._mu:
                need_load = self._loaded is not want or not self._on_gpu
            if need_load:
                self._load(want)
            with self._mu:
                model = self._loaded or want
            job, per_batch = self._start_job(route, model, steps, n_iter, task_id, hang)
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

    def _fail_job(self, route: str, fault: Fault) -> NoReturn:
        """An injected fault fires once the job holds the lock: a zero-length failed job."""
        with self._jobs_cond:
            job = Job(route, time.monotonic(), time.monotonic(), failed=fault.status)
            self.jobs.append(job)
            self._jobs_cond.notify_all()
        self.generation_started.set()
        err = HTTPError(fault.status, "", "")
        err.body = fault.body
        raise err

    def _apply_override(self, override: dict[str, Any] | None) -> tuple[dict[str, Any], FakeModel]:
        """Apply ``override_settings``; the options to restore and the checkpoint to run on."""
        with self._mu:
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
        return saved, want

    def _start_job(
        self,
        route: str,
        model: FakeModel,
        steps: int,
        n_iter: int,
        task_id: str | None,
        hang: bool,
    ) -> tuple[Job, float]:
        """Record the job and the state ``/progress`` reports; the job and its time per batch."""
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
        return job, per_batch

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
            raise Unprocessable(errors)
        return values

    def _decode_image(self, value: Any) -> bytes:
        if not isinstance(value, str):
            raise four_key(500, "Invalid encoded image")
        if value.startswith(("http://", "https://")):
            if not self.allow_url_images:
                raise four_key(500, "Requests not allowed")
            raise four_key(500, "Invalid image url")
        if value.startswith("data:image/"):
            value = value.split(";", 1)[1].split(",", 1)[-1]
        try:
            data = base64.b64decode(value, validate=False)
        except (binascii.Error, ValueError):
            raise four_key(500, "Invalid encoded image") from None
        if sniff_image_type(data) is None:
            raise four_key(500, "Invalid encoded image")
        return data

    def _check_scripts(self, req: dict[str, Any]) -> None:
        name = req.get("script_name")
        if name and name.lower() not in SELECTABLE_SCRIPTS:
            raise four_key(422, f"Script '{name}' not found")
        always = {s.lower() for s in ALWAYSON_SCRIPTS}
        for key in req.get("alwayson_scripts") or {}:
            if key.lower() in SELECTABLE_SCRIPTS:
                raise four_key(
                    422, "Cannot have a selectable script in the always on scripts params"
                )
            if key.lower() not in always:
                raise four_key(422, f"always on script {key} not found")

    def _sampler(self, req: dict[str, Any]) -> str:
        name = req["sampler_name"] or req["sampler_index"]
        if name in SAMPLERS:
            return str(name)
        for sch in SCHEDULERS:  # 1.9+: "DPM++ 2M Karras" = sampler + scheduler
            if name.endswith(" " + sch) and name[: -len(sch) - 1] in SAMPLERS:
                return str(name[: -len(sch) - 1])
        raise four_key(400, "Sampler not found")

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
            infotext(req, sampler, seeds[i], subseeds[i], w, h, model) for i in range(produced)
        ]
        images: list[bytes] = [make_png(w, h, seeds[i], infotexts[i]) for i in range(produced)]
        first = 0
        if req["save_images"] and opts.get("return_grid") and produced > 1:
            _insert_grid(images, infotexts, w, h, seeds[0])
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
                raise HTTPError(
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


def _insert_grid(images: list[bytes], infotexts: list[str], w: int, h: int, seed: int) -> None:
    """A1111 puts the grid of a saved multi-image job first, with the first image's infotext."""
    cols = math.ceil(math.sqrt(len(images)))
    rows = math.ceil(len(images) / cols)
    grid_text = infotexts[0]
    images.insert(0, make_png(w * cols, h * rows, seed ^ 0x5A5A, grid_text))
    infotexts.insert(0, grid_text)


def zlib_seed(data: bytes) -> int:
    return int.from_bytes(hashlib.sha256(data).digest()[:4], "big")


def infotext(
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


def parse_infotext(text: str) -> dict[str, Any]:
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
