"""The fake ComfyUI's worker: one prompt at a time, its events, the sampler and the history."""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import time
from dataclasses import dataclass, field
from typing import Any

from sdfleet.fakes.comfyui.api import (
    SENSITIVE_EXTRA,
    Failed,
    Interrupted,
    QueueItem,
    now_ms,
    progress_state,
)
from sdfleet.fakes.comfyui.nodes import ComfyUINodes
from sdfleet.fakes.comfyui.state import Execution


@dataclass
class _Run:
    """One prompt's run in progress: what it computed, cached and sent so far."""

    item: QueueItem
    hang: bool
    drop: bool  # cut the client's websocket at the first progress event
    order: list[str] = field(default_factory=list)
    sigs: dict[str, str] = field(default_factory=dict)
    cached: list[str] = field(default_factory=list)
    messages: list[list[Any]] = field(default_factory=list)  # the history's status messages
    values: dict[str, Any] = field(default_factory=dict)
    ui_outputs: dict[str, Any] = field(default_factory=dict)
    new_cache: dict[str, dict[str, Any]] = field(default_factory=dict)
    executed: list[str] = field(default_factory=list)
    spent: bool = False  # the execution time was spent (in a KSampler or the first node)


class ComfyUIExecution(ComfyUINodes):
    """The prompt worker on the server's event loop."""

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

    async def _execute(self, item: QueueItem) -> None:
        record = Execution(item.prompt_id, item.client_id, time.monotonic(), item.submitted)
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

    async def _event(
        self,
        run: _Run,
        typ: str,
        data: dict[str, Any],
        keep: bool = False,
        broadcast_if_no_client: bool = False,
    ) -> None:
        """Send to the prompt's client; ``keep`` also records it in the history messages."""
        if keep:
            run.messages.append([typ, data])
        sid = run.item.client_id
        if sid is not None:
            await self._send(sid, typ, data)
        elif broadcast_if_no_client:
            await self._send(None, typ, data, broadcast=True)

    async def _execute_inner(self, item: QueueItem, record: Execution) -> None:
        assert self._interrupt_evt is not None and self._release_evt is not None
        pid, sid, graph = item.prompt_id, item.client_id, item.graph
        self._interrupt_evt.clear()  # an interrupt sent while idle is lost
        self._release_evt.clear()
        hang, drop = self._take_run_knobs()
        run = _Run(item, hang, drop)
        await self._event(
            run, "execution_start", {"prompt_id": pid, "timestamp": now_ms()}, keep=True
        )
        run.order = self._order(graph, item.outputs)
        run.sigs = self._signatures(graph, run.order)
        run.cached = [n for n in run.order if run.sigs[n] in self._cache]
        record.cached = run.cached
        await self._event(
            run,
            "execution_cached",
            {"nodes": run.cached, "prompt_id": pid, "timestamp": now_ms()},
            keep=True,
        )
        status_str = "success"
        interrupted = False
        try:
            for nid in run.order:
                await self._run_node(run, nid)
            await self._event(
                run, "execution_success", {"prompt_id": pid, "timestamp": now_ms()}, keep=True
            )
        except Interrupted as e:
            status_str, interrupted = "error", True
            await self._send_interrupted(run, str(e.args[0]))
        except Failed as e:
            status_str = "error"
            nid, exc_type, message, done = e.args
            await self._send_error(run, nid, exc_type, message, done)
        self._cache = {**run.new_cache}
        if self.history_delay > 0:
            await asyncio.sleep(self.history_delay)
        self._write_history(run, record, status_str, interrupted)
        self._running = None
        await self._broadcast_status()
        if sid is not None:
            await self._send(sid, "executing", {"node": None, "prompt_id": pid})

    async def _run_node(self, run: _Run, nid: str) -> None:
        """Execute (or take from the cache) one node, with its events."""
        assert self._interrupt_evt is not None
        pid, sid, graph = run.item.prompt_id, run.item.client_id, run.item.graph
        node = graph[nid]
        cls = node["class_type"]
        if nid in run.cached:
            entry = self._cache[run.sigs[nid]]
            run.values[nid] = entry["value"]
            run.new_cache[run.sigs[nid]] = entry
            if entry["ui"] is not None:
                run.ui_outputs[nid] = entry["ui"]
                await self._event(
                    run,
                    "executed",
                    {"node": nid, "display_node": nid, "output": entry["ui"], "prompt_id": pid},
                )
            return
        if self._interrupt_evt.is_set():
            raise Interrupted(nid)
        self._last_node = nid
        await self._event(run, "executing", {"node": nid, "display_node": nid, "prompt_id": pid})
        await self._event(
            run,
            "progress_state",
            progress_state(pid, nid, 0, 1, "running"),
            broadcast_if_no_client=True,
        )
        pending = [n for n in run.order if n not in run.cached]
        fault = self._take_execution_fault(nid, cls, graph, pending)
        if fault is not None:
            raise Failed(nid, fault[0], fault[1], run.executed)
        if cls == "KSampler" or (
            not run.spent and not any(graph[n]["class_type"] == "KSampler" for n in pending)
        ):
            run.spent = True
            await self._sample(pid, sid, nid, node, run.hang, run.drop)
            run.drop = False
        run.values[nid], ui = self._compute(graph, nid, run.values)
        if ui is not None:
            run.ui_outputs[nid] = ui
            await self._event(
                run,
                "executed",
                {"node": nid, "display_node": nid, "output": ui, "prompt_id": pid},
            )
        await self._event(
            run,
            "progress_state",
            progress_state(pid, nid, 1, 1, "finished"),
            broadcast_if_no_client=True,
        )
        run.new_cache[run.sigs[nid]] = {"value": run.values[nid], "ui": ui}
        run.executed.append(nid)

    async def _send_interrupted(self, run: _Run, nid: str) -> None:
        pid, sid = run.item.prompt_id, run.item.client_id
        data = {
            "prompt_id": pid,
            "node_id": nid,
            "node_type": run.item.graph[nid]["class_type"],
            "executed": run.executed,
            "timestamp": now_ms(),
        }
        run.messages.append(["execution_interrupted", data])
        await (
            self._send(sid, "execution_interrupted", data)
            if sid
            else self._send(None, "execution_interrupted", data, broadcast=True)
        )

    async def _send_error(
        self, run: _Run, nid: str, exc_type: str, message: str, done: list[str]
    ) -> None:
        node = run.item.graph[nid]
        data = {
            "prompt_id": run.item.prompt_id,
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
            "timestamp": now_ms(),
        }
        await self._event(run, "execution_error", data, keep=True)

    def _write_history(
        self, run: _Run, record: Execution, status_str: str, interrupted: bool
    ) -> None:
        item = run.item
        meta = {
            n: {"node_id": n, "display_node": n, "parent_node": None, "real_node_id": n}
            for n in run.ui_outputs
        }
        extra = {k: v for k, v in item.extra_data.items() if k not in SENSITIVE_EXTRA}
        entry = {
            "prompt": [item.number, item.prompt_id, item.graph, extra, item.outputs],
            "outputs": run.ui_outputs,
            "status": {
                "status_str": status_str,
                "completed": status_str == "success",
                "messages": run.messages,
            },
            "meta": meta,
        }
        with self._mu:
            # a reused prompt_id overwrites and moves to the end
            self._history.pop(item.prompt_id, None)
            self._history[item.prompt_id] = entry
            while len(self._history) > 10_000:
                self._history.pop(next(iter(self._history)))
            record.ended = time.monotonic()
            record.status_str = status_str
            record.interrupted = interrupted
            record.executed = run.executed
            self._mu.notify_all()

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
                raise Interrupted(nid)
            data = {"value": step, "max": steps, "prompt_id": pid, "node": nid}
            if sid is not None:
                await self._send(sid, "progress", data)
            else:
                await self._send(None, "progress", data, broadcast=True)
            await self._send(
                sid,
                "progress_state",
                progress_state(pid, nid, step, steps, "running"),
                broadcast=sid is None,
            )
            if step == 1:
                await self._preview(sid, pid, nid)
                if drop and sid is not None and sid in self._sockets:
                    self._cut(self._sockets[sid])
