from __future__ import annotations

import math
import re
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sdfleet.components.builders import karpenter as k
from tests.k8s_validation import assert_valid

K8S = "1.33"


# ------------------------------------------------------------------------------------------
# Spot ratio arithmetic


def test_ratio_zero_is_on_demand_only() -> None:
    split = k.capacity_split(0)
    assert split.spot_values == ()
    assert split.on_demand_values == tuple(str(i) for i in range(1, 11))
    assert not split.uses_spread
    assert not split.on_demand_fallback


@pytest.mark.parametrize(
    ("ratio", "spot_slots"),
    [(0.3, 3), (0.5, 5), (0.7, 7)],
)
def test_mixed_ratios_split_ten_slots(ratio: float, spot_slots: int) -> None:
    split = k.capacity_split(ratio)
    on_demand = 10 - spot_slots
    assert split.on_demand_values == tuple(str(i) for i in range(1, on_demand + 1))
    assert split.spot_values == tuple(str(i) for i in range(on_demand + 1, 11))
    assert split.spot_slots == spot_slots
    assert split.uses_spread
    assert split.spot_share == pytest.approx(ratio)


def test_ratio_one_is_spot_only_with_optional_fallback() -> None:
    plain = k.capacity_split(1)
    assert plain.spot_values == tuple(str(i) for i in range(1, 11))
    assert plain.on_demand_values == ()
    assert not plain.on_demand_fallback
    with_fallback = k.capacity_split(1.0, spot_fallback=True)
    assert with_fallback.on_demand_fallback
    assert not with_fallback.uses_spread


def test_fallback_flag_only_matters_at_ratio_one() -> None:
    assert not k.capacity_split(0.7, spot_fallback=True).on_demand_fallback
    assert not k.capacity_split(0, spot_fallback=True).on_demand_fallback


def test_small_and_large_ratios_keep_both_pools() -> None:
    assert k.capacity_split(0.01).spot_slots == 1
    assert k.capacity_split(0.99).spot_slots == 9
    assert k.capacity_split(0.75).spot_slots == 8  # rounds half up
    assert k.capacity_split(0.25, slots=4).spot_slots == 1


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"ratio": 1.5}, "spotRatio"),
        ({"ratio": -0.1}, "spotRatio"),
        ({"ratio": math.nan}, "spotRatio"),
        ({"ratio": True}, "spotRatio"),
        ({"ratio": "0.5"}, "spotRatio"),
        ({"ratio": 0.5, "slots": 1}, "slots"),
        ({"ratio": 0.5, "slots": 101}, "slots"),
        ({"ratio": 0.5, "spot_fallback": "yes"}, "spotFallback"),
    ],
)
def test_bad_split_input_names_the_field(kwargs: dict[str, Any], field: str) -> None:
    with pytest.raises(ValueError, match=rf"^{field}: got .*allowed"):
        k.capacity_split(**kwargs)


@settings(max_examples=300, deadline=None)
@given(
    ratio=st.floats(min_value=0, max_value=1, allow_nan=False),
    slots=st.integers(min_value=2, max_value=100),
    fallback=st.booleans(),
)
def test_split_property(ratio: float, slots: int, fallback: bool) -> None:
    split = k.capacity_split(ratio, slots, spot_fallback=fallback)
    # The share of spot slots is within 1/N of the ratio.
    assert abs(split.spot_share - ratio) <= 1 / slots + 1e-12
    # Values are "1".."N", each in exactly one pool.
    assert sorted(split.spot_values + split.on_demand_values, key=int) == [
        str(i) for i in range(1, slots + 1)
    ]
    # Pools exist exactly as the ratio asks.
    assert bool(split.spot_values) == (ratio > 0)
    assert bool(split.on_demand_values) == (ratio < 1)
    assert split.on_demand_fallback == (ratio == 1 and fallback)
    names = k.node_pool_names("rt", split)
    pools = _pools(ratio, runtime_name="rt", node_class_name="rt", split=split)
    assert list(pools) == names
    assert ("rt-spot" in names) == (ratio > 0)
    assert ("rt-ondemand" in names) == (ratio < 1)
    assert ("rt-ondemand-fallback" in names) == (ratio == 1 and fallback)
    spread = k.pod_scheduling(runtime_name="rt", split=split).get("topologySpreadConstraints")
    assert (spread is not None) == (0 < ratio < 1)


