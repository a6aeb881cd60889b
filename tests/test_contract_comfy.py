"""ComfyUI pipeline content: the reference's shape (content *is* the workflow) and
``{"prompt": workflow}`` give the same task and the same ``/prompt`` body; graph errors name
the node."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from sdfleet.agent import contract
from sdfleet.agent.contract import ContractError, RuntimeInfo
from sdfleet.agent.inputs import InputFetcher
from sdfleet.agent.servers.comfyui import ComfyUIServer

FLUX = RuntimeInfo("flux", contract.COMFYUI)
RUNTIMES = [FLUX]


def workflow() -> dict[str, Any]:
    """An API-format export, as the reference's clients send it (with ``_meta``)."""
    return {
        "3": {
            "inputs": {
                "seed": 156680208700286,
                "steps": 20,
                "cfg": 8,
                "sampler_name": "euler",
                "scheduler": "normal",
                "denoise": 1,
                "model": ["4", 0],
                "positive": ["6", 0],
                "negative": ["7", 0],
                "latent_image": ["5", 0],
            },
            "class_type": "KSampler",
            "_meta": {"title": "KSampler"},
        },
        "4": {
            "inputs": {"ckpt_name": "v1-5-pruned-emaonly.safetensors"},
            "class_type": "CheckpointLoaderSimple",
            "_meta": {"title": "Load Checkpoint"},
        },
        "5": {
            "inputs": {"width": 512, "height": 512, "batch_size": 1},
            "class_type": "EmptyLatentImage",
            "_meta": {"title": "Empty Latent Image"},
        },
        "6": {"inputs": {"text": "a cat", "clip": ["4", 1]}, "class_type": "CLIPTextEncode"},
        "7": {"inputs": {"text": "", "clip": ["4", 1]}, "class_type": "CLIPTextEncode"},
        "8": {"inputs": {"samples": ["3", 0], "vae": ["4", 2]}, "class_type": "VAEDecode"},
        "9": {
            "inputs": {"filename_prefix": "ComfyUI", "images": ["8", 0]},
            "class_type": "SaveImage",
        },
    }


def task_body(content: Any) -> dict[str, Any]:
    return {
        "task": {
            "metadata": {"id": "c-1", "runtime": "flux", "tasktype": "pipeline"},
            "content": content,
        }
    }


def test_both_shapes_give_the_same_queued_task() -> None:
    bare = contract.parse_v1alpha2(task_body(workflow()), RUNTIMES)
    wrapped = contract.parse_v1alpha2(task_body({"prompt": workflow()}), RUNTIMES)
    assert bare.content == {"prompt": workflow()}
    assert contract.encode_message(bare) == contract.encode_message(wrapped)


def test_the_agent_reads_both_shapes_from_the_queue_alike() -> None:
    """A task that bypasses the API (direct SNS) in the reference's shape is normalised too."""
    raw = {"metadata": task_body(None)["task"]["metadata"], "content": workflow()}
    parsed = contract.parse_queue_message(json.dumps(raw), FLUX).task
    assert parsed.content == {"prompt": workflow()}


def test_the_agent_posts_the_same_prompt_for_both_shapes() -> None:
    server = ComfyUIServer("http://127.0.0.1:9", InputFetcher(s3=None))
    try:
        payloads = []
        for content in (workflow(), {"prompt": workflow()}):
            task = contract.parse_v1alpha2(task_body(content), RUNTIMES)
            message = contract.parse_queue_message(contract.encode_message(task), FLUX)
            payload = dict(server.prepare(message.task).payload)
            payload.pop("prompt_id")  # a fresh uuid per submission
            payloads.append(payload)
    finally:
        server.close()
    assert payloads[0] == payloads[1]
    assert payloads[0] == {"prompt": workflow(), "client_id": server.client_id}


def test_extra_data_is_kept_in_the_wrapped_shape() -> None:
    content = {"prompt": workflow(), "extra_data": {"extra_pnginfo": {"workflow": {}}}}
    task = contract.parse_v1alpha2(task_body(copy.deepcopy(content)), RUNTIMES)
    assert task.content == content


