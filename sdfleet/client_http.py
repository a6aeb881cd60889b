"""HTTP for ``sdfleet.client``: the standard library only (``httpx`` is not a core dependency).

The transport is injectable (``Transport``): tests and callers with their own HTTP stack pass a
callable. The default one never follows redirects (a redirect would carry ``x-api-key`` to
another host), opens only ``http``/``https`` URLs (``urllib`` also opens ``file:`` and
``ftp:``), and reads at most ``max_bytes`` of a body.
"""

from __future__ import annotations

import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import IO, Protocol
from urllib.parse import urlsplit

# API answers are small JSON documents; images are bounded separately (client_download).
MAX_API_BODY_BYTES = 1024 * 1024
_CHUNK = 64 * 1024


class ClientError(Exception):
    """Base of every error ``sdfleet.client`` raises."""


class TransportError(ClientError):
    """No HTTP answer: connection refused, DNS, TLS, timeout."""


class TooLarge(ClientError):
    """A body is over the size bound."""


@dataclass(frozen=True)
class Response:
    status: int
    body: bytes
    headers: Mapping[str, str] = field(default_factory=dict)


class Transport(Protocol):
    def __call__(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str],
        body: bytes | None,
        timeout: float,
        max_bytes: int,
    ) -> Response: ...


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None  # the 3xx comes back as an HTTPError: the caller sees the status


def _opener() -> urllib.request.OpenerDirector:
    opener = urllib.request.OpenerDirector()
    for handler in (
        urllib.request.HTTPHandler(),
        urllib.request.HTTPSHandler(),
        urllib.request.HTTPDefaultErrorHandler(),
        urllib.request.HTTPErrorProcessor(),
        _NoRedirect(),
    ):
        opener.add_handler(handler)
    return opener


def check_http_url(url: str) -> None:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        # Only the scheme: a presigned URL's query is a credential.
        raise ClientError(f"refusing a {parts.scheme or 'relative'!s} URL: only http(s) is used")


def read_bounded(stream: IO[bytes], max_bytes: int, sink: IO[bytes] | None = None) -> bytes:
    """Read at most ``max_bytes`` (TooLarge beyond); into ``sink`` when given (returns b"")."""
    chunks: list[bytes] = []
    total = 0
    while chunk := stream.read(_CHUNK):
        total += len(chunk)
        if total > max_bytes:
            raise TooLarge(f"the body is over {max_bytes} bytes")
        if sink is not None:
            sink.write(chunk)
        else:
            chunks.append(chunk)
    return b"".join(chunks)


class UrllibTransport:
    """The default transport; ``stream_to`` writes a 2xx body to a file instead of memory."""

    def __init__(self) -> None:
        self._opener = _opener()

    def __call__(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str],
        body: bytes | None,
        timeout: float,
        max_bytes: int,
    ) -> Response:
        return self.stream(method, url, headers, body, timeout, max_bytes, None)

    def stream(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str],
        body: bytes | None,
        timeout: float,
        max_bytes: int,
        sink: IO[bytes] | None,
    ) -> Response:
        check_http_url(url)
        request = urllib.request.Request(url, data=body, headers=dict(headers), method=method)
        try:
            with self._opener.open(request, timeout=timeout) as answer:
                length = answer.headers.get("Content-Length")
                if length and length.isdigit() and int(length) > max_bytes:
                    raise TooLarge(f"the body is {length} bytes, over {max_bytes}")
                data = read_bounded(answer, max_bytes, sink)
                return Response(answer.status, data, dict(answer.headers.items()))
        except urllib.error.HTTPError as err:
            with err:
                data = read_bounded(err, MAX_API_BODY_BYTES)
            return Response(err.code, data, dict(err.headers.items()) if err.headers else {})
        except (urllib.error.URLError, OSError) as err:
            reason = getattr(err, "reason", err)
            # The host only: the path of a presigned URL is harmless, its query is not.
            raise TransportError(f"{method} {urlsplit(url).netloc}: {reason}") from None
