"""Downloading a task's outputs from their presigned URLs.

* File names come from the object key's last segment, kept only when it is a plain name
  (``[A-Za-z0-9._-]``, not ``.``/``..``, no leading dot); otherwise ``output-<n><ext>``. A key
  can never choose a folder: the client writes only directly into ``out_dir``.
* Each file is streamed into a temporary file in ``out_dir`` and renamed over the final name
  once complete (``os.replace``): a reader never sees half an image, and an interrupted
  download leaves no partial file behind.
* Each object is bounded (``max_bytes``, default 256 MiB): a server that sends more is cut off.
* Presigned URLs carry no API key: the key is never sent to S3.
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Sequence
from pathlib import Path, PurePosixPath

from sdfleet.client_http import (
    ClientError,
    Response,
    Transport,
    UrllibTransport,
    check_http_url,
)

DEFAULT_MAX_OUTPUT_BYTES = 256 * 1024 * 1024
_SAFE_NAME = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9._-]{0,199}\Z")


class DownloadError(ClientError):
    """An output could not be downloaded (expired URL, refused, too large)."""


def safe_name(key: str, index: int) -> str:
    """A file name for the ``index``-th output object: the key's last segment if plain."""
    name = PurePosixPath(key).name if key else ""
    if _SAFE_NAME.match(name) and name not in (".", ".."):
        return name
    suffix = PurePosixPath(name).suffix
    ext = suffix if re.fullmatch(r"\.[A-Za-z0-9]{1,8}", suffix) else ""
    return f"output-{index}{ext}"


def unique_names(keys: Sequence[str]) -> list[str]:
    names: list[str] = []
    for index, key in enumerate(keys):
        name = safe_name(key, index)
        if name in names:
            stem, suffix = os.path.splitext(name)
            name = f"{stem}-{index}{suffix}"
        names.append(name)
    return names


def fetch_to(
    url: str,
    target: Path,
    *,
    transport: Transport | None,
    timeout: float,
    max_bytes: int,
) -> None:
    """Download ``url`` to ``target`` atomically (temp file in the same folder, then rename)."""
    check_http_url(url)
    fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".part")
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as sink:
            if transport is None or isinstance(transport, UrllibTransport):
                streamer = transport or UrllibTransport()
                response = streamer.stream("GET", url, {}, None, timeout, max_bytes, sink)
            else:
                response = transport("GET", url, {}, None, timeout, max_bytes)
                if 200 <= response.status < 300:
                    if len(response.body) > max_bytes:
                        raise DownloadError(f"{target.name}: over {max_bytes} bytes")
                    sink.write(response.body)
            _check(response, target.name)
            sink.flush()
            os.fsync(sink.fileno())
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _check(response: Response, name: str) -> None:
    if 200 <= response.status < 300:
        return
    # S3's XML error names the reason (AccessDenied, "Request has expired"), never the signature.
    code = re.search(rb"<Code>([^<]{1,64})</Code>", response.body)
    reason = code.group(1).decode("ascii", "replace") if code else "no reason given"
    raise DownloadError(f"{name}: HTTP {response.status} ({reason})")
