"""One webhook POST: resolved, SSRF-checked, pinned to a checked address (standard library only).

The host is resolved once and **every** resolved address is checked with the guard (by default
:func:`sdfleet.agent.netguard.address_refused`, the agent's input deny table) before anything
connects; a name with one refused address is refused as a whole. The connection then goes to a
checked address itself, so a second DNS answer (rebinding) cannot redirect it. TLS verifies the
certificate against the URL's host name, which is also sent as SNI and in ``Host``.

Bounds: resolution, connect and each read have timeouts, and a watchdog shuts the socket down
at the attempt's deadline, so a receiver dripping its headers cannot hold the Lambda. Redirects
are not followed (a 3xx is an outcome); the response body is read to a small bound and dropped.
Only a failed TCP connect moves on to the next address: after the request is sent, another
address could receive a second copy.
"""

from __future__ import annotations

import contextlib
import http.client
import socket
import ssl
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from sdfleet.agent.contract_callback import Callback
from sdfleet.agent.netguard import Resolver, address_refused, resolve_within, system_resolver

# Why an address may not be connected to, or None. Tests inject an explicit allowance.
AddressGuard = Callable[[str], str | None]

# Error classes of an attempt that got no HTTP status.
FORBIDDEN_ADDRESS = "forbidden_address"
DNS_ERROR = "dns_error"
TIMEOUT = "timeout"
CONNECTION_ERROR = "connection_error"
TLS_ERROR = "tls_error"
PROTOCOL_ERROR = "protocol_error"
RETRYABLE_ERRORS = frozenset({DNS_ERROR, TIMEOUT, CONNECTION_ERROR, TLS_ERROR, PROTOCOL_ERROR})


@dataclass(frozen=True)
class DeliveryLimits:
    resolve_timeout: float = 5.0
    connect_timeout: float = 5.0
    read_timeout: float = 10.0
    # The whole attempt, every address included.
    deadline: float = 20.0
    max_response_bytes: int = 16 * 1024
    # Every resolved address is checked; at most this many are tried.
    max_addresses: int = 4


