"""One webhook POST over real TLS: pinning, SNI, certificate checks, SSRF at delivery, bounds.

The receiver is a local HTTPS server with a certificate made here for ``hooks.example.com``;
the resolver is injected (that name -> 127.0.0.1) and loopback is let through only by an
explicit allowance handed to the call (:func:`allow_only`), never by a global switch.
"""

from __future__ import annotations

import datetime
import http.server
import queue
import socket
import ssl
import subprocess
import sys
import threading
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import standardwebhooks
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from sdfleet.agent.contract_callback import Callback, parse_callback
from sdfleet.agent.netguard import address_refused
from sdfleet.agent.webhooks_http import (
    AddressGuard,
    DeliveryLimits,
    DeliveryOutcome,
    HttpsTransport,
    PinnedRequest,
    deliver,
)
from sdfleet.agent.webhooks_sign import (
    WebhookSecret,
    webhook_headers,
)

HOST = "hooks.example.com"


def allow_only(*addresses: str) -> AddressGuard:
    """Test-only: these exact addresses pass; every other one goes to the real guard."""
    allowed = frozenset(addresses)
    return lambda address: None if address in allowed else address_refused(address)


def resolve_to(*addresses: str) -> Callable[[str, int], list[str]]:
    def resolver(host: str, port: int) -> list[str]:
        if host != HOST:
            raise socket.gaierror(socket.EAI_NONAME, "unknown test name")
        return list(addresses)

    return resolver


# --------------------------------------------------------------------------------------------
# The receiver


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    """A local HTTPS server answering with the queued statuses (then 200)."""

    port: int
    client_context: ssl.SSLContext
    statuses: deque[int | tuple[int, dict[str, str], bytes]] = field(default_factory=deque)
    received: queue.Queue[Received] = field(default_factory=queue.Queue)
    sni: list[str | None] = field(default_factory=list)
    errors: list[BaseException | None] = field(default_factory=list)

    def url(self, path: str = "/hook?token=T0KEN") -> str:
        return f"https://{HOST}:{self.port}{path}"

    def callback(self, path: str = "/hook?token=T0KEN") -> Callback:
        cb = parse_callback({"url": self.url(path)})
        assert cb is not None
        return cb

    def take(self) -> Received:
        return self.received.get(timeout=10)


def _certificate(tmp: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, HOST)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(HOST)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = tmp / "cert.pem", tmp / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_file, key_file


@pytest.fixture(scope="session")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return _certificate(tmp_path_factory.mktemp("webhook-tls"))