# ------------------------------------------------------------------------------------------
# EC2NodeClass


def _node_class(**overrides: Any) -> dict[str, Any]:
    args: dict[str, Any] = {
        "name": "sd15",
        "cluster_name": "sdfleet",
        "node_role_name": "KarpenterNodeRole-sdfleet",
        "ami_alias": "bottlerocket@v1.63.0",
        "data_volume_size_gib": 150,
    }
    args.update(overrides)
    return k.ec2_node_class(**args)


def test_node_class_shape_without_snapshot() -> None:
    nc = _node_class(tags={"app": "sdfleet"})
    spec = nc["spec"]
    assert nc["apiVersion"] == "karpenter.k8s.aws/v1"
    assert spec["role"] == "KarpenterNodeRole-sdfleet"
    assert spec["amiSelectorTerms"] == [{"alias": "bottlerocket@v1.63.0"}]
    assert spec["subnetSelectorTerms"] == [{"tags": {"karpenter.sh/discovery": "sdfleet"}}]
    assert spec["securityGroupSelectorTerms"] == [{"tags": {"karpenter.sh/discovery": "sdfleet"}}]
    assert spec["metadataOptions"]["httpTokens"] == "required"
    assert spec["metadataOptions"]["httpPutResponseHopLimit"] == 1
    os_dev, data_dev = spec["blockDeviceMappings"]
    assert os_dev["deviceName"] == "/dev/xvda"
    assert data_dev["deviceName"] == "/dev/xvdb"
    assert data_dev["ebs"]["volumeSize"] == "150Gi"
    assert data_dev["ebs"]["iops"] == 3000 and data_dev["ebs"]["throughput"] == 125
    assert "snapshotID" not in data_dev["ebs"]
    assert all(d["ebs"]["encrypted"] is True for d in spec["blockDeviceMappings"])
    assert "instanceStorePolicy" not in spec
    assert spec["tags"] == {"app": "sdfleet"}
    assert_valid(nc, K8S)


def test_node_class_with_snapshot_raises_gp3_performance() -> None:
    nc = _node_class(
        data_volume_snapshot_id="snap-0123456789abcdef0",
        volume_initialization_rate=200,
        instance_store_policy="RAID0",
        security_group_ids=["sg-0123456789abcdef0"],
        kms_key_id="arn:aws:kms:us-west-2:111122223333:key/abc",
    )
    spec = nc["spec"]
    data = spec["blockDeviceMappings"][1]["ebs"]
    assert data["snapshotID"] == "snap-0123456789abcdef0"
    assert data["iops"] == k.SNAPSHOT_DATA_VOLUME_IOPS == 6000
    assert data["throughput"] == k.SNAPSHOT_DATA_VOLUME_THROUGHPUT == 500
    assert data["volumeInitializationRate"] == 200
    assert spec["blockDeviceMappings"][0]["ebs"]["iops"] == 3000
    assert spec["instanceStorePolicy"] == "RAID0"
    assert spec["securityGroupSelectorTerms"] == [{"id": "sg-0123456789abcdef0"}]
    assert_valid(nc, K8S)


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"ami_alias": "bottlerocket@latest"}, "amiAlias"),
        ({"ami_alias": "al2023@v20240625"}, "amiAlias"),
        ({"data_volume_size_gib": 10}, "dataVolumeSizeGiB"),
        ({"data_volume_snapshot_id": "snapshot-1"}, "dataVolumeSnapshotId"),
        ({"volume_initialization_rate": 200}, "volumeInitializationRate"),
        (
            {"data_volume_snapshot_id": "snap-0123456789abcdef0", "volume_initialization_rate": 50},
            "volumeInitializationRate",
        ),
        ({"instance_store_policy": "RAID1"}, "instanceStorePolicy"),
        ({"node_role_name": "arn:aws:iam::1:role/x"}, "node_role_name"),
        ({"tags": {"karpenter.sh/nodepool": "x"}}, r"tags\.karpenter\.sh/nodepool"),
        ({"tags": {"kubernetes.io/cluster/sdfleet": "owned"}}, r"tags\.kubernetes\.io"),
    ],
)
def test_node_class_rejects_bad_input(overrides: dict[str, Any], field: str) -> None:
    with pytest.raises(ValueError, match=rf"^{field}.*: got .*allowed"):
        _node_class(**overrides)


