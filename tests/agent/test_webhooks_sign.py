"""Standard Webhooks signatures, checked with the standardwebhooks library: the specification's
test vector, rotation with two secrets, stored-secret parsing and redaction."""

from __future__ import annotations

import base64
import datetime

import pytest
import standardwebhooks

from sdfleet.agent.webhooks_sign import (
    SecretError,
    WebhookSecret,
    parse_secrets,
    signature_header,
    webhook_headers,
)


def test_the_specification_test_vector() -> None:
    secret = WebhookSecret.parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
    signed = secret.sign("msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, b'{"test": 2432232314}')
    assert signed == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def test_the_library_verifies_a_signature() -> None:
    secret = WebhookSecret.generate()
    body = b'{"id":"t1","status":"completed"}'
    now = int(datetime.datetime.now(datetime.UTC).timestamp())
    headers = webhook_headers([secret], "msg_abc", now, body)
    assert headers["webhook-id"] == "msg_abc" and headers["webhook-timestamp"] == str(now)
    assert standardwebhooks.Webhook(secret.encoded()).verify(body, headers) == {
        "id": "t1",
        "status": "completed",
    }
    with pytest.raises(standardwebhooks.WebhookVerificationError):
        standardwebhooks.Webhook(secret.encoded()).verify(body + b" ", headers)
    with pytest.raises(standardwebhooks.WebhookVerificationError):
        standardwebhooks.Webhook(WebhookSecret.generate().encoded()).verify(body, headers)


def test_rotation_signs_with_every_active_secret() -> None:
    new, old = WebhookSecret.generate(), WebhookSecret.generate()
    secrets = parse_secrets(f"{new.encoded()}\n{old.encoded()}")
    assert secrets == (new, old)
    body = b'{"id":"t2"}'
    now = int(datetime.datetime.now(datetime.UTC).timestamp())
    headers = webhook_headers(secrets, "msg_rot", now, body)
    assert len(headers["webhook-signature"].split(" ")) == 2
    for secret in (new, old):  # a receiver holding either one verifies
        standardwebhooks.Webhook(secret.encoded()).verify(body, headers)
    with pytest.raises(standardwebhooks.WebhookVerificationError):
        standardwebhooks.Webhook(WebhookSecret.generate().encoded()).verify(body, headers)


def test_unpadded_secrets_parse_like_the_libraries() -> None:
    key = bytes(range(32))
    unpadded = "whsec_" + base64.b64encode(key).decode().rstrip("=")
    assert WebhookSecret.parse(unpadded) == WebhookSecret(key)


@pytest.mark.parametrize(
    "stored",
    [
        "",
        "   \n",
        "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        "whsec_not*base64!",
        "whsec_" + base64.b64encode(b"short").decode(),
        "whsec_" + base64.b64encode(b"x" * 65).decode(),
    ],
)
def test_bad_stored_secrets_are_refused(stored: str) -> None:
    with pytest.raises(SecretError):
        parse_secrets(stored)


def test_duplicate_and_too_many_secrets_are_refused() -> None:
    one = WebhookSecret.generate().encoded()
    with pytest.raises(SecretError, match="twice"):
        parse_secrets(f"{one} {one}")
    with pytest.raises(SecretError, match="at most"):
        parse_secrets(" ".join(WebhookSecret.generate().encoded() for _ in range(5)))
    with pytest.raises(SecretError):
        signature_header([], "msg_x", 1, b"")


def test_secrets_never_show_their_key() -> None:
    secret = WebhookSecret.generate()
    encoded = secret.encoded()
    body = encoded[len("whsec_") :]
    for text in (repr(secret), str(secret), f"{secret}", repr([secret])):
        assert body not in text and secret.fingerprint() in text
    with pytest.raises(SecretError) as info:
        parse_secrets(f"whsec_{body}!!")
    assert body not in str(info.value) and info.value.__cause__ is None


@pytest.mark.parametrize("bad_id", ["", "msg.1", "msg 1", "msg,1"])
def test_webhook_ids_that_would_blur_the_signed_text_are_refused(bad_id: str) -> None:
    with pytest.raises(ValueError):
        webhook_headers([WebhookSecret.generate()], bad_id, 1, b"{}")
