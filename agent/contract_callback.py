"""``metadata.callback``: where a task's webhooks go and for which events (standard library only).

A callback is ``{"url": "https://...", "events": [...]}``; ``events`` is a subset of
``completed``, ``failed`` and ``running`` (default: completed and failed). The URL is checked
here, at submission, and its resolved addresses again at every delivery
(:mod:`sdfleet.agent.webhooks_http`), with the same deny table as the agent's input downloads
(:func:`sdfleet.agent.netguard.address_refused`). Submission cannot resolve names (the answer
may change before delivery), so here a host must be either a DNS name of at least two labels or
an IP literal the guard accepts.

URL errors never echo the URL: its query string may carry the receiver's token.

``loopback=True`` is for ``sdfleet sandbox`` only (it sets ``SDFLEET_SANDBOX_LOOPBACK_CALLBACKS``
in its own processes; no deployed component does): it also accepts ``http`` or ``https`` URLs
whose host is exactly 127.0.0.1, ::1 or localhost (``http`` because a loopback receiver has no
certificate a client would trust), delivered through :func:`sandbox_loopback_guard`. Every other
rule, and every other refused range (10/8, 169.254/16, ...), stays as it is.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import SplitResult, urlsplit

from sdfleet.agent.contract_base import (
    MAX_URL_CHARS,
    ContractError,
    child_path,
    require_object,
    short,
)
from sdfleet.agent.netguard import address_refused

# The sandbox's loopback opt-in: these hosts (as written in the URL) and their addresses only.
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "::1", "localhost"})
LOOPBACK_ADDRESSES = frozenset({"127.0.0.1", "::1"})

EVENT_COMPLETED = "completed"
EVENT_FAILED = "failed"
EVENT_RUNNING = "running"
EVENTS: tuple[str, ...] = (EVENT_COMPLETED, EVENT_FAILED, EVENT_RUNNING)
DEFAULT_EVENTS: tuple[str, ...] = (EVENT_COMPLETED, EVENT_FAILED)
CALLBACK_KEYS: tuple[str, ...] = ("url", "events")

DEFAULT_PORT = 443
# 443, or an unprivileged port: the fleet should not be a way to knock on a host's SSH or
# SMTP port, and no HTTPS receiver needs another privileged one.
MIN_UNPRIVILEGED_PORT = 1024
MAX_PORT = 65535
MAX_HOST_CHARS = 253

_LABEL = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\Z")
# A last label that URL parsers and inet_aton read as a number ("127.1", "0x7f.1", "2130706433").
_NUMERIC_LABEL = re.compile(r"^(?:0x[0-9a-f]*|[0-9]+)\Z")
# Names that never lead to a receiver on the public internet (RFC 6761/6762/8375, AWS and
# Kubernetes internal zones). Delivery checks the addresses anyway; this refuses them early.
_INTERNAL_SUFFIXES: tuple[str, ...] = (
    "localhost",
    "local",
    "internal",
    "home.arpa",
    "in-addr.arpa",
    "ip6.arpa",
    "invalid",
    "test",
    "example",
    "cluster.local",
)
# Printable ASCII without space, quote, angle brackets, backslash, braces, pipe, caret, backtick.
_URL_CHARS = re.compile(r"^[!#$%&'()*+,\-./0-9:;=?@A-Z\[\]_a-z~]+\Z")


@dataclass(frozen=True)
class Callback:
    """A checked callback. ``host`` is lower case, without brackets; ``target`` is the
    request target (path and query) sent in the request line."""

    url: str
    events: tuple[str, ...]
    host: str
    port: int
    target: str
    ip_literal: bool
    # "http" only for a sandbox loopback callback (``loopback=True``).
    scheme: str = "https"

    def wants(self, event: str) -> bool:
        return event in self.events

    def to_json(self) -> dict[str, Any]:
        return {"url": self.url, "events": list(self.events)}


def parse_callback(
    value: Any, path: str = "task.metadata.callback", *, loopback: bool = False
) -> Callback | None:
    """The checked callback, or None when ``value`` is None (no webhooks for this task).
    ``loopback``: the sandbox's opt-in (module docstring); never set in a deployed stack."""
    if value is None:
        return None
    obj = require_object(value, path)
    for key in obj:
        if key not in CALLBACK_KEYS:
            raise ContractError(
                "unknown_field",
                f"unknown callback field {short(key)}; allowed: {', '.join(CALLBACK_KEYS)}",
                child_path(path, str(key)),
            )
    if "url" not in obj:
        raise ContractError("missing_field", "is required: an https:// URL", f"{path}.url")
    events = check_events(obj.get("events"), f"{path}.events")
    return check_callback_url(obj["url"], f"{path}.url", events, loopback=loopback)


def sandbox_loopback_guard(address: str) -> str | None:
    """The delivery guard of the sandbox: 127.0.0.1 and ::1 pass, everything else goes to
    :func:`~sdfleet.agent.netguard.address_refused` as in the cloud."""
    return None if address in LOOPBACK_ADDRESSES else address_refused(address)


def check_events(value: Any, path: str) -> tuple[str, ...]:
    if value is None:
        return DEFAULT_EVENTS
    if not isinstance(value, list):
        raise ContractError("invalid_type", f"must be a list of: {', '.join(EVENTS)}", path)
    if not value:
        raise ContractError(
            "invalid_event", "must name at least one event (omit callback for none)", path
        )
    seen: list[str] = []
    for i, event in enumerate(value):
        if not isinstance(event, str) or event not in EVENTS:
            raise ContractError(
                "invalid_event",
                f"{short(event)} is not one of: {', '.join(EVENTS)}",
                f"{path}[{i}]",
            )
        if event in seen:
            raise ContractError("duplicate_event", f"{event!r} is listed twice", f"{path}[{i}]")
        seen.append(event)
    return tuple(seen)


