"""The pipelined queue loop.

Three stages, each on its own thread, so the GPU never waits for the agent:

* receiver (``sdfleet.agent.receiver``): long-polls SQS, parses, downloads inputs, one task ahead.
* GPU stage (``sdfleet.agent.gpu``): one task at a time against the inference server, under a
  watchdog; a server with its own queue (ComfyUI) gets the next task queued behind it.
* uploader (``sdfleet.agent.completion``): writes the images and the result document, publishes the
  notification (both retried in place) and only then deletes the message.

Every held message (prefetched, running, uploading) is kept invisible by the heartbeat, which
has a thread and an SQS client of its own.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from typing import Any

from sdfleet.agent.completion import Completer
from sdfleet.agent.config import Config
from sdfleet.agent.contract import RuntimeInfo
from sdfleet.agent.gpu import GpuStage, Queued
from sdfleet.agent.heartbeat import Heartbeat
from sdfleet.agent.held import Finished, Held, Liveness, Republish, RunningNote, ms
from sdfleet.agent.messages import MessageBook
from sdfleet.agent.metrics import Metrics
from sdfleet.agent.node_info import AgentUpBeat, NodeInfo
from sdfleet.agent.occupancy import BusySink, OccupancyReporter
from sdfleet.agent.policies import Backoff, ShutdownPolicy
from sdfleet.agent.receiver import ReceiverStage
from sdfleet.agent.servers.base import InferenceServer, JobControl, Prepared, StartupError
from sdfleet.agent.tracing import Tracing

log = logging.getLogger("agent.worker")

EXIT_OK = 0
EXIT_STARTUP = 3

__all__ = ["EXIT_OK", "EXIT_STARTUP", "Agent", "Liveness"]


class Agent(ReceiverStage, GpuStage):
    def __init__(
        self,
        config: Config,
        *,
        sqs: Any,
        s3: Any,
        sns: Any,
        server: InferenceServer,
        heartbeat_sqs: Any = None,
        pod_cost: BusySink | None = None,
        metrics: Metrics | None = None,
        tracing: Tracing | None = None,
        node: NodeInfo | None = None,
    ) -> None:
        """``heartbeat_sqs``: the heartbeat's own SQS client (short timeouts; default ``sqs``).
        ``pod_cost``: told busy/idle as the agent starts and stops holding tasks.
        ``node``: this pod's node, reported by the AgentUp metric (default: unknown)."""
        self.config = config
        self.sqs = sqs
        self.s3 = s3
        self.sns = sns
        self.server = server
        self.metrics = metrics or Metrics(config.runtime_name)
        self.tracing = tracing or Tracing.setup(None, "sdfleet-agent")
        # From start to stop, whether the server is ready or not: the pod holds its node.
        self.agent_up = AgentUpBeat(self.metrics, node or NodeInfo(), ready=lambda: self.ready()[0])
        self.shutdown = ShutdownPolicy(config.drain_seconds)
        self.runtime_info = RuntimeInfo(
            name=config.runtime_name,
            type=config.runtime_type,
            model_filename=config.model_filename,
            dynamic_model=config.dynamic_sd_model,
            limits=config.task_limits,
        )
        self.occupancy = OccupancyReporter(pod_cost) if pod_cost is not None else None
        self.heartbeat = Heartbeat(
            heartbeat_sqs if heartbeat_sqs is not None else sqs,
            config.sqs_queue_url,
            config.heartbeat_seconds,
            config.visibility_extension_seconds,
            on_busy=self.occupancy.set if self.occupancy is not None else None,
        )
        self.book = MessageBook(sqs, config.sqs_queue_url, self.heartbeat, config.runtime_name)
        self.completion = Completer(config, s3=s3, sns=sns, book=self.book, metrics=self.metrics)
        self.liveness = Liveness()
        self.server_ready = threading.Event()
        # Taken to hand a prepared task to the GPU stage and to mark the server lost, so a
        # task received while the server goes away is never held until it comes back.
        self._ready_lock = threading.Lock()
        self.finished = threading.Event()
        self._slot = threading.Semaphore(1)
        self._handoff: queue.Queue[Held] = queue.Queue()
        self._uploads: queue.Queue[Finished | RunningNote | Republish | None] = queue.Queue(
            maxsize=4
        )
        self._receiver_done = threading.Event()
        self._threads: list[threading.Thread] = []
        self._current: tuple[JobControl, Prepared] | None = None
        self._current_lock = threading.Lock()
        self._ahead: Queued | None = None  # queued on the server behind the running task
        self._last_gpu_end: float | None = None
        self.ready_probes = 0

    @property
    def counts(self) -> dict[str, int]:
        return self.book.counts

    # ----------------------------------------------------------------------------------------
    # lifecycle

    def request_stop(self) -> None:
        """Signal handler body: the first call drains, the second exits at once."""
        if self.shutdown.request():
            log.warning("second stop signal: exiting now")
            os._exit(1)
        log.info(
            "stop requested: draining",
            extra={"fields": {"drain_seconds": self.config.drain_seconds}},
        )

    def run(self) -> int:
        """Block until shut down; return the process exit status."""
        if self.occupancy is not None:
            self.occupancy.start()
        self.heartbeat.start()
        self.agent_up.start()
        try:
            if not self._wait_ready():
                return EXIT_OK
            self.agent_up.beat_now()
            if self.config.model_filename and not self.config.dynamic_sd_model:
                try:
                    self.server.verify_static_model(self.config.model_filename)
                except StartupError as exc:
                    log.error(str(exc), extra={"fields": {"event": "startup_failed"}})
                    return EXIT_STARTUP
            self._start_thread("receiver", self._receiver_loop)
            self._start_thread("uploader", self._uploader_loop)
            self._start_thread("watchdog", self._watchdog_loop)
            log.info("agent started", extra={"fields": {"runtime_type": self.config.runtime_type}})
            self._gpu_loop()
            self._receiver_done.wait(self.config.receive_wait_seconds + 60)
            self._release_handoff()
            self._uploads.put(None)
            for thread in self._threads:
                thread.join(timeout=120)
            log.info("agent stopped", extra={"fields": dict(self.counts)})
            return EXIT_OK
        finally:
            self.finished.set()
            self.agent_up.stop()
            self.heartbeat.stop()
            if self.occupancy is not None:
                self.occupancy.close()
            self.tracing.shutdown()

    def _start_thread(self, name: str, target: Any) -> None:
        thread = threading.Thread(target=target, name=name, daemon=True)
        thread.start()
        self._threads.append(thread)

    def _wait_ready(self) -> bool:
        backoff = Backoff(base=min(0.5, self.config.retry_base_seconds or 0.5), max_delay=10.0)
        self.server_ready.clear()
        started = time.monotonic()
        while not self.shutdown.stopping.is_set():
            # Waiting for the server is progress, not a stuck loop (the GPU stage waits here
            # too when the server goes away mid-run).
            self.liveness.touch("gpu", 60)
            self.ready_probes += 1
            if self.server.probe():
                self.server_ready.set()
                log.info(
                    "inference server ready",
                    extra={"fields": {"waited_ms": ms(time.monotonic() - started)}},
                )
                return True
            delay = backoff.next_delay()
            log.info(
                "waiting for the inference server",
                extra={
                    "fields": {
                        "url": self.config.api_base_url,
                        "attempt": backoff.attempt,
                        "retry_in_s": delay,
                    }
                },
            )
            if self.shutdown.stopping.wait(delay):
                break
        return False

    # ----------------------------------------------------------------------------------------
    # health

    def live(self) -> tuple[bool, dict[str, object]]:
        stuck = self.liveness.stuck()
        dead = (
            [t.name for t in self._threads if not t.is_alive()]
            if not self.finished.is_set()
            else []
        )
        if not self.heartbeat.alive() and not self.finished.is_set():
            dead.append("heartbeat")
        return (not stuck and not dead), {"stuck": stuck, "dead": dead}

    def ready(self) -> tuple[bool, dict[str, object]]:
        ok, detail = self.live()
        server = self.server_ready.is_set()
        stopping = self.shutdown.stopping.is_set()
        return ok and server and not stopping, {
            **detail,
            "server_ready": server,
            "stopping": stopping,
        }

    # ----------------------------------------------------------------------------------------
    # uploader

    def _enqueue_upload(self, item: Finished | RunningNote | Republish) -> None:
        self._uploads.put(item)

    def _uploader_loop(self) -> None:
        while True:
            self.liveness.touch("uploader", 3600)
            item = self._uploads.get()
            if item is None:
                return
            try:
                if isinstance(item, RunningNote):
                    self.completion.publish_running(item.held)
                elif isinstance(item, Republish):
                    self.completion.republish(item)
                else:
                    self.completion.complete(item)
            except Exception:
                log.exception("uploader error")

    def _release_handoff(self) -> None:
        while True:
            try:
                held = self._handoff.get_nowait()
            except queue.Empty:
                return
            self._slot.release()
            self.book.release(held, "not started")
