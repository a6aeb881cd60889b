"""The runtime and GPU pool builders, without mocks: the final manifests SdRuntime and
GpuNodePool register, the defaults a None field takes (the config model's), and the Args
documentation Pulumi's schema analyzer publishes."""

import dataclasses
import json
import re
from typing import Any

import pytest

from sdfleet.agent.contract import Limits
from sdfleet.components import versions
from sdfleet.components.builders import gpu_pool
from sdfleet.components.builders import karpenter as kp
from sdfleet.components.builders import workload as wl
from sdfleet.components.builders.enums import ImagePullPolicy, InstanceStorePolicy, RuntimeType
from sdfleet.components.builders.runtime_manifests import runtime_manifests
from sdfleet.components.builders.runtime_plan import (
    _CONFIG_DEFAULTS,
    PLACEHOLDERS,
    SKIP_AWAIT,
    WIRED,
    RuntimeNames,
    known_values,
    pod_policy,
)
from sdfleet.components.config_runtime import (
    GpuPoolConfig,
    ResourcesConfig,
    RuntimeConfig,
    ScalingConfig,
)
from sdfleet.components.gpu_node_pool import GpuNodePoolArgs
from sdfleet.components.sd_runtime_plan import SdRuntimeArgs
from tests.k8s_validation import assert_valid

REGION = "eu-west-1"
ACCOUNT = "111122223333"
WIRED_VALUES = {
    "region": REGION,
    "queue_url": f"https://sqs.{REGION}.amazonaws.com/{ACCOUNT}/sdfleet-sd15",
    "queue_arn": f"arn:aws:sqs:{REGION}:{ACCOUNT}:sdfleet-sd15",
    "output_topic_arn": f"arn:aws:sns:{REGION}:{ACCOUNT}:out",
    "output_bucket_name": "out-1111",
    "output_bucket_arn": "arn:aws:s3:::out-1111",
    "model_bucket_name": "models-1111",
    "agent_image": f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/agent@sha256:{'b' * 64}",
}


def args(**over: Any) -> SdRuntimeArgs:
    return SdRuntimeArgs(
        **{
            "runtime_name": "sd15",
            "runtime_type": RuntimeType.SDWEBUI,
            "namespace": "gen",
            "cluster_name": "c1",
            "scheduling": {},
            **WIRED_VALUES,
            **over,
        }
    )


def env_of(deployment: dict[str, Any]) -> dict[str, str]:
    agent = deployment["spec"]["template"]["spec"]["containers"][0]
    return {e["name"]: e["value"] for e in agent["env"] if "value" in e}


def server_of(deployment: dict[str, Any]) -> dict[str, Any]:
    server: dict[str, Any] = deployment["spec"]["template"]["spec"]["initContainers"][0]
    return server


def test_manifests_in_apply_order_with_the_runtime_names() -> None:
    m = runtime_manifests(args(), WIRED_VALUES)
    assert list(m) == [
        "namespace",
        "service_account",
        "volume",
        "claim",
        "deployment",
        "network_policy",
        "role",
        "role_binding",
        "node_reader_role",
        "node_reader_binding",
        "trigger_authentication",
        "scaled_object",
    ]
    names = RuntimeNames.of("sd15", "gen")
    assert m["deployment"]["metadata"] == {
        "name": "sd15",
        "namespace": "gen",
        "labels": {
            "app.kubernetes.io/part-of": "sdfleet",
            **kp.runtime_selector_labels("sd15"),
        },
        "annotations": SKIP_AWAIT,
    }
    assert m["claim"]["spec"]["volumeName"] == names.volume == m["volume"]["metadata"]["name"]
    assert m["scaled_object"]["spec"]["scaleTargetRef"]["name"] == "sd15"
    assert m["role_binding"]["subjects"][0]["name"] == names.service_account == "sd15-runtime"
    for manifest in m.values():
        assert_valid(manifest, "1.33")


