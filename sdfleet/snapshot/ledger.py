"""Cleanup ledger: everything the build creates is recorded the moment it exists, and undone
in reverse order exactly once, also after a failure, Ctrl-C or SIGTERM.

Undo steps are idempotent on the AWS side (a resource already gone is not an error, see
cloud.py), each runs even when an earlier one failed, and the failures are reported together
so the user can finish by hand with the ids printed.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from types import FrameType


@dataclass
class _Entry:
    what: str
    undo: Callable[[], None]


@dataclass
class CleanupLedger:
    log: Callable[[str], None] = print
    _entries: list[_Entry] = field(default_factory=list)
    done: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)

    def add(self, what: str, undo: Callable[[], None]) -> None:
        self._entries.append(_Entry(what, undo))

    def keep(self, what: str) -> None:
        """A resource that is the result (the snapshot, once complete): not undone."""
        self._entries = [e for e in self._entries if e.what != what]

    @property
    def pending(self) -> list[str]:
        return [e.what for e in self._entries]

    def run(self) -> list[str]:
        """Undo every recorded step, newest first; returns the failures (empty when clean)."""
        with deferred_interrupts(self.log):
            while self._entries:
                entry = self._entries.pop()
                try:
                    entry.undo()
                except Exception as err:  # keep going: the rest must still be deleted
                    self.failed.append(f"{entry.what}: {err}")
                    self.log(f"  cleanup FAILED for {entry.what}: {err}")
                else:
                    self.done.append(entry.what)
                    self.log(f"  deleted {entry.what}")
        return list(self.failed)


def _terminate_as_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


@contextlib.contextmanager
def interrupts_raise() -> Iterator[None]:
    """SIGTERM and SIGHUP raise KeyboardInterrupt like Ctrl-C, so ``finally`` cleans up."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    names = [s for s in ("SIGTERM", "SIGHUP") if hasattr(signal, s)]
    previous = {
        name: signal.signal(getattr(signal, name), _terminate_as_interrupt) for name in names
    }
    try:
        yield
    finally:
        for name, handler in previous.items():
            signal.signal(getattr(signal, name), handler)


@contextlib.contextmanager
def deferred_interrupts(log: Callable[[str], None]) -> Iterator[None]:
    """While cleaning up, Ctrl-C and SIGTERM only print a note: stopping half-way would
    leave resources behind."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def note(signum: int, frame: FrameType | None) -> None:
        log("  cleanup in progress; it finishes on its own (interrupting it would leak)")

    names = [s for s in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, s)]
    previous = {name: signal.signal(getattr(signal, name), note) for name in names}
    try:
        yield
    finally:
        for name, handler in previous.items():
            signal.signal(getattr(signal, name), handler)
