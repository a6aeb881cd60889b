"""A faithful fake of the ComfyUI server (HTTP + websocket) for the queue agent's tests.

Follows /work/shared/reference/inference-apis.md sections B and D.2. An aiohttp app on its own
event loop in a background thread; every route is also served under ``/api``.

Usage::

    with FakeComfyUI(execution_seconds=0.05) as srv:
        ws = websocket.create_connection(srv.ws_url("c1"))
        httpx.post(srv.url + "/prompt", json={"prompt": graph, "client_id": "c1"})
        srv.wait_for_history(prompt_id)

Constructor knobs:

- ``execution_seconds``: time spent in each KSampler that is not cached (split over its steps;
  a graph without KSampler spends it in its first executed node).
- ``port``: 0 picks a free port (known from construction on, see ``url``).
- ``ready``: False means nothing listens (connection refused) until ``set_ready(True)``.
- ``checkpoints``: the ``ckpt_name`` combo values (default two files).
- ``stale_close_bug``: emulate upstream's registry bug (a replaced socket's close handler
  removes the *new* socket of the same clientId, which then gets no targeted events).

Runtime knobs and observations:

- ``calls``, ``wait_for_calls(suffix, n, timeout)``: every HTTP request, as :class:`Call`
  (multipart uploads are recorded as ``{field: value}``, files as ``{"filename", "size"}``).
- ``executions`` (list of :class:`Execution`), ``wait_for_executions(n, timeout)``,
  ``wait_for_history(prompt_id, timeout)``, ``history_snapshot()``.
- ``uploads``: ``{"<subfolder>/<name>" or "<name>": bytes}`` of input files.
- ``interrupts``: count of ``POST /interrupt``.
- ``fail_next(status, body=None, count=1, path_suffix="/prompt")``: HTTP-level 4xx/5xx before
  the route runs; ``drop_next(count=1, path_suffix="/prompt")`` closes the connection instead.
- ``fail_next_execution(exception_type, message, node_id=None)``: the next run fails in that
  node (default: its KSampler) with ``execution_error``; history status "error".
- ``drop_ws_next_run()``: the prompt's websocket is cut at its first progress event; later
  events are lost but the history is still written.
- ``history_delay``: seconds between ``execution_success``/``_error``/``_interrupted`` and the
  history write (the race of B.9).
- ``hang_next(count=1)``: the next run's sampler only ends via ``POST /interrupt`` (or
  ``release()``).
- ``restart()``: wipes queue, history, cache and temp files, drops the running prompt and
  every websocket (uploads and outputs stay, they are on disk).
- ``set_ready(bool)``: start/stop listening on the same port.

Each run sends, to the prompt's client only: ``execution_start``, ``execution_cached``, then per
executed node ``executing``, ``progress_state`` and (KSampler) ``progress`` per step with one
binary preview frame (type 1, or type 4 after the client sent ``feature_flags`` with
``supports_preview_metadata``) and one unknown JSON message type, ``executed`` for output
nodes, then ``execution_success``, the history write, a ``status`` broadcast and
``executing {node: null, prompt_id}``. Identical resubmissions are served from the cache.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import hashlib
import heapq
import itertools
import json
import mimetypes
import posixpath
import random
import struct
import sys
import threading
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from aiohttp import WSMsgType, web

from sdfleet.fakes._common import Call, CallLog, free_port
from sdfleet.fakes.images import make_png, png_size

__all__ = ["Call", "Execution", "FakeComfyUI"]

T = TypeVar("T")

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


@dataclass
class Execution:
    """One prompt taken by the worker."""

    prompt_id: str
    client_id: str | None
    started: float
    ended: float | None = None
    status_str: str | None = None  # success | error; None if wiped by restart()
    interrupted: bool = False
    cached: list[str] = field(default_factory=list)
    executed: list[str] = field(default_factory=list)


@dataclass(order=True)
class _Item:
    number: float
    seq: int
    prompt_id: str = field(compare=False)
    graph: dict[str, Any] = field(compare=False)
    extra_data: dict[str, Any] = field(compare=False)
    outputs: list[str] = field(compare=False)
    client_id: str | None = field(compare=False)

    def wire(self) -> list[Any]:
        return [self.number, self.prompt_id, self.graph, self.extra_data, self.outputs]


class _Interrupted(Exception):
    pass


class _Failed(Exception):
    pass


def _ms() -> int:
    return int(time.time() * 1000)


def _err(
    typ: str, message: str, details: str = "", extra: dict[str, Any] | None = None
) -> dict[str, Any]:
    return {"type": typ, "message": message, "details": details, "extra_info": extra or {}}


def _empty(status: int = 200) -> web.Response:
    return web.Response(status=status)


class FakeComfyUI:
    """See the module docstring for the knobs."""

    def __init__(
        self,
        execution_seconds: float = 0.2,
        port: int = 0,
        ready: bool = True,
        *,
        checkpoints: tuple[str, ...] | list[str] = DEFAULT_CHECKPOINTS,
        stale_close_bug: bool = False,
        host: str = "127.0.0.1",
    ) -> None:
        self.execution_seconds = execution_seconds
        self.host = host
        self.port = port or free_port()
        self.checkpoints = list(checkpoints)
        self.stale_close_bug = stale_close_bug
        self.history_delay = 0.0
        self.interrupts = 0
        self.restarts = 0
        self.uploads: dict[str, bytes] = {}
        self.executions: list[Execution] = []
        self.calls_log = CallLog()

        self._ready = ready
        self._mu = threading.Condition()  # guards history/executions/knobs across threads
        self._history: dict[str, dict[str, Any]] = {}
        self._files: dict[tuple[str, str, str], bytes] = {}
        self._faults: list[tuple[str, str, str | None]] = []
        self._http_faults: list[list[Any]] = []  # [status, body, remaining, suffix, drop]
        self._drop_ws = 0
        self._hangs = 0
        self._seq = itertools.count()
        self._number = 0
        self._heap: list[_Item] = []
        self._running: _Item | None = None
        self._last_node: str | None = None
        self._cache: dict[str, dict[str, Any]] = {}
        self._sockets: dict[str, web.WebSocketResponse] = {}
        self._ws_requests: dict[int, web.Request] = {}
        self._req_calls: dict[int, Call] = {}
        self._flags: dict[int, dict[str, Any]] = {}
        self._rng = random.Random(7)

        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self._site: web.TCPSite | None = None
        self._worker_task: asyncio.Task[None] | None = None
        self._run_task: asyncio.Task[None] | None = None
        self._queue_changed: asyncio.Event | None = None
        self._interrupt_evt: asyncio.Event | None = None
        self._release_evt: asyncio.Event | None = None

    # ------------------------------------------------------------------ lifecycle

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def ws_url(self, client_id: str | None = None) -> str:
        base = f"ws://{self.host}:{self.port}/ws"
        return base if client_id is None else f"{base}?clientId={client_id}"

    def start(self) -> FakeComfyUI:
        if self._thread is not None:
            return self
        started = threading.Event()
        loop = asyncio.new_event_loop()
        self._loop = loop

        def run() -> None:
            asyncio.set_event_loop(loop)
            loop.run_until_complete(self._setup())
            started.set()
            loop.run_forever()
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

        self._thread = threading.Thread(target=run, name="fake-comfyui", daemon=True)
        self._thread.start()
        started.wait(10)
        if self._ready:
            self._on_loop(self._listen())
        return self

    def stop(self) -> None:
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        with contextlib.suppress(Exception):
            self._on_loop(self._teardown(), timeout=10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        self._loop = None
        self._thread = None

    def __enter__(self) -> FakeComfyUI:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _on_loop(self, coro: Awaitable[T], timeout: float = 10) -> T:
        assert self._loop is not None, "FakeComfyUI is not started"

        async def wrap() -> T:
            return await coro

        return asyncio.run_coroutine_threadsafe(wrap(), self._loop).result(timeout)

    async def _setup(self) -> None:
        self._queue_changed = asyncio.Event()
        self._interrupt_evt = asyncio.Event()
        self._release_evt = asyncio.Event()
        app = web.Application(middlewares=[self._middleware], client_max_size=MAX_UPLOAD)
        routes: list[tuple[str, str, Callable[[web.Request], Awaitable[web.StreamResponse]]]] = [
            ("GET", "/ws", self._ws),
            ("POST", "/prompt", self._post_prompt),
            ("GET", "/prompt", self._get_prompt),
            ("GET", "/queue", self._get_queue),
            ("POST", "/queue", self._post_queue),
            ("POST", "/interrupt", self._interrupt),
            ("POST", "/free", self._free),
            ("GET", "/history", self._get_history),
            ("POST", "/history", self._post_history),
            ("GET", "/history/{prompt_id}", self._get_history_one),
            ("GET", "/view", self._view),
            ("POST", "/upload/image", self._upload),
            ("GET", "/system_stats", self._system_stats),
            ("GET", "/object_info", self._object_info),
            ("GET", "/object_info/{node_class}", self._object_info),
            ("GET", "/features", self._features),
            ("GET", "/embeddings", self._embeddings),
        ]
        for method, path, handler in routes:
            app.router.add_route(method, path, handler)
            app.router.add_route(method, "/api" + path, handler)
        app.router.add_get("/", self._index)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        self._worker_task = asyncio.get_running_loop().create_task(self._worker())

    async def _listen(self) -> None:
        if self._site is not None or self._runner is None:
            return
        site = web.TCPSite(self._runner, self.host, self.port, reuse_address=True)
        await site.start()
        self._site = site

    async def _unlisten(self) -> None:
        site, self._site = self._site, None
        if site is not None:
            await site.stop()

    async def _teardown(self) -> None:
        if self._worker_task is not None:
            self._worker_task.cancel()
        if self._run_task is not None:
            self._run_task.cancel()
        await self._drop_sockets()
        await self._unlisten()
        if self._runner is not None:
            await self._runner.cleanup()

    async def _drop_sockets(self) -> None:
        for ws in list(self._sockets.values()):
            self._cut(ws)
        self._sockets.clear()

    def _cut(self, ws: web.WebSocketResponse) -> None:
        """Cut a websocket like a network failure would (no close frame)."""
        req = self._ws_requests.get(id(ws))
        if req is not None and req.transport is not None:
            req.transport.close()

    def set_ready(self, ready: bool) -> None:
        self._ready = ready
        if self._loop is not None:
            self._on_loop(self._listen() if ready else self._unlisten())

    def restart(self) -> None:
        """Like a process restart: queue, history, cache, temp files and sockets are gone."""

        async def wipe() -> None:
            if self._run_task is not None:
                self._run_task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await self._run_task
            self._heap.clear()
            self._cache.clear()
            for key in [k for k in self._files if k[0] == "temp"]:
                del self._files[key]
            with self._mu:
                self._history.clear()
                self.restarts += 1
                self._mu.notify_all()
            await self._drop_sockets()

        self._on_loop(wipe())

    # ------------------------------------------------------------------ knobs

    @property
    def calls(self) -> list[Call]:
        return self.calls_log.snapshot()

    def wait_for_calls(
        self, path_suffix: str, n: int = 1, timeout: float = 5.0, *, completed: bool = False
    ) -> list[Call]:
        return self.calls_log.wait_for_calls(path_suffix, n, timeout, completed=completed)

    def fail_next_execution(
        self,
        exception_type: str = "torch.OutOfMemoryError",
        message: str | None = None,
        node_id: str | None = None,
    ) -> None:
        with self._mu:
            self._faults.append((exception_type, OOM_TIPS if message is None else message, node_id))

    def drop_ws_next_run(self) -> None:
        with self._mu:
            self._drop_ws += 1

    def fail_next(
        self, status: int, body: Any = None, count: int = 1, path_suffix: str = "/prompt"
    ) -> None:
        """Answer the next ``count`` requests whose path ends with ``path_suffix`` with
        ``status`` (JSON if ``body`` is a dict/list, else aiohttp's plain-text page)."""
        with self._mu:
            self._http_faults.append([status, body, count, path_suffix, False])

    def drop_next(self, count: int = 1, path_suffix: str = "/prompt") -> None:
        """Close the connection of the next matching requests without answering (the request
        is not processed)."""
        with self._mu:
            self._http_faults.append([0, None, count, path_suffix, True])

    def _take_http_fault(self, path: str) -> list[Any] | None:
        with self._mu:
            for f in self._http_faults:
                if path.endswith(f[3]):
                    f[2] -= 1
                    if f[2] <= 0:
                        self._http_faults.remove(f)
                    return f
        return None

    def hang_next(self, count: int = 1) -> None:
        with self._mu:
            self._hangs += count

    def release(self) -> None:
        """Let a hung sampler finish normally."""
        if self._loop is not None and self._release_evt is not None:
            self._loop.call_soon_threadsafe(self._release_evt.set)

    def close_websockets(self) -> None:
        self._on_loop(self._drop_sockets())

    def history_snapshot(self) -> dict[str, dict[str, Any]]:
        with self._mu:
            return copy.deepcopy(self._history)

    def wait_for_history(self, prompt_id: str, timeout: float = 5.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        with self._mu:
            while prompt_id not in self._history:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"no history for {prompt_id!r} within {timeout}s")
                self._mu.wait(left)
            return copy.deepcopy(self._history[prompt_id])

    def wait_for_executions(
        self, n: int, timeout: float = 5.0, *, finished: bool = True
    ) -> list[Execution]:
        deadline = time.monotonic() + timeout
        with self._mu:
            while sum(1 for e in self.executions if e.ended is not None or not finished) < n:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(
                        f"{n} execution(s) not seen within {timeout}s: {self.executions}"
                    )
                self._mu.wait(left)
            return list(self.executions)

    def files(self) -> dict[tuple[str, str, str], bytes]:
        """Every stored file as ``{(type, subfolder, filename): bytes}``."""
        with self._mu:
            return dict(self._files)

    # ------------------------------------------------------------------ HTTP plumbing

    @web.middleware
    async def _middleware(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        origin = request.headers.get("Origin")
        loopback = request.host.split(":")[0] in ("127.0.0.1", "localhost")
        if (
            origin is not None
            and loopback
            and origin.split("://", 1)[-1].rstrip("/") != request.host
        ):
            return _empty(403)
        body: Any = None
        ctype = request.headers.get("Content-Type", "")
        if request.can_read_body and not ctype.startswith("multipart/"):
            raw = await request.read()
            try:
                body = json.loads(raw) if raw else None
            except ValueError:
                body = raw.decode("utf-8", "replace")
        call = self.calls_log.add(
            Call(
                method=request.method,
                path=request.path,
                body=body,
                started=time.monotonic(),
                query=dict(request.query),
                headers={k.lower(): v for k, v in request.headers.items()},
            )
        )
        fault = self._take_http_fault(request.path)
        if fault is not None:
            status, fbody, _, _, drop = fault
            if drop:
                if request.transport is not None:
                    request.transport.close()
                self.calls_log.finish(call, -1)
                return _empty(500)  # never reaches the client: the transport is closed
            self.calls_log.finish(call, status)
            if isinstance(fbody, dict | list):
                return web.json_response(fbody, status=status)
            text = fbody if isinstance(fbody, str) else f"{status} Internal Server Error"
            return web.Response(status=status, text=text)
        self._req_calls[id(request)] = call
        try:
            resp = await handler(request)
        except web.HTTPException as e:
            self.calls_log.finish(call, e.status)
            raise
        except Exception:
            self.calls_log.finish(call, 500)
            raise
        finally:
            self._req_calls.pop(id(request), None)
        self.calls_log.finish(call, resp.status)
        return resp

    async def _json(self, request: web.Request) -> Any:
        """Upstream's routes crash on bad JSON: 500 with a plain-text page."""
        raw = await request.read()
        try:
            return json.loads(raw)
        except ValueError:
            raise web.HTTPInternalServerError(text="500 Internal Server Error") from None

    async def _index(self, request: web.Request) -> web.StreamResponse:
        return web.Response(text="<html>fake comfyui</html>", content_type="text/html")

    def _queue_remaining(self) -> int:
        return len(self._heap) + (1 if self._running is not None else 0)

    # ------------------------------------------------------------------ websocket

    async def _send(
        self, sid: str | None, typ: str, data: dict[str, Any], *, broadcast: bool = False
    ) -> None:
        msg = json.dumps({"type": typ, "data": data})
        targets: list[web.WebSocketResponse]
        if sid is None:
            targets = list(self._sockets.values()) if broadcast else []
        else:
            ws = self._sockets.get(sid)
            targets = [ws] if ws is not None else []
        for ws in targets:
            with contextlib.suppress(Exception):
                await ws.send_str(msg)

    async def _broadcast_status(self) -> None:
        await self._send(
            None,
            "status",
            {"status": {"exec_info": {"queue_remaining": self._queue_remaining()}}},
            broadcast=True,
        )

    async def _ws(self, request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse(timeout=0.5, max_msg_size=MAX_UPLOAD)
        await ws.prepare(request)
        sid = request.query.get("clientId") or uuid.uuid4().hex
        self._sockets[sid] = ws
        self._ws_requests[id(ws)] = request
        try:
            await ws.send_json(
                {
                    "type": "status",
                    "data": {
                        "status": {"exec_info": {"queue_remaining": self._queue_remaining()}},
                        "sid": sid,
                    },
                }
            )
            running = self._running
            if running is not None and running.client_id == sid and self._last_node is not None:
                await ws.send_json({"type": "executing", "data": {"node": self._last_node}})
            async for msg in ws:
                if msg.type != WSMsgType.TEXT:
                    continue
                with contextlib.suppress(ValueError, AttributeError, TypeError):
                    data = json.loads(msg.data)
                    if data.get("type") == "feature_flags":
                        self._flags[id(ws)] = dict(data.get("data") or {})
                        await ws.send_json(
                            {
                                "type": "feature_flags",
                                "data": {
                                    "supports_preview_metadata": True,
                                    "max_upload_size": MAX_UPLOAD,
                                },
                            }
                        )
        finally:
            self._ws_requests.pop(id(ws), None)
            self._flags.pop(id(ws), None)
            if self.stale_close_bug or self._sockets.get(sid) is ws:
                self._sockets.pop(sid, None)
        return ws

    async def _preview(self, sid: str | None, prompt_id: str, node: str) -> None:
        image = make_png(8, 8, 1)
        targets = (
            list(self._sockets.values())
            if sid is None
            else [w for w in [self._sockets.get(sid)] if w]
        )
        for ws in targets:
            if self._flags.get(id(ws), {}).get("supports_preview_metadata"):
                meta = json.dumps(
                    {"node_id": node, "prompt_id": prompt_id, "display_node_id": node, "parent_node_id": None,
                     "real_node_id": node, "image_type": "image/png"}
                ).encode()  # fmt: skip
                frame = struct.pack(">II", 4, len(meta)) + meta + image
            else:
                frame = struct.pack(">II", 1, 2) + image
            with contextlib.suppress(Exception):
                await ws.send_bytes(frame)
        # Monitoring extensions send their own message types; clients must ignore them.
        await self._send(
            None, "crystools.monitor", {"cpu_utilization": 3.5, "gpus": []}, broadcast=True
        )

    # ------------------------------------------------------------------ validation

    def _spec(
        self, class_type: str
    ) -> tuple[dict[str, tuple[Any, dict[str, Any]]], list[str], bool]:
        required, outputs, is_output = NODE_SPECS[class_type]
        resolved = {}
        for name, (typ, opts) in required.items():
            if typ == "CKPT":
                typ = list(self.checkpoints)
            elif typ == "INPUT_FILES":
                typ = sorted(self.uploads)
            resolved[name] = (typ, opts)
        return resolved, outputs, is_output

    def _validate_node(
        self,
        graph: dict[str, Any],
        node_id: str,
        done: dict[str, tuple[bool, list[dict[str, Any]]]],
    ) -> bool:
        if node_id in done:
            return done[node_id][0]
        done[node_id] = (True, [])  # cycles are out of scope
        node = graph[node_id]
        required, _, _ = self._spec(node["class_type"])
        inputs = node.get("inputs") or {}
        errors: list[dict[str, Any]] = []
        valid = True
        for name, (typ, opts) in required.items():
            config = [typ, opts] if opts else [typ]
            if name not in inputs:
                errors.append(
                    _err(
                        "required_input_missing",
                        "Required input is missing",
                        name,
                        {"input_name": name},
                    )
                )
                continue
            val = inputs[name]
            if isinstance(val, list):
                if len(val) != 2 or not isinstance(val[0], str) or not isinstance(val[1], int):
                    errors.append(
                        _err("bad_linked_input", "Bad linked input, must be a length-2 list of [string, int]", name,
                             {"input_name": name, "input_config": config, "received_value": val})
                    )  # fmt: skip
                    continue
                src_id, slot = val
                src = graph.get(src_id)
                if not isinstance(src, dict) or src.get("class_type") not in NODE_SPECS:
                    errors.append(
                        _err("exception_during_inner_validation", "Exception when validating inner node",
                             f"KeyError('{src_id}')", {"input_name": name, "input_config": config,
                                                        "received_value": val})
                    )  # fmt: skip
                    continue
                src_types = NODE_SPECS[src["class_type"]][1]
                if slot < 0 or slot >= len(src_types):
                    errors.append(
                        _err("exception_during_inner_validation", "Exception when validating inner node",
                             "tuple index out of range", {"input_name": name})
                    )  # fmt: skip
                    continue
                received = src_types[slot]
                expected = "COMBO" if isinstance(typ, list) else typ
                if received != expected:
                    errors.append(
                        _err("return_type_mismatch", "Return type mismatch between linked nodes",
                             f"{name}, received_type({received}) mismatch input_type({expected})",
                             {"input_name": name, "input_config": config, "received_type": received,
                              "linked_node": val})
                    )  # fmt: skip
                    continue
                if not self._validate_node(graph, src_id, done):
                    valid = False
                continue
            extra = {"input_name": name, "input_config": config, "received_value": val}
            if typ in ("INT", "FLOAT"):
                try:
                    num: float = int(val) if typ == "INT" else float(val)
                except (TypeError, ValueError) as e:
                    errors.append(
                        _err("invalid_input_type", f"Failed to convert an input value to a {typ} value",
                             f"{name}, {val}, {e}", {**extra, "exception_message": str(e)})
                    )  # fmt: skip
                    continue
                if "min" in opts and num < opts["min"]:
                    errors.append(
                        _err(
                            "value_smaller_than_min",
                            f"Value {num} smaller than min of {opts['min']}",
                            name,
                            extra,
                        )
                    )
                elif "max" in opts and num > opts["max"]:
                    errors.append(
                        _err(
                            "value_bigger_than_max",
                            f"Value {num} bigger than max of {opts['max']}",
                            name,
                            extra,
                        )
                    )
            elif typ == "STRING":
                if isinstance(val, dict):
                    errors.append(
                        _err("invalid_input_type", "Failed to convert an input value to a STRING value",
                             f"{name}, {val}", extra)
                    )  # fmt: skip
            elif isinstance(typ, list):
                if node["class_type"] == "LoadImage":
                    ref = _strip_annotation(str(val))[0]
                    if ref not in self.uploads:
                        errors.append(
                            _err("custom_validation_failed", "Custom validation failed for node",
                                 f"{name} - Invalid image file: {val}", extra)
                        )  # fmt: skip
                elif val not in typ:
                    shown = typ if len(typ) <= 20 else [*typ[:20], f"... ({len(typ) - 20} more)"]
                    errors.append(
                        _err(
                            "value_not_in_list",
                            "Value not in list",
                            f"{name}: '{val}' not in {shown}",
                            extra,
                        )
                    )
        if errors:
            valid = False
        done[node_id] = (valid, errors)
        return valid

    def _validate_prompt(
        self, graph: Any, targets: list[str] | None
    ) -> tuple[dict[str, Any] | None, list[str], dict[str, Any]]:
        """Returns (error or None, good outputs, node_errors)."""
        if not isinstance(graph, dict):
            return (
                _err(
                    "invalid_prompt",
                    "Cannot execute because a node is missing the class_type property.",
                    "Node ID '#'",
                ),
                [],
                {},
            )
        outputs = []
        for node_id, node in graph.items():
            if not isinstance(node, dict) or "class_type" not in node:
                return (
                    _err(
                        "invalid_prompt",
                        "Cannot execute because a node is missing the class_type property.",
                        f"Node ID '#{node_id}'",
                    ),
                    [],
                    {},
                )
            if node["class_type"] not in NODE_SPECS:
                return (
                    _err(
                        "invalid_prompt",
                        f"Cannot execute because node {node['class_type']} does not exist.",
                        f"Node ID '#{node_id}'",
                    ),
                    [],
                    {},
                )
            if NODE_SPECS[node["class_type"]][2] and (targets is None or node_id in targets):
                outputs.append(node_id)
        if not outputs:
            return _err("prompt_no_outputs", "Prompt has no outputs"), [], {}
        good: list[str] = []
        node_errors: dict[str, Any] = {}
        messages: list[str] = []
        for out in outputs:
            done: dict[str, tuple[bool, list[dict[str, Any]]]] = {}
            if self._validate_node(graph, out, done):
                good.append(out)
                continue
            for nid, (_, errs) in done.items():
                if not errs:
                    continue
                entry = node_errors.setdefault(
                    nid,
                    {
                        "errors": errs,
                        "dependent_outputs": [],
                        "class_type": graph[nid]["class_type"],
                    },
                )
                entry["dependent_outputs"].append(out)
                messages.extend(f"{e['message']}: {e['details']}" for e in errs)
        if not good:
            details = "\n".join(dict.fromkeys(messages))
            return (
                _err(
                    "prompt_outputs_failed_validation", "Prompt outputs failed validation", details
                ),
                [],
                node_errors,
            )
        return None, good, node_errors

    # ------------------------------------------------------------------ prompt / queue routes

    async def _post_prompt(self, request: web.Request) -> web.StreamResponse:
        body = await self._json(request)
        if not isinstance(body, dict) or "prompt" not in body:
            return web.json_response(
                {
                    "error": _err("no_prompt", "No prompt provided", "No prompt provided"),
                    "node_errors": {},
                },
                status=400,
            )
        graph = body["prompt"]
        targets = body.get("partial_execution_targets")
        error, outputs, node_errors = self._validate_prompt(
            graph, targets if isinstance(targets, list) else None
        )
        if error is not None:
            return web.json_response({"error": error, "node_errors": node_errors}, status=400)
        prompt_id = str(body["prompt_id"]) if body.get("prompt_id") else str(uuid.uuid4())
        if "number" in body:
            number: float = float(body["number"])
        else:
            number = -self._number if body.get("front") else self._number
            self._number += 1
        extra = dict(body.get("extra_data") or {})
        client_id = body.get("client_id")
        if client_id is not None:
            client_id = str(client_id)
            extra["client_id"] = client_id
        item = _Item(number, next(self._seq), prompt_id, graph, extra, outputs, client_id)
        heapq.heappush(self._heap, item)
        assert self._queue_changed is not None
        self._queue_changed.set()
        await self._broadcast_status()
        return web.json_response(
            {"prompt_id": prompt_id, "number": number, "node_errors": node_errors}
        )

    async def _get_prompt(self, request: web.Request) -> web.StreamResponse:
        return web.json_response({"exec_info": {"queue_remaining": self._queue_remaining()}})

    async def _get_queue(self, request: web.Request) -> web.StreamResponse:
        running = [self._running.wire()] if self._running is not None else []
        return web.json_response(
            {"queue_running": running, "queue_pending": [i.wire() for i in self._heap]}
        )

    async def _post_queue(self, request: web.Request) -> web.StreamResponse:
        body = await self._json(request)
        if isinstance(body, dict):
            if body.get("clear"):
                self._heap.clear()
            delete = body.get("delete")
            if isinstance(delete, list):
                self._heap = [i for i in self._heap if i.prompt_id not in delete]
                heapq.heapify(self._heap)
        await self._broadcast_status()
        return _empty()

    async def _interrupt(self, request: web.Request) -> web.StreamResponse:
        with self._mu:
            self.interrupts += 1
        target = None
        with contextlib.suppress(ValueError, UnicodeDecodeError):
            raw = await request.read()
            data = json.loads(raw) if raw else {}
            if isinstance(data, dict):
                target = data.get("prompt_id")
        running = self._running
        if running is not None and (target is None or str(target) == running.prompt_id):
            assert self._interrupt_evt is not None
            self._interrupt_evt.set()
        return _empty()

    async def _free(self, request: web.Request) -> web.StreamResponse:
        body = await self._json(request)
        if isinstance(body, dict) and body.get("free_memory"):
            self._cache.clear()
        return _empty()

    # ------------------------------------------------------------------ history

    async def _get_history(self, request: web.Request) -> web.StreamResponse:
        with self._mu:
            items = list(self._history.items())
        max_items = request.query.get("max_items")
        offset = request.query.get("offset")
        try:
            n = int(max_items) if max_items is not None else None
            off = int(offset) if offset is not None else None
        except ValueError:
            raise web.HTTPInternalServerError(text="500 Internal Server Error") from None
        if off is None:
            off = max(0, len(items) - n) if n is not None else 0
        items = items[off:] if n is None else items[off : off + n]
        return web.json_response(dict(items))

    async def _get_history_one(self, request: web.Request) -> web.StreamResponse:
        pid = request.match_info["prompt_id"]
        with self._mu:
            entry = self._history.get(pid)
        return web.json_response({} if entry is None else {pid: entry})

    async def _post_history(self, request: web.Request) -> web.StreamResponse:
        body = await self._json(request)
        with self._mu:
            if isinstance(body, dict):
                if body.get("clear"):
                    self._history.clear()
                for pid in body.get("delete") or []:
                    self._history.pop(str(pid), None)
        return _empty()

    # ------------------------------------------------------------------ files

    async def _view(self, request: web.Request) -> web.StreamResponse:
        q = request.query
        filename = q.get("filename")
        if not filename:
            return _empty(404)
        typ = q.get("type", "output")
        filename, annotated = _strip_annotation(filename)
        typ = annotated or typ
        if typ not in FILE_TYPES or filename.startswith("/") or ".." in filename:
            return _empty(400)
        subfolder = q.get("subfolder", "")
        if subfolder.startswith("/") or ".." in subfolder.split("/"):
            return _empty(403)
        if "/" in filename:
            sub2, filename = filename.rsplit("/", 1)
            subfolder = posixpath.join(subfolder, sub2) if subfolder else sub2
        with self._mu:
            data = self._files.get((typ, subfolder.strip("/"), filename))
        if data is None:
            return _empty(404)
        ctype = mimetypes.guess_type(filename)[0] or "application/octet-stream"
        return web.Response(
            body=data, content_type=ctype, headers={"Content-Disposition": f'filename="{filename}"'}
        )

    async def _upload(self, request: web.Request) -> web.StreamResponse:
        form = await request.post()
        recorded: dict[str, Any] = {}
        for k, v in form.items():
            if isinstance(v, web.FileField):
                recorded[k] = {"filename": v.filename, "size": len(v.file.read())}
                v.file.seek(0)
            else:
                recorded[k] = v
        call = self._req_calls.get(id(request))
        if call is not None:
            call.body = recorded
        image = form.get("image")
        if not isinstance(image, web.FileField) or not image.filename:
            return _empty(400)
        typ = str(form.get("type") or "input")
        if typ not in FILE_TYPES:
            raise web.HTTPInternalServerError(text="500 Internal Server Error")
        subfolder = str(form.get("subfolder") or "")
        name = image.filename
        if subfolder.startswith("/") or ".." in subfolder.split("/") or "/" in name or ".." in name:
            return _empty(400)
        overwrite = str(form.get("overwrite") or "").lower() in ("true", "1")
        data = image.file.read()
        sub = subfolder.strip("/")
        with self._mu:
            if not overwrite:
                stem, dot, ext = name.rpartition(".")
                if not dot:
                    stem, ext = name, ""
                candidate, i = name, 1
                while (typ, sub, candidate) in self._files and self._files[
                    (typ, sub, candidate)
                ] != data:
                    candidate = f"{stem} ({i}){dot}{ext}"
                    i += 1
                name = candidate
            self._files[(typ, sub, name)] = data
            if typ == "input":
                self.uploads[f"{sub}/{name}" if sub else name] = data
        return web.json_response({"name": name, "subfolder": subfolder, "type": typ})

    # ------------------------------------------------------------------ introspection

    async def _system_stats(self, request: web.Request) -> web.StreamResponse:
        gib = 1024**3
        return web.json_response(
            {
                "system": {
                    "os": sys.platform,
                    "ram_total": 32 * gib,
                    "ram_free": 20 * gib,
                    "comfyui_version": "0.3.65",
                    "required_frontend_version": "1.28.6",
                    "installed_templates_version": "0.1.95",
                    "required_templates_version": "0.1.95",
                    "python_version": sys.version,
                    "pytorch_version": "2.8.0+cu128",
                    "embedded_python": False,
                    "argv": ["main.py", "--listen", self.host, "--port", str(self.port)],
                },
                "devices": [
                    {"name": "cuda:0 NVIDIA L4 : cudaMallocAsync", "type": "cuda", "index": 0,
                     "vram_total": 23 * gib, "vram_free": 22 * gib, "torch_vram_total": 0,
                     "torch_vram_free": 0}
                ],
            }
        )  # fmt: skip

    def _node_info(self, cls: str) -> dict[str, Any]:
        required, outputs, is_output = self._spec(cls)
        req = {k: ([t, o] if o else [t]) for k, (t, o) in required.items()}
        return {
            "input": {"required": req, "optional": {}, "hidden": {}},
            "input_order": {"required": list(required)},
            "output": outputs,
            "output_is_list": [False] * len(outputs),
            "output_name": outputs,
            "name": cls,
            "display_name": cls,
            "description": "",
            "python_module": "nodes",
            "category": "fake",
            "output_node": is_output,
        }

    async def _object_info(self, request: web.Request) -> web.StreamResponse:
        cls = request.match_info.get("node_class")
        if cls is not None:
            return web.json_response({cls: self._node_info(cls)} if cls in NODE_SPECS else {})
        return web.json_response({c: self._node_info(c) for c in NODE_SPECS})

    async def _features(self, request: web.Request) -> web.StreamResponse:
        return web.json_response({"supports_preview_metadata": True, "max_upload_size": MAX_UPLOAD})

    async def _embeddings(self, request: web.Request) -> web.StreamResponse:
        return web.json_response([])

    # ------------------------------------------------------------------ worker

    async def _worker(self) -> None:
        assert self._queue_changed is not None
        while True:
            if not self._heap:
                self._queue_changed.clear()
                await self._queue_changed.wait()
                continue
            item = heapq.heappop(self._heap)
            self._running = item
            self._run_task = asyncio.get_running_loop().create_task(self._execute(item))
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.shield(self._run_task)
            self._run_task = None
            self._running = None
            self._last_node = None

    def _order(self, graph: dict[str, Any], outputs: list[str]) -> list[str]:
        order: list[str] = []
        seen: set[str] = set()

        def visit(nid: str) -> None:
            if nid in seen:
                return
            seen.add(nid)
            for val in (graph[nid].get("inputs") or {}).values():
                if isinstance(val, list) and len(val) == 2 and isinstance(val[0], str):
                    visit(val[0])
            order.append(nid)

        for out in outputs:
            visit(out)
        return order

    def _signatures(self, graph: dict[str, Any], order: list[str]) -> dict[str, str]:
        sigs: dict[str, str] = {}
        for nid in order:
            node = graph[nid]
            parts: dict[str, Any] = {"class_type": node["class_type"]}
            for k, v in sorted((node.get("inputs") or {}).items()):
                if isinstance(v, list) and len(v) == 2 and isinstance(v[0], str) and v[0] in sigs:
                    parts[k] = ["link", sigs[v[0]], v[1]]
                else:
                    parts[k] = v
            if node["class_type"] == "LoadImage":  # upstream hashes the file content
                data = self.uploads.get(_strip_annotation(str(parts.get("image")))[0], b"")
                parts["content"] = hashlib.sha256(data).hexdigest()
            sigs[nid] = hashlib.sha256(
                json.dumps(parts, sort_keys=True, default=str).encode()
            ).hexdigest()
        return sigs

    async def _execute(self, item: _Item) -> None:
        record = Execution(item.prompt_id, item.client_id, time.monotonic())
        with self._mu:
            self.executions.append(record)
            self._mu.notify_all()
        try:
            await self._execute_inner(item, record)
        except asyncio.CancelledError:  # restart(): no history, no events
            with self._mu:
                record.ended = time.monotonic()
                self._mu.notify_all()
            raise

    async def _execute_inner(self, item: _Item, record: Execution) -> None:
        assert self._interrupt_evt is not None and self._release_evt is not None
        pid, sid, graph = item.prompt_id, item.client_id, item.graph
        self._interrupt_evt.clear()  # an interrupt sent while idle is lost
        self._release_evt.clear()
        with self._mu:
            hang = self._hangs > 0
            if hang:
                self._hangs -= 1
            drop = self._drop_ws > 0
            if drop:
                self._drop_ws -= 1
        messages: list[list[Any]] = []

        async def event(
            typ: str, data: dict[str, Any], keep: bool = False, broadcast_if_no_client: bool = False
        ) -> None:
            if keep:
                messages.append([typ, data])
            if sid is not None:
                await self._send(sid, typ, data)
            elif broadcast_if_no_client:
                await self._send(None, typ, data, broadcast=True)

        await event("execution_start", {"prompt_id": pid, "timestamp": _ms()}, keep=True)
        order = self._order(graph, item.outputs)
        sigs = self._signatures(graph, order)
        cached = [n for n in order if sigs[n] in self._cache]
        record.cached = cached
        await event(
            "execution_cached", {"nodes": cached, "prompt_id": pid, "timestamp": _ms()}, keep=True
        )
        values: dict[str, Any] = {}
        ui_outputs: dict[str, Any] = {}
        new_cache: dict[str, dict[str, Any]] = {}
        executed: list[str] = []
        spent = False
        status_str = "success"
        interrupted = False
        try:
            for nid in order:
                node = graph[nid]
                cls = node["class_type"]
                if nid in cached:
                    entry = self._cache[sigs[nid]]
                    values[nid] = entry["value"]
                    new_cache[sigs[nid]] = entry
                    if entry["ui"] is not None:
                        ui_outputs[nid] = entry["ui"]
                        await event(
                            "executed",
                            {
                                "node": nid,
                                "display_node": nid,
                                "output": entry["ui"],
                                "prompt_id": pid,
                            },
                        )
                    continue
                if self._interrupt_evt.is_set():
                    raise _Interrupted(nid)
                self._last_node = nid
                await event("executing", {"node": nid, "display_node": nid, "prompt_id": pid})
                await event(
                    "progress_state",
                    _progress_state(pid, nid, 0, 1, "running"),
                    broadcast_if_no_client=True,
                )
                with self._mu:
                    fault = None
                    for f in self._faults:
                        if f[2] == nid or (
                            f[2] is None
                            and (
                                cls == "KSampler"
                                or "KSampler"
                                not in {graph[n]["class_type"] for n in order if n not in cached}
                            )
                        ):
                            fault = f
                            break
                    if fault is not None:
                        self._faults.remove(fault)
                if fault is not None:
                    raise _Failed(nid, fault[0], fault[1], executed)
                if cls == "KSampler" or (
                    not spent
                    and not any(
                        graph[n]["class_type"] == "KSampler" for n in order if n not in cached
                    )
                ):
                    spent = True
                    await self._sample(pid, sid, nid, node, hang, drop)
                    drop = False
                values[nid], ui = self._compute(graph, nid, values)
                if ui is not None:
                    ui_outputs[nid] = ui
                    await event(
                        "executed",
                        {"node": nid, "display_node": nid, "output": ui, "prompt_id": pid},
                    )
                await event(
                    "progress_state",
                    _progress_state(pid, nid, 1, 1, "finished"),
                    broadcast_if_no_client=True,
                )
                new_cache[sigs[nid]] = {"value": values[nid], "ui": ui}
                executed.append(nid)
            await event("execution_success", {"prompt_id": pid, "timestamp": _ms()}, keep=True)
        except _Interrupted as e:
            status_str, interrupted = "error", True
            nid = str(e.args[0])
            data = {
                "prompt_id": pid,
                "node_id": nid,
                "node_type": graph[nid]["class_type"],
                "executed": executed,
                "timestamp": _ms(),
            }
            messages.append(["execution_interrupted", data])
            await (
                self._send(sid, "execution_interrupted", data)
                if sid
                else self._send(None, "execution_interrupted", data, broadcast=True)
            )
        except _Failed as e:
            status_str = "error"
            nid, exc_type, message, done = e.args
            node = graph[nid]
            data = {
                "prompt_id": pid,
                "node_id": nid,
                "node_type": node["class_type"],
                "executed": list(done),
                "exception_message": message,
                "exception_type": exc_type,
                "traceback": [
                    '  File "/ComfyUI/execution.py", line 496, in execute\n',
                    f"{exc_type}: {message}\n",
                ],
                "current_inputs": {
                    k: [v] for k, v in (node.get("inputs") or {}).items() if not isinstance(v, list)
                },
                "current_outputs": {},
                "timestamp": _ms(),
            }
            await event("execution_error", data, keep=True)
        self._cache = {**new_cache}
        if self.history_delay > 0:
            await asyncio.sleep(self.history_delay)
        meta = {
            n: {"node_id": n, "display_node": n, "parent_node": None, "real_node_id": n}
            for n in ui_outputs
        }
        extra = {k: v for k, v in item.extra_data.items() if k not in SENSITIVE_EXTRA}
        entry = {
            "prompt": [item.number, pid, graph, extra, item.outputs],
            "outputs": ui_outputs,
            "status": {
                "status_str": status_str,
                "completed": status_str == "success",
                "messages": messages,
            },
            "meta": meta,
        }
        with self._mu:
            self._history.pop(pid, None)  # a reused prompt_id overwrites and moves to the end
            self._history[pid] = entry
            while len(self._history) > 10_000:
                self._history.pop(next(iter(self._history)))
            record.ended = time.monotonic()
            record.status_str = status_str
            record.interrupted = interrupted
            record.executed = executed
            self._mu.notify_all()
        self._running = None
        await self._broadcast_status()
        if sid is not None:
            await self._send(sid, "executing", {"node": None, "prompt_id": pid})

    async def _sample(
        self, pid: str, sid: str | None, nid: str, node: dict[str, Any], hang: bool, drop: bool
    ) -> None:
        assert self._interrupt_evt is not None and self._release_evt is not None
        raw_steps = node.get("inputs", {}).get("steps", 1)
        try:
            steps = max(1, min(int(raw_steps), 100))  # capped: one WS event per step
        except (TypeError, ValueError):
            steps = 1
        per_step = self.execution_seconds / steps
        for step in range(1, steps + 1):
            if hang and step == steps // 2 + 1:
                waiters = [
                    asyncio.ensure_future(self._interrupt_evt.wait()),
                    asyncio.ensure_future(self._release_evt.wait()),
                ]
                await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
                for w in waiters:
                    w.cancel()
            elif per_step > 0:
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self._interrupt_evt.wait(), per_step)
            if self._interrupt_evt.is_set():
                raise _Interrupted(nid)
            data = {"value": step, "max": steps, "prompt_id": pid, "node": nid}
            if sid is not None:
                await self._send(sid, "progress", data)
            else:
                await self._send(None, "progress", data, broadcast=True)
            await self._send(
                sid,
                "progress_state",
                _progress_state(pid, nid, step, steps, "running"),
                broadcast=sid is None,
            )
            if step == 1:
                await self._preview(sid, pid, nid)
                if drop and sid is not None and sid in self._sockets:
                    self._cut(self._sockets[sid])

    def _compute(
        self, graph: dict[str, Any], nid: str, values: dict[str, Any]
    ) -> tuple[Any, dict[str, Any] | None]:
        """A symbolic value per node, enough to size and seed the images."""
        node = graph[nid]
        cls = node["class_type"]
        inp = node.get("inputs") or {}

        def link(name: str) -> Any:
            val = inp[name]
            src = values[val[0]]
            return src[val[1]] if isinstance(src, tuple) else src

        if cls == "EmptyLatentImage":
            return {
                "w": int(inp["width"]),
                "h": int(inp["height"]),
                "batch": int(inp["batch_size"]),
                "seed": 0,
            }, None
        if cls == "LoadImage":
            data = self.uploads.get(_strip_annotation(str(inp["image"]))[0], b"")
            try:
                w, h = png_size(data)
            except ValueError:
                w, h = 512, 512
            img = {
                "w": w,
                "h": h,
                "batch": 1,
                "seed": int(hashlib.sha256(data).hexdigest()[:8], 16),
            }
            return (img, {"mask": True}), None
        if cls == "KSampler":
            lat = dict(link("latent_image"))
            lat["seed"] = (int(inp["seed"]) + lat["seed"] * 31) & 0xFFFFFFFF
            return lat, None
        if cls in ("VAEDecode", "VAEEncode"):
            return dict(link("samples" if cls == "VAEDecode" else "pixels")), None
        if cls in ("SaveImage", "PreviewImage"):
            img = link("images")
            return None, {"images": self._save(graph, cls, inp, img)}
        # loaders and encoders: opaque handles, one per output slot
        return tuple(f"{nid}:{i}" for i in range(len(NODE_SPECS[cls][1]))), None

    def _save(
        self, graph: dict[str, Any], cls: str, inp: dict[str, Any], img: dict[str, Any]
    ) -> list[dict[str, Any]]:
        if cls == "SaveImage":
            typ, prefix = "output", str(inp.get("filename_prefix", "ComfyUI"))
        else:
            typ = "temp"
            prefix = "ComfyUI_temp_" + "".join(
                self._rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(5)
            )
        subfolder, _, base = prefix.rpartition("/")
        out = []
        with self._mu:
            counters = [
                int(name[len(base) + 1 : len(base) + 6])
                for (t, s, name) in self._files
                if t == typ
                and s == subfolder
                and name.startswith(base + "_")
                and name[len(base) + 1 : len(base) + 6].isdigit()
            ]
            counter = max(counters, default=0) + 1
            for i in range(img["batch"]):
                filename = f"{base}_{counter + i:05}_.png"
                data = make_png(
                    img["w"], img["h"], img["seed"] + i, text={"prompt": json.dumps(graph)}
                )
                self._files[(typ, subfolder, filename)] = data
                out.append({"filename": filename, "subfolder": subfolder, "type": typ})
        return out


def _progress_state(pid: str, nid: str, value: int, max_: int, state: str) -> dict[str, Any]:
    return {
        "prompt_id": pid,
        "nodes": {
            nid: {"value": value, "max": max_, "state": state, "node_id": nid, "prompt_id": pid,
                  "display_node_id": nid, "parent_node_id": None, "real_node_id": nid}
        },
    }  # fmt: skip


def _strip_annotation(name: str) -> tuple[str, str | None]:
    """``"x.png [output]"`` -> ("x.png", "output")."""
    for typ in FILE_TYPES:
        suffix = f" [{typ}]"
        if name.endswith(suffix):
            return name[: -len(suffix)], typ
    return name, None
