"""HTTP(S) input downloads: SSRF-checked, pinned to the checked address, and held to a deadline.

Per-read timeouts alone do not bound a download: a server sending one byte every half second
never trips them. So every download also has a wall-clock deadline, enforced by a watchdog that
shuts the connection's socket down when it passes; a read blocked in the kernel then returns at
once, whether the server is dripping the headers or the body.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from dataclasses import dataclass, field
from typing import IO, Any
from urllib.parse import urljoin, urlsplit, urlunsplit

import httpx

from sdfleet.agent import errors
from sdfleet.agent.errors import TaskError
from sdfleet.agent.input_limits import FetchLimits, redact, write_limited
from sdfleet.agent.netguard import Resolver, address_refused, resolve_within, system_resolver

MAX_REDIRECTS = 3


class Watchdog:
    """Shuts down the sockets of one download when its deadline passes.

    It learns each socket through httpcore's ``trace`` extension and keeps a duplicate of the
    descriptor: shutdown() acts on the socket itself, so it also reaches a socket TLS has since
    wrapped (and whose original object was detached).
    """

    def __init__(self, seconds: float) -> None:
        self.fired = False
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        self._timer = threading.Timer(max(seconds, 0.0), self._fire)
        self._timer.daemon = True
        self._timer.start()

    def trace(self, event: str, info: dict[str, Any]) -> None:
        if event != "connection.connect_tcp.complete":
            return
        stream = info.get("return_value")
        sock = stream.get_extra_info("socket") if stream is not None else None
        if not isinstance(sock, socket.socket):
            return
        dup = sock.dup()
        with self._lock:
            self._sockets.append(dup)
            if self.fired:
                _shutdown(dup)

    def _fire(self) -> None:
        with self._lock:
            self.fired = True
            for sock in self._sockets:
                _shutdown(sock)

    def close(self) -> None:
        self._timer.cancel()
        with self._lock:
            for sock in self._sockets:
                sock.close()
            self._sockets.clear()


def _shutdown(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)


@dataclass
class HttpDownloader:
    allowed_hosts: frozenset[str] = field(default_factory=frozenset)
    connect_timeout: float = 5.0
    read_timeout: float = 30.0
    resolver: Resolver = system_resolver
    transport: httpx.BaseTransport | None = None

    def download(self, url: str, limits: FetchLimits, spool: IO[bytes]) -> int:
        """Stream ``url`` into ``spool``; the byte count. TaskError on any failure."""
        limits.check_time()
        watchdog = Watchdog(limits.time_left())
        try:
            with httpx.Client(
                follow_redirects=False, transport=self.transport, trust_env=False
            ) as client:
                current = url
                for _ in range(MAX_REDIRECTS + 1):
                    location = self._get(client, current, limits, spool, watchdog)
                    if location is None:
                        return spool.tell()
                    current = urljoin(current, location)
        finally:
            watchdog.close()
        raise TaskError(
            errors.INPUT_DOWNLOAD_FAILED,
            f"{limits.field}: too many redirects (more than {MAX_REDIRECTS})",
            limits.detail(),
        )

    def _get(
        self,
        client: httpx.Client,
        url: str,
        limits: FetchLimits,
        spool: IO[bytes],
        watchdog: Watchdog,
    ) -> str | None:
        """One GET into ``spool``; the redirect location, or None when the body was stored."""
        if urlsplit(url).scheme.lower() not in ("http", "https"):
            raise TaskError(
                errors.INPUT_FORBIDDEN,
                f"{limits.field}: input redirect to a non-http(s) URL is not allowed",
                {**limits.detail(), "location": redact(url)},
            )
        pinned, host_header = self._check_target(url, limits)
        left = max(limits.time_left(), 0.001)
        timeout = httpx.Timeout(
            min(self.read_timeout, left), connect=min(self.connect_timeout, left)
        )
        headers = {"Host": host_header, "Accept-Encoding": "identity"}
        extensions = {"sni_hostname": urlsplit(url).hostname or "", "trace": watchdog.trace}
        try:
            with client.stream(
                "GET", pinned, headers=headers, extensions=extensions, timeout=timeout
            ) as response:
                if response.is_redirect and "location" in response.headers:
                    return response.headers["location"]
                self._check_response(response, limits)
                # Identity encoding (checked above): iter_bytes() yields each read as it arrives.
                write_limited(spool, response.iter_bytes(), limits)
                return None
        except httpx.HTTPError as exc:
            if watchdog.fired or limits.time_left() <= 0:
                raise limits.deadline_error() from exc
            raise TaskError(
                errors.INPUT_DOWNLOAD_FAILED,
                f"{limits.field}: GET {redact(url)} failed: {type(exc).__name__}: {exc}",
                limits.detail(),
            ) from exc

    @staticmethod
    def _check_response(response: httpx.Response, limits: FetchLimits) -> None:
        if response.status_code != 200:
            raise TaskError(
                errors.INPUT_DOWNLOAD_FAILED,
                f"{limits.field}: GET {redact(limits.url)} returned HTTP {response.status_code}",
                limits.detail(status=response.status_code),
            )
        # Asked for identity: a compressed body could expand far past the limits in one read.
        encoding = response.headers.get("content-encoding", "identity").strip().lower()
        if encoding not in ("", "identity"):
            raise TaskError(
                errors.INPUT_DOWNLOAD_FAILED,
                f"{limits.field}: the server sent Content-Encoding {encoding!r} although the "
                "agent asked for identity; compressed inputs are not accepted",
                limits.detail(),
            )
        declared = response.headers.get("content-length")
        if declared and declared.isdigit():
            limits.check_size(int(declared))

    def _check_target(self, url: str, limits: FetchLimits) -> tuple[str, str]:
        """Return (url with the checked address as host, original host header)."""
        parts = urlsplit(url)
        host = (parts.hostname or "").lower()
        if not host:
            raise TaskError(
                errors.INPUT_FORBIDDEN, f"{limits.field}: input URL has no host", limits.detail()
            )
        port = parts.port or (443 if parts.scheme == "https" else 80)
        try:
            addresses = resolve_within(self.resolver, host, port, limits.time_left())
        except TimeoutError as exc:
            raise limits.deadline_error() from exc
        except (OSError, UnicodeError) as exc:
            raise TaskError(
                errors.INPUT_DOWNLOAD_FAILED,
                f"{limits.field}: cannot resolve {host}: {exc}",
                limits.detail(),
            ) from exc
        if not addresses:
            raise TaskError(
                errors.INPUT_DOWNLOAD_FAILED,
                f"{limits.field}: {host} has no address",
                limits.detail(),
            )
        if host not in self.allowed_hosts:
            for address in addresses:
                reason = address_refused(address)
                if reason is not None:
                    raise TaskError(
                        errors.INPUT_FORBIDDEN,
                        f"{limits.field}: input host {host} resolves to {address} ({reason}); "
                        "only public addresses are fetched (see ALLOWED_INPUT_HOSTS)",
                        limits.detail(address=address, reason=reason),
                    )
        address = addresses[0]
        netloc_host = f"[{address}]" if ":" in address else address
        netloc = f"{netloc_host}:{parts.port}" if parts.port else netloc_host
        pinned = urlunsplit((parts.scheme, netloc, parts.path or "/", parts.query, ""))
        return pinned, parts.netloc.rsplit("@", 1)[-1]
