"""Input images given as URLs: download (with an SSRF guard and limits) and inline as base64.

Only whole-string URLs are treated as URLs (``^scheme://...$`` with no whitespace), so a prompt
or a base64 string that happens to start with "http" is left alone. Schemes other than http,
https and s3 are refused. Host names are resolved once; every resolved address must be public
(not private, loopback, link-local, multicast, reserved or unspecified) unless the host is in the
allow-list, and the connection goes to the address that was checked, so a DNS answer cannot
change between the check and the connect.
"""

from __future__ import annotations

import base64
import copy
import ipaddress
import re
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urljoin, urlsplit, urlunsplit

import httpx

from agent import errors
from agent.contract import parse_s3_uri
from agent.errors import TaskError

URL_RE = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://\S+$")
ALLOWED_SCHEMES = ("http", "https", "s3")
MAX_REDIRECTS = 3
_CHUNK = 64 * 1024

Resolver = Callable[[str, int], list[str]]


def is_url(value: Any) -> bool:
    return isinstance(value, str) and len(value) < 8192 and URL_RE.match(value) is not None


def system_resolver(host: str, port: int) -> list[str]:
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    # Keep getaddrinfo's preference order (RFC 6724), without duplicates.
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def _address_refused(address: str) -> str | None:
    """Why an address may not be fetched, or None if it is public."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    for attr in ("is_loopback", "is_link_local", "is_private", "is_multicast", "is_reserved"):
        if getattr(ip, attr):
            return attr[3:].replace("_", "-")
    if ip.is_unspecified:
        return "unspecified"
    if not ip.is_global:
        return "not-global"
    return None


@dataclass
class InputFetcher:
    """Downloads input URLs within limits. ``s3`` is a boto3 S3 client (for s3:// URLs)."""

    s3: Any = None
    max_bytes: int = 20 * 1024 * 1024
    allowed_hosts: frozenset[str] = field(default_factory=frozenset)
    connect_timeout: float = 5.0
    read_timeout: float = 30.0
    resolver: Resolver = system_resolver
    transport: httpx.BaseTransport | None = None

    def fetch(self, url: str) -> bytes:
        scheme = urlsplit(url).scheme.lower()
        if scheme not in ALLOWED_SCHEMES:
            raise TaskError(
                errors.INPUT_FORBIDDEN,
                f"input URL scheme {scheme!r} is not allowed; allowed: {', '.join(ALLOWED_SCHEMES)}",
                {"url": _redact(url)},
            )
        if scheme == "s3":
            return self._fetch_s3(url)
        return self._fetch_http(url)

    # -- s3 --------------------------------------------------------------------------------
    def _fetch_s3(self, url: str) -> bytes:
        try:
            bucket, key = parse_s3_uri(url)
        except ValueError as exc:
            raise TaskError(errors.INPUT_DOWNLOAD_FAILED, str(exc), {"url": url}) from exc
        if self.s3 is None:
            raise TaskError(errors.INPUT_DOWNLOAD_FAILED, "no S3 client configured", {"url": url})
        try:
            obj = self.s3.get_object(Bucket=bucket, Key=key)
        except Exception as exc:
            raise TaskError(
                errors.INPUT_DOWNLOAD_FAILED, f"cannot read {url}: {exc}", {"url": url}
            ) from exc
        size = int(obj.get("ContentLength") or 0)
        if size > self.max_bytes:
            obj["Body"].close()
            raise self._too_large(url, size)
        data: bytes = obj["Body"].read(self.max_bytes + 1)
        if len(data) > self.max_bytes:
            raise self._too_large(url, len(data))
        return data

    # -- http(s) ---------------------------------------------------------------------------
    def _check_target(self, url: str) -> tuple[str, str]:
        """Return (url with the checked address as host, original host header)."""
        parts = urlsplit(url)
        host = (parts.hostname or "").lower()
        if not host:
            raise TaskError(errors.INPUT_FORBIDDEN, "input URL has no host", {"url": _redact(url)})
        port = parts.port or (443 if parts.scheme == "https" else 80)
        try:
            addresses = self.resolver(host, port)
        except (OSError, UnicodeError) as exc:
            raise TaskError(
                errors.INPUT_DOWNLOAD_FAILED, f"cannot resolve {host}: {exc}", {"url": _redact(url)}
            ) from exc
        if not addresses:
            raise TaskError(
                errors.INPUT_DOWNLOAD_FAILED, f"{host} has no address", {"url": _redact(url)}
            )
        if host not in self.allowed_hosts:
            for address in addresses:
                reason = _address_refused(address)
                if reason is not None:
                    raise TaskError(
                        errors.INPUT_FORBIDDEN,
                        f"input host {host} resolves to {reason} address {address}; only public "
                        "addresses are fetched (see ALLOWED_INPUT_HOSTS)",
                        {"url": _redact(url), "address": address},
                    )
        address = addresses[0]
        netloc_host = f"[{address}]" if ":" in address else address
        netloc = f"{netloc_host}:{parts.port}" if parts.port else netloc_host
        pinned = urlunsplit((parts.scheme, netloc, parts.path or "/", parts.query, ""))
        host_header = parts.netloc.rsplit("@", 1)[-1]
        return pinned, host_header

    def _fetch_http(self, url: str) -> bytes:
        timeout = httpx.Timeout(self.read_timeout, connect=self.connect_timeout)
        with httpx.Client(
            timeout=timeout, follow_redirects=False, transport=self.transport, trust_env=False
        ) as client:
            current = url
            for _ in range(MAX_REDIRECTS + 1):
                if urlsplit(current).scheme.lower() not in ("http", "https"):
                    raise TaskError(
                        errors.INPUT_FORBIDDEN,
                        "input redirect to a non-http(s) URL is not allowed",
                        {"url": _redact(current)},
                    )
                pinned, host_header = self._check_target(current)
                host = urlsplit(current).hostname or ""
                try:
                    with client.stream(
                        "GET",
                        pinned,
                        headers={"Host": host_header},
                        extensions={"sni_hostname": host},
                    ) as response:
                        if response.is_redirect and "location" in response.headers:
                            current = urljoin(current, response.headers["location"])
                            continue
                        if response.status_code != 200:
                            raise TaskError(
                                errors.INPUT_DOWNLOAD_FAILED,
                                f"GET {_redact(url)} returned HTTP {response.status_code}",
                                {"url": _redact(url), "status": response.status_code},
                            )
                        declared = response.headers.get("content-length")
                        if declared and declared.isdigit() and int(declared) > self.max_bytes:
                            raise self._too_large(url, int(declared))
                        chunks: list[bytes] = []
                        total = 0
                        for chunk in response.iter_bytes(_CHUNK):
                            total += len(chunk)
                            if total > self.max_bytes:
                                raise self._too_large(url, total)
                            chunks.append(chunk)
                        return b"".join(chunks)
                except httpx.HTTPError as exc:
                    raise TaskError(
                        errors.INPUT_DOWNLOAD_FAILED,
                        f"GET {_redact(url)} failed: {type(exc).__name__}: {exc}",
                        {"url": _redact(url)},
                    ) from exc
        raise TaskError(
            errors.INPUT_DOWNLOAD_FAILED,
            f"too many redirects (more than {MAX_REDIRECTS})",
            {"url": _redact(url)},
        )

    def _too_large(self, url: str, size: int) -> TaskError:
        return TaskError(
            errors.INPUT_TOO_LARGE,
            f"input is {size}+ bytes; the limit is {self.max_bytes} (MAX_INPUT_BYTES)",
            {"url": _redact(url), "limit": self.max_bytes},
        )

    def fetch_base64(self, url: str) -> str:
        return base64.b64encode(self.fetch(url)).decode("ascii")


def _redact(url: str) -> str:
    """Drop credentials and the query string (often a signature) from logged URLs."""
    parts = urlsplit(url)
    netloc = parts.netloc.rsplit("@", 1)[-1]
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


# --------------------------------------------------------------------------------------------
# Where sdwebui tasks carry images

_CONTROLNET_IMAGE_KEYS = ("image", "input_image", "mask", "mask_image")


def sdwebui_image_slots(content: dict[str, Any]) -> list[tuple[Any, Any]]:
    """(container, key) pairs of every image string in an sdwebui payload."""
    slots: list[tuple[Any, Any]] = []
    images = content.get("init_images")
    if isinstance(images, list):
        slots.extend((images, i) for i in range(len(images)))
    for key in ("mask", "image"):
        if key in content:
            slots.append((content, key))
    items = content.get("imageList")
    if isinstance(items, list):
        slots.extend((item, "data") for item in items if isinstance(item, dict) and "data" in item)
    scripts = content.get("alwayson_scripts")
    if isinstance(scripts, dict):
        for name, script in scripts.items():
            if not (isinstance(name, str) and name.lower() == "controlnet"):
                continue
            args = script.get("args") if isinstance(script, dict) else None
            for unit in args if isinstance(args, list) else []:
                if not isinstance(unit, dict):
                    continue
                for key in _CONTROLNET_IMAGE_KEYS:
                    value = unit.get(key)
                    if isinstance(value, dict):
                        slots.extend((value, k) for k in ("image", "mask") if k in value)
                    elif key in unit:
                        slots.append((unit, key))
    return slots


def inline_sdwebui_inputs(
    content: dict[str, Any], fetcher: InputFetcher
) -> tuple[dict[str, Any], int]:
    """Return a copy of ``content`` with URL images replaced by base64, and how many."""
    result = copy.deepcopy(content)
    count = 0
    for container, key in sdwebui_image_slots(result):
        value = container[key]
        if is_url(value):
            container[key] = fetcher.fetch_base64(value)
            count += 1
    return result, count
