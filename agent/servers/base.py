"""What the worker needs from an inference server client."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from sdfleet.agent.contract import Task
from sdfleet.agent.outputs import TaskOutcome


class StartupError(Exception):
    """The server is up but unusable (e.g. the configured model failed to load): exit non-zero."""


@dataclass
class JobControl:
    """Shared between the GPU thread and the watchdog: why (if at all) the job was aborted."""

    timeout_at: float
    reason: str | None = None
    aborted: threading.Event = field(default_factory=threading.Event)
    # Called once, when the job's request has been written to the socket: the worker defers
    # the previous task's uploads and the next prefetch until then, so they do not compete
    # with the hand-off for the GIL.
    on_sent: Callable[[], None] | None = None

    def sent(self) -> None:
        callback, self.on_sent = self.on_sent, None
        if callback is not None:
            callback()

    def abort(self, reason: str) -> bool:
        if self.aborted.is_set():
            return False
        self.reason = reason
        self.aborted.set()
        return True

    def remaining(self) -> float:
        return self.timeout_at - time.monotonic()


@dataclass
class Prepared:
    """A task ready for the GPU: inputs downloaded, payload built (receiver thread)."""

    task: Task
    payload: dict[str, Any]
    route: str = ""
    model: str | None = None
    inputs: int = 0


@dataclass
class RawResult:
    """What the GPU stage returns; ``finish`` decodes it off the GPU thread."""

    finish: Callable[[], TaskOutcome]


class InferenceServer(Protocol):
    def probe(self) -> bool:
        """One readiness check; True when the server answers."""
        ...

    def verify_static_model(self, model_filename: str) -> None: ...

    def prepare(self, task: Task) -> Prepared: ...

    def run(self, prepared: Prepared, control: JobControl) -> RawResult: ...

    def interrupt(self, prepared: Prepared | None) -> None: ...

    def close(self) -> None: ...


class QueueingServer(InferenceServer, Protocol):
    """A server with a queue of its own (ComfyUI): the GPU stage submits the next job while one
    runs, so the server starts it the moment the running one ends (``queue_ahead`` switches
    this on)."""

    queue_ahead: bool

    def submit(self, prepared: Prepared, control: JobControl) -> None:
        """Queue the job; raises like ``run``."""
        ...

    def wait(
        self, prepared: Prepared, control: JobControl, idle: Callable[[], None] | None = None
    ) -> RawResult:
        """Until the submitted job ends, calling ``idle`` often meanwhile; raises like ``run``."""
        ...

    def dequeue(self, prepared: Prepared) -> bool:
        """Take a submitted job off the server's queue: True when it will not run."""
        ...


_BODY_SENT = ("http11.send_request_body.complete", "http2.send_request_body.complete")


def sent_trace(control: JobControl) -> Callable[[str, dict[str, Any]], None]:
    """An httpcore ``trace`` extension that tells ``control`` once the request body is sent."""

    def trace(event_name: str, info: dict[str, Any]) -> None:
        if event_name in _BODY_SENT:
            control.sent()

    return trace
