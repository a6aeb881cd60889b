"""Pure builders for the GPU capacity layer: Karpenter EC2NodeClass, NodePools, the spot ratio,
the pod constraints that go with them, and the Karpenter chart values.

Spot ratio
----------
Karpenter has no "70 % spot" knob. We use its documented capacity-spread pattern
(``concepts/scheduling.md``, "On-Demand/Spot Ratio Split"): a made-up node label
``capacity-spread`` gets ``slots`` distinct values ("1".."N"). The on-demand NodePool may only
create nodes labelled with the first O values, the spot NodePool with the other S = N - O
values. The runtime's pods spread over that label with ``maxSkew: 1`` and ``DoNotSchedule``, so
kube-scheduler and Karpenter fill the N "virtual domains" evenly and the share of pods on spot
approximates S / N.

Granularity is 1/N: with the default N = 10, a ratio of 0.7 gives 7 spot slots and 3 on-demand
slots, 0.75 rounds to 8 of 10. Any ratio strictly between 0 and 1 keeps at least one slot on
each side (0.01 gives 1 of 10), so both pools exist whenever the user asked for a mix; the share
stays within 1/N of the ratio. The split is exact only for pod counts that are multiples of N;
with few pods the first ones may all land in either kind of domain (skew 1 allows it).

- ratio 0: one on-demand NodePool, no spread constraint.
- ratio 1: one spot NodePool, no spread constraint; with ``spot_fallback`` also an on-demand
  NodePool with a lower weight, which Karpenter tries when the spot pool cannot launch
  (weights are a preference, not a guarantee).
- in between: the two pools above plus the spread constraint.

When spot capacity is unavailable in the split case there is no automatic fallback: pods that
the skew forces into a spot domain stay Pending until spot capacity appears (``DoNotSchedule``).
The defence is a wide list of instance types/families. Choose ratio 1 with ``spot_fallback``
when availability matters more than the exact mix.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from components.patterns import BOTTLEROCKET_ALIAS as _ALIAS
from components.patterns import DNS_LABEL as _DNS_LABEL
from components.patterns import DURATION as _DURATION
from components.patterns import SNAPSHOT_ID as _SNAPSHOT_ID

SPREAD_LABEL = "capacity-spread"
RUNTIME_LABEL = "sdfleet.io/runtime"
GPU_TAINT_KEY = "nvidia.com/gpu"
GPU_RESOURCE = "nvidia.com/gpu"
# The Mountpoint S3 CSI node plugin removes this taint once it can serve mounts.
MOUNTPOINT_STARTUP_TAINT_KEY = "s3.csi.aws.com/agent-not-ready"
DISCOVERY_TAG = "karpenter.sh/discovery"
NODE_CLASS_GROUP = "karpenter.k8s.aws"
NODEPOOL_API_VERSION = "karpenter.sh/v1"
NODECLASS_API_VERSION = "karpenter.k8s.aws/v1"

SPOT = "spot"
ON_DEMAND = "on-demand"

DEFAULT_SLOTS = 10
# Primary pools are tried before the on-demand fallback pool.
PRIMARY_WEIGHT = 50
FALLBACK_WEIGHT = 10

# gp3 baseline is 3000 IOPS / 125 MiB/s at no extra cost. A volume restored from a snapshot
# loads its blocks lazily from S3 on first read, so image layers read at pod start are the
# slow path; higher provisioned IOPS/throughput lets those reads run in parallel. Extra gp3
# performance costs about $0.005 per IOPS-month and $0.04 per MiB/s-month (us-east-1), i.e.
# about $30/month for 6000 IOPS + 500 MiB/s, billed per second while the node lives (a few cents
# for a node that lives two hours). ``volume_initialization_rate`` (EBS provisioned volume
# initialization, 100-300 MiB/s, charged per GiB initialised) removes the lazy-load penalty
# entirely and is the stronger, costlier knob.
SNAPSHOT_DATA_VOLUME_IOPS = 6000
SNAPSHOT_DATA_VOLUME_THROUGHPUT = 500
BASELINE_GP3_IOPS = 3000
BASELINE_GP3_THROUGHPUT = 125

_BUDGET_NODES = re.compile(r"^((100|[0-9]{1,2})%|[0-9]+)$")
_FORBIDDEN_TAG_KEYS = (
    "eks:eks-cluster-name",
    "karpenter.sh/nodepool",
    "karpenter.sh/nodeclaim",
    "karpenter.k8s.aws/ec2nodeclass",
)


def _fail(field: str, value: Any, allowed: str) -> ValueError:
    return ValueError(f"{field}: got {value!r}; allowed: {allowed}")


def _check_name(field: str, value: str, max_len: int = 63) -> None:
    if not isinstance(value, str) or len(value) > max_len or not _DNS_LABEL.match(value):
        raise _fail(
            field, value, f"a lowercase DNS label (a-z, 0-9, '-'), at most {max_len} characters"
        )


def _check_duration(field: str, value: str, allow_never: bool = False) -> None:
    if allow_never and value == "Never":
        return
    if not isinstance(value, str) or not _DURATION.match(value):
        extra = " or 'Never'" if allow_never else ""
        raise _fail(field, value, f"a duration such as '30s', '5m', '1h30m'{extra}")


# ------------------------------------------------------------------------------------------
# Spot ratio


@dataclass(frozen=True)
class CapacitySplit:
    """How a runtime's GPU capacity is split between spot and on-demand NodePools."""

    ratio: float
    slots: int
    spot_values: tuple[str, ...]
    on_demand_values: tuple[str, ...]
    on_demand_fallback: bool

    @property
    def spot_slots(self) -> int:
        return len(self.spot_values)

    @property
    def on_demand_slots(self) -> int:
        return len(self.on_demand_values)

    @property
    def uses_spread(self) -> bool:
        """Both kinds of capacity are mixed by the capacity-spread label."""
        return bool(self.spot_values) and bool(self.on_demand_values)

    @property
    def spot_share(self) -> float:
        return self.spot_slots / self.slots


