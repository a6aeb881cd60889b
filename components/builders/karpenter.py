"""Pure builders for the GPU capacity layer: Karpenter EC2NodeClass, NodePools, the spot ratio,
the pod constraints that go with them, and the Karpenter chart values.

Split by concern; import every name from here:

- :mod:`sdfleet.components.builders.karpenter_capacity`: the shared names and the spot-ratio split
  (how a ratio becomes capacity-spread slots: see its docstring);
- :mod:`sdfleet.components.builders.karpenter_node_class`: the EC2NodeClass;
- :mod:`sdfleet.components.builders.karpenter_node_pools`: the NodePools;
- this module: the pods' scheduling constraints and the chart values.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sdfleet.components.builders import pod_extras as px
from sdfleet.components.builders.errors import check_name, fail
from sdfleet.components.builders.karpenter_capacity import (
    DEFAULT_SLOTS,
    DISCOVERY_TAG,
    FALLBACK_WEIGHT,
    GPU_RESOURCE,
    GPU_TAINT_KEY,
    MOUNTPOINT_STARTUP_TAINT_KEY,
    NODE_CLASS_GROUP,
    NODECLASS_API_VERSION,
    NODEPOOL_API_VERSION,
    ON_DEMAND,
    PRIMARY_WEIGHT,
    RUNTIME_LABEL,
    SPOT,
    SPREAD_LABEL,
    CapacitySplit,
    capacity_split,
)
from sdfleet.components.builders.karpenter_node_class import (
    BASELINE_GP3_IOPS,
    BASELINE_GP3_THROUGHPUT,
    SNAPSHOT_DATA_VOLUME_IOPS,
    SNAPSHOT_DATA_VOLUME_THROUGHPUT,
    ec2_node_class,
)
from sdfleet.components.builders.karpenter_node_pools import (
    node_pool_names,
    node_pools,
    runtime_taints,
)

__all__ = [
    "BASELINE_GP3_IOPS",
    "BASELINE_GP3_THROUGHPUT",
    "DEFAULT_SLOTS",
    "DISCOVERY_TAG",
    "FALLBACK_WEIGHT",
    "GPU_RESOURCE",
    "GPU_TAINT_KEY",
    "MOUNTPOINT_STARTUP_TAINT_KEY",
    "NODECLASS_API_VERSION",
    "NODEPOOL_API_VERSION",
    "NODE_CLASS_GROUP",
    "ON_DEMAND",
    "PRIMARY_WEIGHT",
    "RUNTIME_LABEL",
    "SNAPSHOT_DATA_VOLUME_IOPS",
    "SNAPSHOT_DATA_VOLUME_THROUGHPUT",
    "SPOT",
    "SPREAD_LABEL",
    "CapacitySplit",
    "capacity_split",
    "ec2_node_class",
    "karpenter_values",
    "node_pool_names",
    "node_pools",
    "pod_scheduling",
    "runtime_selector_labels",
    "runtime_taints",
]


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
    check_name("runtime_name", runtime_name, max_len=40)
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
        raise fail("interruption_queue_name", interruption_queue_name, "the SQS queue name")
    if isinstance(replicas, bool) or not isinstance(replicas, int) or replicas < 1:
        raise fail("replicas", replicas, "an integer >= 1")
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
