"""Fault injection for the fake SD WebUI: injected error replies, hung jobs, dropped replies."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

from sdfleet.fakes.sdwebui.api import OOM_MESSAGE


@dataclass
class Fault:
    status: int
    body: Any
    remaining: int
    path_suffix: str | None


def default_fault_body(status: int) -> dict[str, Any]:
    if status == 500:
        return {"error": "OutOfMemoryError", "detail": "", "body": "", "errors": OOM_MESSAGE}
    if status == 422:
        err = {
            "loc": ["body", "steps"],
            "msg": "value is not a valid integer",
            "type": "type_error.integer",
        }
        return {"detail": [err]}
    if status == 404:
        return {"detail": "Not Found"}
    return {"error": "HTTPException", "detail": f"injected {status}", "body": "", "errors": ""}


class SdWebUIFaults:
    """The fault knobs (a base of the server's state, whose lock and wake-up event they use)."""

    _mu: threading.RLock
    _wake: threading.Event

    def _init_faults(self) -> None:
        self._faults: list[Fault] = []
        self._hangs = 0
        self._drops: list[Fault] = []
        self._release_epoch = 0

    def fail_next(
        self,
        status: int,
        body: dict[str, Any] | None = None,
        count: int = 1,
        path_suffix: str | None = None,
    ) -> None:
        """Answer the next ``count`` matching requests with ``status``/``body``. The default body
        is what A1111 sends for that status (500: OutOfMemoryError)."""
        if body is None:
            body = default_fault_body(status)
        with self._mu:
            self._faults.append(Fault(status, body, count, path_suffix))

    def hang_next(self, count: int = 1) -> None:
        with self._mu:
            self._hangs += count

    def release(self) -> None:
        """Let hung jobs finish normally."""
        with self._mu:
            self._release_epoch += 1
        self._wake.set()

    def drop_next(self, count: int = 1, path_suffix: str | None = None) -> None:
        with self._mu:
            self._drops.append(Fault(0, None, count, path_suffix))

    def _take(self, faults: list[Fault], path: str, generation: bool) -> Fault | None:
        with self._mu:
            for f in faults:
                match = (
                    generation
                    if f.path_suffix is None
                    else path.rstrip("/").endswith(f.path_suffix.rstrip("/"))
                )
                if match and f.remaining > 0:
                    f.remaining -= 1
                    if f.remaining == 0:
                        faults.remove(f)
                    return f
        return None

    def _take_hang(self) -> tuple[bool, int]:
        """Whether the job starting now hangs, and the release epoch it started in."""
        with self._mu:
            hang = self._hangs > 0
            if hang:
                self._hangs -= 1
            return hang, self._release_epoch
