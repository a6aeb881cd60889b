"""Loopback HTTP servers for the input-fetch tests: a dripping one, and the large-blob one of
:mod:`sdfleet.fakes.blobs` (the input-fetch benchmark uses it too)."""

from __future__ import annotations

import socket
import threading

from sdfleet.fakes.blobs import BlobServer

__all__ = ["BlobServer", "DripServer"]


class DripServer:
    """Raw-socket server on 127.0.0.1. Paths:

    - ``/fast``: 200 with a 4-byte body at once;
    - ``/drip-body``: 200 headers, then one body byte every ``interval`` seconds;
    - ``/drip-headers``: the status line, then one header byte every ``interval`` seconds;
    - ``/stall``: 200 headers, then nothing (only a read timeout would end it).

    Each connection gives up after ``max_seconds`` (so a client without a deadline ends too,
    just much later than the deadline under test).
    """

    def __init__(self, interval: float = 0.5, max_seconds: float = 15.0) -> None:
        self.interval = interval
        self.max_seconds = max_seconds
        self._stop = threading.Event()
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(16)
        self.port = int(self._sock.getsockname()[1])
        self.closed = threading.Event()  # set when a client hung up on a drip

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def __enter__(self) -> DripServer:
        threading.Thread(target=self._accept, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._sock.close()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        with conn:
            request = b""
            while b"\r\n\r\n" not in request:
                data = conn.recv(4096)
                if not data:
                    return
                request += data
            path = request.split(b" ", 2)[1].decode()
            try:
                self._respond(conn, path)
            except OSError:
                self.closed.set()

    def _respond(self, conn: socket.socket, path: str) -> None:
        if path == "/fast":
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nfast")
            return
        if path == "/drip-headers":
            conn.sendall(b"HTTP/1.1 200 OK\r\n")
            self._drip(conn, b"X-Slow: " + b"a" * 10_000)
            return
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n")
        if path == "/drip-body":
            self._drip(conn, b"b" * 100_000)
        else:
            self._stop.wait(self.max_seconds)

    def _drip(self, conn: socket.socket, data: bytes) -> None:
        steps = int(self.max_seconds / self.interval)
        for i in range(min(steps, len(data))):
            if self._stop.wait(self.interval):
                return
            conn.sendall(data[i : i + 1])
