"""The stack builds its inference server images: one docker-build Image per runtime type (plus
the agent's), pushed to ECR, and every runtime container pinned by digest to what was pushed;
a runtime's ``image`` overrides the build."""

from __future__ import annotations

import copy
from typing import Any

from sdfleet.components.config import split_namespaced
from sdfleet.components.pipeline import SdPipeline, SdPipelineArgs
from sdfleet.mocking import Recorder, run_program
from sdfleet.render import jsonable

IMAGE = "docker-build:index:Image"
REPO = "aws:ecr/repository:Repository"
DEPLOYMENT = "kubernetes:apps/v1:Deployment"
OWN = "123456789012.dkr.ecr.us-east-1.amazonaws.com/own-sdwebui@sha256:" + "b" * 64


def _containers(graph: Recorder, runtime: str) -> dict[str, dict[str, Any]]:
    pod = jsonable(graph.one(DEPLOYMENT, f"sdfleet-{runtime}-deployment").inputs)["spec"][
        "template"
    ]["spec"]
    return {c["name"]: c for c in [*pod.get("initContainers", []), *pod["containers"]]}


def _pushed_ref(graph: Recorder, image_name: str) -> str:
    image = graph.one(IMAGE, image_name)
    repo = graph.one(REPO, image_name.removesuffix("-image") + "-repo")
    assert image.inputs["push"] is True
    assert image.inputs["platforms"] == ["linux/amd64"]
    assert str(image.inputs["tags"][0]).startswith(repo.state["repositoryUrl"] + ":")
    return f"{repo.state['repositoryUrl']}@{image.state['digest']}"


def test_dev_stack_builds_one_image_per_runtime_type_plus_the_agent(dev_graph: Recorder) -> None:
    assert sorted(r.name for r in dev_graph.of_type(IMAGE)) == [
        "sdfleet-agent-image",
        "sdfleet-comfyui-server-image",
        "sdfleet-sdwebui-server-image",
    ]
    agent = _pushed_ref(dev_graph, "sdfleet-agent-image")
    for runtime, kind in (("sd15", "sdwebui"), ("flux", "comfyui")):
        server = _pushed_ref(dev_graph, f"sdfleet-{kind}-server-image")
        images = {c["image"] for c in _containers(dev_graph, runtime).values()}
        assert images == {agent, server}
        assert all("@sha256:" in image for image in images)


def test_runtimes_of_one_type_share_a_build(synth: Any, dev_config: dict[str, Any]) -> None:
    second = copy.deepcopy(dev_config["sdfleet:runtimes"][0])
    second["name"] = "sdxl"
    dev_config["sdfleet:runtimes"].append(second)
    graph = synth(dev_config)
    assert len(graph.of_type(IMAGE)) == 3
    server = _pushed_ref(graph, "sdfleet-sdwebui-server-image")
    for runtime in ("sd15", "sdxl"):
        assert server in {c["image"] for c in _containers(graph, runtime).values()}


def test_an_image_override_is_used_and_not_built(synth: Any, dev_config: dict[str, Any]) -> None:
    dev_config["sdfleet:runtimes"][0]["image"] = OWN  # sd15, the only SD WebUI runtime
    graph = synth(dev_config)
    assert sorted(r.name for r in graph.of_type(IMAGE)) == [
        "sdfleet-agent-image",
        "sdfleet-comfyui-server-image",
    ]
    assert OWN in {c["image"] for c in _containers(graph, "sd15").values()}


def test_the_runtime_images_output_names_what_each_runtime_runs(
    dev_config: dict[str, Any],
) -> None:
    """``runtimeImages`` is what ``sdfleet snapshot build`` reads: runtime -> pinned image."""
    dev_config["sdfleet:runtimes"][0]["image"] = OWN
    outputs: dict[str, Any] = {}

    def program() -> None:
        pipeline = SdPipeline("sdfleet", SdPipelineArgs(stack_config=split_namespaced(dev_config)))
        pipeline.outputs["runtimeImages"].apply(outputs.update)

    graph = run_program(program)
    assert outputs == {
        "sd15": OWN,
        "flux": _pushed_ref(graph, "sdfleet-comfyui-server-image"),
    }