# ------------------------------------------------------------------------------------------
# NodePools


def _pools(ratio: float, fallback: bool = False, **overrides: Any) -> dict[str, dict[str, Any]]:
    args: dict[str, Any] = {
        "runtime_name": "sd15",
        "node_class_name": "sd15",
        "split": k.capacity_split(ratio, spot_fallback=fallback),
        "instance_types": ["g6.2xlarge", "g5.2xlarge"],
        "max_gpus": 8,
        "consolidate_after": "120s",
    }
    args.update(overrides)
    return {p["metadata"]["name"]: p for p in k.node_pools(**args)}


def _reqs(pool: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {r["key"]: r for r in pool["spec"]["template"]["spec"]["requirements"]}


def test_split_pools_have_exact_requirements_taints_limits_disruption() -> None:
    pools = _pools(0.7)
    assert set(pools) == {"sd15-spot", "sd15-ondemand"}
    for name, capacity, spread in (
        ("sd15-spot", "spot", ["4", "5", "6", "7", "8", "9", "10"]),
        ("sd15-ondemand", "on-demand", ["1", "2", "3"]),
    ):
        pool = pools[name]
        reqs = _reqs(pool)
        assert reqs["karpenter.sh/capacity-type"] == {
            "key": "karpenter.sh/capacity-type",
            "operator": "In",
            "values": [capacity],
        }
        assert reqs["node.kubernetes.io/instance-type"]["values"] == ["g6.2xlarge", "g5.2xlarge"]
        assert reqs["kubernetes.io/arch"]["values"] == ["amd64"]
        assert reqs["capacity-spread"] == {
            "key": "capacity-spread",
            "operator": "In",
            "values": spread,
        }
        tmpl = pool["spec"]["template"]
        assert tmpl["spec"]["taints"] == [
            {"key": "nvidia.com/gpu", "value": "true", "effect": "NoSchedule"},
            {"key": "sdfleet.io/runtime", "value": "sd15", "effect": "NoSchedule"},
        ]
        assert tmpl["spec"]["startupTaints"] == [
            {"key": "s3.csi.aws.com/agent-not-ready", "effect": "NoExecute"}
        ]
        assert tmpl["spec"]["nodeClassRef"] == {
            "group": "karpenter.k8s.aws",
            "kind": "EC2NodeClass",
            "name": "sd15",
        }
        assert tmpl["metadata"]["labels"]["sdfleet.io/runtime"] == "sd15"
        assert tmpl["spec"]["expireAfter"] == "168h"
        assert tmpl["spec"]["terminationGracePeriod"] == "1h"
        assert pool["spec"]["limits"] == {"nvidia.com/gpu": "8"}
        assert pool["spec"]["disruption"] == {
            "consolidationPolicy": "WhenEmpty",
            "consolidateAfter": "120s",
            "budgets": [{"nodes": "10%"}],
        }
        assert pool["spec"]["weight"] == k.PRIMARY_WEIGHT
        assert_valid(pool, K8S)


def test_spot_only_with_fallback_has_lower_weight_on_demand_pool() -> None:
    pools = _pools(1, fallback=True, instance_types=[], instance_families=["g6", "g5"])
    assert set(pools) == {"sd15-spot", "sd15-ondemand-fallback"}
    spot, fallback = pools["sd15-spot"], pools["sd15-ondemand-fallback"]
    assert "capacity-spread" not in _reqs(spot)
    assert _reqs(spot)["karpenter.k8s.aws/instance-family"]["values"] == ["g6", "g5"]
    assert _reqs(fallback)["karpenter.sh/capacity-type"]["values"] == ["on-demand"]
    assert fallback["spec"]["weight"] < spot["spec"]["weight"]
    for pool in pools.values():
        assert_valid(pool, K8S)


def test_on_demand_only_pool() -> None:
    pools = _pools(0)
    assert set(pools) == {"sd15-ondemand"}
    assert "capacity-spread" not in _reqs(pools["sd15-ondemand"])
    assert_valid(pools["sd15-ondemand"], K8S)


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"instance_types": [], "instance_families": []}, "instanceTypes"),
        ({"instance_types": ["G6 XL"]}, r"instanceTypes\[0\]"),
        ({"max_gpus": 0}, "maxGpus"),
        ({"consolidate_after": "5 minutes"}, "consolidateAfter"),
        ({"termination_grace_period": "Never"}, "terminationGracePeriod"),
        ({"disruption_budget_nodes": "150%"}, "disruptionBudgetNodes"),
        ({"runtime_name": "SD_15"}, "runtime_name"),
        ({"arch": "x86_64"}, "arch"),
    ],
)
def test_node_pools_reject_bad_input(overrides: dict[str, Any], field: str) -> None:
    with pytest.raises(ValueError, match=rf"^{field}: got .*allowed"):
        _pools(0.5, **overrides)