@pytest.mark.parametrize("name", ["inputs", "class_type"])
def test_nodes_named_like_node_keys_survive_the_queue(name: str) -> None:
    # Node ids are free strings: the queued {"prompt": workflow} must still read as wrapped
    # on the agent, whichever names the workflow uses.
    graph = workflow()
    graph[name] = graph.pop("6")
    graph["3"]["inputs"]["positive"] = [name, 0]
    for content in (copy.deepcopy(graph), {"prompt": copy.deepcopy(graph)}):
        task = contract.parse_v1alpha2(task_body(content), RUNTIMES)
        assert task.content == {"prompt": graph}
        queued = contract.parse_queue_message(contract.encode_message(task), FLUX).task
        assert queued.content == {"prompt": graph}


def test_a_workflow_may_have_a_node_called_prompt() -> None:
    graph = workflow()
    graph["prompt"] = graph.pop("6")
    graph["3"]["inputs"]["positive"] = ["prompt", 0]
    task = contract.parse_v1alpha2(task_body(copy.deepcopy(graph)), RUNTIMES)
    assert task.content == {"prompt": graph}


def _broken(mutate: Any) -> dict[str, Any]:
    graph = workflow()
    mutate(graph)
    return graph


@pytest.mark.parametrize(
    ("graph", "code", "field"),
    [
        (
            _broken(lambda g: g["3"]["inputs"].update(model=["99", 0])),
            "invalid_link",
            '["3"].inputs.model',
        ),
        (
            _broken(lambda g: g["3"]["inputs"].update(model=["4", -1])),
            "invalid_link",
            '["3"].inputs.model',
        ),
        (
            _broken(lambda g: g["3"]["inputs"].update(model=["4", "0"])),
            "invalid_link",
            '["3"].inputs.model',
        ),
        (
            _broken(lambda g: g["3"]["inputs"].update(model=["4", True])),
            "invalid_link",
            '["3"].inputs.model',
        ),
        (_broken(lambda g: g["7"].pop("class_type")), "missing_field", '["7"].class_type'),
        (_broken(lambda g: g["7"].update(class_type=7)), "missing_field", '["7"].class_type'),
        (
            _broken(lambda g: g["7"].update(class_type="C" * 300)),
            "too_long",
            '["7"].class_type',
        ),
        (_broken(lambda g: g["8"].pop("inputs")), "missing_field", '["8"].inputs'),
        (_broken(lambda g: g["8"].update(inputs=[1])), "invalid_type", '["8"].inputs'),
        (_broken(lambda g: g.update({"9": "SaveImage"})), "invalid_type", '["9"]'),
        (_broken(lambda g: g.update({"": g["9"]})), "invalid_node_id", '[""]'),
        (_broken(lambda g: g.update({"n" * 129: g["9"]})), "invalid_node_id", None),
        (_broken(lambda g: g.update({"a\nb": g["9"]})), "invalid_node_id", '["a\\nb"]'),
    ],
)
def test_graph_errors_name_the_node(graph: dict[str, Any], code: str, field: str | None) -> None:
    for content, base in ((graph, "task.content"), ({"prompt": graph}, "task.content.prompt")):
        with pytest.raises(ContractError) as info:
            contract.parse_v1alpha2(task_body(copy.deepcopy(content)), RUNTIMES)
        assert info.value.code == code, info.value.to_body()
        assert info.value.status == 400
        if field is not None:
            assert info.value.field == base + field
        else:
            assert str(info.value.field).startswith(base + '["nnn')


@pytest.mark.parametrize(
    ("mutate", "cycle"),
    [
        (lambda g: g["3"]["inputs"].update(latent_image=["3", 0]), {"3"}),  # to itself
        (lambda g: g["4"]["inputs"].update(extra=["8", 0]), {"3", "4", "8"}),  # 4 > 8 > 3 > 4
    ],
)
def test_a_link_cycle_is_a_400_naming_a_node_on_it(mutate: Any, cycle: set[str]) -> None:
    graph = _broken(mutate)
    with pytest.raises(ContractError) as info:
        contract.parse_v1alpha2(task_body(graph), RUNTIMES)
    assert info.value.code == "invalid_link", info.value.to_body()
    node = str(info.value.field).split('"')[1]
    assert node in cycle and ".inputs." in str(info.value.field)
    assert "cycle" in info.value.message


