"""ComfyUI client, see inference-apis.md part B (B.9 in particular).

One prompt in flight. The websocket (``/ws?clientId=``) is opened before ``POST /prompt``, which
carries our ``client_id`` and our own ``prompt_id`` (so a retried POST is recognisable). The
prompt is terminal on ``executing {node: null, prompt_id}`` or an ``execution_*`` event for it;
``GET /history/<id>`` is polled as well, whatever the websocket says, because events sent while
the socket is down are lost. Results come from the history entry and ``/view``.
"""

from __future__ import annotations

import contextlib
import copy
import json
import logging
import re
import time
import uuid
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
import websocket

from sdfleet.agent import errors
from sdfleet.agent.contract import Task
from sdfleet.agent.errors import Interrupted, ServerUnavailable, TaskError
from sdfleet.agent.inputs import InputFetcher, is_url
from sdfleet.agent.outputs import OutputFile, TaskOutcome, sniff
from sdfleet.agent.policies import RetryPolicy
from sdfleet.agent.servers.base import JobControl, Prepared, RawResult, StartupError, sent_trace

log = logging.getLogger("agent.comfyui")

TERMINAL_EVENTS = ("execution_success", "execution_error", "execution_interrupted")
UPLOAD_SUBFOLDER = "sdfleet"
_UNSAFE_NAME = re.compile(r"[^A-Za-z0-9_-]")


class _Retryable(Exception):
    pass


