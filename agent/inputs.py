"""Input images given as URLs: download within limits and inline as base64 (or hand over a file).

Only whole-string URLs are treated as URLs (``^scheme://...$`` with no whitespace), so a prompt
or a base64 string that happens to start with "http" is left alone. Schemes other than http,
https and s3 are refused. http(s) hosts must resolve to public addresses (sdfleet.agent.netguard) unless
allow-listed, and the connection goes to the address that was checked. s3:// inputs must name an
allow-listed bucket.

Limits: each input at most ``max_bytes`` and ``fetch_timeout_seconds`` of wall-clock time; all
inputs of one task together at most ``max_total_bytes`` and ``task_timeout_seconds``
(``InputFetcher.task()`` opens that per-task budget). Downloads stream into spooled temp files
(sdfleet.agent.input_limits), so memory stays bounded by the base64 strings the request needs.
"""

from __future__ import annotations

import copy
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import IO, Any
from urllib.parse import urlsplit

import httpx

from sdfleet.agent import errors
from sdfleet.agent.contract import parse_s3_uri
from sdfleet.agent.contract_limits import sdwebui_image_slots
from sdfleet.agent.errors import TaskError
from sdfleet.agent.input_http import HttpDownloader
from sdfleet.agent.input_limits import Clock, FetchLimits, new_spool, spool_base64, write_limited
from sdfleet.agent.netguard import Resolver, address_refused, system_resolver

__all__ = [
    "ALLOWED_SCHEMES",
    "InputFetcher",
    "TaskInputs",
    "address_refused",
    "inline_sdwebui_inputs",
    "is_url",
    "sdwebui_image_slots",
    "system_resolver",
]

URL_RE = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://\S+\Z")  # \Z: "$" allows a final newline
ALLOWED_SCHEMES = ("http", "https", "s3")
MIB = 1024 * 1024
_CHUNK = 64 * 1024


def is_url(value: Any) -> bool:
    return isinstance(value, str) and len(value) < 8192 and URL_RE.match(value) is not None


@dataclass
class InputFetcher:
    """Downloads input URLs within limits. ``s3`` is a boto3 S3 client (for s3:// URLs).

    ``allowed_s3_buckets`` entries are ``bucket`` or ``bucket/prefix`` (only keys under it).
    """

    s3: Any = None
    max_bytes: int = 20 * MIB
    allowed_hosts: frozenset[str] = field(default_factory=frozenset)
    connect_timeout: float = 5.0
    read_timeout: float = 30.0
    resolver: Resolver = system_resolver
    transport: httpx.BaseTransport | None = None
    fetch_timeout_seconds: float = 30.0
    task_timeout_seconds: float = 60.0
    max_total_bytes: int = 64 * MIB
    allowed_s3_buckets: frozenset[str] = field(default_factory=frozenset)
    spool_memory_bytes: int = 1 * MIB
    spool_dir: str | None = None
    clock: Clock = time.monotonic

    def task(self) -> TaskInputs:
        """A budget for all inputs of one task (use one per task)."""
        return TaskInputs(self)

    def fetch(self, url: str, field: str = "input") -> bytes:
        """One input as bytes, under a budget of its own."""
        return self.task().fetch(url, field)

    def fetch_base64(self, url: str, field: str = "input") -> str:
        return self.task().fetch_base64(url, field)

    def download(self, url: str, limits: FetchLimits) -> IO[bytes]:
        """``url`` in a spooled temp file positioned at 0 (the caller closes it)."""
        scheme = urlsplit(url).scheme.lower()
        if scheme not in ALLOWED_SCHEMES:
            raise TaskError(
                errors.INPUT_FORBIDDEN,
                f"{limits.field}: input URL scheme {scheme!r} is not allowed; allowed: "
                f"{', '.join(ALLOWED_SCHEMES)}",
                limits.detail(),
            )
        spool = new_spool(self.spool_memory_bytes, self.spool_dir)
        try:
            if scheme == "s3":
                self._download_s3(url, limits, spool)
            else:
                self._http().download(url, limits, spool)
            spool.seek(0)
            return spool
        except BaseException:
            spool.close()
            raise

    def _http(self) -> HttpDownloader:
        return HttpDownloader(
            allowed_hosts=self.allowed_hosts,
            connect_timeout=self.connect_timeout,
            read_timeout=self.read_timeout,
            resolver=self.resolver,
            transport=self.transport,
        )

    # -- s3 --------------------------------------------------------------------------------
    def s3_bucket_allowed(self, bucket: str, key: str) -> bool:
        for entry in self.allowed_s3_buckets:
            name, _, prefix = entry.partition("/")
            if name == bucket and key.startswith(prefix):
                return True
        return False

    def _download_s3(self, url: str, limits: FetchLimits, spool: IO[bytes]) -> None:
        try:
            bucket, key = parse_s3_uri(url)
        except ValueError as exc:
            raise TaskError(
                errors.INPUT_DOWNLOAD_FAILED, f"{limits.field}: {exc}", limits.detail()
            ) from exc
        if not self.s3_bucket_allowed(bucket, key):
            allowed = sorted(self.allowed_s3_buckets)
            raise TaskError(
                errors.INPUT_FORBIDDEN,
                f"{limits.field}: s3 bucket {bucket!r} is not allowed for inputs; allowed: "
                f"{', '.join(allowed) or 'none'} (INPUT_S3_BUCKETS, stack config inputs.s3Buckets)",
                limits.detail(bucket=bucket, allowed=allowed),
            )
        if self.s3 is None:
            raise TaskError(
                errors.INPUT_DOWNLOAD_FAILED,
                f"{limits.field}: no S3 client configured",
                limits.detail(),
            )
        limits.check_time()
        try:
            obj = self.s3.get_object(Bucket=bucket, Key=key)
        except Exception as exc:
            raise TaskError(
                errors.INPUT_DOWNLOAD_FAILED,
                f"{limits.field}: cannot read {url}: {exc}",
                limits.detail(),
            ) from exc
        body = obj["Body"]
        try:
            limits.check_size(int(obj.get("ContentLength") or 0))
            # S3 does not drip; the deadline is checked between reads.
            write_limited(spool, iter(lambda: body.read(_CHUNK), b""), limits)
        except TaskError:
            raise
        except Exception as exc:
            raise TaskError(
                errors.INPUT_DOWNLOAD_FAILED,
                f"{limits.field}: reading {url} failed: {exc}",
                limits.detail(),
            ) from exc
        finally:
            body.close()