# ------------------------------------------------------------------------------------------
# Pod constraints


def test_pod_scheduling_for_split() -> None:
    sched = k.pod_scheduling(runtime_name="sd15", split=k.capacity_split(0.7))
    assert sched["tolerations"] == [
        {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"},
        {"key": "sdfleet.io/runtime", "operator": "Equal", "value": "sd15", "effect": "NoSchedule"},
    ]
    assert sched["nodeSelector"] == {"sdfleet.io/runtime": "sd15"}
    assert sched["topologySpreadConstraints"] == [
        {
            "maxSkew": 1,
            "topologyKey": "capacity-spread",
            "whenUnsatisfiable": "DoNotSchedule",
            "labelSelector": {"matchLabels": {"sdfleet.io/runtime": "sd15"}},
        }
    ]
    terms = sched["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    assert terms["nodeSelectorTerms"][0]["matchExpressions"][0]["values"] == ["spot", "on-demand"]


def test_pod_scheduling_tolerates_every_pool_taint() -> None:
    for ratio, fallback in ((0, False), (0.5, False), (1, True)):
        split = k.capacity_split(ratio, spot_fallback=fallback)
        tolerations = k.pod_scheduling(runtime_name="sd15", split=split)["tolerations"]
        for pool in k.node_pools(
            runtime_name="sd15",
            node_class_name="sd15",
            split=split,
            instance_families=["g6"],
            max_gpus=1,
        ):
            for taint in pool["spec"]["template"]["spec"]["taints"]:
                assert any(
                    t["key"] == taint["key"]
                    and t["effect"] == taint["effect"]
                    and (t["operator"] == "Exists" or t["value"] == taint["value"])
                    for t in tolerations
                ), taint


# ------------------------------------------------------------------------------------------
# Chart values


def test_karpenter_values() -> None:
    values = k.karpenter_values(
        cluster_name="sdfleet",
        interruption_queue_name="sdfleet",
        region="us-west-2",
        node_selector={"sdfleet.io/pool": "system"},
        tolerations=[{"key": "CriticalAddonsOnly", "operator": "Exists"}],
    )
    assert values["settings"] == {"clusterName": "sdfleet", "interruptionQueue": "sdfleet"}
    assert values["serviceAccount"]["name"] == "karpenter"
    assert values["replicas"] == 2
    assert values["controller"]["resources"]["requests"] == {"cpu": "1", "memory": "1Gi"}
    assert values["controller"]["env"] == [{"name": "AWS_REGION", "value": "us-west-2"}]
    assert values["nodeSelector"] == {"kubernetes.io/os": "linux", "sdfleet.io/pool": "system"}
    assert values["tolerations"] == [{"key": "CriticalAddonsOnly", "operator": "Exists"}]


def test_karpenter_values_rejects_queue_url() -> None:
    with pytest.raises(ValueError, match=r"^interruption_queue_name: got"):
        k.karpenter_values(
            cluster_name="c",
            interruption_queue_name="https://sqs.us-west-2.amazonaws.com/1/c",
            region="us-west-2",
        )


# ------------------------------------------------------------------------------------------
# Extra node requirements and taints (stack-config pass-through)

EXTRA_REQUIREMENTS: list[dict[str, Any]] = [
    {"key": "karpenter.k8s.aws/instance-gpu-memory", "operator": "Gte", "values": ["24000"]},
    {"key": "topology.kubernetes.io/zone", "operator": "NotIn", "values": ["us-west-2d"]},
    {"key": "example.com/accelerated", "operator": "Exists"},
]
EXTRA_TAINTS: list[dict[str, Any]] = [
    {"key": "example.com/dedicated", "value": "imaging", "effect": "NoSchedule"},
    {"key": "example.com/gpu-only", "value": None, "effect": "NoExecute"},
]


def test_extra_requirements_and_taints_reach_every_pool_and_validate() -> None:
    split = k.capacity_split(1, spot_fallback=True)
    pools = _pools(1, split=split, extra_requirements=EXTRA_REQUIREMENTS, extra_taints=EXTRA_TAINTS)
    assert len(pools) == 2
    for pool in pools.values():
        spec = pool["spec"]["template"]["spec"]
        assert spec["requirements"][-3:] == EXTRA_REQUIREMENTS
        assert spec["taints"][:2] == k.runtime_taints("sd15")
        assert spec["taints"][2:] == [
            {"key": "example.com/dedicated", "value": "imaging", "effect": "NoSchedule"},
            {"key": "example.com/gpu-only", "effect": "NoExecute"},
        ]
        assert_valid(pool, K8S)
    tolerations = k.pod_scheduling(runtime_name="sd15", split=split, extra_taints=EXTRA_TAINTS)[
        "tolerations"
    ]
    assert tolerations[2:] == [
        {
            "key": "example.com/dedicated",
            "operator": "Equal",
            "value": "imaging",
            "effect": "NoSchedule",
        },
        {"key": "example.com/gpu-only", "operator": "Exists", "effect": "NoExecute"},
    ]


@pytest.mark.parametrize(
    ("requirement", "message"),
    [
        (
            {"key": "karpenter.sh/capacity-type", "operator": "In", "values": ["spot"]},
            "capacity-type",
        ),
        (
            {"key": "kubernetes.io/arch", "operator": "In", "values": ["arm64"]},
            "kubernetes.io/arch",
        ),
        ({"key": "karpenter.k8s.aws/made-up", "operator": "Exists"}, "made-up"),
        ({"key": "karpenter.sh/nodepool", "operator": "Exists"}, "nodepool"),
        ({"key": "example.com/x", "operator": "Matches", "values": ["a"]}, "Matches"),
        ({"key": "example.com/x", "operator": "In"}, "at least one value"),
        ({"key": "example.com/x", "operator": "Exists", "values": ["a"]}, "no values"),
        ({"key": "example.com/x", "operator": "Gt", "values": ["1", "2"]}, "one non-negative"),
        ({"key": "example.com/x", "operator": "Lt", "values": ["-1"]}, "-1"),
        ({"key": "Bad Key", "operator": "Exists"}, "Bad Key"),
        ({"key": "example.com/x", "operator": "In", "values": ["a b"]}, "a b"),
    ],
)
def test_extra_requirements_refused(requirement: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=rf"^nodeRequirements: got .*{re.escape(message)}"):
        _pools(0, extra_requirements=[requirement])


@pytest.mark.parametrize(
    ("taints", "message"),
    [
        ([{"key": "nvidia.com/gpu", "value": "x", "effect": "NoSchedule"}], "nvidia.com/gpu"),
        ([{"key": "sdfleet.io/runtime", "value": "x", "effect": "NoSchedule"}], "sdfleet.io"),
        ([{"key": "example.com/a", "value": "x", "effect": "Sometimes"}], "Sometimes"),
        ([{"key": "example.com/a", "value": "a b", "effect": "NoSchedule"}], "a b"),
        (
            [
                {"key": "example.com/a", "value": "x", "effect": "NoSchedule"},
                {"key": "example.com/a", "value": "y", "effect": "NoSchedule"},
            ],
            "at most once",
        ),
    ],
)
def test_extra_taints_refused(taints: list[dict[str, Any]], message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        _pools(0, extra_taints=taints)
