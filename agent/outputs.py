"""Output files: content-type sniffing, deterministic keys, result document, notification."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sdfleet.agent.contract import Task, build_notification, image_key, output_location, result_key

OCTET_STREAM = ("bin", "application/octet-stream")
# Largest error detail (JSON characters) carried in a notification.
MAX_DETAIL_CHARS = 64 * 1024


def sniff(data: bytes) -> tuple[str, str]:
    """(extension, content type) from the leading bytes; unknown data is octet-stream."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png", "image/png"
    if data.startswith(b"\xff\xd8\xff"):
        return "jpg", "image/jpeg"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp", "image/webp"
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "gif", "image/gif"
    if data[4:8] == b"ftyp":
        return "mp4", "video/mp4"
    return OCTET_STREAM


@dataclass
class OutputFile:
    data: bytes
    ext: str
    content_type: str

    @classmethod
    def from_bytes(cls, data: bytes) -> OutputFile:
        ext, content_type = sniff(data)
        return cls(data=data, ext=ext, content_type=content_type)


@dataclass
class TaskOutcome:
    """What the GPU stage produced for one task; the uploader turns it into S3 objects + SNS."""

    files: list[OutputFile] = field(default_factory=list)
    parameters: Any = None
    info: Any = None
    seeds: list[Any] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)
    error: dict[str, Any] | None = None


def planned_keys(prefix: str, task_id: str, files: Sequence[OutputFile]) -> list[str]:
    """Image keys ``<prefix>/<id>/<id>-<n>.<ext>``, n counted from 1."""
    return [image_key(prefix, task_id, n, f.ext) for n, f in enumerate(files, start=1)]


def task_digest(task: Task) -> str:
    """sha256 of the task as queued (metadata and content, or its content_ref): a redelivery
    of the same message has the same digest, a different task reusing the id does not."""
    canonical = json.dumps(task.to_message(), sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def result_document(
    *,
    task_id: str,
    runtime: str,
    status: str,
    outcome: TaskOutcome,
    image_urls: Sequence[str],
    timings: Mapping[str, int],
    attempt: int | None,
    digest: str | None = None,
) -> bytes:
    doc = {
        "id": task_id,
        "runtime": runtime,
        "status": status,
        "image_url": list(image_urls),
        "parameters": outcome.parameters,
        "seeds": outcome.seeds,
        "info": outcome.info,
        "error": outcome.error,
        "timings": dict(timings),
        "attempt": attempt,
        "task_digest": digest,
        **outcome.extra,
    }
    return json.dumps(doc, default=str).encode("utf-8")


def notification(
    *,
    runtime: str,
    task_id: str,
    status: str,
    bucket: str,
    prefix: str,
    image_urls: Sequence[str],
    context: Any,
    error: Mapping[str, Any] | None,
    timings: Mapping[str, int],
    attempt: int | None,
    with_output: bool = True,
    callback: Mapping[str, Any] | None = None,
) -> tuple[str, dict[str, dict[str, str]]]:
    if error is not None and len(json.dumps(error.get("detail"), default=str)) > MAX_DETAIL_CHARS:
        # SNS carries at most 256 KiB; the full detail stays in the result document.
        error = {**error, "detail": {"truncated": True, "see": "output_url"}}
    body, attributes = build_notification(
        runtime=runtime,
        task_id=task_id,
        status=status,
        image_urls=image_urls,
        output_url=f"s3://{bucket}/{result_key(prefix, task_id)}" if with_output else None,
        context=context,
        error=error,
        timings=timings,
        attempt=attempt,
        callback=callback,
    )
    return json.dumps(body, default=str), attributes


__all__ = [
    "OutputFile",
    "TaskOutcome",
    "notification",
    "output_location",
    "planned_keys",
    "result_document",
    "sniff",
    "task_digest",
]
