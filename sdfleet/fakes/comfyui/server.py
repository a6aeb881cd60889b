"""The fake ComfyUI's server: an aiohttp app on its own event loop thread, and its lifecycle."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Awaitable, Callable
from typing import TypeVar

from aiohttp import web

from sdfleet.fakes.comfyui.api import MAX_UPLOAD
from sdfleet.fakes.comfyui.routes import ComfyUIRoutes

T = TypeVar("T")


class FakeComfyUI(ComfyUIRoutes):
    """The fake server; see the package docstring for the constructor and runtime knobs."""

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

    def queue_ids(self) -> tuple[list[str], list[str]]:
        """Prompt ids running and pending (in run order), read on the server's loop."""

        async def read() -> tuple[list[str], list[str]]:
            running = [self._running.prompt_id] if self._running is not None else []
            return running, [i.prompt_id for i in sorted(self._heap)]

        return self._on_loop(read())

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

    def close_websockets(self) -> None:
        self._on_loop(self._drop_sockets())
