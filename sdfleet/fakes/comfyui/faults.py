"""Fault injection for the fake ComfyUI: HTTP errors and drops, failed runs, hangs, cut sockets."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

from sdfleet.fakes.comfyui.api import OOM_TIPS


class ComfyUIFaults:
    """The fault knobs (a base of the server's state, whose lock and event loop they use)."""

    _mu: threading.Condition
    _loop: asyncio.AbstractEventLoop | None
    _release_evt: asyncio.Event | None

    def _init_faults(self) -> None:
        self._faults: list[tuple[str, str, str | None]] = []
        self._http_faults: list[list[Any]] = []  # [status, body, remaining, suffix, drop]
        self._drop_ws = 0
        self._hangs = 0

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

    def _take_run_knobs(self) -> tuple[bool, bool]:
        """Whether the run starting now hangs, and whether its websocket is cut."""
        with self._mu:
            hang = self._hangs > 0
            if hang:
                self._hangs -= 1
            drop = self._drop_ws > 0
            if drop:
                self._drop_ws -= 1
        return hang, drop

    def _take_execution_fault(
        self, nid: str, cls: str, graph: dict[str, Any], pending: list[str]
    ) -> tuple[str, str, str | None] | None:
        """The ``fail_next_execution`` fault for node ``nid``, if any (removed when taken).
        Without a node id it fires in the KSampler, or the first node of a graph without one."""
        with self._mu:
            fault = None
            for f in self._faults:
                if f[2] == nid or (
                    f[2] is None
                    and (
                        cls == "KSampler"
                        or "KSampler" not in {graph[n]["class_type"] for n in pending}
                    )
                ):
                    fault = f
                    break
            if fault is not None:
                self._faults.remove(fault)
        return fault
