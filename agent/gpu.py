"""The GPU stage: one task at a time against the inference server, under a watchdog that
interrupts the server at the job timeout or at the end of the shutdown drain.

A server with a queue of its own (ComfyUI, ``queue_ahead``) gets the next task submitted while
one runs, so it starts it the moment the running one ends: at most one task is queued ahead, and
the receiver prefetches the one after only when the queued one starts. The queued task is taken
back (``dequeue``) and its message released when it must not run here (the agent stops, the
server went away); if it started meanwhile, it is run (or interrupted) like the running one."""

from __future__ import annotations

import logging
import queue
import threading
import time
from dataclasses import dataclass
from typing import Any

from sdfleet.agent import errors
from sdfleet.agent.config import Config
from sdfleet.agent.errors import Interrupted, ServerUnavailable, TaskError
from sdfleet.agent.held import Finished, Held, Liveness, Republish, RunningNote, ms
from sdfleet.agent.messages import MessageBook
from sdfleet.agent.policies import ShutdownPolicy
from sdfleet.agent.servers.base import InferenceServer, JobControl, Prepared, QueueingServer
from sdfleet.agent.tracing import Tracing

log = logging.getLogger("agent.worker")


@dataclass
class Queued:
    """A task submitted to the server behind the running one (its message is held meanwhile)."""

    held: Held
    control: JobControl
    cancel_tried: bool = False


