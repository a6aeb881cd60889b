"""ComfyUI LoadImage inputs share one task session: its byte budget, deadline and field names."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from agent import errors
from agent.contract import Task, TaskMetadata
from agent.errors import TaskError
from agent.inputs import InputFetcher
from agent.servers.comfyui import ComfyUIServer

PUBLIC = "93.184.216.34"
PNG = b"\x89PNG\r\n\x1a\n" + b"\0" * 592


def _graph(*urls: str) -> dict[str, Any]:
    graph: dict[str, Any] = {"1": {"class_type": "SaveImage", "inputs": {"images": ["10", 0]}}}
    for i, url in enumerate(urls):
        graph[str(10 + i)] = {"class_type": "LoadImage", "inputs": {"image": url}}
    return graph


def _server(max_total_bytes: int, uploads: list[str]) -> ComfyUIServer:
    images = httpx.MockTransport(lambda r: httpx.Response(200, content=PNG))
    fetcher = InputFetcher(
        transport=images,
        resolver=lambda host, port: [PUBLIC],
        max_total_bytes=max_total_bytes,
    )

    def comfy(request: httpx.Request) -> httpx.Response:
        uploads.append(request.url.path)
        return httpx.Response(200, json={"name": f"u{len(uploads)}.png", "subfolder": "sdfleet"})

    return ComfyUIServer("http://127.0.0.1:8188", fetcher, transport=httpx.MockTransport(comfy))


def _task(graph: dict[str, Any]) -> Task:
    return Task(
        metadata=TaskMetadata(id="t1", runtime="flux", tasktype="pipeline"),
        content={"prompt": graph},
    )


def test_inputs_within_the_budget_are_uploaded_and_counted() -> None:
    uploads: list[str] = []
    server = _server(10_000, uploads)
    prepared = server.prepare(_task(_graph("https://a.example/1.png", "https://a.example/2.png")))
    assert prepared.inputs == 2
    assert uploads == ["/upload/image", "/upload/image"]
    assert prepared.payload["prompt"]["10"]["inputs"]["image"] == "sdfleet/u1.png"


def test_inputs_over_the_task_budget_fail_naming_the_node() -> None:
    uploads: list[str] = []
    server = _server(1_000, uploads)  # one 600-byte image fits, two do not
    with pytest.raises(TaskError) as info:
        server.prepare(_task(_graph("https://a.example/1.png", "https://a.example/2.png")))
    assert info.value.code == errors.INPUT_TOO_LARGE
    assert 'prompt["11"].inputs.image' in str(info.value)
    assert uploads == ["/upload/image"]