@pytest.fixture
def receiver(tls_files: tuple[Path, Path]) -> Iterator[Receiver]:
    cert_file, key_file = tls_files
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(cert_file, key_file)
    state = Receiver(0, ssl.create_default_context(cafile=str(cert_file)))

    def note_sni(_sock: ssl.SSLObject, name: str | None, _ctx: ssl.SSLContext) -> None:
        state.sni.append(name)

    server_ctx.sni_callback = note_sni

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length", "0")))
            state.received.put(
                Received(self.path, {k.lower(): v for k, v in self.headers.items()}, body)
            )
            answer = state.statuses.popleft() if state.statuses else 200
            status, headers, payload = answer if isinstance(answer, tuple) else (answer, {}, b"")
            self.send_response(status)
            for key, value in headers.items():
                self.send_header(key, value)
            if "content-length" not in {k.lower() for k in headers}:
                self.send_header("content-length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, format: str, *args: object) -> None:
            pass

    class Server(http.server.ThreadingHTTPServer):
        daemon_threads = True

        def handle_error(self, request: object, client_address: object) -> None:
            # A client that stops reading (the bounded response read) breaks the pipe.
            state.errors.append(sys.exc_info()[1])

    server = Server(("127.0.0.1", 0), Handler)
    server.socket = server_ctx.wrap_socket(server.socket, server_side=True)
    state.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield state
    server.shutdown()
    server.server_close()


def verify(secret: WebhookSecret, got: Received) -> object:
    """The standardwebhooks library's verification (raises on a bad signature)."""
    return standardwebhooks.Webhook(secret.encoded()).verify(got.body, got.headers)


# --------------------------------------------------------------------------------------------
# Delivery


def post(
    receiver: Receiver, callback: Callback, body: bytes = b'{"id":"t"}', **kw: object
) -> DeliveryOutcome:
    secret = WebhookSecret.generate()
    headers = webhook_headers([secret], "msg_d", int(datetime.datetime.now().timestamp()), body)
    kw.setdefault("resolver", resolve_to("127.0.0.1"))
    kw.setdefault("guard", allow_only("127.0.0.1"))
    kw.setdefault("transport", HttpsTransport(receiver.client_context).post)
    return deliver(callback, headers, body, **kw)  # type: ignore[arg-type]


def test_a_delivery_is_pinned_verified_and_signed(receiver: Receiver) -> None:
    secret = WebhookSecret.generate()
    body = b'{"id":"t9","status":"completed"}'
    now = int(datetime.datetime.now(datetime.UTC).timestamp())
    outcome = deliver(
        receiver.callback(),
        webhook_headers([secret], "msg_pin", now, body),
        body,
        resolver=resolve_to("127.0.0.1"),
        guard=allow_only("127.0.0.1"),
        transport=HttpsTransport(receiver.client_context).post,
    )
    assert (outcome.ok, outcome.code, outcome.address) == (True, "http_200", "127.0.0.1")
    got = receiver.take()
    assert got.path == "/hook?token=T0KEN" and got.body == body
    assert got.headers["host"] == f"{HOST}:{receiver.port}"
    assert got.headers["content-type"] == "application/json"
    assert receiver.sni == [HOST]
    assert verify(secret, got) == {"id": "t9", "status": "completed"}


def test_the_system_trust_store_refuses_an_unknown_certificate(receiver: Receiver) -> None:
    outcome = post(receiver, receiver.callback(), transport=HttpsTransport().post)
    assert (outcome.error, outcome.retryable) == ("tls_error", True)
    assert receiver.received.empty()


def test_a_certificate_for_another_name_is_refused(
    receiver: Receiver, tls_files: tuple[Path, Path]
) -> None:
    cb = receiver.callback()
    other = Callback(cb.url, cb.events, "other.example.com", cb.port, cb.target, False)
    outcome = post(receiver, other, resolver=lambda host, port: ["127.0.0.1"])
    assert outcome.error == "tls_error"
    assert receiver.received.empty()


@pytest.mark.parametrize(
    "addresses",
    [["127.0.0.1"], ["169.254.169.254"], ["93.184.216.34", "10.0.0.5"], ["fd00:ec2::254"],
     ["::ffff:127.0.0.1"]],
)  # fmt: skip
def test_a_name_resolving_to_a_refused_address_is_not_contacted(
    receiver: Receiver, addresses: list[str]
) -> None:
    def never(request: PinnedRequest, limits: DeliveryLimits, deadline_at: float) -> int:
        raise AssertionError("the transport must not be reached")

    outcome = post(receiver, receiver.callback(), resolver=resolve_to(*addresses),
                   guard=address_refused, transport=never)  # fmt: skip
    assert (outcome.error, outcome.retryable) == ("forbidden_address", False)
    assert outcome.detail.split()[-1] in addresses


def test_the_allowance_is_per_call_and_exact(receiver: Receiver) -> None:
    # Allowing 127.0.0.1 does not allow 127.0.0.2, nor the metadata address.
    for address in ("127.0.0.2", "169.254.169.254"):
        outcome = post(receiver, receiver.callback(), resolver=resolve_to(address))
        assert outcome.error == "forbidden_address"
    assert receiver.received.empty()


@pytest.mark.parametrize("url", ["https://169.254.169.254/latest", "https://[::1]:8443/"])
def test_ip_literals_are_checked_at_delivery_too(url: str) -> None:
    # Built past the submission check, as a forged notification would be.
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    assert parts.hostname is not None
    cb = Callback(url, ("completed",), parts.hostname, parts.port or 443, parts.path, True)
    outcome = deliver(cb, {}, b"{}", transport=lambda *a: pytest.fail("contacted"))
    assert outcome.error == "forbidden_address"


def test_resolution_failure_is_a_retryable_dns_error(receiver: Receiver) -> None:
    def broken(host: str, port: int) -> list[str]:
        raise socket.gaierror(socket.EAI_AGAIN, "temporary failure")

    outcome = post(receiver, receiver.callback(), resolver=broken)
    assert (outcome.error, outcome.retryable) == ("dns_error", True)


def test_redirects_are_not_followed(receiver: Receiver) -> None:
    receiver.statuses.append((302, {"location": "https://169.254.169.254/"}, b""))
    outcome = post(receiver, receiver.callback())
    assert (outcome.code, outcome.ok, outcome.retryable) == ("http_302", False, False)
    receiver.take()
    assert receiver.received.empty()


def test_the_response_body_is_read_only_to_a_bound(receiver: Receiver) -> None:
    # Claims a gigabyte and sends 64 KiB: the delivery reads its bound and is done.
    receiver.statuses.append((200, {"content-length": str(10**9)}, b"x" * 65536))
    outcome = post(receiver, receiver.callback(), limits=DeliveryLimits(max_response_bytes=1024))
    assert outcome.code == "http_200"


def test_a_silent_receiver_is_cut_off_at_the_deadline() -> None:
    listener = socket.create_server(("127.0.0.1", 0))  # accepts TCP, never answers TLS
    try:
        cb = parse_callback({"url": f"https://{HOST}:{listener.getsockname()[1]}/"})
        assert cb is not None
        outcome = deliver(cb, {}, b"{}", resolver=resolve_to("127.0.0.1"),
                          guard=allow_only("127.0.0.1"),
                          limits=DeliveryLimits(read_timeout=30, deadline=0.5))  # fmt: skip
    finally:
        listener.close()
    assert (outcome.error, outcome.retryable) == ("timeout", True)
    assert outcome.elapsed < 5


def test_a_refused_connection_tries_the_next_checked_address(receiver: Receiver) -> None:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.2", 0))
        dead = probe.getsockname()[1]
    tried: list[str] = []
    real = HttpsTransport(receiver.client_context).post

    def transport(request: PinnedRequest, limits: DeliveryLimits, deadline_at: float) -> int:
        tried.append(request.address)
        if request.address == "127.0.0.2":
            request = PinnedRequest("127.0.0.2", dead, request.host, request.target,
                                    request.headers, request.body)  # fmt: skip
        return real(request, limits, deadline_at)

    outcome = post(receiver, receiver.callback(), resolver=resolve_to("127.0.0.2", "127.0.0.1"),
                   guard=allow_only("127.0.0.1", "127.0.0.2"), transport=transport)  # fmt: skip
    assert tried == ["127.0.0.2", "127.0.0.1"]
    assert (outcome.code, outcome.address) == ("http_200", "127.0.0.1")


@pytest.mark.parametrize(
    ("outcome", "retry"),
    [
        (DeliveryOutcome(200), False),
        (DeliveryOutcome(204), False),
        (DeliveryOutcome(500), True),
        (DeliveryOutcome(503), True),
        (DeliveryOutcome(429), True),
        (DeliveryOutcome(400), False),
        (DeliveryOutcome(404), False),
        (DeliveryOutcome(410), False),
        (DeliveryOutcome(301), False),
        (DeliveryOutcome(None, "timeout"), True),
        (DeliveryOutcome(None, "connection_error"), True),
        (DeliveryOutcome(None, "dns_error"), True),
        (DeliveryOutcome(None, "tls_error"), True),
        (DeliveryOutcome(None, "protocol_error"), True),
        (DeliveryOutcome(None, "forbidden_address"), False),
    ],
)
def test_retry_decisions(outcome: DeliveryOutcome, retry: bool) -> None:
    assert outcome.retryable is retry


def test_the_delivery_code_needs_only_the_standard_library(tmp_path: Path) -> None:
    """What the webhook Lambda would ship: the contract modules, netguard.py and webhooks*.py."""
    root = Path(__file__).resolve().parents[2] / "agent"
    package = tmp_path / "sdfleet" / "agent"
    package.mkdir(parents=True)
    for init in (tmp_path / "sdfleet" / "__init__.py", package / "__init__.py"):
        init.write_text("")
    for pattern in ("contract*.py", "netguard.py", "webhooks*.py"):
        for module in root.glob(pattern):
            (package / module.name).write_text(module.read_text())
    code = (
        "import sys\n"
        f"sys.path[:] = [{str(tmp_path)!r}] + [p for p in sys.path if 'site-packages' not in p]\n"
        "from sdfleet.agent import webhooks, webhooks_sign\n"
        f"assert webhooks.__file__.startswith({str(tmp_path)!r})\n"
        "s = webhooks_sign.WebhookSecret.generate()\n"
        "assert webhooks_sign.webhook_headers([s], 'msg_1', 1, b'{}')['webhook-signature']\n"
        "assert not [m for m in sys.modules if m.startswith(('httpx', 'boto3', 'pulumi'))]\n"
    )
    result = subprocess.run(
        [sys.executable, "-I", "-c", code], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
