"""AUTOMATIC1111 SD WebUI API client (``/sdapi/v1``), see inference-apis.md part A.

Rules from the reference: one generation in flight per server; never re-send a generation that
may still be running (interrupt, then wait for ``progress`` to read idle); an interrupted job
returns 200 with partial images, so the agent remembers that it interrupted; a failed checkpoint
load still answers 200, so a switch is verified with GET options.
"""

from __future__ import annotations

import base64
import contextlib
import copy
import json
import logging
import posixpath
import re
import threading
import time
from typing import Any

import httpx

from sdfleet.agent import errors
from sdfleet.agent.contract import LEGACY_ALWAYSON_KEYS, Task, requested_model
from sdfleet.agent.errors import Interrupted, ServerUnavailable, TaskError
from sdfleet.agent.inputs import InputFetcher, inline_sdwebui_inputs
from sdfleet.agent.outputs import OutputFile, TaskOutcome
from sdfleet.agent.policies import RetryPolicy
from sdfleet.agent.servers.base import JobControl, Prepared, RawResult, StartupError, sent_trace

log = logging.getLogger("agent.sdwebui")

ROUTES = {
    "text-to-image": "txt2img",
    "image-to-image": "img2img",
    "extra-single-image": "extra-single-image",
    "extra-batch-images": "extra-batch-images",
}
# 500s that re-running the same request will not fix.
NON_RETRYABLE_ERRORS = ("OutOfMemoryError", "NansException", "HTTPException")
_HASH_SUFFIX = re.compile(r"\s*\[[0-9a-fA-F]{8,64}\]$")
# A hung server that ignores the interrupt gets this long past the deadline before we give up.
HARD_TIMEOUT_GRACE = 30.0


class _Retryable(Exception):
    def __init__(self, status: int | None, body: Any, after_transport_error: bool) -> None:
        super().__init__(f"HTTP {status}" if status else "connection error")
        self.status = status
        self.body = body
        self.after_transport_error = after_transport_error


def strip_hash(name: str) -> str:
    return _HASH_SUFFIX.sub("", name.strip())


def model_aliases(model: dict[str, Any]) -> set[str]:
    """Names a task may use for an ``sd-models`` item: title (with or without hash), file name,
    file stem, model_name."""
    names: set[str] = set()
    title = model.get("title")
    if isinstance(title, str):
        names.update({title, strip_hash(title), posixpath.basename(strip_hash(title))})
    filename = model.get("filename")
    if isinstance(filename, str):
        base = posixpath.basename(filename.replace("\\", "/"))
        names.update({base, posixpath.splitext(base)[0]})
    model_name = model.get("model_name")
    if isinstance(model_name, str):
        names.add(model_name)
    return names


def find_model(models: list[dict[str, Any]], wanted: str) -> dict[str, Any] | None:
    target = strip_hash(wanted)
    for candidate in (wanted, target, posixpath.basename(target)):
        for model in models:
            if candidate in model_aliases(model):
                return model
    return None


def same_model(loaded: str | None, model: dict[str, Any]) -> bool:
    return bool(loaded) and strip_hash(str(loaded)) in {strip_hash(a) for a in model_aliases(model)}