class GpuStage:
    """Mixin of :class:`sdfleet.agent.worker.Agent` (the attributes below are the Agent's)."""

    config: Config
    server: InferenceServer
    tracing: Tracing
    shutdown: ShutdownPolicy
    liveness: Liveness
    server_ready: threading.Event
    finished: threading.Event
    book: MessageBook
    _ready_lock: threading.Lock
    _slot: threading.Semaphore
    _handoff: queue.Queue[Held]
    _receiver_done: threading.Event
    _current: tuple[JobControl, Prepared] | None
    _current_lock: threading.Lock
    _ahead: Queued | None
    _last_gpu_end: float | None

    def _enqueue_upload(self, item: Finished | RunningNote | Republish) -> None:
        raise NotImplementedError

    def _release_handoff(self) -> None:
        raise NotImplementedError

    def _wait_ready(self) -> bool:
        raise NotImplementedError

    def _gpu_loop(self) -> None:
        ahead = bool(getattr(self.server, "queue_ahead", False))
        pending: list[Finished] = []
        while True:
            self.liveness.touch("gpu", 5.0 + self.config.receive_wait_seconds + 60)
            queued = self._promote() if ahead else None
            if queued is not None:
                self._slot.release()  # the queued task runs now: room for the next prefetch
                self._flush(pending)
                result = self._run_on_gpu(queued.held, None, queued.control)
                if result is not None:
                    pending.append(result)
                continue
            if pending and self._handoff.empty():
                # Nothing to hand off to the GPU: upload right away.
                self._flush(pending)
            try:
                held = self._handoff.get(timeout=0.2)
            except queue.Empty:
                if self.shutdown.stopping.is_set():
                    self._flush(pending)
                    return
                continue
            if self.shutdown.stopping.is_set():
                self._slot.release()
                self._flush(pending)
                self.book.release(held, "stopping")
                continue
            if ahead:
                control = self._submit_first(held)
                self._slot.release()
                if control is not None:
                    self._flush(pending)
                    result = self._run_on_gpu(held, None, control)
                    if result is not None:
                        pending.append(result)
                continue
            released = threading.Event()

            def on_sent(batch: list[Finished] = pending, done: threading.Event = released) -> None:
                self._slot.release()
                done.set()
                self._flush(batch)

            pending = []
            result = self._run_on_gpu(held, on_sent)
            if not released.is_set():  # the job never reached the server
                on_sent()
            if result is not None:
                pending.append(result)

    def _flush(self, pending: list[Finished]) -> None:
        while pending:
            self._enqueue_upload(pending.pop(0))

    def _run_on_gpu(
        self, held: Held, on_sent: Any, submitted: JobControl | None = None
    ) -> Finished | None:
        """Run the task (``submitted``: its control when it is on the server's queue already)."""
        assert held.prepared is not None
        prepared = held.prepared
        if self.config.callback_when_running:
            self._enqueue_upload(RunningNote(held=held))
        started = time.monotonic()
        gap = None if self._last_gpu_end is None else started - self._last_gpu_end
        control = JobControl(timeout_at=0.0, on_sent=on_sent) if submitted is None else submitted
        control.timeout_at = started + self.config.job_timeout_seconds
        self.liveness.touch(
            "gpu", self.config.job_timeout_seconds + self.config.drain_seconds + 120
        )
        with self._current_lock:
            self._current = (control, prepared)
            if self._ahead is not None and self._ahead.held is held:
                self._ahead = None
        self.book.log_state(held, "running")
        held.begin_stage("inference")
        result = Finished(held=held)
        try:
            if submitted is None:
                result.raw = self.server.run(prepared, control)
            else:
                server: QueueingServer = self.server  # type: ignore[assignment]
                result.raw = server.wait(prepared, control, self._fill_ahead)
        except TaskError as exc:
            result.error = exc
        except Interrupted:
            control.sent()
            held.end_stage("interrupted", "interrupted for shutdown")
            self.book.release(held, "interrupted for shutdown")
            return None
        except ServerUnavailable as exc:
            control.sent()
            held.end_stage(errors.SERVER_UNAVAILABLE, str(exc))
            log.warning(
                "inference server unavailable; releasing the task and waiting",
                extra={"fields": {**held.log_fields(), "error": str(exc)}},
            )
            with self._ready_lock:
                self.server_ready.clear()
            self.book.release(held, "server unavailable")
            self._cancel_ahead("server unavailable")
            # Let other pods have the prefetched task rather than holding it while we wait.
            self._release_handoff()
            self._wait_ready()
            return None
        except Exception as exc:
            log.exception("unexpected inference error", extra={"fields": held.log_fields()})
            result.error = TaskError(errors.SERVER_ERROR, f"{type(exc).__name__}: {exc}")
        finally:
            with self._current_lock:
                self._current = None
            self._last_gpu_end = time.monotonic()
        if result.error is not None:
            held.end_stage(result.error.code, result.error.message)
        held.end_stage()
        held.timings["inference_ms"] = ms(self._last_gpu_end - started)
        if gap is not None:
            held.timings["gpu_idle_gap_us"] = int(gap * 1e6)
        return result

    # -- queueing servers: one task queued behind the running one ------------------------------

    def _submit(self, held: Held) -> JobControl:
        assert held.prepared is not None
        control = JobControl(timeout_at=time.monotonic() + self.config.job_timeout_seconds)
        server: QueueingServer = self.server  # type: ignore[assignment]
        server.submit(held.prepared, control)
        return control

    def _submit_first(self, held: Held) -> JobControl | None:
        """Submit a task with nothing running; None when it ended here (failed or released)."""
        try:
            return self._submit(held)
        except TaskError as exc:
            self._enqueue_upload(Finished(held=held, error=exc))
        except ServerUnavailable as exc:
            # As when a running task finds the server gone (see _run_on_gpu).
            log.warning("inference server unavailable", extra={"fields": {"error": str(exc)}})
            with self._ready_lock:
                self.server_ready.clear()
            self.book.release(held, "server unavailable")
            self._release_handoff()
            self._wait_ready()
        except Exception as exc:
            log.exception("unexpected submit error")
            error = TaskError(errors.SERVER_ERROR, f"{type(exc).__name__}: {exc}")
            self._enqueue_upload(Finished(held=held, error=error))
        return None

    def _fill_ahead(self) -> None:
        """The server's idle hook while a task runs: queue the next prepared task behind it, or
        take the queued one back once the agent is stopping."""
        with self._current_lock:
            queued = self._ahead
        if self.shutdown.stopping.is_set():
            if queued is not None and not queued.cancel_tried:
                self._cancel_ahead("stopping")
            return
        if queued is not None:
            return
        try:
            held = self._handoff.get_nowait()
        except queue.Empty:
            return
        try:
            control = self._submit(held)
        except TaskError as exc:
            self._slot.release()
            self._enqueue_upload(Finished(held=held, error=exc))
            return
        except Exception as exc:
            # The POST may have gone through: take it back before releasing the message.
            log.warning("queueing the next task failed", extra={"fields": {"error": str(exc)}})
            control = JobControl(timeout_at=time.monotonic() + self.config.job_timeout_seconds)
            with self._current_lock:
                self._ahead = Queued(held, control)
            self._cancel_ahead("server unavailable")
            return
        with self._current_lock:
            self._ahead = Queued(held, control)
        self.book.log_state(held, "queued")

    def _promote(self) -> Queued | None:
        """The queued task, about to be waited for as the running one (if it still exists)."""
        with self._current_lock:
            queued = self._ahead
        if queued is not None and self.shutdown.stopping.is_set() and not queued.cancel_tried:
            self._cancel_ahead("stopping")
            with self._current_lock:
                queued = self._ahead
        return queued

    def _cancel_ahead(self, why: str) -> None:
        """Take the queued task off the server's queue and release its message. If it has
        started (or the server cannot tell), it stays: it is then waited for, finished or
        interrupted like any running task, so it never runs both here and elsewhere."""
        with self._current_lock:
            queued = self._ahead
        if queued is None:
            return
        queued.cancel_tried = True
        assert queued.held.prepared is not None
        server: QueueingServer = self.server  # type: ignore[assignment]
        if not server.dequeue(queued.held.prepared):
            log.info(
                "the queued task has started; it runs",
                extra={"fields": {**queued.held.log_fields(), "reason": why}},
            )
            return
        with self._current_lock:
            self._ahead = None
        self._slot.release()
        self.book.release(queued.held, why)

    def _watchdog_loop(self) -> None:
        """Interrupt the running job at its timeout, or when the shutdown drain runs out."""
        while not self.finished.is_set():
            with self._current_lock:
                current = self._current
            if current is not None:
                control, prepared = current
                reason = None
                if time.monotonic() >= control.timeout_at:
                    reason = "timeout"
                elif self.shutdown.stopping.is_set() and self.shutdown.drain_remaining() == 0:
                    reason = "shutdown"
                if reason and control.abort(reason):
                    log.warning(
                        "interrupting the running job",
                        extra={"fields": {"task_id": prepared.task.metadata.id, "reason": reason}},
                    )
                    self.server.interrupt(prepared)
            if (
                self._receiver_done.is_set()
                and self._handoff.empty()
                and current is None
                and self._ahead is None
                and (self.shutdown.stopping.is_set())
            ):
                return
            time.sleep(0.05)
