"""``sdfleet.client`` against a moto-backed stack: the real handler behind ``sdfleet.local_api``,
completion written the way the agent writes it, outputs downloaded from presigned URLs."""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sdfleet.client import (
    ApiError,
    Backoff,
    Client,
    DownloadError,
    TaskStatus,
    WaitTimeout,
    text_to_image,
)
from sdfleet.client_http import ClientError, Response, TooLarge
from tests.test_client_support import API_KEY, OTHER_KEY, PNG, Stack, moto_stack


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    with moto_stack() as built:
        yield built


@pytest.fixture
def client(stack: Stack) -> Client:
    return Client(stack.url, API_KEY, timeout=10)


class FakeTime:
    """A clock that moves only when the client sleeps; ``on_sleep`` runs at each sleep."""

    def __init__(self, on_sleep: Any = None) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []
        self.on_sleep = on_sleep

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
        if self.on_sleep is not None:
            self.on_sleep(len(self.sleeps))


def test_submit_get_complete_download(client: Client, stack: Stack, tmp_path: Path) -> None:
    sent = client.submit(text_to_image("sd15", "a lighthouse", steps=4, width=64, height=64))
    assert sent.runtime == "sd15" and sent.status == "queued"
    assert sent.output_location and sent.output_location.endswith(sent.id)
    (queued,) = stack.receive("sd15")
    assert queued["metadata"]["id"] == sent.id
    assert queued["content"]["steps"] == 4

    assert client.get(sent.id).state == "queued"
    stack.complete(sent.id, images=2)
    status = client.get(sent.id)
    assert status.state == "completed" and status.attempts == 1
    assert status.timings["total_ms"] >= 0 and len(status.outputs) == 2

    paths = client.download(status, tmp_path / "out")
    assert [p.name for p in paths] == [f"{sent.id}-0.png", f"{sent.id}-1.png"]
    assert [p.read_bytes() for p in paths] == [PNG + b"\x00", PNG + b"\x01"]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [p.name for p in paths]
    # By id: the status is read again (fresh URLs).
    assert client.download(sent.id, tmp_path / "again")[0].read_bytes() == PNG + b"\x00"


def test_a_task_body_and_a_chosen_id(client: Client, stack: Stack) -> None:
    body = text_to_image("sd15", "x", task_id="client-chosen-1")
    assert client.submit(body).id == "client-chosen-1"
    bare = text_to_image("sd15", "y")["task"]  # {"metadata", "content"} without "task"
    assert client.submit(bare).id not in ("", "client-chosen-1")
    stack.receive("sd15")


def test_api_errors_are_raised_as_the_api_gave_them(client: Client, stack: Stack) -> None:
    with pytest.raises(ApiError) as caught:
        client.submit(text_to_image("no-such-runtime", "x"))
    err = caught.value
    assert err.status == 400 and err.code == "unknown_runtime"
    assert json.loads(err.text) == err.body  # the body verbatim, parsed
    assert str(err) == f"HTTP 400: {err.text}"
    assert API_KEY not in str(err) + repr(err) + repr(client)

    with pytest.raises(ApiError) as conflict:
        client.submit(text_to_image("sd15", "x", task_id="dup-1"))
        client.submit(text_to_image("sd15", "x", task_id="dup-1"))
    assert conflict.value.status == 409
    stack.receive("sd15")


def test_gateway_answers_for_keys(client: Client, stack: Stack) -> None:
    sent = client.submit(text_to_image("sd15", "mine"))
    with pytest.raises(ApiError) as other:
        Client(stack.url, OTHER_KEY).get(sent.id)
    assert other.value.status == 404  # another key's task looks absent
    with pytest.raises(ApiError) as wrong:
        Client(stack.url, "not-a-key").get(sent.id)
    assert wrong.value.status == 403
    assert wrong.value.body == {
        "error": {"code": "INVALID_API_KEY", "message": "Forbidden", "field": None}
    }
    stack.receive("sd15")


def test_wait_polls_until_completed_with_capped_jittered_backoff(
    client: Client, stack: Stack
) -> None:
    sent = client.submit(text_to_image("sd15", "wait for me"))

    def agent(sleeps: int) -> None:
        if sleeps == 3:
            stack.store.mark_running(sent.id, "sd15")
        if sleeps == 6:
            stack.complete(sent.id)

    fake = FakeTime(agent)
    client = Client(stack.url, API_KEY, sleep=fake.sleep, clock=fake.clock, rng=random.Random(7))
    seen: list[str] = []
    status = client.wait(
        sent.id,
        deadline=600,
        backoff=Backoff(initial=1, factor=2, cap=4),
        on_progress=lambda s: seen.append(s.state),
    )
    assert status.state == "completed"
    assert seen == ["queued"] * 3 + ["running"] * 3 + ["completed"]
    caps = [1, 2, 4, 4, 4, 4]
    assert all(cap / 2 <= slept <= cap for slept, cap in zip(fake.sleeps, caps, strict=True))
    stack.receive("sd15")


