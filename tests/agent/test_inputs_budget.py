"""A task's inputs share one byte budget on top of the per-input cap."""

from __future__ import annotations

import base64
from typing import Any

import httpx
import pytest

from sdfleet.agent.errors import TaskError
from sdfleet.agent.inputs import InputFetcher, inline_sdwebui_inputs

PUBLIC = "93.184.215.14"


def fetcher(sizes: dict[str, int], declare: bool = True, **kw: Any) -> InputFetcher:
    """Serves ``/<name>`` with ``sizes[name]`` bytes (streamed, Content-Length optional)."""
    served: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        name = request.url.path.strip("/")
        served.append(name)
        body = name[0].encode() * sizes[name]
        if declare:
            return httpx.Response(200, content=body)
        return httpx.Response(
            200, content=iter([body[i : i + 100] for i in range(0, len(body), 100)])
        )

    f = InputFetcher(transport=httpx.MockTransport(handler), resolver=lambda h, p: [PUBLIC], **kw)
    f.served = served  # type: ignore[attr-defined]
    return f


def url(name: str) -> str:
    return f"https://img.example.com/{name}"


@pytest.mark.parametrize("declare", [True, False])
def test_inputs_over_the_total_budget_fail_naming_the_field(declare: bool) -> None:
    f = fetcher({"a": 400, "b": 400, "c": 400}, declare, max_bytes=500, max_total_bytes=1000)
    content = {"init_images": [url("a"), url("b"), url("c")]}
    with pytest.raises(TaskError) as info:
        inline_sdwebui_inputs(content, f)
    error = info.value
    assert error.code == "input_too_large"
    assert error.detail == {"field": "init_images[2]", "url": url("c"), "limit": 1000,
                            "reason": "total"}  # fmt: skip
    assert "INPUT_MAX_TOTAL_BYTES" in error.message and "800 bytes" in error.message


def test_inputs_within_the_budget_are_all_inlined() -> None:
    f = fetcher({"a": 400, "b": 400, "c": 200}, max_bytes=500, max_total_bytes=1000)
    content = {"init_images": [url("a"), url("b")], "mask": url("c")}
    out, count = inline_sdwebui_inputs(content, f)
    assert count == 3
    assert [base64.b64decode(x) for x in out["init_images"]] == [b"a" * 400, b"b" * 400]
    assert base64.b64decode(out["mask"]) == b"c" * 200


def test_the_per_input_cap_still_applies_within_the_budget() -> None:
    f = fetcher({"a": 600}, max_bytes=500, max_total_bytes=10_000)
    with pytest.raises(TaskError) as info:
        inline_sdwebui_inputs({"mask": url("a")}, f)
    assert info.value.code == "input_too_large"
    assert info.value.detail == {"field": "mask", "url": url("a"), "limit": 500}
    assert "MAX_INPUT_BYTES" in info.value.message


def test_each_task_gets_a_fresh_budget() -> None:
    f = fetcher({"a": 800}, max_bytes=1000, max_total_bytes=1000)
    for _ in range(3):
        out, _count = inline_sdwebui_inputs({"mask": url("a")}, f)
        assert base64.b64decode(out["mask"]) == b"a" * 800


def test_one_task_session_counts_http_and_s3_inputs_together() -> None:
    class S3:
        def get_object(self, Bucket: str, Key: str) -> dict[str, Any]:
            import io

            return {"ContentLength": 600, "Body": io.BytesIO(b"s" * 600)}

    f = fetcher({"a": 600}, max_bytes=1000, max_total_bytes=1000, s3=S3(),
                allowed_s3_buckets=frozenset({"in"}))  # fmt: skip
    with f.task() as inputs:
        assert inputs.fetch(url("a"), "first") == b"a" * 600
        with pytest.raises(TaskError) as info:
            inputs.fetch("s3://in/k.png", "second")
    assert info.value.detail["field"] == "second" and info.value.detail["reason"] == "total"
    assert inputs.used_bytes == 600


def test_a_declared_length_over_the_budget_fails_before_the_body() -> None:
    reads: list[int] = []

    def body() -> Any:
        for _ in range(10):
            reads.append(1)
            yield b"x" * 100

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, headers={"content-length": "1000"}, content=body())

    f = InputFetcher(transport=httpx.MockTransport(handler), resolver=lambda h, p: [PUBLIC],
                     max_total_bytes=500)  # fmt: skip
    with pytest.raises(TaskError, match="INPUT_MAX_TOTAL_BYTES"):
        f.fetch(url("a"))
    assert reads == []


def test_compressed_responses_are_refused() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        assert request.headers["accept-encoding"] == "identity"
        return httpx.Response(200, headers={"content-encoding": "gzip"}, content=iter([b"zz"]))

    f = InputFetcher(transport=httpx.MockTransport(handler), resolver=lambda h, p: [PUBLIC])
    with pytest.raises(TaskError) as info:
        f.fetch(url("a"), "mask")
    assert info.value.code == "input_download_failed" and "gzip" in info.value.message
