"""The fake ComfyUI's HTTP routes: request recording and faults, prompt, queue, history, info."""

from __future__ import annotations

import contextlib
import heapq
import json
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from sdfleet.fakes._common import Call
from sdfleet.fakes.comfyui.api import (
    MAX_UPLOAD,
    NODE_SPECS,
    QueueItem,
    comfy_error,
    empty_response,
)
from sdfleet.fakes.comfyui.files import ComfyUIFiles


class ComfyUIRoutes(ComfyUIFiles):
    """The route handlers; ``FakeComfyUI`` mounts them on an aiohttp app."""

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
            return empty_response(403)
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
                return empty_response(500)  # never reaches the client: the transport is closed
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

    async def _post_prompt(self, request: web.Request) -> web.StreamResponse:
        body = await self._json(request)
        if not isinstance(body, dict) or "prompt" not in body:
            return web.json_response(
                {
                    "error": comfy_error("no_prompt", "No prompt provided", "No prompt provided"),
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
        submitted = time.monotonic()
        item = QueueItem(
            number, next(self._seq), prompt_id, graph, extra, outputs, client_id, submitted
        )
        with self._mu:
            self.submitted[prompt_id] = submitted
            self._mu.notify_all()
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
                # Pending items only: the running prompt is untouched (interrupt it instead).
                gone = [i.prompt_id for i in self._heap if i.prompt_id in delete]
                self._heap = [i for i in self._heap if i.prompt_id not in delete]
                heapq.heapify(self._heap)
                with self._mu:
                    self.deleted.extend(gone)
                    self._mu.notify_all()
        await self._broadcast_status()
        return empty_response()

    async def _interrupt(self, request: web.Request) -> web.StreamResponse:
        with self._mu:
            self.interrupts += 1
        target = None
        with contextlib.suppress(ValueError, UnicodeDecodeError):
            raw = await request.read()
            data = json.loads(raw) if raw else {}
            if isinstance(data, dict):
                target = data.get("prompt_id")
        with self._mu:
            self.interrupted_ids.append(None if target is None else str(target))
            self._mu.notify_all()
        # Newer builds: a prompt_id interrupts only that prompt, and only while it runs.
        running = self._running
        if running is not None and (target is None or str(target) == running.prompt_id):
            assert self._interrupt_evt is not None
            self._interrupt_evt.set()
        return empty_response()

    async def _free(self, request: web.Request) -> web.StreamResponse:
        body = await self._json(request)
        if isinstance(body, dict) and body.get("free_memory"):
            self._cache.clear()
        return empty_response()

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
        return empty_response()

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
