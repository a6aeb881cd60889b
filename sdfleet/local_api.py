"""The task API on loopback: API Gateway's routing, key check and size limit in front of the real
Lambda handler (``sdfleet.components.task_api.handler``), called with REST-proxy events.

What API Gateway does before the Lambda, done the same way here:

* Routes: ``POST /v1alpha2``, ``POST /v1alpha1`` and ``GET /v1alpha2/tasks/{id}`` under the
  optional stage prefix. Any other path or method is a 403 ``MISSING_AUTHENTICATION_TOKEN``
  without calling the handler, as the gateway answers it.
* ``x-api-key`` is required on every route; a missing or unknown key is a 403
  ``INVALID_API_KEY``. The event carries ``requestContext.identity.apiKey`` and ``apiKeyId``
  (the key's id, the task's owner).
* Bodies over 10 MiB (the gateway's payload limit) are a 413 ``REQUEST_TOO_LARGE``, refused from
  ``Content-Length`` before they are read. Smaller bodies reach the handler, which applies the
  Lambda's own 6 MiB limit.
* Gateway errors use the stack's gateway-response template
  (``sdfleet.components.builders.api.gateway_error_template``):
  ``{"error": {"code": <response type>, "message": <message>, "field": null}}``.

The handler reads its settings from the process environment (``INPUT_TOPIC_ARN``,
``OUTPUT_BUCKET``, ``RUNTIMES``, ``TASK_TABLE_NAME``, ...), as in Lambda; the caller sets them.
The server binds loopback only. Request lines are logged at DEBUG without headers or bodies.
"""

from __future__ import annotations

import argparse
import base64
import ipaddress
import json
import logging
import secrets
import sys
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import SimpleNamespace
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from sdfleet.components.builders.api import API_PATHS, STATUS_PATH_PARTS, STATUS_VERSION

log = logging.getLogger("sdfleet.local_api")

# API Gateway's REST API payload limit.
MAX_BODY_BYTES = 10 * 1024 * 1024
# The routes are the ones the stack deploys (sdfleet.components.builders.api).
STATUS_RESOURCE = "/" + "/".join((STATUS_VERSION, *STATUS_PATH_PARTS))
_STATUS_PREFIX = [STATUS_VERSION, *STATUS_PATH_PARTS[:-1]]

Handler = Callable[[dict[str, Any], Any], dict[str, Any]]


def gateway_error(status: int, code: str, message: str) -> tuple[int, dict[str, str], bytes]:
    body = json.dumps({"error": {"code": code, "message": message, "field": None}})
    return (
        status,
        {"Content-Type": "application/json", "x-amzn-ErrorType": code},
        body.encode("utf-8"),
    )


def match_route(method: str, path: str) -> tuple[str, dict[str, str] | None] | None:
    """(API Gateway resource, path parameters) for a route the API has, else None."""
    segments = path.split("/")[1:]
    if method == "POST" and len(segments) == 1 and segments[0] in API_PATHS:
        return f"/{segments[0]}", None
    status = len(segments) == len(_STATUS_PREFIX) + 1 and segments[:-1] == _STATUS_PREFIX
    if method == "GET" and status and segments[-1]:
        return STATUS_RESOURCE, {"id": unquote(segments[-1])}
    return None


def _default_handler() -> Handler:
    from sdfleet.components.task_api import handler as task_api

    return task_api.handler


