"""The fake SD WebUI's state: checkpoints on disk and loaded, the queue lock, jobs, options."""

from __future__ import annotations

import hashlib
import random
import socket
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from sdfleet.fakes._common import Call, CallLog
from sdfleet.fakes.sdwebui.api import DEFAULT_MODELS, GENERATION_ROUTES, MODELS_DIR, route_name
from sdfleet.fakes.sdwebui.faults import SdWebUIFaults


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


class QueueLock:
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


def initial_options(first: FakeModel) -> dict[str, Any]:
    """The subset of A1111's settings the fake keeps, with ``first`` loaded."""
    return {
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


class SdWebUIState(SdWebUIFaults):
    """What the server knows; the routes and jobs read and change it under ``_mu``."""

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
        self._queue = QueueLock()
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._ready = ready
        self._init_faults()
        self._interrupted = False
        self._skipped = False
        self._rng = random.Random(20240601)
        self._job_state: dict[str, Any] | None = None
        self._conns: set[socket.socket] = set()

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
        self.options: dict[str, Any] = initial_options(first)

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

    # ------------------------------------------------------------------ observations

    @property
    def calls(self) -> list[Call]:
        return self.calls_log.snapshot()

    def generation_calls(self) -> list[Call]:
        return [c for c in self.calls if route_name(c.path) in GENERATION_ROUTES]

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