@pytest.mark.parametrize("name", ["ComfyUI_00001_.png [output]", "x.png[temp]"])
def test_an_image_left_on_the_server_by_another_task_cannot_be_loaded(name: str) -> None:
    # ComfyUI reads "<file> [output]" from its output folder: the sequentially named images
    # of earlier tasks (other clients') on the same pod.
    graph = workflow()
    graph["10"] = {"class_type": "LoadImage", "inputs": {"image": name}}
    with pytest.raises(ContractError) as info:
        contract.parse_v1alpha2(task_body(graph), RUNTIMES)
    assert (info.value.code, info.value.field) == ("not_allowed", 'task.content["10"].inputs.image')
    graph["10"]["inputs"]["image"] = "mask.png"  # the server's own input folder is fine
    assert contract.parse_v1alpha2(task_body(graph), RUNTIMES)


def test_a_long_acyclic_chain_is_accepted() -> None:
    # Checked without recursion: a chain far longer than Python's recursion limit.
    graph = {"0": {"class_type": "Start", "inputs": {}}}
    for i in range(1, 5000):
        graph[str(i)] = {"class_type": "Step", "inputs": {"x": [str(i - 1), 0]}}
    assert contract.parse_v1alpha2(task_body(graph), RUNTIMES).content == {"prompt": graph}


@pytest.mark.parametrize(
    ("content", "code", "field"),
    [
        # Mixed shapes: the stray node would never reach ComfyUI.
        (
            {"prompt": workflow(), "10": {"class_type": "X", "inputs": {}}},
            "unknown_field",
            'task.content["10"]',
        ),
        ({"prompt": workflow(), "client_id": "mine"}, "unknown_field", "task.content.client_id"),
        ({"prompt": workflow(), "extra_data": "x"}, "invalid_type", "task.content.extra_data"),
    ],
)
def test_nothing_in_the_wrapped_shape_is_dropped(content: Any, code: str, field: str) -> None:
    with pytest.raises(ContractError) as info:
        contract.parse_v1alpha2(task_body(content), RUNTIMES)
    assert (info.value.code, info.value.field) == (code, field), info.value.to_body()


def test_a_link_to_an_unknown_node_says_which() -> None:
    graph = _broken(lambda g: g["3"]["inputs"].update(model=["99", 0]))
    with pytest.raises(ContractError) as info:
        contract.parse_v1alpha2(task_body({"prompt": graph}), RUNTIMES)
    assert str(info.value) == (
        "task.content.prompt[\"3\"].inputs.model: links to node '99', which is not in the workflow"
    )


@pytest.mark.parametrize(
    ("content", "code", "field"),
    [
        ({}, "missing_field", "task.content.prompt"),
        ({"workflow": {}}, "missing_field", "task.content.prompt"),
        ({"client_id": "x"}, "missing_field", "task.content.prompt"),
        ({"prompt": "a cat"}, "invalid_type", "task.content.prompt"),
        ({"prompt": {}}, "invalid_type", "task.content.prompt"),
        # Node-like values make it the reference shape: every value must then be a node.
        ({"3": {"inputs": {}}}, "missing_field", 'task.content["3"].class_type'),
        (
            {"3": {"class_type": "X", "inputs": {}}, "extra_data": {}},
            "missing_field",
            'task.content["extra_data"].class_type',
        ),
    ],
)
def test_neither_shape_is_a_clear_400(content: Any, code: str, field: str) -> None:
    with pytest.raises(ContractError) as info:
        contract.parse_v1alpha2(task_body(content), RUNTIMES)
    assert (info.value.code, info.value.field) == (code, field), info.value.to_body()


def test_other_lists_are_left_to_comfyui() -> None:
    graph = {"1": {"class_type": "X", "inputs": {"sizes": [1, 2], "names": ["a", "b", "c"]}}}
    assert contract.parse_v1alpha2(task_body(graph), RUNTIMES).content == {"prompt": graph}
