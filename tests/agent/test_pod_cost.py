"""PodDeletionCost against a fake Kubernetes API on 127.0.0.1."""

from __future__ import annotations

import datetime
import ipaddress
import json
import logging
import ssl
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from sdfleet.agent.pod_cost import ANNOTATION, BUSY_COST, IDLE_COST, PodDeletionCost

BUSY = {"metadata": {"annotations": {ANNOTATION: "1000"}}}
IDLE = {"metadata": {"annotations": {ANNOTATION: "-1000"}}}


class FakeKubeApi:
    """Records PATCH requests; answers with ``statuses`` in turn (then 200). While ``gate`` is
    clear, a request is recorded and then held."""

    def __init__(self, tls: ssl.SSLContext | None = None) -> None:
        self.requests: list[dict[str, Any]] = []
        self.statuses: list[int] = []
        self.gate = threading.Event()
        self.gate.set()
        self.cond = threading.Condition()
        api = self

        class Handler(BaseHTTPRequestHandler):
            def do_PATCH(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with api.cond:
                    api.requests.append(
                        {"path": self.path, "headers": dict(self.headers), "body": body}
                    )
                    status = api.statuses.pop(0) if api.statuses else 200
                    api.cond.notify_all()
                api.gate.wait(10)
                reply = json.dumps({"kind": "Pod" if status == 200 else "Status"}).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        if tls is not None:
            self._server.socket = tls.wrap_socket(self._server.socket, server_side=True)
        self.port = int(self._server.server_address[1])
        threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True).start()

    def wait_for(self, count: int, timeout: float = 10.0) -> list[dict[str, Any]]:
        with self.cond:
            assert self.cond.wait_for(lambda: len(self.requests) >= count, timeout), self.requests
            return list(self.requests)

    def bodies(self) -> list[Any]:
        return [r["body"] for r in self.requests]

    def close(self) -> None:
        self.gate.set()
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture
def api() -> Iterator[FakeKubeApi]:
    server = FakeKubeApi()
    yield server
    server.close()


@pytest.fixture
def token(tmp_path: Path) -> Path:
    path = tmp_path / "token"
    path.write_text("token-1\n")
    return path


@pytest.fixture
def cost(api: FakeKubeApi, token: Path) -> Iterator[PodDeletionCost]:
    pc = PodDeletionCost(
        f"http://127.0.0.1:{api.port}",
        "sdfleet",
        "sd15-7d9f-abc",
        str(token),
        "/nonexistent/ca.crt",
        idle_delay_seconds=0.0,
        retry_base_seconds=0.01,
        retry_max_seconds=0.05,
    )
    yield pc
    pc.close()


def test_busy_and_idle_send_exact_merge_patches(api: FakeKubeApi, cost: PodDeletionCost) -> None:
    assert (BUSY_COST, IDLE_COST) == (1000, -1000)
    cost.busy()
    assert cost.flush(5)
    cost.idle()
    assert cost.flush(5)
    assert api.bodies() == [BUSY, IDLE]
    for request in api.requests:
        assert request["path"] == "/api/v1/namespaces/sdfleet/pods/sd15-7d9f-abc"
        assert request["headers"]["Content-Type"] == "application/merge-patch+json"
        assert request["headers"]["Authorization"] == "Bearer token-1"
    assert cost.applied == IDLE_COST


def test_the_token_is_read_fresh_for_every_patch(
    api: FakeKubeApi, cost: PodDeletionCost, token: Path
) -> None:
    cost.busy()
    assert cost.flush(5)
    token.write_text("token-2 rotated\n")
    cost.idle()
    assert cost.flush(5)
    auth = [r["headers"]["Authorization"] for r in api.requests]
    assert auth == ["Bearer token-1", "Bearer token-2 rotated"]


def test_calls_never_block_and_only_the_latest_state_is_applied(
    api: FakeKubeApi, cost: PodDeletionCost
) -> None:
    api.gate.clear()  # the API hangs on the first request
    cost.busy()
    api.wait_for(1)
    start = time.monotonic()
    for _ in range(50):
        cost.idle()
        cost.busy()
    cost.idle()
    assert time.monotonic() - start < 2.0  # 101 calls while the API hangs (for 10 s)
    api.gate.set()
    assert cost.flush(5)
    assert api.bodies() == [BUSY, IDLE]


def test_an_idle_spell_shorter_than_the_delay_sends_nothing(api: FakeKubeApi, token: Path) -> None:
    pc = PodDeletionCost(
        f"http://127.0.0.1:{api.port}", "ns", "pod", str(token), "", idle_delay_seconds=60.0
    )
    try:
        pc.busy()
        assert pc.flush(5)
        pc.idle()  # a task ended ...
        pc.busy()  # ... and the next began within the delay
        assert pc.flush(5)
        assert api.bodies() == [BUSY] and pc.patches == 1
    finally:
        pc.close()