def capacity_split(
    ratio: float, slots: int = DEFAULT_SLOTS, *, spot_fallback: bool = False
) -> CapacitySplit:
    """Split ``slots`` capacity-spread values between spot and on-demand by ``ratio``.

    The spot slot count is ``ratio * slots`` rounded half up, then kept within
    ``1..slots-1`` when 0 < ratio < 1. On-demand gets the values "1".."O", spot the rest.
    ``spot_fallback`` only matters for ratio 1 (adds a lower-weight on-demand pool).
    """
    if isinstance(ratio, bool) or not isinstance(ratio, (int, float)):
        raise _fail("spotRatio", ratio, "a number from 0 to 1")
    if math.isnan(ratio) or not 0 <= ratio <= 1:
        raise _fail("spotRatio", ratio, "a number from 0 to 1")
    if isinstance(slots, bool) or not isinstance(slots, int) or not 2 <= slots <= 100:
        raise _fail("slots", slots, "an integer from 2 to 100")
    if not isinstance(spot_fallback, bool):
        raise _fail("spotFallback", spot_fallback, "true or false")
    # The epsilon absorbs float noise such as 0.7 * 10 == 7.000000000000001 or 0.15*10 < 1.5.
    spot = math.floor(ratio * slots + 0.5 + 1e-9)
    if 0 < ratio < 1:
        spot = min(max(spot, 1), slots - 1)
    on_demand = slots - spot
    values = [str(i) for i in range(1, slots + 1)]
    return CapacitySplit(
        ratio=float(ratio),
        slots=slots,
        spot_values=tuple(values[on_demand:]) if spot else (),
        on_demand_values=tuple(values[:on_demand]) if on_demand else (),
        on_demand_fallback=spot_fallback and on_demand == 0,
    )


# ------------------------------------------------------------------------------------------
# EC2NodeClass


