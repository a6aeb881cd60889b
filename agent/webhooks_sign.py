"""Standard Webhooks signatures (https://www.standardwebhooks.com/), standard library only.

Each delivery carries ``webhook-id`` (the same on every retry, so receivers can deduplicate),
``webhook-timestamp`` (integer Unix seconds of this attempt) and ``webhook-signature``:
``v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">``. During a rotation the stack holds
several secrets; a delivery is signed with each and the signatures are space-separated, so a
receiver holding either the old or the new secret verifies it.

The stored secret (Secrets Manager, one per stack) is the whitespace-separated list of
``whsec_<base64>`` secrets, newest first. A :class:`WebhookSecret` never shows its key in
``repr`` or ``str``, so it cannot reach a log by accident.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets as _random
from collections.abc import Sequence

SECRET_PREFIX = "whsec_"
# The specification recommends 24-64 random bytes.
MIN_SECRET_BYTES = 24
MAX_SECRET_BYTES = 64
NEW_SECRET_BYTES = 32
# A stack rotates one secret at a time; more active secrets only lengthen every header.
MAX_ACTIVE_SECRETS = 4
SIGNATURE_VERSION = "v1"
USER_AGENT = "sdfleet-webhooks/1"


class SecretError(ValueError):
    """A malformed stored secret. The message never contains key material."""


class WebhookSecret:
    """One signing key; ``repr`` shows only a short fingerprint."""

    __slots__ = ("_key",)

    def __init__(self, key: bytes) -> None:
        if not MIN_SECRET_BYTES <= len(key) <= MAX_SECRET_BYTES:
            raise SecretError(
                f"a webhook secret must be {MIN_SECRET_BYTES}-{MAX_SECRET_BYTES} bytes, "
                f"not {len(key)}"
            )
        self._key = bytes(key)

    @classmethod
    def parse(cls, text: str) -> WebhookSecret:
        """``whsec_<base64>`` (padding optional, as the reference libraries accept)."""
        if not text.startswith(SECRET_PREFIX):
            raise SecretError(f"a webhook secret must start with {SECRET_PREFIX!r}")
        raw = text[len(SECRET_PREFIX) :]
        try:
            key = base64.b64decode(raw + "=" * (-len(raw) % 4), validate=True)
        except (binascii.Error, ValueError):
            # Not chained: the decoder's message may quote the input.
            raise SecretError("a webhook secret must be base64 after the prefix") from None
        return cls(key)

    @classmethod
    def generate(cls) -> WebhookSecret:
        return cls(_random.token_bytes(NEW_SECRET_BYTES))

    def encoded(self) -> str:
        """The ``whsec_`` form, to store (never to log)."""
        return SECRET_PREFIX + base64.b64encode(self._key).decode("ascii")

    def fingerprint(self) -> str:
        """A short, non-reversible name of the key, for logs and rotation runbooks."""
        return hashlib.sha256(b"sdfleet-webhook-secret:" + self._key).hexdigest()[:12]

    def sign(self, webhook_id: str, timestamp: int, body: bytes) -> str:
        signed = f"{webhook_id}.{timestamp}.".encode() + body
        digest = hmac.new(self._key, signed, hashlib.sha256).digest()
        return f"{SIGNATURE_VERSION},{base64.b64encode(digest).decode('ascii')}"

    def __repr__(self) -> str:
        return f"WebhookSecret(fingerprint={self.fingerprint()})"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, WebhookSecret) and hmac.compare_digest(self._key, other._key)

    def __hash__(self) -> int:
        return hash(self.fingerprint())


def parse_secrets(stored: str) -> tuple[WebhookSecret, ...]:
    """The active secrets of a stored value: ``whsec_...`` tokens separated by whitespace."""
    tokens = stored.split()
    if not tokens:
        raise SecretError("the webhook secret value holds no secret")
    if len(tokens) > MAX_ACTIVE_SECRETS:
        raise SecretError(
            f"the webhook secret value holds {len(tokens)} secrets; "
            f"at most {MAX_ACTIVE_SECRETS} may be active"
        )
    parsed = tuple(WebhookSecret.parse(token) for token in tokens)
    if len(set(parsed)) != len(parsed):
        raise SecretError("the webhook secret value holds the same secret twice")
    return parsed


def signature_header(
    secrets: Sequence[WebhookSecret], webhook_id: str, timestamp: int, body: bytes
) -> str:
    """``v1,<sig>`` per active secret, space-separated (rotation)."""
    if not secrets:
        raise SecretError("no webhook secret to sign with")
    return " ".join(secret.sign(webhook_id, timestamp, body) for secret in secrets)


def webhook_headers(
    secrets: Sequence[WebhookSecret], webhook_id: str, timestamp: int, body: bytes
) -> dict[str, str]:
    """Every header of one delivery attempt."""
    if not webhook_id or any(ch.isspace() or ch in ".," for ch in webhook_id):
        # A dot would make "{id}.{timestamp}" ambiguous; whitespace and commas break headers.
        raise ValueError("a webhook id must be non-empty, without whitespace, dots or commas")
    return {
        "content-type": "application/json",
        "user-agent": USER_AGENT,
        "webhook-id": webhook_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": signature_header(secrets, webhook_id, timestamp, body),
    }
