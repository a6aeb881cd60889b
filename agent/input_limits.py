"""The limits one input download runs under (size caps, wall-clock deadline) and its sink.

Every download streams into a ``SpooledTemporaryFile``: the first ``spool_memory_bytes`` stay in
memory, the rest goes to the temp directory (the agent's /tmp emptyDir), so a task's inputs never
sit in memory as lists of chunks. Errors name the task field the input came from.
"""

from __future__ import annotations

import binascii
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import IO
from urllib.parse import urlsplit, urlunsplit

from sdfleet.agent import errors
from sdfleet.agent.errors import TaskError

Clock = Callable[[], float]
# A multiple of 3, so each block encodes to base64 without padding.
_B64_BLOCK = 3 * 64 * 1024


def redact(url: str) -> str:
    """Drop credentials and the query string (often a signature) from reported URLs."""
    parts = urlsplit(url)
    netloc = parts.netloc.rsplit("@", 1)[-1]
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


@dataclass(frozen=True)
class FetchLimits:
    """One input's limits: ``max_bytes`` per input, ``remaining`` of the task's total budget,
    and a monotonic ``deadline`` (the earlier of the per-input and the per-task deadline)."""

    field: str
    url: str
    max_bytes: int
    max_total_bytes: int
    remaining: int
    deadline: float
    deadline_seconds: float
    deadline_setting: str
    clock: Clock = time.monotonic

    def time_left(self) -> float:
        return self.deadline - self.clock()

    def check_time(self) -> None:
        if self.time_left() <= 0:
            raise self.deadline_error()

    def deadline_error(self) -> TaskError:
        scope = "the task's inputs" if self.deadline_setting.startswith("INPUT_TASK") else "input"
        return TaskError(
            errors.INPUT_DOWNLOAD_FAILED,
            f"{self.field}: {scope} did not finish downloading within "
            f"{self.deadline_seconds:g} s ({self.deadline_setting})",
            self.detail(reason="deadline", deadline_seconds=self.deadline_seconds),
        )

    def check_size(self, size: int) -> None:
        """Raise when ``size`` bytes (declared or received so far) exceed a limit."""
        if size > self.max_bytes:
            raise TaskError(
                errors.INPUT_TOO_LARGE,
                f"{self.field}: input is {size}+ bytes; the limit per input is "
                f"{self.max_bytes} (MAX_INPUT_BYTES)",
                self.detail(limit=self.max_bytes),
            )
        if size > self.remaining:
            used = self.max_total_bytes - self.remaining
            raise TaskError(
                errors.INPUT_TOO_LARGE,
                f"{self.field}: the task's inputs exceed {self.max_total_bytes} bytes together "
                f"(INPUT_MAX_TOTAL_BYTES); {used} bytes were fetched before this input, which "
                f"has {size}+",
                self.detail(limit=self.max_total_bytes, reason="total"),
            )

    def detail(self, **extra: object) -> dict[str, object]:
        return {"field": self.field, "url": redact(self.url), **extra}


def new_spool(memory_bytes: int, directory: str | None) -> IO[bytes]:
    return tempfile.SpooledTemporaryFile(max_size=memory_bytes, dir=directory)


def write_limited(spool: IO[bytes], chunks: Iterable[bytes], limits: FetchLimits) -> int:
    """Copy ``chunks`` into ``spool`` within the limits; the byte count."""
    total = 0
    for chunk in chunks:
        total += len(chunk)
        limits.check_size(total)
        spool.write(chunk)
        limits.check_time()
    return total


def spool_base64(spool: IO[bytes], size: int) -> str:
    """Base64 of the spool's ``size`` bytes, encoded block by block.

    The result has to be one str (it goes into the request JSON); it is encoded into a
    preallocated buffer, so the peak is that buffer plus the final str, never the raw bytes too.
    """
    out = bytearray(4 * ((size + 2) // 3))
    spool.seek(0)
    pos = 0
    with memoryview(out) as view:
        while True:
            block = spool.read(_B64_BLOCK)
            while block and len(block) % 3 and len(block) < _B64_BLOCK:
                more = spool.read(_B64_BLOCK - len(block))
                if not more:
                    break
                block += more
            if not block:
                break
            encoded = binascii.b2a_base64(block, newline=False)
            view[pos : pos + len(encoded)] = encoded
            pos += len(encoded)
    if pos != len(out):
        raise ValueError(f"spool holds {pos} base64 bytes, expected {len(out)}")
    return out.decode("ascii")
