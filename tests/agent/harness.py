"""Test plumbing for the agent's tests. The moto event plane, the agent runners and the fault
injection live in :mod:`sdfleet.fakes` (the benchmarks use them too); this module re-exports
them and adds what only the tests need (``AGENT_ENV``, ``ImageHost``).
"""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from sdfleet.fakes._common import free_port
from sdfleet.fakes.agents import AgentThread, Flaky, failing, subprocess_env
from sdfleet.fakes.fleet import FAKE_CREDENTIALS, REGION, Fleet, MotoProcess, MotoServer, client

__all__ = [
    "AGENT_ENV",
    "FAKE_CREDENTIALS",
    "REGION",
    "AgentThread",
    "Flaky",
    "Fleet",
    "ImageHost",
    "MotoProcess",
    "MotoServer",
    "client",
    "failing",
    "free_port",
    "subprocess_env",
]

# The required agent settings, for unit tests that build a Config without AWS.
AGENT_ENV = {
    "SQS_QUEUE_URL": "https://sqs.eu-west-1.amazonaws.com/123456789012/sdfleet-sd15",
    "SNS_TOPIC_ARN": "arn:aws:sns:eu-west-1:123456789012:sdfleet-output",
    "S3_BUCKET": "sdfleet-output",
    "RUNTIME_TYPE": "sdwebui",
    "RUNTIME_NAME": "sd15",
}


class ImageHost:
    """A tiny HTTP server for input images (``/small.png``, ``/big.bin``)."""

    def __init__(self, big: int = 4096) -> None:
        from sdfleet.fakes.images import make_png

        payloads = {"/small.png": make_png(64, 64, 7), "/big.bin": b"\0" * big}

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                data = payloads.get(self.path)
                if data is None:
                    self.send_response(404)
                    self.end_headers()
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        self.port = self.httpd.server_address[1]

    def url(self, path: str, host: str = "127.0.0.1") -> str:
        return f"http://{host}:{self.port}{path}"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