@dataclass(frozen=True)
class DeliveryOutcome:
    """What one attempt got: an HTTP status, or an error class (``error``) without one."""

    status_code: int | None
    error: str | None = None
    # The exception class or guard reason; never the URL, headers or body.
    detail: str = ""
    address: str | None = None
    elapsed: float = 0.0

    @property
    def ok(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300

    @property
    def retryable(self) -> bool:
        """Retry 5xx, 429 and transport errors; not other statuses nor a refused address."""
        if self.status_code is not None:
            return self.status_code >= 500 or self.status_code == 429
        return self.error in RETRYABLE_ERRORS

    @property
    def code(self) -> str:
        """``http_<status>`` or the error class: what the task records."""
        return f"http_{self.status_code}" if self.status_code is not None else str(self.error)


@dataclass(frozen=True)
class PinnedRequest:
    address: str
    port: int
    host: str
    target: str
    headers: Mapping[str, str]
    body: bytes
    # The callback's scheme. HttpsTransport speaks TLS whatever it says; only the sandbox's
    # transport sends "http" (loopback) callbacks in the clear.
    scheme: str = "https"


class ConnectError(OSError):
    """The TCP connect to one address failed; nothing was sent."""


@dataclass
class HttpsTransport:
    """POSTs over TLS to a pinned address; ``context`` defaults to the system trust store."""

    context: ssl.SSLContext = field(default_factory=ssl.create_default_context)

    def post(self, request: PinnedRequest, limits: DeliveryLimits, deadline_at: float) -> int:
        remaining = deadline_at - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("no time left for this address")
        try:
            raw = socket.create_connection(
                (request.address, request.port), timeout=min(limits.connect_timeout, remaining)
            )
        except OSError as exc:
            raise ConnectError(type(exc).__name__) from exc
        watchdog = _Watchdog(raw, deadline_at - time.monotonic())
        try:
            raw.settimeout(limits.read_timeout)
            tls = self.context.wrap_socket(raw, server_hostname=request.host)
            conn = http.client.HTTPSConnection(
                request.host, request.port, timeout=limits.read_timeout, context=self.context
            )
            conn.sock = tls  # already connected to the checked address: no second lookup
            try:
                conn.request("POST", request.target, body=request.body, headers=request.headers)
                response = conn.getresponse()
                response.read(limits.max_response_bytes)
                return response.status
            finally:
                conn.close()
        except (OSError, http.client.HTTPException) as exc:
            if watchdog.fired:
                raise TimeoutError("attempt deadline passed") from exc
            raise
        finally:
            watchdog.close()
            raw.close()


class _Watchdog:
    """Shuts a connection's socket down at the deadline. It holds a duplicate descriptor:
    wrapping in TLS detaches the original socket object, not the socket."""

    def __init__(self, sock: socket.socket, seconds: float) -> None:
        self.fired = False
        self._lock = threading.Lock()
        self._sock = sock.dup()
        self._timer = threading.Timer(max(seconds, 0.0), self._fire)
        self._timer.daemon = True
        self._timer.start()

    def _fire(self) -> None:
        with self._lock:
            self.fired = True
            with contextlib.suppress(OSError):
                self._sock.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        self._timer.cancel()
        with self._lock:
            self._sock.close()


Transport = Callable[[PinnedRequest, DeliveryLimits, float], int]


def checked_addresses(
    callback: Callback,
    *,
    resolver: Resolver = system_resolver,
    guard: AddressGuard = address_refused,
    limits: DeliveryLimits = DeliveryLimits(),
) -> list[str] | DeliveryOutcome:
    """The addresses to try, or the outcome that ends the attempt (refused or unresolvable)."""
    if callback.ip_literal:
        addresses = [callback.host]
    else:
        try:
            addresses = resolve_within(
                resolver, callback.host, callback.port, limits.resolve_timeout
            )
        except (OSError, UnicodeError) as exc:  # gaierror and TimeoutError are OSErrors
            return DeliveryOutcome(None, DNS_ERROR, type(exc).__name__)
        if not addresses:
            return DeliveryOutcome(None, DNS_ERROR, "no addresses")
    for address in addresses:
        try:
            reason = guard(address)
        except ValueError:
            reason = "not an IP address"
        if reason is not None:
            return DeliveryOutcome(None, FORBIDDEN_ADDRESS, f"{reason} {address}", address)
    return addresses[: limits.max_addresses]


def deliver(
    callback: Callback,
    headers: Mapping[str, str],
    body: bytes,
    *,
    resolver: Resolver = system_resolver,
    guard: AddressGuard = address_refused,
    transport: Transport | None = None,
    limits: DeliveryLimits = DeliveryLimits(),
) -> DeliveryOutcome:
    """POST ``body`` to the callback once; never raises for network trouble."""
    started = time.monotonic()
    deadline_at = started + limits.deadline
    found = checked_addresses(callback, resolver=resolver, guard=guard, limits=limits)
    if isinstance(found, DeliveryOutcome):
        return _timed(found, started)
    post = transport or HttpsTransport().post
    outcome = DeliveryOutcome(None, CONNECTION_ERROR, "no address tried")
    for address in found:
        request = PinnedRequest(
            address, callback.port, callback.host, callback.target, headers, body, callback.scheme
        )
        try:
            status = post(request, limits, deadline_at)
        except ConnectError as exc:
            outcome = DeliveryOutcome(None, CONNECTION_ERROR, str(exc), address)
            continue  # nothing was sent: the next address is safe to try
        except (ssl.SSLError, ssl.CertificateError) as exc:
            outcome = DeliveryOutcome(None, TLS_ERROR, type(exc).__name__, address)
        except TimeoutError as exc:
            outcome = DeliveryOutcome(None, TIMEOUT, type(exc).__name__, address)
        except http.client.HTTPException as exc:
            outcome = DeliveryOutcome(None, PROTOCOL_ERROR, type(exc).__name__, address)
        except OSError as exc:
            outcome = DeliveryOutcome(None, CONNECTION_ERROR, type(exc).__name__, address)
        else:
            outcome = DeliveryOutcome(status, None, "", address)
        break
    return _timed(outcome, started)


def _timed(outcome: DeliveryOutcome, started: float) -> DeliveryOutcome:
    return DeliveryOutcome(
        outcome.status_code,
        outcome.error,
        outcome.detail,
        outcome.address,
        round(time.monotonic() - started, 3),
    )