def check_callback_url(
    value: Any, path: str, events: tuple[str, ...] = DEFAULT_EVENTS, *, loopback: bool = False
) -> Callback:
    """An absolute https URL to a public host; see the module docstring for the rules."""
    if not isinstance(value, str):
        raise ContractError("invalid_type", "must be an https:// URL string", path)
    if len(value) > MAX_URL_CHARS:
        raise ContractError(
            "too_long", f"is {len(value)} characters; at most {MAX_URL_CHARS} are allowed", path
        )
    if not _URL_CHARS.match(value):
        raise ContractError(
            "invalid_callback_url",
            "must be printable ASCII without spaces, quotes or backslashes "
            "(percent-encode the rest; write international names in punycode)",
            path,
        )
    if "#" in value:
        raise ContractError("invalid_callback_url", "must not have a fragment", path)
    try:
        parts = urlsplit(value)
    except ValueError as exc:
        raise ContractError("invalid_callback_url", "is not a valid URL", path) from exc
    scheme = parts.scheme.lower()
    if loopback and scheme in ("http", "https") and _hostname(parts) in LOOPBACK_HOSTS:
        return _loopback_callback(parts, scheme, value, path, events)
    if scheme != "https":
        raise ContractError("insecure_callback_url", "must be an https:// URL", path)
    if "@" in parts.netloc:
        raise ContractError(
            "credentials_in_url",
            "must not carry credentials (user:password@); authenticate with the signature",
            path,
        )
    host, ip_literal = _check_host(parts, path)
    port = _check_port(parts, path)
    target = parts.path or "/"
    if not target.startswith("/"):
        raise ContractError("invalid_callback_url", "is not a valid URL", path)
    if parts.query:
        target = f"{target}?{parts.query}"
    return Callback(value, events, host, port, target, ip_literal)


def _hostname(parts: SplitResult) -> str | None:
    try:
        return parts.hostname
    except ValueError:
        return None


def _loopback_callback(
    parts: SplitResult, scheme: str, url: str, path: str, events: tuple[str, ...]
) -> Callback:
    """A sandbox callback to this machine: the credential, port and target rules still apply."""
    if "@" in parts.netloc:
        raise ContractError(
            "credentials_in_url",
            "must not carry credentials (user:password@); authenticate with the signature",
            path,
        )
    host = parts.hostname or ""
    port = _check_port(parts, path, 80 if scheme == "http" else DEFAULT_PORT)
    target = parts.path or "/"
    if not target.startswith("/"):
        raise ContractError("invalid_callback_url", "is not a valid URL", path)
    if parts.query:
        target = f"{target}?{parts.query}"
    return Callback(url, events, host, port, target, host != "localhost", scheme)


def _check_host(parts: SplitResult, path: str) -> tuple[str, bool]:
    netloc = parts.netloc
    bracketed = netloc.startswith("[")
    host = parts.hostname or ""
    if not host:
        raise ContractError("invalid_callback_url", "must name a host", path)
    if "%" in host:
        raise ContractError(
            "invalid_callback_url", "must not have a zone id or escapes in the host", path
        )
    if bracketed or ":" in host:
        # urlsplit accepts only a valid IPv6 literal in brackets (or an IPvFuture one).
        try:
            ip: ipaddress.IPv4Address | ipaddress.IPv6Address = ipaddress.IPv6Address(host)
        except ValueError as exc:
            raise ContractError(
                "invalid_callback_url", "has an invalid IPv6 literal (zone ids are refused)", path
            ) from exc
        return _public_literal(ip, path), True
    labels = host.split(".")
    if _NUMERIC_LABEL.match(labels[-1]):
        try:
            ip = ipaddress.IPv4Address(host)
        except ValueError as exc:
            raise ContractError(
                "invalid_callback_url",
                "has a numeric host that is not a dotted-quad IPv4 address",
                path,
            ) from exc
        return _public_literal(ip, path), True
    if len(host) > MAX_HOST_CHARS or not all(_LABEL.match(label) for label in labels):
        raise ContractError(
            "invalid_callback_url",
            "must have a DNS host name of letters, digits and hyphens (no trailing dot) "
            "or an IP address",
            path,
        )
    if len(labels) < 2:
        raise ContractError(
            "forbidden_host", "must be a fully qualified name (a single label is internal)", path
        )
    for suffix in _INTERNAL_SUFFIXES:
        if host == suffix or host.endswith(f".{suffix}"):
            raise ContractError(
                "forbidden_host", f"must be a public name; .{suffix} names are not", path
            )
    return host, False


def _public_literal(ip: ipaddress.IPv4Address | ipaddress.IPv6Address, path: str) -> str:
    reason = address_refused(str(ip))
    if reason is not None:
        raise ContractError(
            "forbidden_address", f"must be a public address, not {reason} {ip}", path
        )
    return str(ip)


def _check_port(parts: SplitResult, path: str, default: int = DEFAULT_PORT) -> int:
    try:
        port = parts.port
    except ValueError as exc:
        raise ContractError("invalid_callback_url", "has an invalid port", path) from exc
    if port is None:
        # "https://host:/" parses as no port; refuse the empty port rather than guess.
        if parts.netloc.endswith(":"):
            raise ContractError("invalid_callback_url", "has an empty port", path)
        port = default
    if port != DEFAULT_PORT and not MIN_UNPRIVILEGED_PORT <= port <= MAX_PORT:
        raise ContractError(
            "forbidden_port",
            f"must be {DEFAULT_PORT} or {MIN_UNPRIVILEGED_PORT}-{MAX_PORT}, not {port}",
            path,
        )
    return port
