"""``sdfleet.local_api``: what API Gateway does before the Lambda (routes, key, size), and the
REST-proxy event it hands over. A recording handler stands in for the Lambda here; the real one
runs behind it in tests/test_client.py."""

from __future__ import annotations

import http.client
import json
from collections.abc import Iterator
from typing import Any

import pytest

from sdfleet.client import ApiError, Client
from sdfleet.local_api import LocalApi

KEY = "l0cal-k3y"


class Recorder:
    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self.fail = False

    def __call__(self, event: dict[str, Any], context: Any) -> dict[str, Any]:
        if self.fail:
            raise RuntimeError("boom")
        self.events.append(event)
        return {"statusCode": 202, "headers": {"X-Seen": "yes"}, "body": '{"ok":true}'}


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
def api(recorder: Recorder) -> Iterator[LocalApi]:
    with LocalApi({KEY: "kid-1"}, handler=recorder, stage="v1", max_body_bytes=1000) as running:
        yield running


def request(
    api: LocalApi, method: str, path: str, body: bytes | None = None, key: str | None = KEY
) -> tuple[int, dict[str, str], Any]:
    host, port = api.server.server_address[:2]
    conn = http.client.HTTPConnection(str(host), port, timeout=10)
    headers = {"x-api-key": key} if key else {}
    conn.request(method, path, body=body, headers=headers)
    answer = conn.getresponse()
    data = answer.read()
    conn.close()
    return answer.status, dict(answer.getheaders()), json.loads(data)


def gateway(code: str, message: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "field": None}}


def test_routes_reach_the_handler_with_a_rest_proxy_event(
    api: LocalApi, recorder: Recorder
) -> None:
    assert api.url.endswith("/v1")
    status, headers, body = request(api, "POST", "/v1/v1alpha2?x=1&x=2", b'{"task": {}}')
    assert (status, headers["X-Seen"], body) == (202, "yes", {"ok": True})
    assert request(api, "POST", "/v1/v1alpha1", b"{}")[0] == 202
    assert request(api, "GET", "/v1/v1alpha2/tasks/a%20b")[0] == 202
    post, legacy, get = recorder.events
    assert (post["resource"], post["path"], post["httpMethod"]) == (
        "/v1alpha2",
        "/v1alpha2",
        "POST",
    )
    assert post["body"] == '{"task": {}}' and post["isBase64Encoded"] is False
    assert post["multiValueQueryStringParameters"] == {"x": ["1", "2"]}
    assert post["requestContext"]["identity"]["apiKeyId"] == "kid-1"
    assert post["requestContext"]["path"] == "/v1/v1alpha2"
    assert legacy["resource"] == "/v1alpha1"
    assert get["resource"] == "/v1alpha2/tasks/{id}" and get["pathParameters"] == {"id": "a b"}


def test_binary_bodies_arrive_base64_encoded(api: LocalApi, recorder: Recorder) -> None:
    request(api, "POST", "/v1/v1alpha2", b"\xff\xfe")
    assert recorder.events[0]["isBase64Encoded"] is True
    assert recorder.events[0]["body"] == "//4="


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/v1/v1alpha2"),
        ("POST", "/v1/v1alpha3"),
        ("POST", "/v1alpha2"),  # no stage
        ("DELETE", "/v1/v1alpha2/tasks/x"),
        ("GET", "/v1/v1alpha2/tasks/x/y"),
    ],
)
def test_what_the_api_does_not_have_is_the_gateways_403(
    api: LocalApi, recorder: Recorder, method: str, path: str
) -> None:
    status, headers, body = request(api, method, path)
    assert (status, body) == (
        403,
        gateway("MISSING_AUTHENTICATION_TOKEN", "Missing Authentication Token"),
    )
    assert headers["x-amzn-ErrorType"] == "MISSING_AUTHENTICATION_TOKEN"
    assert recorder.events == []


@pytest.mark.parametrize("key", [None, "wrong"])
def test_a_missing_or_unknown_key_is_the_gateways_403(
    api: LocalApi, recorder: Recorder, key: str | None
) -> None:
    status, _, body = request(api, "POST", "/v1/v1alpha2", b"{}", key=key)
    assert (status, body) == (403, gateway("INVALID_API_KEY", "Forbidden"))
    assert recorder.events == []


def test_bodies_over_the_gateway_limit_are_refused_unread(
    api: LocalApi, recorder: Recorder
) -> None:
    assert request(api, "POST", "/v1/v1alpha2", b"x" * 1000)[0] == 202
    status, _, body = request(api, "POST", "/v1/v1alpha2", b"x" * 1001)
    assert (status, body) == (413, gateway("REQUEST_TOO_LARGE", "Request Too Long"))
    assert len(recorder.events) == 1


def test_a_failing_handler_is_the_gateways_502(api: LocalApi, recorder: Recorder) -> None:
    recorder.fail = True
    status, _, body = request(api, "POST", "/v1/v1alpha2", b"{}")
    assert (status, body) == (502, gateway("DEFAULT_5XX", "Internal server error"))


def test_only_loopback() -> None:
    with pytest.raises(ValueError, match="loopback"):
        LocalApi({KEY: "k"}, handler=Recorder(), host="0.0.0.0")
    with pytest.raises(ValueError, match="API key"):
        LocalApi({}, handler=Recorder())


def test_keys_stay_out_of_the_repr(api: LocalApi) -> None:
    assert KEY not in repr(api)


def test_a_refused_body_is_not_read_as_the_next_request(api: LocalApi, recorder: Recorder) -> None:
    host, port = api.server.server_address[:2]
    conn = http.client.HTTPConnection(str(host), port, timeout=10)
    conn.request("POST", "/v1/v1alpha2", body=b"GET /v1/v1alpha2/tasks/x HTTP/1.1\r\n\r\n")
    answer = conn.getresponse()  # no key: refused before the body is read
    assert answer.status == 403 and answer.getheader("Connection") == "close"
    answer.read()
    conn.close()
    assert recorder.events == []


def test_the_client_follows_no_redirect_and_sends_its_key_nowhere_else(
    api: LocalApi, recorder: Recorder
) -> None:
    elsewhere = Recorder()
    with LocalApi({KEY: "kid-2"}, handler=elsewhere) as other:

        def redirect(event: dict[str, Any], context: Any) -> dict[str, Any]:
            location = f"{other.url}/v1alpha2/tasks/x"
            return {"statusCode": 302, "headers": {"Location": location}, "body": "{}"}

        api.handler = redirect
        with pytest.raises(ApiError) as caught:
            Client(api.url, KEY).get("x")
    assert caught.value.status == 302
    assert elsewhere.events == []