def build_payload(tasktype: str, content: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """Route and request body: legacy routing keys stripped from ``alwayson_scripts`` and its
    ``override_settings`` merged into the top-level one (top-level keys win)."""
    route = ROUTES[tasktype]
    payload = copy.deepcopy(content)
    scripts = payload.get("alwayson_scripts")
    if isinstance(scripts, dict):
        legacy_override = scripts.get("override_settings")
        if isinstance(legacy_override, dict) and legacy_override:
            top = payload.get("override_settings")
            payload["override_settings"] = {
                **legacy_override,
                **(top if isinstance(top, dict) else {}),
            }
        for key in LEGACY_ALWAYSON_KEYS:
            scripts.pop(key, None)
        if not scripts:
            payload.pop("alwayson_scripts")
    return route, payload


def _body(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return response.text[:4000]


class SdWebUIServer:
    def __init__(
        self,
        base_url: str,
        fetcher: InputFetcher,
        *,
        dynamic_model: bool = False,
        retry: RetryPolicy | None = None,
        transport: httpx.BaseTransport | None = None,
        stop: threading.Event | None = None,
    ) -> None:
        self.base_url = base_url if base_url.endswith("/") else base_url + "/"
        self.fetcher = fetcher
        self.dynamic_model = dynamic_model
        self.retry = retry or RetryPolicy()
        self.stop = stop
        self.client = httpx.Client(
            base_url=self.base_url,
            timeout=httpx.Timeout(10.0),
            transport=transport,
            trust_env=False,
        )

    def close(self) -> None:
        self.client.close()

    # -- readiness ---------------------------------------------------------------------------
    def probe(self) -> bool:
        try:
            response = self.client.get("options", timeout=5.0)
            ok = response.status_code == 200 and isinstance(response.json(), dict)
            if ok:
                memory = self.client.get("memory", timeout=5.0)
                ok = memory.status_code == 200
            return ok
        except (httpx.HTTPError, ValueError):
            return False

    def verify_static_model(self, model_filename: str) -> None:
        models = self._get_json("sd-models")
        model = find_model(models, model_filename)
        if model is None:
            titles = ", ".join(sorted(strip_hash(str(m.get("title"))) for m in models))
            raise StartupError(
                f"MODEL_FILENAME {model_filename!r} is not on the server; available: {titles or 'none'}"
            )
        loaded = self._get_json("options").get("sd_model_checkpoint")
        if same_model(loaded, model):
            return
        log.warning(
            "static model is not loaded; loading it",
            extra={"fields": {"wanted": model_filename, "loaded": loaded}},
        )
        self._load(model, long_timeout=None)
        loaded = self._get_json("options").get("sd_model_checkpoint")
        if not same_model(loaded, model):
            raise StartupError(
                f"MODEL_FILENAME {model_filename!r} failed to load on the server "
                f"(loaded checkpoint: {loaded!r}); see the server log"
            )

    # -- receiver thread ---------------------------------------------------------------------
    def prepare(self, task: Task) -> Prepared:
        content = task.content or {}
        model = requested_model(content)
        content, count = inline_sdwebui_inputs(content, self.fetcher)
        route, payload = build_payload(task.metadata.tasktype, content)
        if model is not None:
            override = payload.get("override_settings")
            if isinstance(override, dict):
                # The agent switches the model itself (or the runtime serves it statically).
                override.pop("sd_model_checkpoint", None)
                if not override:
                    payload.pop("override_settings")
        return Prepared(task=task, payload=payload, route=route, model=model, inputs=count)

    # -- GPU thread --------------------------------------------------------------------------
    def run(self, prepared: Prepared, control: JobControl) -> RawResult:
        if self.dynamic_model and prepared.model:
            self._switch_model(prepared.model, control)
        try:
            response = self.retry.run(
                lambda: self._generate(prepared, control),
                retryable=lambda exc: isinstance(exc, _Retryable) and not control.aborted.is_set(),
                on_retry=lambda n, exc, wait: log.warning(
                    "inference call failed; retrying",
                    extra={
                        "fields": {
                            "id": prepared.task.metadata.id,
                            "retry": n,
                            "error": str(exc),
                            "wait_s": wait,
                        }
                    },
                ),
            )
        except _Retryable as exc:
            self._check_abort(control)
            if exc.status is None:
                raise ServerUnavailable(f"{prepared.route}: {exc.body}") from exc
            raise TaskError(
                errors.SERVER_ERROR,
                f"{prepared.route} returned HTTP {exc.status} after {self.retry.retries} retries",
                exc.body,
            ) from exc
        return RawResult(finish=lambda: self._decode(prepared.route, response))

    def _generate(self, prepared: Prepared, control: JobControl) -> httpx.Response:
        try:
            return self._generate_once(prepared, control)
        except _Retryable as exc:
            if exc.after_transport_error:
                # The job may still hold the server lock: stop it and wait before re-sending.
                self._interrupt_and_wait_idle(deadline=time.monotonic() + 60)
            raise

    def _generate_once(self, prepared: Prepared, control: JobControl) -> httpx.Response:
        self._check_abort(control)
        read_timeout = max(1.0, control.remaining() + HARD_TIMEOUT_GRACE)
        try:
            response = self.client.post(
                prepared.route,
                json=prepared.payload,
                timeout=httpx.Timeout(10.0, read=read_timeout),
                extensions={"trace": sent_trace(control)},
            )
        except httpx.ConnectError as exc:
            raise _Retryable(None, str(exc), after_transport_error=False) from exc
        except httpx.ReadTimeout as exc:
            self._interrupt_and_wait_idle(deadline=time.monotonic() + 60)
            control.abort("timeout")
            self._check_abort(control)
            raise TaskError(errors.TIMEOUT, "the server did not answer in time") from exc
        except httpx.TransportError as exc:
            raise _Retryable(
                None, f"{type(exc).__name__}: {exc}", after_transport_error=True
            ) from exc
        self._check_abort(control)
        if response.status_code >= 500:
            body = _body(response)
            name = body.get("error") if isinstance(body, dict) else None
            if response.status_code == 500 and name in NON_RETRYABLE_ERRORS:
                raise TaskError(
                    errors.SERVER_ERROR,
                    f"{prepared.route} returned HTTP {response.status_code} ({name})",
                    body,
                )
            raise _Retryable(response.status_code, body, after_transport_error=False)
        if response.status_code >= 400:
            raise TaskError(
                errors.SERVER_REJECTED,
                f"{prepared.route} returned HTTP {response.status_code}",
                _body(response),
            )
        return response

    def _check_abort(self, control: JobControl) -> None:
        if control.reason == "timeout":
            raise TaskError(
                errors.TIMEOUT, "the job ran past JOB_TIMEOUT_SECONDS and was interrupted"
            )
        if control.reason == "shutdown":
            raise Interrupted("interrupted for shutdown")

    def _decode(self, route: str, response: httpx.Response) -> TaskOutcome:
        body = response.json()
        if route in ("txt2img", "img2img"):
            raw_images = body.get("images") or []
            info: Any = body.get("info")
            if isinstance(info, str):
                with contextlib.suppress(ValueError):
                    info = json.loads(info)
            seeds = info.get("all_seeds", []) if isinstance(info, dict) else []
            parameters = body.get("parameters")
            if isinstance(parameters, dict):
                parameters = {
                    k: v for k, v in parameters.items() if k not in ("init_images", "mask")
                }
        elif route == "extra-single-image":
            raw_images = [body["image"]] if body.get("image") else []
            info, seeds, parameters = body.get("html_info"), [], None
        else:
            raw_images = body.get("images") or []
            info, seeds, parameters = body.get("html_info"), [], None
        files = [OutputFile.from_bytes(base64.b64decode(img)) for img in raw_images]
        return TaskOutcome(files=files, parameters=parameters, info=info, seeds=seeds)

    # -- model switching ---------------------------------------------------------------------
    def _switch_model(self, wanted: str, control: JobControl) -> None:
        loaded = self._get_json("options").get("sd_model_checkpoint")
        if loaded and strip_hash(str(loaded)) in (
            strip_hash(wanted),
            posixpath.basename(strip_hash(wanted)),
        ):
            return
        self._post("refresh-checkpoints", None, timeout=120.0)
        models = self._get_json("sd-models")
        model = find_model(models, wanted)
        if model is None:
            available = sorted(strip_hash(str(m.get("title"))) for m in models)
            raise TaskError(
                errors.MODEL_NOT_FOUND,
                f"model {wanted!r} is not on this server; available: {', '.join(available) or 'none'}",
                {"requested": wanted, "available": available},
            )
        if same_model(loaded, model):
            return
        log.info("switching model", extra={"fields": {"from": loaded, "to": model.get("title")}})
        self._post("unload-checkpoint", None, timeout=60.0)
        self._load(model, long_timeout=max(30.0, control.remaining()))
        now_loaded = self._get_json("options").get("sd_model_checkpoint")
        if not same_model(now_loaded, model):
            self._post("reload-checkpoint", None, timeout=60.0, check=False)
            raise TaskError(
                errors.MODEL_LOAD_FAILED,
                f"model {wanted!r} failed to load (the server still has {now_loaded!r})",
                {"requested": wanted, "loaded": now_loaded},
            )

    def _load(self, model: dict[str, Any], long_timeout: float | None) -> None:
        self._post("options", {"sd_model_checkpoint": model["title"]}, timeout=long_timeout)

    # -- small helpers -----------------------------------------------------------------------
    def _get_json(self, path: str) -> Any:
        try:
            response = self.client.get(path, timeout=30.0)
        except httpx.TransportError as exc:
            raise ServerUnavailable(f"GET {path}: {exc}") from exc
        if response.status_code != 200:
            raise TaskError(
                errors.SERVER_ERROR,
                f"GET {path} returned HTTP {response.status_code}",
                _body(response),
            )
        return response.json()

    def _post(self, path: str, body: Any, timeout: float | None, check: bool = True) -> Any:
        try:
            response = self.client.post(path, json=body, timeout=httpx.Timeout(10.0, read=timeout))
        except httpx.TransportError as exc:
            if not check:
                return None
            raise ServerUnavailable(f"POST {path}: {exc}") from exc
        if check and response.status_code != 200:
            code = errors.SERVER_REJECTED if response.status_code < 500 else errors.SERVER_ERROR
            raise TaskError(
                code, f"POST {path} returned HTTP {response.status_code}", _body(response)
            )
        return None

    def interrupt(self, prepared: Prepared | None = None) -> None:
        try:
            self.client.post("interrupt", timeout=5.0)
        except httpx.HTTPError as exc:
            log.warning("interrupt failed", extra={"fields": {"error": str(exc)}})

    def _interrupt_and_wait_idle(self, deadline: float) -> None:
        self.interrupt()
        while time.monotonic() < deadline:
            try:
                progress = self.client.get(
                    "progress", params={"skip_current_image": "true"}, timeout=5.0
                ).json()
                if not (progress.get("state") or {}).get("job_count"):
                    return
            except (httpx.HTTPError, ValueError):
                pass
            if self.stop is not None and self.stop.wait(0.2):
                return
            if self.stop is None:
                time.sleep(0.2)
