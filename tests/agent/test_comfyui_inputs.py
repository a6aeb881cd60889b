"""ComfyUI LoadImage inputs share one task session: its byte budget, deadline and field names."""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest

from sdfleet.agent import errors
from sdfleet.agent.contract import Task, TaskMetadata
from sdfleet.agent.errors import TaskError
from sdfleet.agent.inputs import InputFetcher
from sdfleet.agent.servers.comfyui import ComfyUIServer

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


def _naming_server(names: list[str]) -> ComfyUIServer:
    """A ComfyUI that records the file name of each upload and stores it under that name."""
    images = httpx.MockTransport(lambda r: httpx.Response(200, content=PNG))
    fetcher = InputFetcher(transport=images, resolver=lambda host, port: [PUBLIC])

    def comfy(request: httpx.Request) -> httpx.Response:
        match = re.search(rb'filename="([^"]*)"', request.read())
        assert match is not None
        names.append(match.group(1).decode())
        return httpx.Response(200, json={"name": names[-1], "subfolder": "sdfleet"})

    return ComfyUIServer("http://127.0.0.1:8188", fetcher, transport=httpx.MockTransport(comfy))


def test_two_tasks_with_the_same_id_never_share_an_uploaded_input() -> None:
    # The receiver prepares the next task while the GPU runs this one: with a shared name the
    # second upload (overwrite) would replace the input of the task ComfyUI is about to run.
    names: list[str] = []
    server = _naming_server(names)
    first = server.prepare(_task(_graph("https://a.example/1.png")))
    second = server.prepare(_task(_graph("https://a.example/2.png")))
    assert len(set(names)) == 2
    images = [p.payload["prompt"]["10"]["inputs"]["image"] for p in (first, second)]
    assert images[0] != images[1]


def test_a_node_id_cannot_steer_the_upload_name() -> None:
    # ComfyUI joins the name to its input folder: "/" or ".." would write elsewhere in it.
    names: list[str] = []
    server = _naming_server(names)
    graph = {
        "1": {"class_type": "SaveImage", "inputs": {"images": ["../../shared", 0]}},
        "../../shared": {"class_type": "LoadImage", "inputs": {"image": "https://a.example/1.png"}},
    }
    server.prepare(_task(graph))
    [name] = names
    assert "/" not in name and "\\" not in name and ".." not in name
    assert name.startswith("t1-") and name.endswith(".png")