class LocalApi:
    """A running local API (``with LocalApi(keys) as api: api.url``). ``api_keys`` maps each
    accepted key to its key id (API Gateway's ``apiKeyId``)."""

    def __init__(
        self,
        api_keys: Mapping[str, str],
        *,
        handler: Handler | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        stage: str = "",
        max_body_bytes: int = MAX_BODY_BYTES,
    ) -> None:
        if not ipaddress.ip_address(host).is_loopback:
            raise ValueError(f"the local API binds loopback only, not {host}")
        if not api_keys:
            raise ValueError("at least one API key is required")
        self.api_keys = dict(api_keys)
        self.handler = handler or _default_handler()
        self.stage = stage.strip("/")
        self.max_body_bytes = max_body_bytes
        self.server = ThreadingHTTPServer((host, port), _make_request_handler(self))
        self.server.daemon_threads = True
        self._thread: threading.Thread | None = None

    def __repr__(self) -> str:
        return f"LocalApi(url={self.url!r}, keys={len(self.api_keys)})"

    @property
    def url(self) -> str:
        """The stage URL, like the stack's ``apiUrl`` output."""
        host, port = self.server.server_address[:2]
        return f"http://{host!s}:{port}" + (f"/{self.stage}" if self.stage else "")

    def start(self) -> LocalApi:
        # A short poll interval: stop() returns within 50 ms instead of 500.
        self._thread = threading.Thread(
            target=self.server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="sdfleet-local-api",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread is not None:
            self.server.shutdown()
            self._thread.join()
            self._thread = None
        self.server.server_close()

    def __enter__(self) -> LocalApi:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- one request ---------------------------------------------------------------------
    def answer(
        self,
        method: str,
        target: str,
        headers: Mapping[str, str],
        read_body: Callable[[int], bytes],
    ) -> tuple[int, dict[str, str], bytes]:
        parts = urlsplit(target)
        path = parts.path.rstrip("/") or "/"
        if self.stage:
            prefix = f"/{self.stage}"
            if path != prefix and not path.startswith(prefix + "/"):
                return gateway_error(
                    403, "MISSING_AUTHENTICATION_TOKEN", "Missing Authentication Token"
                )
            path = path[len(prefix) :] or "/"
        route = match_route(method, path)
        if route is None:
            return gateway_error(
                403, "MISSING_AUTHENTICATION_TOKEN", "Missing Authentication Token"
            )
        lower = {k.lower(): v for k, v in headers.items()}
        key = lower.get("x-api-key", "")
        key_id = self.api_keys.get(key) if key else None
        if key_id is None:
            return gateway_error(403, "INVALID_API_KEY", "Forbidden")
        length_text = lower.get("content-length", "0") or "0"
        if not length_text.isdigit():
            return gateway_error(400, "BAD_REQUEST_BODY", "Invalid Content-Length")
        length = int(length_text)
        if length > self.max_body_bytes:
            return gateway_error(413, "REQUEST_TOO_LARGE", "Request Too Long")
        body = read_body(length) if length else b""
        resource, params = route
        event = self.event(method, path, resource, params, parts.query, headers, key, key_id, body)
        try:
            result = self.handler(event, SimpleNamespace(aws_request_id=str(uuid.uuid4())))
            status = int(result["statusCode"])
            out_headers = {str(k): str(v) for k, v in (result.get("headers") or {}).items()}
            raw = result.get("body") or ""
            data = base64.b64decode(raw) if result.get("isBase64Encoded") else raw.encode()
        except Exception:  # the gateway's answer to a failed or malformed Lambda response
            log.exception("the handler failed")
            return gateway_error(502, "DEFAULT_5XX", "Internal server error")
        return status, out_headers, data

    def event(
        self,
        method: str,
        path: str,
        resource: str,
        params: dict[str, str] | None,
        query: str,
        headers: Mapping[str, str],
        key: str,
        key_id: str,
        body: bytes,
    ) -> dict[str, Any]:
        """An API Gateway REST proxy event, as the gateway sends it to the Lambda."""
        try:
            text: str | None = body.decode("utf-8") if body else None
            encoded = False
        except UnicodeDecodeError:
            text, encoded = base64.b64encode(body).decode("ascii"), True
        multi_query = parse_qs(query, keep_blank_values=True) if query else {}
        stage_path = f"/{self.stage}{path}" if self.stage else path
        return {
            "resource": resource,
            "path": path,
            "httpMethod": method,
            "headers": dict(headers),
            "multiValueHeaders": {k: [v] for k, v in headers.items()},
            "queryStringParameters": {k: v[-1] for k, v in multi_query.items()} or None,
            "multiValueQueryStringParameters": multi_query or None,
            "pathParameters": params,
            "stageVariables": None,
            "requestContext": {
                "resourcePath": resource,
                "httpMethod": method,
                "path": stage_path,
                "stage": self.stage or "local",
                "requestId": str(uuid.uuid4()),
                "requestTimeEpoch": int(time.time() * 1000),
                "protocol": "HTTP/1.1",
                "identity": {"apiKey": key, "apiKeyId": key_id, "sourceIp": "127.0.0.1"},
                "apiId": "local",
            },
            "body": text,
            "isBase64Encoded": encoded,
        }


def _make_request_handler(api: LocalApi) -> type[BaseHTTPRequestHandler]:
    class RequestHandler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "sdfleet-local-api"

        def _serve(self) -> None:
            headers = dict(self.headers.items())
            read: list[int] = []

            def read_body(length: int) -> bytes:
                read.append(length)
                return self.rfile.read(length)

            status, out_headers, data = api.answer(self.command, self.path, headers, read_body)
            sent_body = self.headers.get("Content-Length", "0") not in ("", "0") or (
                "chunked" in self.headers.get("Transfer-Encoding", "").lower()
            )
            if sent_body and not read:
                self.close_connection = True  # an unread body must not become the next request
            self.send_response(status)
            for name, value in out_headers.items():
                if name.lower() not in ("content-length", "connection"):
                    self.send_header(name, value)
            self.send_header("Content-Length", str(len(data)))
            if self.close_connection:
                self.send_header("Connection", "close")
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)

        do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = _serve

        def log_message(self, format: str, *args: Any) -> None:
            log.debug("%s %s", self.command, urlsplit(self.path).path)

    return RequestHandler


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m sdfleet.local_api",
        description="Serve the task API on loopback with the real handler. The handler's "
        "environment (INPUT_TOPIC_ARN, OUTPUT_BUCKET, RUNTIMES, TASK_TABLE_NAME, AWS endpoint) "
        "comes from this process's environment.",
    )
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--stage", default="")
    parser.add_argument("--api-key", help="the accepted key (default: a new random one, printed)")
    args = parser.parse_args(argv)
    key = args.api_key or secrets.token_urlsafe(24)
    api = LocalApi({key: "local"}, port=args.port, stage=args.stage)
    print(f"task API: {api.url}", file=sys.stderr)
    if not args.api_key:
        print(f"API key: {key}", file=sys.stderr)
    try:
        api.server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        api.server.server_close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