def test_idle_is_applied_after_its_delay(api: FakeKubeApi, token: Path) -> None:
    pc = PodDeletionCost(
        f"http://127.0.0.1:{api.port}", "ns", "pod", str(token), "", idle_delay_seconds=0.2
    )
    try:
        start = time.monotonic()
        pc.idle()
        api.wait_for(1)
        assert time.monotonic() - start >= 0.2
        assert api.bodies() == [IDLE]
    finally:
        pc.close()


def test_a_failed_patch_is_retried(
    api: FakeKubeApi, cost: PodDeletionCost, caplog: pytest.LogCaptureFixture
) -> None:
    api.statuses = [500, 500]
    with caplog.at_level(logging.WARNING, logger="agent.pod_cost"):
        cost.busy()
        assert cost.flush(5)
    assert api.bodies() == [BUSY, BUSY, BUSY]
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and warnings[0].fields["status"] == "500"  # type: ignore[attr-defined]


def test_forbidden_is_logged_once_as_missing_rbac(
    api: FakeKubeApi, cost: PodDeletionCost, caplog: pytest.LogCaptureFixture
) -> None:
    api.statuses = [403, 403, 403]
    with caplog.at_level(logging.INFO, logger="agent.pod_cost"):
        cost.busy()
        assert cost.flush(5)  # RBAC granted later: the retry gets through
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1
    message = errors[0].getMessage()
    assert "403" in message and "RBAC" in message and "patch pods" in message
    assert len(api.requests) == 4
    assert any("patched again" in r.getMessage() for r in caplog.records)


def test_close_stops_the_thread(cost: PodDeletionCost) -> None:
    cost.close()
    assert not cost._thread.is_alive()


# -- from_env -------------------------------------------------------------------------------


def test_outside_a_cluster_from_env_is_none_with_one_log_line(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="agent.pod_cost"):
        pc = PodDeletionCost.from_env(
            {"POD_NAME": "p"},
            token_path=str(tmp_path / "none"),
            namespace_path=str(tmp_path / "none"),
        )
    assert pc is None
    [record] = caplog.records
    assert "not running in a Kubernetes pod" in record.getMessage()
    assert "KUBERNETES_SERVICE_HOST" in record.fields["missing"]  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("host", "base"),
    [("10.100.0.1", "https://10.100.0.1:443"), ("fd00::1", "https://[fd00::1]:443")],
)
def test_in_a_pod_from_env_builds_the_pod_url(token: Path, host: str, base: str) -> None:
    env = {"KUBERNETES_SERVICE_HOST": host, "KUBERNETES_SERVICE_PORT": "443", "POD_NAME": "p1"}
    ns = token.parent / "namespace"
    ns.write_text("sdfleet\n")
    pc = PodDeletionCost.from_env(env, token_path=str(token), namespace_path=str(ns))
    assert pc is not None
    try:
        assert pc.url == f"{base}/api/v1/namespaces/sdfleet/pods/p1"
    finally:
        pc.close()


# -- TLS ------------------------------------------------------------------------------------


def _certificates(tmp_path: Path) -> tuple[Path, Path, Path]:
    """A CA and a server certificate for 127.0.0.1 signed by it: (ca, cert, key)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.UTC)

    def build(subject: str, issuer: str, key: Any, signer: Any, ca: bool) -> Any:
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
            .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(hours=1))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        )
        if not ca:
            san = x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))])
            builder = builder.add_extension(san, critical=False)
        return builder.sign(signer, hashes.SHA256())

    ca_key, server_key = (
        ec.generate_private_key(ec.SECP256R1()),
        ec.generate_private_key(ec.SECP256R1()),
    )
    ca_cert = build("test-ca", "test-ca", ca_key, ca_key, True)
    cert = build("127.0.0.1", "test-ca", server_key, ca_key, False)
    paths = tmp_path / "ca.crt", tmp_path / "server.crt", tmp_path / "server.key"
    paths[0].write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(
        server_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return paths


def test_tls_is_verified_against_the_ca_file(tmp_path: Path, token: Path) -> None:
    ca, cert, key = _certificates(tmp_path)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server = FakeKubeApi(tls=context)
    good = PodDeletionCost(
        f"https://127.0.0.1:{server.port}", "ns", "pod", str(token), str(ca),
        retry_base_seconds=0.01,
    )  # fmt: skip
    other_ca = tmp_path / "other"
    other_ca.mkdir()
    wrong = PodDeletionCost(
        f"https://127.0.0.1:{server.port}", "ns", "pod", str(token),
        str(_certificates(other_ca)[0]), retry_base_seconds=0.01,
    )  # fmt: skip
    try:
        good.busy()
        assert good.flush(5)
        wrong.busy()
        assert not wrong.flush(1.0)  # the handshake fails: never applied
        assert wrong.patches >= 1 and len(server.requests) == 1
    finally:
        good.close()
        wrong.close()
        server.close()
