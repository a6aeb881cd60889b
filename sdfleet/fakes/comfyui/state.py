"""The fake ComfyUI's state: queue, history, files, cache, sockets and what was executed."""

from __future__ import annotations

import asyncio
import copy
import itertools
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from sdfleet.fakes._common import Call, CallLog, free_port
from sdfleet.fakes.comfyui.api import DEFAULT_CHECKPOINTS, QueueItem
from sdfleet.fakes.comfyui.faults import ComfyUIFaults


@dataclass
class Execution:
    """One prompt taken by the worker (times are ``time.monotonic()``)."""

    prompt_id: str
    client_id: str | None
    started: float
    submitted: float = 0.0  # when its POST /prompt was queued
    ended: float | None = None
    status_str: str | None = None  # success | error; None if wiped by restart()
    interrupted: bool = False
    cached: list[str] = field(default_factory=list)
    executed: list[str] = field(default_factory=list)


class ComfyUIState(ComfyUIFaults):
    """What the server knows. ``_mu`` guards what test threads read (history, executions,
    files, knobs); the queue, cache and sockets belong to the event loop."""

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
        self.submitted: dict[str, float] = {}  # prompt id -> when POST /prompt queued it
        self.deleted: list[str] = []  # pending prompt ids removed by POST /queue {"delete"}
        self.interrupted_ids: list[str | None] = []  # POST /interrupt's prompt_id (None: any)
        self.calls_log = CallLog()

        self._ready = ready
        self._mu = threading.Condition()  # guards history/executions/knobs across threads
        self._history: dict[str, dict[str, Any]] = {}
        self._files: dict[tuple[str, str, str], bytes] = {}
        self._init_faults()
        self._seq = itertools.count()
        self._number = 0
        self._heap: list[QueueItem] = []
        self._running: QueueItem | None = None
        self._last_node: str | None = None
        self._cache: dict[str, dict[str, Any]] = {}
        self._sockets: dict[str, web.WebSocketResponse] = {}
        self._ws_requests: dict[int, web.Request] = {}
        self._req_calls: dict[int, Call] = {}
        self._flags: dict[int, dict[str, Any]] = {}
        self._rng = random.Random(7)

        self._loop = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self._site: web.TCPSite | None = None
        self._worker_task: asyncio.Task[None] | None = None
        self._run_task: asyncio.Task[None] | None = None
        self._queue_changed: asyncio.Event | None = None
        self._interrupt_evt: asyncio.Event | None = None
        self._release_evt = None

    @property
    def calls(self) -> list[Call]:
        return self.calls_log.snapshot()

    def wait_for_calls(
        self, path_suffix: str, n: int = 1, timeout: float = 5.0, *, completed: bool = False
    ) -> list[Call]:
        return self.calls_log.wait_for_calls(path_suffix, n, timeout, completed=completed)

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

    def wait_until(self, predicate: Callable[[], bool], timeout: float = 5.0) -> None:
        """Until ``predicate()`` (called under the lock whenever the recorded state changes:
        submissions, deletes, interrupts, executions, history) is true."""
        deadline = time.monotonic() + timeout
        with self._mu:
            while not predicate():
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"condition not met within {timeout}s")
                self._mu.wait(left)

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

    def _queue_remaining(self) -> int:
        return len(self._heap) + (1 if self._running is not None else 0)