class TaskInputs:
    """The inputs of one task: a shared byte budget and deadline across its downloads."""

    def __init__(self, fetcher: InputFetcher) -> None:
        self.fetcher = fetcher
        self.deadline = fetcher.clock() + fetcher.task_timeout_seconds
        self.used_bytes = 0
        self.count = 0

    def __enter__(self) -> TaskInputs:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def limits(self, url: str, field: str) -> FetchLimits:
        f = self.fetcher
        own = f.clock() + f.fetch_timeout_seconds
        if own < self.deadline:
            deadline, seconds, setting = own, f.fetch_timeout_seconds, "INPUT_FETCH_TIMEOUT_SECONDS"
        else:
            deadline, seconds, setting = (
                self.deadline,
                f.task_timeout_seconds,
                "INPUT_TASK_TIMEOUT_SECONDS",
            )
        return FetchLimits(
            field=field,
            url=url,
            max_bytes=f.max_bytes,
            max_total_bytes=f.max_total_bytes,
            remaining=f.max_total_bytes - self.used_bytes,
            deadline=deadline,
            deadline_seconds=seconds,
            deadline_setting=setting,
            clock=f.clock,
        )

    @contextmanager
    def open(self, url: str, field: str = "input") -> Iterator[IO[bytes]]:
        """The downloaded input as a file (in memory when small, else on disk)."""
        spool = self.fetcher.download(url, self.limits(url, field))
        try:
            self.used_bytes += _size(spool)
            self.count += 1
            yield spool
        finally:
            spool.close()

    def fetch(self, url: str, field: str = "input") -> bytes:
        with self.open(url, field) as spool:
            return spool.read()

    def fetch_base64(self, url: str, field: str = "input") -> str:
        with self.open(url, field) as spool:
            return spool_base64(spool, _size(spool))


def _size(spool: IO[bytes]) -> int:
    size = spool.seek(0, 2)
    spool.seek(0)
    return size


# --------------------------------------------------------------------------------------------
# sdwebui tasks: the image slots are the contract's (the API counts them, the agent fills them)


def inline_sdwebui_inputs(
    content: dict[str, Any], fetcher: InputFetcher
) -> tuple[dict[str, Any], int]:
    """Return a copy of ``content`` with URL images replaced by base64, and how many.

    All of the task's inputs share one budget and deadline (``fetcher.task()``).
    """
    result = copy.deepcopy(content)
    with fetcher.task() as inputs:
        for container, key, path in sdwebui_image_slots(result):
            value = container[key]
            if is_url(value):
                container[key] = inputs.fetch_base64(value, path)
        return result, inputs.count