def test_wait_returns_a_failed_task(client: Client, stack: Stack) -> None:
    sent = client.submit(text_to_image("sd15", "doomed"))
    stack.fail(sent.id, "inference_failed", "CUDA out of memory")
    status = client.wait(sent.id, deadline=5)
    assert (status.state, status.error_code) == ("failed", "inference_failed")
    assert status.error_message == "CUDA out of memory"
    with pytest.raises(DownloadError, match="failed, not completed"):
        client.download(status, "unused")
    stack.receive("sd15")


def test_wait_stops_at_its_deadline(client: Client, stack: Stack) -> None:
    sent = client.submit(text_to_image("sd15", "slow"))
    fake = FakeTime()
    slow = Client(stack.url, API_KEY, sleep=fake.sleep, clock=fake.clock)
    with pytest.raises(WaitTimeout) as caught:
        slow.wait(sent.id, deadline=30, backoff=Backoff(initial=4, factor=1, cap=4))
    assert caught.value.last is not None and caught.value.last.state == "queued"
    assert sum(fake.sleeps) == pytest.approx(30)  # the last sleep is cut to the deadline
    with pytest.raises(ApiError) as missing:  # not retryable: raised at once
        slow.wait("no-such-task", deadline=30)
    assert missing.value.status == 404
    stack.receive("sd15")


class Scripted:
    """A transport answering from a list; records what it was asked."""

    def __init__(self, *answers: Response) -> None:
        self.answers = list(answers)
        self.calls: list[tuple[str, str, dict[str, str]]] = []

    def __call__(
        self, method: str, url: str, headers: Any, body: Any, timeout: float, max_bytes: int
    ) -> Response:
        self.calls.append((method, url, dict(headers)))
        answer = self.answers.pop(0)
        if len(answer.body) > max_bytes:
            raise TooLarge("too large")
        return answer


def _json(status: int, doc: Any) -> Response:
    return Response(status, json.dumps(doc).encode())


def test_wait_polls_through_throttling_and_5xx() -> None:
    done = {"id": "t", "state": "completed", "outputs": []}
    transport = Scripted(
        _json(429, {"error": {"code": "THROTTLED"}}),
        _json(503, {"error": {"code": "task_state_unavailable"}}),
        _json(200, done),
    )
    fake = FakeTime()
    client = Client("http://api.invalid/v1", "k", transport=transport, sleep=fake.sleep)
    assert client.wait("t", deadline=None).state == "completed"
    assert [c[1] for c in transport.calls] == ["http://api.invalid/v1/v1alpha2/tasks/t"] * 3
    assert transport.calls[0][2]["x-api-key"] == "k"


def _completed(*outputs: tuple[str, str]) -> TaskStatus:
    return TaskStatus.from_json(
        {"id": "t", "state": "completed", "outputs": [{"key": k, "url": u} for k, u in outputs]}
    )


def test_object_keys_cannot_choose_where_files_go(tmp_path: Path) -> None:
    status = _completed(
        ("../../escape.png", "https://s3.invalid/a"),
        ("..", "https://s3.invalid/b"),
        (".bashrc", "https://s3.invalid/c"),
        ("p/q/escape.png", "https://s3.invalid/d"),
    )
    transport = Scripted(*(Response(200, bytes([i])) for i in range(4)))
    paths = Client("http://api.invalid", "k", transport=transport).download(status, tmp_path)
    assert [p.name for p in paths] == ["escape.png", "output-1", "output-2", "escape-3.png"]
    assert all(p.parent == tmp_path for p in paths)
    assert all("x-api-key" not in c[2] for c in transport.calls)  # S3 never sees the key


def test_download_bounds_size_and_leaves_no_partial_file(tmp_path: Path) -> None:
    status = _completed(("t/big.png", "https://s3.invalid/big"))
    client = Client("http://api.invalid", "k", transport=Scripted(Response(200, b"x" * 11)))
    with pytest.raises(TooLarge):
        client.download(status, tmp_path, max_bytes=10)
    assert list(tmp_path.iterdir()) == []


def test_download_refuses_non_http_urls_and_reports_s3_errors(tmp_path: Path) -> None:
    with pytest.raises(ClientError, match="only http"):
        Client("http://api.invalid", "k").download(
            _completed(("a.png", "file:///etc/passwd")), tmp_path
        )
    expired = Response(403, b"<Error><Code>AccessDenied</Code><Message>expired</Message></Error>")
    client = Client("http://api.invalid", "k", transport=Scripted(expired))
    with pytest.raises(DownloadError, match=r"a.png: HTTP 403 \(AccessDenied\)"):
        client.download(_completed(("a.png", "https://s3.invalid/a?X-Amz-Signature=s")), tmp_path)
    assert list(tmp_path.iterdir()) == []