def test_none_takes_the_config_models_defaults() -> None:
    unset = runtime_manifests(args(), WIRED_VALUES)
    explicit_none = runtime_manifests(args(drain_seconds=None, cpu=None), WIRED_VALUES)
    assert unset == explicit_none
    env = env_of(unset["deployment"])
    runtime = RuntimeConfig(name="x", type="sdwebui")
    assert env["DRAIN_SECONDS"] == str(runtime.drain_seconds)
    assert env["JOB_TIMEOUT_SECONDS"] == str(runtime.job_timeout_seconds)
    requests = server_of(unset["deployment"])["resources"]["requests"]
    assert (requests["cpu"], requests["memory"]) == (
        ResourcesConfig().cpu,
        ResourcesConfig().memory,
    )
    spec = unset["scaled_object"]["spec"]
    scaling = ScalingConfig()
    assert (spec["minReplicaCount"], spec["maxReplicaCount"]) == (
        scaling.min_replicas,
        scaling.max_replicas,
    )
    assert spec["cooldownPeriod"] == scaling.cooldown_period
    assert server_of(unset["deployment"])["startupProbe"]["failureThreshold"] == 90
    assert unset["volume"]["spec"]["csi"]["volumeAttributes"]["cacheEmptyDirSizeLimit"] == "20Gi"


def test_given_values_win() -> None:
    m = runtime_manifests(
        args(drain_seconds=20, cpu="2", max_replicas=9, model_cache_size="5Gi"), WIRED_VALUES
    )
    assert env_of(m["deployment"])["DRAIN_SECONDS"] == "20"
    assert server_of(m["deployment"])["resources"]["requests"]["cpu"] == "2"
    assert m["scaled_object"]["spec"]["maxReplicaCount"] == 9
    assert m["volume"]["spec"]["csi"]["volumeAttributes"]["cacheEmptyDirSizeLimit"] == "5Gi"


def test_cache_off_and_existing_namespace() -> None:
    m = runtime_manifests(args(model_cache_size="0", create_namespace=False), WIRED_VALUES)
    assert "namespace" not in m
    assert "cacheEmptyDirSizeLimit" not in m["volume"]["spec"]["csi"]["volumeAttributes"]


def test_server_command_is_in_the_built_deployment() -> None:
    m = runtime_manifests(
        args(server_command=["/start.sh", "--serve"], server_extra_args=["--xformers"]),
        WIRED_VALUES,
    )
    server = server_of(m["deployment"])
    assert server["command"] == ["/start.sh", "--serve"]
    assert server["args"] == [*wl.DEFAULT_SERVER_ARGS["sdwebui"], "--xformers"]
    assert server["image"] == versions.default_server_image("sdwebui")
    assert "command" not in server_of(runtime_manifests(args(), WIRED_VALUES)["deployment"])
    with pytest.raises(ValueError, match="server_command: got"):
        runtime_manifests(args(server_command=["ok", ""]), WIRED_VALUES)


def test_runtime_type_as_a_plain_string_is_the_enum() -> None:
    plain = runtime_manifests(args(runtime_type="comfyui"), WIRED_VALUES)
    enum = runtime_manifests(args(runtime_type=RuntimeType.COMFYUI), WIRED_VALUES)
    assert plain == enum
    assert env_of(enum["deployment"])["RUNTIME_TYPE"] == "comfyui"
    assert type(env_of(enum["deployment"])["RUNTIME_TYPE"]) is str
    pulled = server_of(
        runtime_manifests(args(image_pull_policy=ImagePullPolicy.NEVER), WIRED_VALUES)["deployment"]
    )["imagePullPolicy"]
    assert pulled == "Never" and type(pulled) is str
    with pytest.raises(ValueError, match="runtime_type: got 'invokeai'"):
        runtime_manifests(args(runtime_type="invokeai"), WIRED_VALUES)


def test_task_limits_reach_the_agent() -> None:
    m = runtime_manifests(args(task_limits=Limits(max_inputs=3)), WIRED_VALUES)
    assert json.loads(env_of(m["deployment"])["TASK_LIMITS"])["maxInputs"] == 3


def test_known_values_use_placeholders_for_outputs() -> None:
    import pulumi

    a = args(queue_url=pulumi.Output.from_input("https://later"))
    known = known_values(a)
    assert set(known) == set(WIRED)
    assert known["queue_url"] == PLACEHOLDERS["queue_url"]
    assert known["region"] == REGION