def _ebs(
    size_gib: int,
    *,
    iops: int,
    throughput: int,
    snapshot_id: str | None = None,
    initialization_rate: int | None = None,
    kms_key_id: str | None = None,
) -> dict[str, Any]:
    ebs: dict[str, Any] = {
        "volumeSize": f"{size_gib}Gi",
        "volumeType": "gp3",
        "iops": iops,
        "throughput": throughput,
        "encrypted": True,
        "deleteOnTermination": True,
    }
    if snapshot_id:
        ebs["snapshotID"] = snapshot_id
    if initialization_rate is not None:
        ebs["volumeInitializationRate"] = initialization_rate
    if kms_key_id:
        ebs["kmsKeyID"] = kms_key_id
    return ebs


def _block_devices(
    os_volume_gib: int,
    data_volume_gib: int,
    snapshot_id: str | None,
    initialization_rate: int | None,
    kms_key_id: str | None,
) -> list[dict[str, Any]]:
    # Any non-empty list replaces both Bottlerocket defaults, so both devices are listed.
    fast = snapshot_id is not None
    os_volume = _ebs(
        os_volume_gib,
        iops=BASELINE_GP3_IOPS,
        throughput=BASELINE_GP3_THROUGHPUT,
        kms_key_id=kms_key_id,
    )
    data_volume = _ebs(
        data_volume_gib,
        iops=SNAPSHOT_DATA_VOLUME_IOPS if fast else BASELINE_GP3_IOPS,
        throughput=SNAPSHOT_DATA_VOLUME_THROUGHPUT if fast else BASELINE_GP3_THROUGHPUT,
        snapshot_id=snapshot_id,
        initialization_rate=initialization_rate,
        kms_key_id=kms_key_id,
    )
    return [
        # No rootVolume flag: Karpenter then sizes ephemeral storage from /dev/xvdb, the
        # Bottlerocket data volume, which is where images and pod storage live.
        {"deviceName": "/dev/xvda", "ebs": os_volume},
        {"deviceName": "/dev/xvdb", "ebs": data_volume},
    ]


def _metadata_options() -> dict[str, Any]:
    # Hop limit 1: pods on the pod network cannot reach IMDS (they use Pod Identity).
    return {
        "httpEndpoint": "enabled",
        "httpProtocolIPv6": "disabled",
        "httpPutResponseHopLimit": 1,
        "httpTokens": "required",
    }


def _selector_terms(cluster_name: str, ids: Sequence[str]) -> list[dict[str, Any]]:
    if ids:
        return [{"id": i} for i in ids]
    return [{"tags": {DISCOVERY_TAG: cluster_name}}]


