"""ComfyUI client, see inference-apis.md part B (B.6 and B.9 in particular).

ComfyUI has its own queue, so the GPU stage submits the next prompt while one runs (at most one
queued ahead, see ``sdfleet.agent.gpu``): ``submit`` posts a prompt, ``wait`` follows one prompt to
its end and ``dequeue`` takes a queued prompt back. One websocket (``/ws?clientId=``) serves all
prompts: it is opened before the first ``POST /prompt`` and kept, since a second socket with the
same clientId would replace it and the queued prompt's events would go to the wrong one. Every
POST carries our ``client_id`` and our own ``prompt_id`` (so a retried POST is recognisable). A
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
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
import websocket

from sdfleet.agent import errors
from sdfleet.agent.contract import Task
from sdfleet.agent.errors import Interrupted, ServerUnavailable, TaskError
from sdfleet.agent.inputs import InputFetcher, is_url
from sdfleet.agent.outputs import sniff
from sdfleet.agent.policies import RetryPolicy
from sdfleet.agent.servers.base import JobControl, Prepared, RawResult, StartupError, sent_trace
from sdfleet.agent.servers.comfyui_results import check_status, collect, output_refs

log = logging.getLogger("agent.comfyui")

TERMINAL_EVENTS = ("execution_success", "execution_error", "execution_interrupted")
UPLOAD_SUBFOLDER = "sdfleet"
_UNSAFE_NAME = re.compile(r"[^A-Za-z0-9_-]")
# Longest wait for one websocket frame: the GPU stage's idle hook runs at least this often.
_FRAME_WAIT = 0.05

__all__ = ["ComfyUIServer", "output_refs", "upload_stem"]


class _Retryable(Exception):
    pass


def _body(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return response.text[:4000]


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
        queue_ahead: bool = True,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.fetcher = fetcher
        self.retry = retry or RetryPolicy()
        self.poll_seconds = poll_seconds
        self.history_wait_seconds = history_wait_seconds
        self.client_id = f"sdfleet-{uuid.uuid4().hex}"
        # The GPU stage queues the next prompt while one runs (see sdfleet.agent.gpu).
        self.queue_ahead = queue_ahead
        # GPU thread only: the websocket, terminal prompt ids seen on it, submit warnings.
        self._ws: Any = None
        self._terminal: set[str] = set()
        self._warnings: dict[str, Any] = {}
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
        self._drop_ws()
        self.client.close()

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
        """One prompt, start to end (the GPU stage's path when nothing is queued ahead)."""
        self.submit(prepared, control)
        return self.wait(prepared, control)

    def submit(self, prepared: Prepared, control: JobControl) -> None:
        """Queue the prompt on the server (the websocket is opened first: no event is missed)."""
        prompt_id = str(prepared.payload["prompt_id"])
        if self._ws is None:
            self._ws = self._connect_ws()
        response = self._submit(prepared, control)
        self._warnings[prompt_id] = response.get("node_errors") or {}

    def wait(
        self, prepared: Prepared, control: JobControl, idle: Callable[[], None] | None = None
    ) -> RawResult:
        """Until the submitted prompt ends; ``idle`` is called between websocket frames (at
        least every ``_FRAME_WAIT`` seconds), e.g. to submit the next prompt meanwhile."""
        prompt_id = str(prepared.payload["prompt_id"])
        try:
            self._wait(prompt_id, control, idle)
        finally:
            self._terminal.discard(prompt_id)
            warnings = self._warnings.pop(prompt_id, None)
        entry = self._history(prompt_id, wait=self.history_wait_seconds)
        if entry is None:
            raise TaskError(errors.SERVER_ERROR, f"prompt {prompt_id} finished but has no history")
        check_status(entry, control.reason)
        return RawResult(finish=lambda: collect(self.client, prompt_id, entry, warnings))

    def dequeue(self, prepared: Prepared) -> bool:
        """Take a queued prompt back (``POST /queue {"delete"}``, pending items only). True when
        it will not run; False when it has started (or already ran) or the server cannot tell:
        the caller then waits for it like any submitted prompt."""
        prompt_id = str(prepared.payload["prompt_id"])
        try:
            self.client.post("/queue", json={"delete": [prompt_id]}, timeout=5.0)
            running, pending = self._queue_ids()
        except (httpx.HTTPError, ValueError, TypeError) as exc:
            log.warning("dequeue failed", extra={"fields": {"id": prompt_id, "error": str(exc)}})
            return False
        if prompt_id in running or prompt_id in pending:
            return False
        if self._history(prompt_id, wait=0) is not None:
            return False
        self._warnings.pop(prompt_id, None)
        return True

    def _connect_ws(self) -> Any:
        try:
            ws = websocket.create_connection(self.ws_url, timeout=5.0)
            ws.settimeout(_FRAME_WAIT)
            return ws
        except Exception as exc:
            log.warning(
                "websocket unavailable; polling history", extra={"fields": {"error": str(exc)}}
            )
            return None

    def _drop_ws(self) -> None:
        ws, self._ws = self._ws, None
        if ws is not None:
            with contextlib.suppress(Exception):
                ws.close()

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

    def _queue_ids(self) -> tuple[set[str], set[str]]:
        """Prompt ids running and pending (``GET /queue``)."""
        body = self.client.get("/queue", timeout=5.0).json()

        def ids(items: Any) -> set[str]:
            return {str(i[1]) for i in items or [] if isinstance(i, list) and len(i) > 1}

        return ids(body.get("queue_running")), ids(body.get("queue_pending"))

    def _known(self, prompt_id: str) -> bool:
        # The queue first: a prompt that ends between the two reads is then in the history.
        try:
            running, pending = self._queue_ids()
        except (httpx.HTTPError, ValueError, TypeError, AttributeError):
            return False
        if prompt_id in running or prompt_id in pending:
            return True
        return self._history(prompt_id, wait=0) is not None

    def _wait(self, prompt_id: str, control: JobControl, idle: Callable[[], None] | None) -> None:
        next_poll = time.monotonic() + self.poll_seconds
        while prompt_id not in self._terminal:
            if control.aborted.is_set():
                self._abort(prompt_id, control)
            if self._ws is not None:
                self._read_frame()
            else:
                control.aborted.wait(_FRAME_WAIT)
            if prompt_id in self._terminal:
                return
            if idle is not None:
                idle()
            if time.monotonic() >= next_poll:
                next_poll = time.monotonic() + self.poll_seconds
                if self._history(prompt_id, wait=0) is not None:
                    return
                if not self._known(prompt_id):
                    raise ServerUnavailable(f"prompt {prompt_id} is neither queued nor in history")
                if self._ws is None:  # the poll interval is the reconnect backoff
                    self._ws = self._connect_ws()

    def _read_frame(self) -> None:
        """One websocket frame; a terminal event is remembered for whichever prompt it names
        (the queued-ahead prompt's events arrive while the agent waits for the running one)."""
        assert self._ws is not None
        try:
            frame = self._ws.recv()
        except websocket.WebSocketTimeoutException:
            return
        except Exception as exc:
            log.warning("websocket lost; polling history", extra={"fields": {"error": str(exc)}})
            self._drop_ws()
            return
        if isinstance(frame, str):
            done = self._terminal_id(frame)
            if done is not None:
                self._terminal.add(done)

    @staticmethod
    def _terminal_id(frame: str) -> str | None:
        """The prompt id a terminal event is about, else None."""
        try:
            message = json.loads(frame)
        except ValueError:
            return None
        if not isinstance(message, dict) or not isinstance(message.get("data"), dict):
            return None
        data = message["data"]
        kind = message.get("type")
        prompt_id = data.get("prompt_id")
        if not isinstance(prompt_id, str):
            return None
        if kind in TERMINAL_EVENTS or (kind == "executing" and data.get("node") is None):
            return prompt_id
        return None

    @staticmethod
    def _is_terminal(frame: str, prompt_id: str) -> bool:
        return ComfyUIServer._terminal_id(frame) == prompt_id

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
            time.sleep(0.05)

    def interrupt(self, prepared: Prepared | None = None) -> None:
        prompt_id = prepared.payload.get("prompt_id") if prepared is not None else None
        self.interrupt_prompt(str(prompt_id) if prompt_id else None)

    def interrupt_prompt(self, prompt_id: str | None) -> None:
        """Stop this prompt only: interrupt it if it runs, take it off the queue if it waits.
        Newer builds ignore ``POST /interrupt {prompt_id}`` unless that prompt runs, older ones
        interrupt whatever runs (B.6), and the prompt queued behind it may have just started:
        hence the look at the queue first."""
        try:
            if prompt_id is None:
                self.client.post("/interrupt", json={}, timeout=5.0)
                return
            running, pending = self._queue_ids()
            if prompt_id in running:
                self.client.post("/interrupt", json={"prompt_id": prompt_id}, timeout=5.0)
            elif prompt_id in pending:
                self.client.post("/queue", json={"delete": [prompt_id]}, timeout=5.0)
        except (httpx.HTTPError, ValueError, TypeError, AttributeError) as exc:
            log.warning("interrupt failed", extra={"fields": {"error": str(exc)}})
