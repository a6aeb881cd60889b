"""stacks/Pulumi.prod.yaml, the production example: valid, and it synthesizes to what its
comments promise (several runtimes, spot ratios, limits, alarm e-mail, a restricted endpoint,
explicit teardown settings)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from sdfleet.components.config import parse_config, split_namespaced
from sdfleet.invariants import check_all
from sdfleet.mocking import Recorder
from sdfleet.render import recorded_manifests
from tests.conftest import load_stack, synth_config


@pytest.fixture(scope="module")
def prod_graph() -> Recorder:
    return synth_config(load_stack("prod"), stack="prod")


def test_prod_stack_parses_with_what_it_shows() -> None:
    config = parse_config(split_namespaced(load_stack("prod")))
    assert {rt.type for rt in config.runtimes} == {"sdwebui", "comfyui"}
    ratios = {rt.name: config.runtime_spot_ratio(rt) for rt in config.runtimes}
    assert ratios == {"sdxl": 0.9, "sd15-any": 0.8, "flux": 0.0}
    assert config.runtimes[0].limits.max_pixels == 1536 * 1536
    assert config.observability.alarm_email == "oncall@example.com"
    cluster = config.cluster
    assert cluster.endpoint_private_access is True
    assert cluster.public_access_cidrs == ["203.0.113.0/24"]
    assert (config.models.force_destroy, config.outputs.force_destroy) == (False, False)
    assert config.agent.force_destroy is True


def test_prod_stack_synthesizes(prod_graph: Recorder) -> None:
    assert check_all(prod_graph) == []
    for name in ("sdxl", "sd15-any", "flux"):
        prod_graph.one("sdfleet:index:SdRuntime", f"sdfleet-{name}")
    eks = prod_graph.one("eks:index:Cluster", "sdfleet-cluster-eks").inputs
    assert eks["publicAccessCidrs"] == ["203.0.113.0/24"]
    assert eks["endpointPrivateAccess"] is True
    email = prod_graph.one(
        "aws:sns/topicSubscription:TopicSubscription", "sdfleet-observability-alarm-email"
    )
    assert (email.inputs["protocol"], email.inputs["endpoint"]) == ("email", "oncall@example.com")
    buckets = {b.name: b.inputs["forceDestroy"] for b in prod_graph.of_type("aws:s3/bucket:Bucket")}
    assert buckets == {"sdfleet-models-models": False, "sdfleet-events-outputs": False}
    repo = prod_graph.one("aws:ecr/repository:Repository", "sdfleet-agent-repo")
    assert repo.inputs["forceDelete"] is True


def test_prod_node_pools_follow_the_spot_ratios(prod_graph: Recorder) -> None:
    pools: dict[str, Any] = {
        m["metadata"]["name"]: m
        for _, m in recorded_manifests(prod_graph)
        if m["kind"] == "NodePool"
    }
    assert {"sdxl-spot", "sd15-any-spot", "flux-ondemand"} <= set(pools)
    assert "flux-spot" not in pools
    capacity = json.dumps(pools["flux-ondemand"]["spec"]["template"]["spec"]["requirements"])
    assert '"on-demand"' in capacity