def ec2_node_class(
    *,
    name: str,
    cluster_name: str,
    node_role_name: str,
    ami_alias: str,
    data_volume_size_gib: int,
    data_volume_snapshot_id: str | None = None,
    volume_initialization_rate: int | None = None,
    os_volume_size_gib: int = 10,
    instance_store_policy: str | None = None,
    security_group_ids: Sequence[str] = (),
    subnet_ids: Sequence[str] = (),
    kms_key_id: str | None = None,
    tags: Mapping[str, str] | None = None,
    user_data: str | None = None,
) -> dict[str, Any]:
    """A Bottlerocket EC2NodeClass (the NVIDIA variant is chosen per GPU instance type).

    Subnets and security groups are selected by the ``karpenter.sh/discovery: <cluster>`` tag
    unless explicit ids are given. The OS volume is ``/dev/xvda``, the data volume (container
    images, kubelet, ephemeral storage) ``/dev/xvdb``; with ``data_volume_snapshot_id`` (an
    image-cache snapshot) the data volume gets raised gp3 IOPS/throughput (see the constants
    above for numbers and cost).
    """
    _check_name("name", name)
    if not cluster_name or not isinstance(cluster_name, str):
        raise _fail("cluster_name", cluster_name, "a non-empty cluster name")
    if (
        not node_role_name
        or not isinstance(node_role_name, str)
        or node_role_name.startswith("arn:")
    ):
        raise _fail("node_role_name", node_role_name, "an IAM role name (not an ARN)")
    if not isinstance(ami_alias, str) or not _ALIAS.match(ami_alias) or len(ami_alias) > 30:
        raise _fail("amiAlias", ami_alias, "a pinned alias such as 'bottlerocket@v1.63.0'")
    for field, size, low in (
        ("dataVolumeSizeGiB", data_volume_size_gib, 20),
        ("osVolumeSizeGiB", os_volume_size_gib, 4),
    ):
        if isinstance(size, bool) or not isinstance(size, int) or not low <= size <= 16384:
            raise _fail(field, size, f"an integer from {low} to 16384 (GiB)")
    if data_volume_snapshot_id is not None and not _SNAPSHOT_ID.match(data_volume_snapshot_id):
        raise _fail("dataVolumeSnapshotId", data_volume_snapshot_id, "an id like 'snap-0123abcd'")
    if volume_initialization_rate is not None:
        if data_volume_snapshot_id is None:
            raise _fail(
                "volumeInitializationRate",
                volume_initialization_rate,
                "only together with dataVolumeSnapshotId",
            )
        rate = volume_initialization_rate
        if isinstance(rate, bool) or not isinstance(rate, int) or not 100 <= rate <= 300:
            raise _fail("volumeInitializationRate", rate, "an integer from 100 to 300 (MiB/s)")
    if instance_store_policy not in (None, "RAID0"):
        raise _fail("instanceStorePolicy", instance_store_policy, "'RAID0' or unset")
    tag_map = dict(tags or {})
    for key in tag_map:
        if key in _FORBIDDEN_TAG_KEYS or key.startswith("kubernetes.io/cluster"):
            raise _fail(f"tags.{key}", key, "any key except those Karpenter sets itself")
    spec: dict[str, Any] = {
        "role": node_role_name,
        "amiSelectorTerms": [{"alias": ami_alias}],
        "subnetSelectorTerms": _selector_terms(cluster_name, subnet_ids),
        "securityGroupSelectorTerms": _selector_terms(cluster_name, security_group_ids),
        "metadataOptions": _metadata_options(),
        "blockDeviceMappings": _block_devices(
            os_volume_size_gib,
            data_volume_size_gib,
            data_volume_snapshot_id,
            volume_initialization_rate,
            kms_key_id,
        ),
        "tags": tag_map,
    }
    if instance_store_policy:
        spec["instanceStorePolicy"] = instance_store_policy
    if user_data:
        spec["userData"] = user_data
    return {
        "apiVersion": NODECLASS_API_VERSION,
        "kind": "EC2NodeClass",
        "metadata": {"name": name},
        "spec": spec,
    }


# ------------------------------------------------------------------------------------------
# NodePools


def _requirement(key: str, operator: str, values: Sequence[str] = ()) -> dict[str, Any]:
    req: dict[str, Any] = {"key": key, "operator": operator}
    if values:
        req["values"] = list(values)
    return req


def _requirements(
    capacity_type: str,
    instance_types: Sequence[str],
    instance_families: Sequence[str],
    arch: str,
    spread_values: Sequence[str],
) -> list[dict[str, Any]]:
    reqs = [
        _requirement("karpenter.sh/capacity-type", "In", [capacity_type]),
        _requirement("kubernetes.io/arch", "In", [arch]),
        _requirement("kubernetes.io/os", "In", ["linux"]),
        # Guards against a CPU instance type slipping into the list.
        _requirement("karpenter.k8s.aws/instance-gpu-count", "Gt", ["0"]),
    ]
    if instance_types:
        reqs.append(_requirement("node.kubernetes.io/instance-type", "In", instance_types))
    if instance_families:
        reqs.append(_requirement("karpenter.k8s.aws/instance-family", "In", instance_families))
    if spread_values:
        reqs.append(_requirement(SPREAD_LABEL, "In", spread_values))
    return reqs


