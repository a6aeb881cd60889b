"""ComfyUI tasks through the API handler: the reference's shape (``content`` is the workflow)
and ``{"prompt": workflow}`` queue the same message; graph errors are 400s naming the node."""

from __future__ import annotations

import json
from typing import Any

import pytest

from sdfleet.agent import contract
from tests.test_task_api import BY_NAME, Fanout, call, comfy_workflow, empty, make_event, v2

# The moto world (module-scoped) and the per-test cleaning fixture.
from tests.test_task_api_abuse import fan as fan
from tests.test_task_api_abuse import world as world


def _queued_message(fan: Fanout) -> dict[str, Any]:
    [message] = fan.drain(fan.queues["flux"])
    envelope = json.loads(message["Body"])
    assert envelope["MessageAttributes"]["runtime"]["Value"] == "flux"
    return dict(json.loads(envelope["Message"]))


def test_reference_shape_and_prompt_shape_queue_the_same_message(fan: Fanout) -> None:
    graph = comfy_workflow()["prompt"]
    messages = []
    for content in (graph, {"prompt": graph}):
        status, response = call(make_event(v2("flux", "pipeline", content, id="same-c")))
        assert status == 200, response
        assert response["status"] == "queued"
        messages.append(_queued_message(fan))
        empty(fan)  # the same id again needs a fresh task table
    assert messages[0] == messages[1]
    assert messages[0]["content"] == {"prompt": graph}
    task = contract.parse_queue_message(json.dumps(messages[0]), BY_NAME["flux"]).task
    assert task.content == {"prompt": graph}


@pytest.mark.parametrize(
    ("content", "code", "field"),
    [
        (
            {
                "3": {"class_type": "KSampler", "inputs": {"model": ["4", 0]}},
            },
            "invalid_link",
            'task.content["3"].inputs.model',
        ),
        (
            {"prompt": {"7": {"class_type": "X", "inputs": {"model": ["7", -1]}}}},
            "invalid_link",
            'task.content.prompt["7"].inputs.model',
        ),
        (
            {"3": {"class_type": "KSampler", "inputs": {"steps": 10**9}}},
            "over_limit",
            'task.content["3"].inputs.steps',
        ),
    ],
)
def test_graph_errors_are_400s_naming_the_node(
    fan: Fanout, content: Any, code: str, field: str
) -> None:
    status, response = call(make_event(v2("flux", "pipeline", content)))
    assert (status, response["error"]["code"], response["error"]["field"]) == (400, code, field)
    fan.assert_nothing_published()