def test_pod_policy_names_the_queue_topic_and_input_buckets() -> None:
    doc = pod_policy(args(input_s3_buckets=["inputs-1111/uploads"]), WIRED_VALUES)
    text = str(doc)
    assert WIRED_VALUES["queue_arn"] in text
    assert WIRED_VALUES["output_topic_arn"] in text
    assert "arn:aws:s3:::inputs-1111/uploads*" in text
    assert "kms:" not in text


# ------------------------------------------------------------------------------------------
# GPU pool


def pool_args(**over: Any) -> GpuNodePoolArgs:
    return GpuNodePoolArgs(
        **{"runtime_name": "sd15", "cluster_name": "c1", "node_role_name": "nodes", **over}
    )


def test_gpu_pool_defaults_are_the_config_models() -> None:
    config = GpuPoolConfig()
    node_class = gpu_pool.node_class(pool_args(spot_ratio=0.5), "nodes")
    assert node_class["metadata"]["name"] == "sd15-gpu"
    assert node_class["spec"]["amiSelectorTerms"] == [{"alias": versions.BOTTLEROCKET_ALIAS}]
    assert node_class["spec"]["tags"]["sdfleet:runtime"] == "sd15"
    assert "instanceStorePolicy" not in node_class["spec"]
    pools = gpu_pool.node_pools(pool_args(spot_ratio=0.5))
    assert [p["metadata"]["name"] for p in pools] == ["sd15-spot", "sd15-ondemand"]
    for pool in pools:
        spec = pool["spec"]
        assert spec["disruption"]["consolidateAfter"] == config.consolidate_after
        assert spec["template"]["spec"]["expireAfter"] == config.expire_after
        types = next(
            r["values"]
            for r in spec["template"]["spec"]["requirements"]
            if r["key"] == "node.kubernetes.io/instance-type"
        )
        assert types == config.instance_types


def test_gpu_pool_given_values_win() -> None:
    a = pool_args(
        spot_ratio=1.0,
        spot_fallback=False,
        consolidate_after="30s",
        instance_store_policy=InstanceStorePolicy.RAID0,
    )
    assert [p["metadata"]["name"] for p in gpu_pool.node_pools(a)] == ["sd15-spot"]
    assert gpu_pool.node_pools(a)[0]["spec"]["disruption"]["consolidateAfter"] == "30s"
    policy = gpu_pool.node_class(a, "nodes")["spec"]["instanceStorePolicy"]
    assert policy == "RAID0" and type(policy) is str
    scheduling = gpu_pool.pod_scheduling(a)
    assert scheduling["nodeSelector"] == {kp.RUNTIME_LABEL: "sd15"}


# ------------------------------------------------------------------------------------------
# The Args as users and the schema analyzer see them


@pytest.mark.parametrize("cls", [SdRuntimeArgs, GpuNodePoolArgs])
def test_optional_fields_default_to_none(cls: type) -> None:
    for f in dataclasses.fields(cls):
        if f.default is not dataclasses.MISSING:
            assert f.default is None, f"{cls.__name__}.{f.name} re-declares a default"


def test_documented_defaults_match_the_config_model() -> None:
    """A field's docstring says ``Unset: <value>``; it must be the config model's default."""
    from pulumi.provider.experimental.analyzer import Analyzer

    analyzer = Analyzer("sdfleet")
    for field_name, (model, model_field) in _CONFIG_DEFAULTS.items():
        doc = analyzer.get_docstring(SdRuntimeArgs, field_name) or ""
        default = next(f for f in dataclasses.fields(model) if f.name == model_field).default
        shown = str(default).lower() if isinstance(default, bool) else str(default)
        assert re.search(rf"Unset:\s+{re.escape(shown)}\b", doc), (field_name, doc)
    for name in ("consolidate_after", "expire_after", "max_gpus", "data_volume_size_gib"):
        doc = analyzer.get_docstring(GpuNodePoolArgs, name) or ""
        default = next(f for f in dataclasses.fields(GpuPoolConfig) if f.name == name).default
        assert f"Unset: {default}." in doc, (name, doc)