def runtime_taints(runtime_name: str) -> list[dict[str, Any]]:
    """Taints on every GPU node of a runtime: only its own pods land there."""
    return [
        {"key": GPU_TAINT_KEY, "value": "true", "effect": "NoSchedule"},
        {"key": RUNTIME_LABEL, "value": runtime_name, "effect": "NoSchedule"},
    ]


def _disruption(consolidate_after: str, budget_nodes: str) -> dict[str, Any]:
    # WhenEmpty: a busy GPU node is never consolidated; consolidateAfter is required here.
    return {
        "consolidationPolicy": "WhenEmpty",
        "consolidateAfter": consolidate_after,
        "budgets": [{"nodes": budget_nodes}],
    }


def _node_pool(
    *,
    name: str,
    runtime_name: str,
    node_class_name: str,
    requirements: list[dict[str, Any]],
    labels: Mapping[str, str],
    max_gpus: int,
    consolidate_after: str,
    budget_nodes: str,
    expire_after: str,
    termination_grace_period: str,
    weight: int,
    extra_taints: Sequence[Mapping[str, Any]] = (),
) -> dict[str, Any]:
    template_spec: dict[str, Any] = {
        "nodeClassRef": {
            "group": NODE_CLASS_GROUP,
            "kind": "EC2NodeClass",
            "name": node_class_name,
        },
        "requirements": requirements,
        "taints": [*runtime_taints(runtime_name), *extra_taints],
        "startupTaints": [{"key": MOUNTPOINT_STARTUP_TAINT_KEY, "effect": "NoExecute"}],
        "expireAfter": expire_after,
        "terminationGracePeriod": termination_grace_period,
    }
    node_labels = {**labels, RUNTIME_LABEL: runtime_name}
    return {
        "apiVersion": NODEPOOL_API_VERSION,
        "kind": "NodePool",
        "metadata": {"name": name, "labels": {RUNTIME_LABEL: runtime_name}},
        "spec": {
            "template": {"metadata": {"labels": node_labels}, "spec": template_spec},
            "disruption": _disruption(consolidate_after, budget_nodes),
            "limits": {GPU_RESOURCE: str(max_gpus)},
            "weight": weight,
        },
    }