def _body(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return response.text[:4000]


def output_refs(outputs: dict[str, Any]) -> list[dict[str, Any]]:
    """File references (``{filename, subfolder, type}``) in history outputs, in node order."""

    def order(node_id: str) -> tuple[int, str]:
        head = node_id.split(":", 1)[0]
        return (int(head) if head.isdigit() else 1 << 30, node_id)

    refs: list[dict[str, Any]] = []
    for node_id in sorted(outputs, key=order):
        node_out = outputs[node_id]
        if not isinstance(node_out, dict):
            continue
        for value in node_out.values():
            if not isinstance(value, list):
                continue
            refs.extend(
                item
                for item in value
                if isinstance(item, dict) and isinstance(item.get("filename"), str)
            )
    return refs


def upload_stem(task_id: str, node_id: str) -> str:
    """An input's file name (without extension): unique per upload, since the next task is
    uploaded while ComfyUI may still read this one's input (with ``overwrite``), and free of
    ``/`` and ``..``, since ComfyUI joins the name to its input folder. The task id is already
    safe (``ID_PATTERN``); the client-chosen node id is reduced to the same characters."""
    node = _UNSAFE_NAME.sub("_", node_id)[:32]
    return f"{task_id}-{node}-{uuid.uuid4().hex[:12]}"


class ComfyUIServer:
    def __init__(
        self,
        base_url: str,
        fetcher: InputFetcher,
        *,
        retry: RetryPolicy | None = None,
        transport: httpx.BaseTransport | None = None,
        poll_seconds: float = 1.0,
        history_wait_seconds: float = 10.0,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.fetcher = fetcher
        self.retry = retry or RetryPolicy()
        self.poll_seconds = poll_seconds
        self.history_wait_seconds = history_wait_seconds
        self.client_id = f"sdfleet-{uuid.uuid4().hex}"
        self.client = httpx.Client(
            base_url=self.base_url,
            timeout=httpx.Timeout(30.0),
            transport=transport,
            trust_env=False,
        )
        parts = urlsplit(self.base_url)
        scheme = "wss" if parts.scheme == "https" else "ws"
        self.ws_url = urlunsplit(
            (scheme, parts.netloc, parts.path + "/ws", f"clientId={self.client_id}", "")
        )

    def close(self) -> None:
        self.client.close()

    # -- readiness ---------------------------------------------------------------------------
    def probe(self) -> bool:
        try:
            response = self.client.get("/system_stats", timeout=5.0)
            return response.status_code == 200 and isinstance(response.json(), dict)
        except (httpx.HTTPError, ValueError):
            return False

    def verify_static_model(self, model_filename: str) -> None:
        """The checkpoint must be one of ``CheckpointLoaderSimple``'s choices."""
        try:
            info = self.client.get("/object_info/CheckpointLoaderSimple", timeout=60.0).json()
            choices = info["CheckpointLoaderSimple"]["input"]["required"]["ckpt_name"][0]
        except (httpx.HTTPError, ValueError, KeyError, IndexError, TypeError) as exc:
            raise StartupError(f"cannot list ComfyUI checkpoints: {exc}") from exc
        if isinstance(choices, str) and choices == "COMBO":
            choices = info["CheckpointLoaderSimple"]["input"]["required"]["ckpt_name"][1]["options"]
        if model_filename not in choices:
            raise StartupError(
                f"MODEL_FILENAME {model_filename!r} is not on the ComfyUI server; available: "
                f"{', '.join(map(str, choices)) or 'none'}"
            )

    # -- receiver thread ---------------------------------------------------------------------
    def prepare(self, task: Task) -> Prepared:
        content = task.content or {}
        graph = copy.deepcopy(content["prompt"])
        # One input session per task: all images share its deadline and byte budget.
        with self.fetcher.task() as fetched:
            for node_id, node in graph.items():
                inputs = node.get("inputs")
                if node.get("class_type") != "LoadImage" or not isinstance(inputs, dict):
                    continue
                if is_url(inputs.get("image")):
                    field = f'prompt["{node_id}"].inputs.image'
                    data = fetched.fetch(inputs["image"], field)
                    inputs["image"] = self._upload(upload_stem(task.metadata.id, node_id), data)
            count = fetched.count
        payload: dict[str, Any] = {
            "prompt": graph,
            "client_id": self.client_id,
            "prompt_id": str(uuid.uuid4()),
        }
        if isinstance(content.get("extra_data"), dict):
            payload["extra_data"] = content["extra_data"]
        return Prepared(task=task, payload=payload, route="prompt", inputs=count)

    def _upload(self, stem: str, data: bytes) -> str:
        ext, content_type = sniff(data)
        name = f"{stem}.{ext}"
        try:
            response = self.client.post(
                "/upload/image",
                files={"image": (name, data, content_type)},
                data={"overwrite": "true", "subfolder": UPLOAD_SUBFOLDER, "type": "input"},
            )
        except httpx.TransportError as exc:
            raise ServerUnavailable(f"upload/image: {exc}") from exc
        if response.status_code != 200:
            raise TaskError(
                errors.SERVER_REJECTED,
                f"upload/image returned HTTP {response.status_code}",
                _body(response),
            )
        body = response.json()
        subfolder = body.get("subfolder") or ""
        return f"{subfolder}/{body['name']}" if subfolder else str(body["name"])

    # -- GPU thread --------------------------------------------------------------------------
    def run(self, prepared: Prepared, control: JobControl) -> RawResult:
        prompt_id = str(prepared.payload["prompt_id"])
        ws = self._connect_ws()
        try:
            response = self._submit(prepared, control)
            warnings = response.get("node_errors") or {}
            self._wait(prompt_id, ws, control)
        finally:
            if ws is not None:
                with contextlib.suppress(Exception):
                    ws.close()
        entry = self._history(prompt_id, wait=self.history_wait_seconds)
        if entry is None:
            raise TaskError(errors.SERVER_ERROR, f"prompt {prompt_id} finished but has no history")
        self._check_status(prompt_id, entry, control)
        return RawResult(finish=lambda: self._collect(prompt_id, entry, warnings))

    def _connect_ws(self) -> Any:
        try:
            ws = websocket.create_connection(self.ws_url, timeout=5.0)
            ws.settimeout(0.2)
            return ws
        except Exception as exc:
            log.warning(
                "websocket unavailable; polling history", extra={"fields": {"error": str(exc)}}
            )
            return None

    def _submit(self, prepared: Prepared, control: JobControl) -> dict[str, Any]:
        prompt_id = str(prepared.payload["prompt_id"])
        attempt = {"n": 0}

        def post() -> dict[str, Any]:
            attempt["n"] += 1
            if attempt["n"] > 1 and self._known(prompt_id):
                return {"prompt_id": prompt_id, "node_errors": {}}  # the earlier POST got through
            try:
                response = self.client.post(
                    "/prompt", json=prepared.payload, extensions={"trace": sent_trace(control)}
                )
            except httpx.TransportError as exc:
                raise _Retryable(str(exc)) from exc
            if response.status_code >= 500:
                raise _Retryable(f"HTTP {response.status_code}: {response.text[:200]}")
            if response.status_code == 400:
                body = _body(response)
                error = body.get("error") if isinstance(body, dict) else None
                message = error.get("message") if isinstance(error, dict) else str(body)
                raise TaskError(
                    errors.VALIDATION_ERROR, f"ComfyUI rejected the prompt: {message}", body
                )
            if response.status_code != 200:
                raise TaskError(
                    errors.SERVER_REJECTED,
                    f"prompt returned HTTP {response.status_code}",
                    _body(response),
                )
            return dict(response.json())

        try:
            return self.retry.run(post, retryable=lambda exc: isinstance(exc, _Retryable))
        except _Retryable as exc:
            raise ServerUnavailable(f"prompt: {exc}") from exc

    def _known(self, prompt_id: str) -> bool:
        try:
            if self._history(prompt_id, wait=0) is not None:
                return True
            queue = self.client.get("/queue", timeout=5.0).json()
        except (httpx.HTTPError, ValueError):
            return False
        items = list(queue.get("queue_running", [])) + list(queue.get("queue_pending", []))
        return any(len(item) > 1 and item[1] == prompt_id for item in items)

    def _wait(self, prompt_id: str, ws: Any, control: JobControl) -> None:
        next_poll = time.monotonic() + self.poll_seconds
        while True:
            if control.aborted.is_set():
                self._abort(prompt_id, control)
            if ws is not None:
                try:
                    frame = ws.recv()
                except websocket.WebSocketTimeoutException:
                    frame = None
                except Exception as exc:
                    log.warning(
                        "websocket lost; polling history", extra={"fields": {"error": str(exc)}}
                    )
                    ws = None
                    frame = None
                if isinstance(frame, str) and self._is_terminal(frame, prompt_id):
                    return
            else:
                control.aborted.wait(min(0.2, self.poll_seconds))
            if time.monotonic() >= next_poll:
                next_poll = time.monotonic() + self.poll_seconds
                if self._history(prompt_id, wait=0) is not None:
                    return
                if not self._known(prompt_id):
                    raise ServerUnavailable(f"prompt {prompt_id} is neither queued nor in history")

    @staticmethod
    def _is_terminal(frame: str, prompt_id: str) -> bool:
        try:
            message = json.loads(frame)
        except ValueError:
            return False
        if not isinstance(message, dict) or not isinstance(message.get("data"), dict):
            return False
        data = message["data"]
        if data.get("prompt_id") != prompt_id:
            return False
        kind = message.get("type")
        return kind in TERMINAL_EVENTS or (kind == "executing" and data.get("node") is None)

    def _abort(self, prompt_id: str, control: JobControl) -> None:
        self.interrupt_prompt(prompt_id)
        if control.reason == "shutdown":
            raise Interrupted("interrupted for shutdown")
        raise TaskError(errors.TIMEOUT, "the job ran past JOB_TIMEOUT_SECONDS and was interrupted")

    def _history(self, prompt_id: str, wait: float) -> dict[str, Any] | None:
        """The history entry; after a terminal event it can lag a little (B.9.3)."""
        deadline = time.monotonic() + wait
        while True:
            try:
                response = self.client.get(f"/history/{prompt_id}", timeout=10.0)
                body = response.json() if response.status_code == 200 else {}
            except (httpx.HTTPError, ValueError):
                body = {}
            entry = body.get(prompt_id) if isinstance(body, dict) else None
            if isinstance(entry, dict):
                return entry
            if time.monotonic() >= deadline:
                return None
            time.sleep(0.1)

    def _check_status(self, prompt_id: str, entry: dict[str, Any], control: JobControl) -> None:
        status = entry.get("status") or {}
        if status.get("status_str") != "error":
            return
        messages = status.get("messages") or []
        for kind, data in messages:
            if kind == "execution_error":
                detail = {
                    k: data.get(k)
                    for k in (
                        "node_id",
                        "node_type",
                        "exception_type",
                        "exception_message",
                        "traceback",
                    )
                }
                raise TaskError(
                    errors.EXECUTION_ERROR,
                    str(data.get("exception_message") or "execution error").strip(),
                    detail,
                )
        if any(kind == "execution_interrupted" for kind, _ in messages):
            if control.reason == "shutdown":
                raise Interrupted("interrupted for shutdown")
            if control.reason == "timeout":
                raise TaskError(errors.TIMEOUT, "the job ran past JOB_TIMEOUT_SECONDS")
            raise TaskError(errors.EXECUTION_ERROR, "the prompt was interrupted on the server")
        raise TaskError(errors.EXECUTION_ERROR, "the prompt failed", status)

    def _collect(self, prompt_id: str, entry: dict[str, Any], warnings: Any) -> TaskOutcome:
        files: list[OutputFile] = []
        for ref in output_refs(entry.get("outputs") or {}):
            params = {
                "filename": ref["filename"],
                "subfolder": ref.get("subfolder") or "",
                "type": ref.get("type") or "output",
            }
            response = self.client.get("/view", params=params, timeout=120.0)
            if response.status_code != 200:
                raise TaskError(
                    errors.SERVER_ERROR,
                    f"view {ref['filename']} returned HTTP {response.status_code}",
                    ref,
                )
            files.append(OutputFile.from_bytes(response.content))
        extra: dict[str, Any] = {"prompt_id": prompt_id, "outputs": entry.get("outputs")}
        if warnings:
            extra["node_errors"] = warnings
        return TaskOutcome(files=files, info=entry.get("status"), extra=extra)

    def interrupt(self, prepared: Prepared | None = None) -> None:
        prompt_id = prepared.payload.get("prompt_id") if prepared is not None else None
        self.interrupt_prompt(str(prompt_id) if prompt_id else None)

    def interrupt_prompt(self, prompt_id: str | None) -> None:
        try:
            self.client.post(
                "/interrupt", json={"prompt_id": prompt_id} if prompt_id else {}, timeout=5.0
            )
            if prompt_id:
                self.client.post("/queue", json={"delete": [prompt_id]}, timeout=5.0)
        except httpx.HTTPError as exc:
            log.warning("interrupt failed", extra={"fields": {"error": str(exc)}})
