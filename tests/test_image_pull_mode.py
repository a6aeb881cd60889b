"""`runtimes[i].gpu.imagePullMode` reaches the runtime's EC2NodeClass user data, and the config
refuses what Bottlerocket cannot do (SOCI with an image-cache snapshot)."""

from typing import Any

import pytest

from sdfleet.components.builders import karpenter_node_class as nc
from sdfleet.components.config import ConfigError, parse_config

from .conftest import SynthFn

RUNTIME = {"name": "sd15", "type": "sdwebui", "modelFilename": "m.safetensors"}


def _node_class(graph: Any, runtime: str) -> dict[str, Any]:
    (rec,) = [
        r
        for r in graph.of_type("kubernetes:karpenter.k8s.aws/v1:EC2NodeClass")
        if r.inputs["metadata"]["name"] == f"{runtime}-gpu"
    ]
    spec: dict[str, Any] = rec.inputs["spec"]
    return spec


def test_parallel_mode_sets_the_containerd_settings(
    synth: SynthFn, dev_config: dict[str, Any]
) -> None:
    dev_config["sdfleet:runtimes"][0].setdefault("gpu", {})["imagePullMode"] = "parallel"
    spec = _node_class(synth(dev_config), dev_config["sdfleet:runtimes"][0]["name"])
    assert nc.pull_settings_toml("parallel") in spec["userData"]
    assert "max-concurrent-downloads" in spec["userData"]


def test_default_mode_adds_no_user_data(dev_graph: Any) -> None:
    assert "userData" not in _node_class(dev_graph, "sd15")


@pytest.mark.parametrize(
    ("gpu", "message"),
    [
        ({"imagePullMode": "fast"}, "imagePullMode: 'fast' is not one of default, parallel, soci"),
        (
            {"imagePullMode": "soci", "snapshotId": "snap-0123456789abcdef0"},
            "imagePullMode: 'soci' with gpu.snapshotId 'snap-0123456789abcdef0'",
        ),
    ],
)
def test_bad_modes_are_config_errors(gpu: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match="runtimes\\[0\\].gpu." + message):
        parse_config({"runtimes": [{**RUNTIME, "gpu": gpu}]})
