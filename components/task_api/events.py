"""Reading API Gateway REST proxy events (and HTTP API v2 events, for a later migration).

Routes: ``POST /v1alpha2``, ``POST /v1alpha1`` (submit) and ``GET /v1alpha2/tasks/{id}``
(status). Any stage or base-path prefix before them is ignored.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from typing import Any

from sdfleet.agent import contract

ROUTES = ("v1alpha2", "v1alpha1")
STATUS_VERSION = "v1alpha2"
STATUS_SEGMENT = "tasks"
# The status resource, relative to the stage URL (API Gateway's resource path).
STATUS_RESOURCE = f"/{STATUS_VERSION}/{STATUS_SEGMENT}/{{id}}"


def status_path(task_id: str) -> str:
    """Where a task's status is read, relative to the API's stage URL."""
    return f"/{STATUS_VERSION}/{STATUS_SEGMENT}/{task_id}"


@dataclass(frozen=True)
class Route:
    """``version`` is the submit route's API version (None for the status route or an unknown
    path); ``task_id`` is the status route's raw, unvalidated id."""

    method: str
    version: str | None = None
    status: bool = False
    task_id: str | None = None


def route(event: dict[str, Any]) -> Route:
    context = event.get("requestContext")
    http = context.get("http") if isinstance(context, dict) else None
    path = event.get("path") or event.get("rawPath") or event.get("resource")
    method = event.get("httpMethod")
    if isinstance(http, dict):
        path = path or http.get("path")
        method = method or http.get("method")
    verb = method.upper() if isinstance(method, str) else ""
    segments = path.rstrip("/").split("/") if isinstance(path, str) else []
    if len(segments) >= 3 and segments[-3:-1] == [STATUS_VERSION, STATUS_SEGMENT]:
        # API Gateway's decoded path parameter when present, else the raw segment.
        params = event.get("pathParameters")
        raw = params.get("id") if isinstance(params, dict) else None
        return Route(verb, status=True, task_id=raw if raw is not None else segments[-1])
    last = segments[-1] if segments else ""
    return Route(verb, version=last if last in ROUTES else None)


def api_key_id(event: dict[str, Any]) -> str | None:
    """API Gateway's id of the caller's API key (``requestContext.identity.apiKeyId``): the
    owner of the tasks it creates. Never the key itself."""
    context = event.get("requestContext")
    identity = context.get("identity") if isinstance(context, dict) else None
    value = identity.get("apiKeyId") if isinstance(identity, dict) else None
    return value if isinstance(value, str) and value else None


def request_id(event: dict[str, Any]) -> str:
    """API Gateway's request id when it is a safe key segment, else a fresh uuid4."""
    context = event.get("requestContext")
    raw = context.get("requestId") if isinstance(context, dict) else None
    return contract.safe_request_id(raw)


def raw_body(event: dict[str, Any]) -> str | bytes | None:
    body = event.get("body")
    if body is None or not event.get("isBase64Encoded"):
        if body is not None and not isinstance(body, str):
            raise contract.ContractError("invalid_body", "the body must be text", None)
        return body
    if not isinstance(body, str):
        raise contract.ContractError("invalid_body", "the body must be base64 text", None)
    # Decoded base64 is 3/4 of its text: refuse clearly oversized bodies before decoding.
    if len(body) > (contract.MAX_BODY_BYTES // 3 + 1) * 4:
        raise contract.ContractError(
            "payload_too_large",
            f"the body is over {contract.MAX_BODY_BYTES} bytes",
            None,
            status=413,
        )
    try:
        return base64.b64decode(body, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise contract.ContractError(
            "invalid_encoding", "the body is flagged base64 but is not valid base64", None
        ) from exc
