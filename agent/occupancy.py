"""Tell Kubernetes whether this pod holds a task, so scale-in removes idle pods first.

The heartbeat reports busy (a first message held) and idle (the last one deleted or released)
through :meth:`OccupancyReporter.set`, which only records the state: a thread of its own makes
the (possibly slow) Kubernetes API call, latest state wins, so neither the receiver nor the
heartbeat ever waits for the API server.
"""

from __future__ import annotations

import logging
import threading
from typing import Any, Protocol

log = logging.getLogger("agent.occupancy")


class BusySink(Protocol):
    """``sdfleet.agent.pod_cost.PodDeletionCost``'s interface."""

    def busy(self) -> Any: ...

    def idle(self) -> Any: ...

    def close(self) -> Any: ...


class OccupancyReporter:
    def __init__(self, sink: BusySink) -> None:
        self.sink = sink
        self._cond = threading.Condition()
        self._wanted = False
        self._applied: bool | None = None
        self._closed = False
        self.applied: list[bool] = []  # every state sent, in order (observability, tests)
        self._thread = threading.Thread(target=self._loop, name="occupancy", daemon=True)

    def start(self) -> OccupancyReporter:
        self._thread.start()
        return self

    def set(self, busy: bool) -> None:
        with self._cond:
            self._wanted = busy
            self._cond.notify()

    def close(self, timeout: float = 5.0) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify()
        if self._thread.is_alive():
            self._thread.join(timeout)
        try:
            self.sink.close()
        except Exception as exc:
            log.warning("closing the pod cost client failed", extra={"fields": {"error": str(exc)}})

    def _loop(self) -> None:
        while True:
            with self._cond:
                while self._wanted == self._applied and not self._closed:
                    self._cond.wait()
                if self._wanted == self._applied:  # closed, nothing left to apply
                    return
                wanted = self._wanted
            try:
                self.sink.busy() if wanted else self.sink.idle()
            except Exception as exc:  # best effort: scale-in order only
                log.warning(
                    "could not update the pod deletion cost",
                    extra={"fields": {"busy": wanted, "error": str(exc)}},
                )
            with self._cond:
                self._applied = wanted
                self.applied.append(wanted)
