"""The fake SD WebUI's HTTP server: stdlib ``http.server`` around the routes, and its lifecycle."""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from sdfleet.fakes._common import Call, free_port
from sdfleet.fakes.sdwebui.api import (
    API,
    GENERATION_ROUTES,
    HTTPError,
    Reply,
    json_bytes,
    route_name,
)
from sdfleet.fakes.sdwebui.routes import SdWebUIRoutes


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    # Keep-alive connections would make server_close() wait forever for their threads.
    block_on_close = False
    allow_reuse_address = True
    request_queue_size = 128  # the default backlog of 5 stalls bursts of connections
    fake: FakeSdWebUI


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def setup(self) -> None:
        super().setup()
        # Headers and body go out in two writes; Nagle + delayed ACK would add ~40 ms.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.server.fake._track(self.connection, True)

    def finish(self) -> None:
        with contextlib.suppress(OSError):
            super().finish()
        self.server.fake._track(self.connection, False)

    def do_GET(self) -> None:
        self.server.fake._dispatch(self, "GET")

    def do_POST(self) -> None:
        self.server.fake._dispatch(self, "POST")

    def do_PUT(self) -> None:
        self.server.fake._dispatch(self, "PUT")

    def do_DELETE(self) -> None:
        self.server.fake._dispatch(self, "DELETE")

    def do_PATCH(self) -> None:
        self.server.fake._dispatch(self, "PATCH")


class FakeSdWebUI(SdWebUIRoutes):
    """The fake server; see the package docstring for the constructor and runtime knobs."""

    _httpd: _Server | None = None
    _thread: threading.Thread | None = None

    # ------------------------------------------------------------------ lifecycle

    @property
    def url(self) -> str:
        if self.port == 0:
            self.port = free_port()
        return f"http://{self.host}:{self.port}"

    @property
    def api_url(self) -> str:
        return self.url + API

    def start(self) -> FakeSdWebUI:
        if self._httpd is not None:
            return self
        httpd = _Server((self.host, self.port), _Handler)
        httpd.fake = self
        self.port = int(httpd.server_address[1])
        self._httpd = httpd
        self._thread = threading.Thread(
            target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        httpd, self._httpd = self._httpd, None
        if httpd is None:
            return
        self._stopping.set()
        self._queue.close()
        self._wake.set()
        httpd.shutdown()
        httpd.server_close()
        with self._mu:
            conns = list(self._conns)
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> FakeSdWebUI:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _track(self, conn: socket.socket, add: bool) -> None:
        with self._mu:
            if add:
                self._conns.add(conn)
            else:
                self._conns.discard(conn)

    def _dispatch(self, h: _Handler, method: str) -> None:
        parts = urlsplit(h.path)
        path = parts.path
        query = dict(parse_qsl(parts.query))
        length = int(h.headers.get("Content-Length") or 0)
        raw = h.rfile.read(length) if length else b""
        body: Any = None
        if raw:
            try:
                body = json.loads(raw)
            except ValueError:
                body = raw.decode("utf-8", "replace")
        call = self.calls_log.add(
            Call(
                method=method,
                path=path,
                body=body,
                started=time.monotonic(),
                query=query,
                headers={k.lower(): v for k, v in h.headers.items()},
            )
        )
        t0 = time.perf_counter()
        try:
            reply = self._route(h, method, path, raw, call)
        except HTTPError as e:
            reply = Reply(e.status, json_bytes(e.body))
        except Exception as e:  # the real server turns any exception into a four-key 500
            reply = Reply(500, json_bytes(HTTPError(500, type(e).__name__, "", str(e)).body))
        reply.headers.setdefault("X-Process-Time", f"{time.perf_counter() - t0:.4f}")
        if self._stopping.is_set():  # a stopped server answers nothing
            h.close_connection = True
            with contextlib.suppress(OSError):
                h.connection.shutdown(socket.SHUT_RDWR)
            self.calls_log.finish(call, -1)
            return
        route = route_name(path)
        drop = self._take(self._drops, path, route in GENERATION_ROUTES)
        try:
            h.send_response(reply.status)
            h.send_header("Content-Type", reply.content_type)
            h.send_header("Content-Length", str(len(reply.body)))
            for k, v in reply.headers.items():
                h.send_header(k, v)
            h.end_headers()
            if drop is not None:
                h.wfile.write(reply.body[: len(reply.body) // 2])
                h.wfile.flush()
                h.close_connection = True
                with contextlib.suppress(OSError):
                    h.connection.shutdown(socket.SHUT_RDWR)
                self.calls_log.finish(call, -1)
                return
            h.wfile.write(reply.body)
            h.wfile.flush()
        except OSError:
            h.close_connection = True
        self.calls_log.finish(call, reply.status)
