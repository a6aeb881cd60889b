"""End to end: the API handler -> SNS -> SQS -> the agent -> the fake ComfyUI, on a moto server.

The reference's shape (``content`` is the workflow) and ``{"prompt": workflow}`` run and make
the same ``/prompt`` call; an offloaded workflow is read back from its own per-request key."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from sdfleet.agent.contract import COMFYUI, RuntimeInfo
from sdfleet.components.builders import task_table
from sdfleet.components.task_api import handler as task_api
from sdfleet.fakes.comfyui import FakeComfyUI
from sdfleet.fakes.fleet import client
from tests.agent.harness import AgentThread, Fleet, MotoServer
from tests.agent.test_e2e_comfyui import graph

pytestmark = pytest.mark.e2e


class _Context:
    aws_request_id = "lambda-req-1"


@pytest.fixture(scope="module")
def moto_server() -> Iterator[MotoServer]:
    server = MotoServer().start()
    yield server
    server.stop()


@pytest.fixture
def cfleet(moto_server: MotoServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[Fleet]:
    for key, value in moto_server.env().items():
        monkeypatch.setenv(key, value)
    fleet = Fleet(moto_server.endpoint, runtime_name="comfy", runtime_type=COMFYUI)
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    monkeypatch.setenv("INPUT_TOPIC_ARN", fleet.input_topic)
    monkeypatch.setenv("OUTPUT_BUCKET", fleet.bucket)
    monkeypatch.setenv("RUNTIMES", json.dumps([RuntimeInfo("comfy", COMFYUI).to_json()]))
    table = f"tasks-{uuid.uuid4().hex[:12]}"  # one per test: ids repeat across tests
    dynamodb = client("dynamodb", moto_server.endpoint)
    dynamodb.create_table(**task_table.create_table_request(table))
    monkeypatch.setenv("TASK_TABLE_NAME", table)
    task_api.reset()
    yield fleet
    task_api.reset()


def post(content: Any, task_id: str, request_id: str | None = None) -> dict[str, Any]:
    """The handler's raw answer to a v1alpha2 POST."""
    body = {
        "task": {
            "metadata": {"id": task_id, "runtime": "comfy", "tasktype": "pipeline"},
            "content": content,
        }
    }
    context: dict[str, Any] = {"stage": "v1", "identity": {"apiKeyId": "e2e-key-id"}}
    if request_id:
        context["requestId"] = request_id
    event = {
        "path": "/v1alpha2",
        "httpMethod": "POST",
        "requestContext": context,
        "body": json.dumps(body),
        "isBase64Encoded": False,
    }
    return dict(task_api.handler(event, _Context()))


def submit(content: Any, task_id: str, request_id: str | None = None) -> dict[str, Any]:
    response = post(content, task_id, request_id)
    assert response["statusCode"] == 200, response
    return dict(json.loads(response["body"]))


def prompt_posts(srv: FakeComfyUI) -> list[dict[str, Any]]:
    return [c.body for c in srv.calls if c.method == "POST" and c.path.endswith("/prompt")]


def test_both_shapes_run_and_post_the_same_prompt(cfleet: Fleet) -> None:
    with FakeComfyUI(execution_seconds=0.05) as srv, AgentThread(cfleet, srv.url):
        submit(graph(seed=21), "ref-shape")
        submit({"prompt": graph(seed=21)}, "own-shape")
        notes = cfleet.notifications(2, timeout=30)
    assert sorted(n["id"] for n in notes) == ["own-shape", "ref-shape"]
    assert all(n["status"] == "completed" for n in notes), notes
    first, second = prompt_posts(srv)
    assert first["prompt"] == second["prompt"] == graph(seed=21)
    assert set(first) == set(second) == {"prompt", "client_id", "prompt_id"}


def test_an_offloaded_workflow_runs_its_own_content_and_its_id_is_not_reused(
    cfleet: Fleet,
) -> None:
    """Large content goes to S3 under a per-request key and the agent reads exactly that key;
    a second request with the same id is refused (409) before anything is written, so the
    first task's content and outputs stay its own."""
    padding = "x" * 210_000  # pushes the message over the offload threshold
    texts = {"req-a": "a red fox " + padding, "req-b": "a blue whale " + padding}
    with FakeComfyUI(execution_seconds=0.05) as srv, AgentThread(cfleet, srv.url):
        answers = []
        for request_id, text in texts.items():
            workflow = graph(seed=1)
            workflow["6"]["inputs"]["text"] = text
            answers.append(post(workflow, "same-id", request_id))
        notes = cfleet.notifications(1, timeout=30)
    assert [a["statusCode"] for a in answers] == [200, 409]
    assert json.loads(answers[1]["body"])["error"]["code"] == "task_exists"
    assert [n["status"] for n in notes] == ["completed"], notes
    keys = [k for k in cfleet.keys("same-id/") if k.endswith(".request.json")]
    assert keys == ["same-id/req-a.request.json"]
    sent = [p["prompt"]["6"]["inputs"]["text"] for p in prompt_posts(srv)]
    assert sent == [texts["req-a"]]
