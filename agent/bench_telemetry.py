"""Telemetry on, as deployed, for the agent benchmarks.

A deployed agent ships its EMF metrics with ``PutLogEvents`` and exports its spans over
OTLP/HTTP to the stack's collector. ``Telemetry`` gives a benchmark both: the runtime's metrics
log group on the benchmark's moto server, and a local OTLP/HTTP receiver standing in for the
collector (it answers 200 at once and counts what it got), plus the agent environment pointing
at them. ``stats()`` afterwards: metric documents stored, span requests and bytes received.
"""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class _Receiver(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.requests = 0
        self.bytes = 0
        self.lock = threading.Lock()


class _Handler(BaseHTTPRequestHandler):
    server: _Receiver

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("content-length", "0")))
        with self.server.lock:
            self.server.requests += 1
            self.server.bytes += len(body)
        self.send_response(200)
        self.send_header("content-type", "application/x-protobuf")
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


class Telemetry:
    """Metrics log group on moto and an OTLP receiver; ``env`` is what the pod would get."""

    def __init__(self, endpoint: str, runtime: str) -> None:
        from sdfleet.fakes.fleet import client

        self.logs = client("logs", endpoint)
        self.group = f"/sdfleet/bench/{runtime}/agent-metrics"
        self.stream = f"bench-{runtime}"
        self.logs.create_log_group(logGroupName=self.group)
        self.receiver = _Receiver()
        threading.Thread(target=self.receiver.serve_forever, daemon=True).start()
        port = self.receiver.server_address[1]
        self.env = {
            "METRICS_LOG_GROUP": self.group,
            "POD_NAME": self.stream,
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": f"http://127.0.0.1:{port}/v1/traces",
            "OTEL_SERVICE_NAME": f"sdfleet-agent-{runtime}",
        }

    def stats(self) -> dict[str, Any]:
        """What reached the sinks (call after the agent stopped: it flushes both on exit)."""
        documents = 0
        token: str | None = None
        while True:
            page: dict[str, Any] = self.logs.get_log_events(
                logGroupName=self.group,
                logStreamName=self.stream,
                startFromHead=True,
                **({"nextToken": token} if token else {}),
            )
            documents += len(page["events"])
            if not page["events"] or page.get("nextForwardToken") == token:
                break
            token = page.get("nextForwardToken")
        self.receiver.shutdown()
        self.receiver.server_close()
        return {
            "emf_documents_stored": documents,
            "otlp_span_requests": self.receiver.requests,
            "otlp_kib": self.receiver.bytes / 1024,
        }
