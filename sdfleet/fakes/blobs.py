"""A loopback HTTP server for large inputs (the agent's input-fetch benchmark and tests)."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class BlobServer:
    """``ThreadingHTTPServer`` on 127.0.0.1 answering every GET with ``payload`` (no copies)."""

    def __init__(self, payload: bytes) -> None:
        blob = memoryview(payload)

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.send_response(200)
                self.send_header("Content-Length", str(len(blob)))
                self.end_headers()
                for start in range(0, len(blob), 1 << 20):
                    self.wfile.write(blob[start : start + (1 << 20)])

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.port = int(self._server.server_address[1])

    def url(self, path: str = "/blob") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def __enter__(self) -> BlobServer:
        threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