def _extra_requirements(items: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    # Imported here: pod_extras reads this module's label and taint names.
    from components.builders import pod_extras as px

    return [
        px.requirement(r.get("key"), r.get("operator"), list(r.get("values") or ())) for r in items
    ]


def _extra_taints(items: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    from components.builders import pod_extras as px

    taints = [px.taint(t.get("key"), t.get("value"), t.get("effect")) for t in items]
    seen = [(t["key"], t["effect"]) for t in taints]
    if len(set(seen)) != len(seen):
        raise _fail("nodeTaints", seen, "each key and effect at most once")
    return taints


def node_pool_names(runtime_name: str, split: CapacitySplit) -> list[str]:
    names = []
    if split.spot_values:
        names.append(f"{runtime_name}-spot")
    if split.on_demand_values:
        names.append(f"{runtime_name}-ondemand")
    if split.on_demand_fallback:
        names.append(f"{runtime_name}-ondemand-fallback")
    return names


def node_pools(
    *,
    runtime_name: str,
    node_class_name: str,
    split: CapacitySplit,
    instance_types: Sequence[str] = (),
    instance_families: Sequence[str] = (),
    max_gpus: int,
    consolidate_after: str = "60s",
    disruption_budget_nodes: str = "10%",
    expire_after: str = "168h",
    termination_grace_period: str = "1h",
    arch: str = "amd64",
    labels: Mapping[str, str] | None = None,
    extra_requirements: Sequence[Mapping[str, Any]] = (),
    extra_taints: Sequence[Mapping[str, Any]] = (),
) -> list[dict[str, Any]]:
    """The NodePools of one runtime, as the split asks: spot and/or on-demand, plus the
    lower-weight on-demand fallback pool (ratio 1 with spot fallback).

    ``extra_requirements`` (``{key, operator, values}``) and ``extra_taints`` (``{key, value,
    effect}``) are added to every pool; the pods must tolerate the taints
    (``pod_scheduling(extra_taints=...)``).

    ``max_gpus`` is a per-NodePool limit on ``nvidia.com/gpu`` (Karpenter has no cross-pool
    limit); the runtime's KEDA ``maxReplicaCount`` bounds the pods, hence the GPUs in use.
    """
    _check_name("runtime_name", runtime_name, max_len=40)
    _check_name("node_class_name", node_class_name)
    if not instance_types and not instance_families:
        raise _fail("instanceTypes", list(instance_types), "at least one instance type or family")
    for field, items in (
        ("instanceTypes", instance_types),
        ("instanceFamilies", instance_families),
    ):
        for i, item in enumerate(items):
            if not isinstance(item, str) or not re.match(r"^[a-z0-9][a-z0-9.-]*$", item):
                raise _fail(f"{field}[{i}]", item, "an EC2 instance type/family such as 'g6'")
    if isinstance(max_gpus, bool) or not isinstance(max_gpus, int) or max_gpus < 1:
        raise _fail("maxGpus", max_gpus, "an integer >= 1")
    _check_duration("consolidateAfter", consolidate_after, allow_never=True)
    _check_duration("expireAfter", expire_after, allow_never=True)
    _check_duration("terminationGracePeriod", termination_grace_period)
    if not isinstance(disruption_budget_nodes, str) or not _BUDGET_NODES.match(
        disruption_budget_nodes
    ):
        raise _fail("disruptionBudgetNodes", disruption_budget_nodes, "'N' or 'N%' as a string")
    if arch not in ("amd64", "arm64"):
        raise _fail("arch", arch, "'amd64' or 'arm64'")
    extra_reqs = _extra_requirements(extra_requirements)
    common: dict[str, Any] = {
        "extra_taints": _extra_taints(extra_taints),
        "runtime_name": runtime_name,
        "node_class_name": node_class_name,
        "labels": dict(labels or {}),
        "max_gpus": max_gpus,
        "consolidate_after": consolidate_after,
        "budget_nodes": disruption_budget_nodes,
        "expire_after": expire_after,
        "termination_grace_period": termination_grace_period,
    }
    spread = split.uses_spread
    pools = []
    for capacity, suffix, values in (
        (SPOT, "spot", split.spot_values),
        (ON_DEMAND, "ondemand", split.on_demand_values),
    ):
        if not values:
            continue
        requirements = _requirements(
            capacity, instance_types, instance_families, arch, values if spread else ()
        ) + list(extra_reqs)
        pools.append(
            _node_pool(
                name=f"{runtime_name}-{suffix}",
                requirements=requirements,
                weight=PRIMARY_WEIGHT,
                **common,
            )
        )
    if split.on_demand_fallback:
        pools.append(
            _node_pool(
                name=f"{runtime_name}-ondemand-fallback",
                requirements=_requirements(ON_DEMAND, instance_types, instance_families, arch, ())
                + list(extra_reqs),
                weight=FALLBACK_WEIGHT,
                **common,
            )
        )
    return pools


# ------------------------------------------------------------------------------------------
# Pod constraints


def runtime_selector_labels(runtime_name: str) -> dict[str, str]:
    """Pod labels the spread constraint selects on; the Deployment must carry them."""
    return {RUNTIME_LABEL: runtime_name}


def _tolerations(runtime_name: str) -> list[dict[str, Any]]:
    return [
        {"key": GPU_TAINT_KEY, "operator": "Exists", "effect": "NoSchedule"},
        {"key": RUNTIME_LABEL, "operator": "Equal", "value": runtime_name, "effect": "NoSchedule"},
    ]


def _toleration(taint: Mapping[str, Any]) -> dict[str, Any]:
    from components.builders import pod_extras as px

    return px.toleration(px.taint(taint.get("key"), taint.get("value"), taint.get("effect")))


def _spread_constraints(runtime_name: str) -> list[dict[str, Any]]:
    return [
        {
            "maxSkew": 1,
            "topologyKey": SPREAD_LABEL,
            "whenUnsatisfiable": "DoNotSchedule",
            "labelSelector": {"matchLabels": runtime_selector_labels(runtime_name)},
        }
    ]


def _node_affinity(split: CapacitySplit) -> dict[str, Any]:
    capacity = [
        c for c, on in ((SPOT, split.spot_values), (ON_DEMAND, split.on_demand_values)) if on
    ]
    if split.on_demand_fallback:
        capacity.append(ON_DEMAND)
    term = {
        "matchExpressions": [
            {"key": "karpenter.sh/capacity-type", "operator": "In", "values": capacity}
        ]
    }
    return {
        "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [term]}
        }
    }


def pod_scheduling(
    *, runtime_name: str, split: CapacitySplit, extra_taints: Sequence[Mapping[str, Any]] = ()
) -> dict[str, Any]:
    """Pod spec fields (camelCase) a runtime's pods need to land on its GPU NodePools
    (``extra_taints``: the pools' extra taints, tolerated exactly).

    Merge the returned keys into the pod spec: ``tolerations``, ``nodeSelector``,
    ``affinity`` and, when the ratio mixes capacity types, ``topologySpreadConstraints``.
    The pods must carry :func:`runtime_selector_labels`.
    """
    _check_name("runtime_name", runtime_name, max_len=40)
    result: dict[str, Any] = {
        "tolerations": _tolerations(runtime_name) + [_toleration(t) for t in extra_taints],
        "nodeSelector": {RUNTIME_LABEL: runtime_name},
        "affinity": _node_affinity(split),
    }
    if split.uses_spread:
        result["topologySpreadConstraints"] = _spread_constraints(runtime_name)
    return result


# ------------------------------------------------------------------------------------------
# Chart values


def karpenter_values(
    *,
    cluster_name: str,
    interruption_queue_name: str,
    region: str,
    replicas: int = 2,
    controller_cpu: str = "1",
    controller_memory: str = "1Gi",
    node_selector: Mapping[str, str] | None = None,
    tolerations: Sequence[Mapping[str, Any]] | None = None,
    service_account_name: str = "karpenter",
    cluster_endpoint: str | None = None,
) -> dict[str, Any]:
    """Values for the Karpenter chart.

    ``interruption_queue_name`` is the queue *name* (not URL/ARN). The service account name is
    fixed so the Pod Identity association matches whatever the release is called. ``AWS_REGION``
    is set so the controller does not depend on IMDS (hop limit 1 on nodes it does not own is
    not guaranteed either). With 2 replicas the chart's hostname anti-affinity and zone spread
    need at least 2 system nodes in 2 AZs.
    """
    if not interruption_queue_name or interruption_queue_name.startswith(("arn:", "https:")):
        raise _fail("interruption_queue_name", interruption_queue_name, "the SQS queue name")
    if isinstance(replicas, bool) or not isinstance(replicas, int) or replicas < 1:
        raise _fail("replicas", replicas, "an integer >= 1")
    settings: dict[str, Any] = {
        "clusterName": cluster_name,
        "interruptionQueue": interruption_queue_name,
    }
    if cluster_endpoint:
        settings["clusterEndpoint"] = cluster_endpoint
    resources = {
        "requests": {"cpu": controller_cpu, "memory": controller_memory},
        "limits": {"cpu": controller_cpu, "memory": controller_memory},
    }
    values: dict[str, Any] = {
        "settings": settings,
        "replicas": replicas,
        "serviceAccount": {"create": True, "name": service_account_name},
        "controller": {
            "resources": resources,
            "env": [{"name": "AWS_REGION", "value": region}],
        },
        "nodeSelector": {"kubernetes.io/os": "linux", **dict(node_selector or {})},
    }
    # Keep the chart's CriticalAddonsOnly toleration when extra ones are given.
    base = [{"key": "CriticalAddonsOnly", "operator": "Exists"}]
    values["tolerations"] = base + [dict(t) for t in (tolerations or []) if dict(t) not in base]
    return values
