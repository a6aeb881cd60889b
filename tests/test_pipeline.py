"""The whole pipeline from one config: SdPipeline wires each runtime's pods to the outputs of
the event plane, the GPU pools and the agent image; a golden summary pins the graph's shape."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from sdfleet.components.builders import karpenter as kb
from sdfleet.mocking import Recorder
from sdfleet.render import jsonable, recorded_manifests

GOLDEN = Path(__file__).parent / "golden" / "dev_summary.json"


def _env(deployment: dict[str, Any]) -> dict[str, str]:
    spec = deployment["spec"]["template"]["spec"]
    agent = next(c for c in spec["containers"] if c["name"] == "queue-agent")
    return {e["name"]: e["value"] for e in agent["env"] if "value" in e}


def test_golden_summary(dev_graph: Recorder) -> None:
    """Resource counts by type. On an intended change, regenerate with
    SDFLEET_UPDATE_GOLDEN=1 pytest tests/test_pipeline.py and review the diff."""
    summary = {"resources": len(dev_graph.resources), "counts": dev_graph.counts_by_type()}
    if os.environ.get("SDFLEET_UPDATE_GOLDEN") == "1":
        GOLDEN.write_text(json.dumps(summary, indent=2) + "\n")
    assert summary == json.loads(GOLDEN.read_text())


@pytest.mark.parametrize(("runtime", "rtype"), [("sd15", "sdwebui"), ("flux", "comfyui")])
def test_runtime_wired_to_pipeline_outputs(dev_graph: Recorder, runtime: str, rtype: str) -> None:
    deployment = jsonable(
        dev_graph.one("kubernetes:apps/v1:Deployment", f"sdfleet-{runtime}-deployment").inputs
    )
    queue = dev_graph.one("aws:sqs/queue:Queue", f"sdfleet-events-{runtime}-queue")
    topic = dev_graph.one("aws:sns/topic:Topic", "sdfleet-events-output")
    bucket = dev_graph.one("aws:s3/bucket:Bucket", "sdfleet-events-outputs")
    env = _env(deployment)
    assert env["SQS_QUEUE_URL"] == queue.state["url"]
    assert env["SNS_TOPIC_ARN"] == topic.state["arn"]
    assert env["S3_BUCKET"] == bucket.state["bucket"]
    assert env["RUNTIME_TYPE"] == rtype
    assert env["RUNTIME_NAME"] == runtime
    image = dev_graph.one("docker-build:index:Image", "sdfleet-agent-image")
    agent = next(
        c
        for c in deployment["spec"]["template"]["spec"]["containers"]
        if c["name"] == "queue-agent"
    )
    assert agent["image"] == image.state["ref"]
    assert "@sha256:" in agent["image"]


def test_pods_carry_their_pool_constraints(dev_graph: Recorder) -> None:
    deployment = jsonable(
        dev_graph.one("kubernetes:apps/v1:Deployment", "sdfleet-sd15-deployment").inputs
    )
    pod = deployment["spec"]["template"]["spec"]
    expected = kb.pod_scheduling(
        runtime_name="sd15", split=kb.capacity_split(0.7, spot_fallback=True)
    )
    for key, value in expected.items():
        assert pod[key] == value, key
    flux = jsonable(
        dev_graph.one("kubernetes:apps/v1:Deployment", "sdfleet-flux-deployment").inputs
    )["spec"]["template"]["spec"]
    assert "topologySpreadConstraints" not in flux  # on-demand only: nothing to spread


def test_scaled_objects_follow_config(dev_graph: Recorder) -> None:
    sd15 = jsonable(
        dev_graph.one(
            "kubernetes:keda.sh/v1alpha1:ScaledObject", "sdfleet-sd15-scaled-object"
        ).inputs
    )["spec"]
    queue = dev_graph.one("aws:sqs/queue:Queue", "sdfleet-events-sd15-queue")
    assert sd15["maxReplicaCount"] == 8
    assert sd15["minReplicaCount"] == 0
    trigger = sd15["triggers"][0]
    assert trigger["type"] == "aws-sqs-queue"
    assert trigger["metadata"]["queueURL"] == queue.state["url"]
    assert trigger["metadata"]["queueLength"] == "2"
    assert trigger["metadata"]["scaleOnInFlight"] == "true"
    flux = jsonable(
        dev_graph.one(
            "kubernetes:keda.sh/v1alpha1:ScaledObject", "sdfleet-flux-scaled-object"
        ).inputs
    )["spec"]
    assert flux["maxReplicaCount"] == 4
    assert flux["triggers"][0]["metadata"]["queueLength"] == "1"


def test_prebuilt_agent_image(synth: Any, dev_config: dict[str, Any]) -> None:
    ref = "123456789012.dkr.ecr.us-east-1.amazonaws.com/agent@sha256:" + "a" * 64
    dev_config["sdfleet:agent"] = {"imageRef": ref}
    # Nothing is built when every runtime names its server image too.
    for runtime in dev_config["sdfleet:runtimes"]:
        runtime["image"] = ref.replace("/agent@", f"/{runtime['type']}@")
    graph = synth(dev_config)
    assert graph.of_type("docker-build:index:Image") == []
    assert graph.of_type("aws:ecr/repository:Repository") == []
    deployment = jsonable(
        graph.one("kubernetes:apps/v1:Deployment", "sdfleet-sd15-deployment").inputs
    )
    agent = next(
        c
        for c in deployment["spec"]["template"]["spec"]["containers"]
        if c["name"] == "queue-agent"
    )
    assert agent["image"] == ref


def test_subscribe_example_is_a_ready_command() -> None:
    import runpy
    import shlex

    import pulumi

    from sdfleet.mocking import config_from_stack_file, run_program
    from tests.conftest import MAIN, load_stack

    captured: dict[str, Any] = {}

    def program() -> None:
        namespace = runpy.run_path(str(MAIN), run_name="__main__")
        pipeline = namespace["pipeline"]
        pulumi.Output.all(
            pipeline.outputs["subscribeExample"], pipeline.outputs["outputTopicArn"]
        ).apply(lambda v: captured.update(command=v[0], topic=v[1]))

    run_program(program, config_from_stack_file(load_stack("dev")))
    argv = shlex.split(captured["command"])
    assert argv[:3] == ["aws", "sns", "subscribe"]
    assert argv[argv.index("--topic-arn") + 1] == captured["topic"]
    attributes = json.loads(argv[argv.index("--attributes") + 1])
    assert json.loads(attributes["FilterPolicy"]) == {"status": ["completed", "failed"]}


def test_pass_through_config_reaches_pools_pods_and_policies(
    synth: Any, dev_config: dict[str, Any]
) -> None:
    """Stack config -> NodePools, pods, ScaledObject, the pod role and the API's catalogue."""
    dev_config["sdfleet:inputs"] = {"s3Buckets": ["team-inputs"]}
    sd15 = dev_config["sdfleet:runtimes"][0]
    sd15.update(
        limits={"maxSteps": 50, "maxImages": 2},
        server={"extraArgs": ["--medvram"], "extraEnv": {"HF_HUB_OFFLINE": "1"}},
        agent={"extraEnv": {"EXP_CALLBACK_WHEN_RUNNING": "true"}},
        podLabels={"team": "imaging"},
        podAnnotations={"example.com/owner": "imaging"},
        nodeRequirements=[
            {"key": "karpenter.k8s.aws/instance-gpu-memory", "operator": "Gte", "values": ["20000"]}
        ],
        nodeTaints=[{"key": "example.com/dedicated", "value": "imaging", "effect": "NoSchedule"}],
        imagePullPolicy="Always",
    )
    sd15["scaling"]["minReplicas"] = 1
    graph = synth(dev_config)
    pools = [
        m for _, m in recorded_manifests(graph) if m["kind"] == "NodePool" and "sd15" in str(m)
    ]
    assert pools
    for pool in pools:
        spec = pool["spec"]["template"]["spec"]
        assert spec["requirements"][-1]["key"] == "karpenter.k8s.aws/instance-gpu-memory"
        assert spec["taints"][-1] == {
            "key": "example.com/dedicated",
            "value": "imaging",
            "effect": "NoSchedule",
        }
    deployment = jsonable(
        graph.one("kubernetes:apps/v1:Deployment", "sdfleet-sd15-deployment").inputs
    )
    template = deployment["spec"]["template"]
    assert {
        "key": "example.com/dedicated",
        "operator": "Equal",
        "value": "imaging",
        "effect": "NoSchedule",
    } in template["spec"]["tolerations"]
    (server,) = template["spec"]["initContainers"]
    assert server["args"][-1] == "--medvram" and server["imagePullPolicy"] == "Always"
    # The pod contract's env first (server_contract.py), the extra env last.
    assert server["env"][-1] == {"name": "HF_HUB_OFFLINE", "value": "1"}
    env = _env(deployment)
    assert env["EXP_CALLBACK_WHEN_RUNNING"] == "true"
    assert env["INPUT_S3_BUCKETS"] == "team-inputs"
    assert json.loads(env["TASK_LIMITS"])["maxSteps"] == 50
    assert template["metadata"]["labels"]["team"] == "imaging"
    assert template["metadata"]["annotations"]["example.com/owner"] == "imaging"
    scaled = graph.one("kubernetes:keda.sh/v1alpha1:ScaledObject", "sdfleet-sd15-scaled-object")
    assert scaled.inputs["spec"]["minReplicaCount"] == 1
    policy = json.loads(
        graph.one("aws:iam/rolePolicy:RolePolicy", "sdfleet-sd15-policy").inputs["policy"]
    )
    reads = [s for s in policy["Statement"] if s["Sid"] == "ReadTaskInputs"]
    assert reads[0]["Resource"] == ["arn:aws:s3:::team-inputs/*"]
    # The API sees the same limits as the agent.
    function = graph.one("aws:lambda/function:Function", "sdfleet-api-task-fn")
    runtimes = json.loads(function.inputs["environment"]["variables"]["RUNTIMES"])
    assert runtimes[0]["limits"] == {
        "maxSteps": 50,
        "maxPixels": 2048 * 2048,
        "maxImages": 2,
        "maxInputs": 8,
    }
    assert runtimes[1]["limits"]["maxSteps"] == 150
