"""The GPU stage: one task at a time against the inference server, under a watchdog that
interrupts the server at the job timeout or at the end of the shutdown drain."""

from __future__ import annotations

import logging
import queue
import threading
import time
from typing import Any

from sdfleet.agent import errors
from sdfleet.agent.config import Config
from sdfleet.agent.errors import Interrupted, ServerUnavailable, TaskError
from sdfleet.agent.held import Finished, Held, Liveness, Republish, RunningNote, ms
from sdfleet.agent.messages import MessageBook
from sdfleet.agent.policies import ShutdownPolicy
from sdfleet.agent.servers.base import InferenceServer, JobControl, Prepared
from sdfleet.agent.tracing import Tracing

log = logging.getLogger("agent.worker")


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
    _last_gpu_end: float | None

    def _enqueue_upload(self, item: Finished | RunningNote | Republish) -> None:
        raise NotImplementedError

    def _release_handoff(self) -> None:
        raise NotImplementedError

    def _wait_ready(self) -> bool:
        raise NotImplementedError

    def _gpu_loop(self) -> None:
        pending: list[Finished] = []
        while True:
            self.liveness.touch("gpu", 5.0 + self.config.receive_wait_seconds + 60)
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

    def _run_on_gpu(self, held: Held, on_sent: Any) -> Finished | None:
        assert held.prepared is not None
        prepared = held.prepared
        if self.config.callback_when_running:
            self._enqueue_upload(RunningNote(held=held))
        started = time.monotonic()
        gap = None if self._last_gpu_end is None else started - self._last_gpu_end
        control = JobControl(timeout_at=started + self.config.job_timeout_seconds, on_sent=on_sent)
        self.liveness.touch(
            "gpu", self.config.job_timeout_seconds + self.config.drain_seconds + 120
        )
        with self._current_lock:
            self._current = (control, prepared)
        self.book.log_state(held, "running")
        span = self.tracing.child(held.span, "inference") if held.span is not None else None
        result = Finished(held=held)
        try:
            result.raw = self.server.run(prepared, control)
        except TaskError as exc:
            result.error = exc
        except Interrupted:
            control.sent()
            self.book.release(held, "interrupted for shutdown")
            return None
        except ServerUnavailable as exc:
            control.sent()
            log.warning(
                "inference server unavailable; releasing the task and waiting",
                extra={"fields": {"id": prepared.task.metadata.id, "error": str(exc)}},
            )
            with self._ready_lock:
                self.server_ready.clear()
            self.book.release(held, "server unavailable")
            # Let other pods have the prefetched task rather than holding it while we wait.
            self._release_handoff()
            self._wait_ready()
            return None
        except Exception as exc:
            log.exception(
                "unexpected inference error", extra={"fields": {"id": prepared.task.metadata.id}}
            )
            result.error = TaskError(errors.SERVER_ERROR, f"{type(exc).__name__}: {exc}")
        finally:
            with self._current_lock:
                self._current = None
            self._last_gpu_end = time.monotonic()
            if span is not None:
                span.end()
        held.timings["inference_ms"] = ms(self._last_gpu_end - started)
        if gap is not None:
            held.timings["gpu_idle_gap_us"] = int(gap * 1e6)
        return result

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
                        extra={"fields": {"id": prepared.task.metadata.id, "reason": reason}},
                    )
                    self.server.interrupt(prepared)
            if (
                self._receiver_done.is_set()
                and self._handoff.empty()
                and current is None
                and (self.shutdown.stopping.is_set())
            ):
                return
            time.sleep(0.05)
