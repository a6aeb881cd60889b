"""Pure builders for a runtime's Karpenter NodePools: spot and/or on-demand as the capacity split
asks, plus the lower-weight on-demand fallback pool."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from sdfleet.components.builders import pod_extras as px
from sdfleet.components.builders.errors import check_name, fail
from sdfleet.components.builders.karpenter_capacity import (
    FALLBACK_WEIGHT,
    GPU_RESOURCE,
    GPU_TAINT_KEY,
    MOUNTPOINT_STARTUP_TAINT_KEY,
    NODE_CLASS_GROUP,
    NODEPOOL_API_VERSION,
    ON_DEMAND,
    PRIMARY_WEIGHT,
    RUNTIME_LABEL,
    SPOT,
    SPREAD_LABEL,
    CapacitySplit,
    _check_duration,
)

_BUDGET_NODES = re.compile(r"^((100|[0-9]{1,2})%|[0-9]+)$")


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
    return [
        px.requirement(r.get("key"), r.get("operator"), list(r.get("values") or ())) for r in items
    ]


def _extra_taints(items: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    taints = [px.taint(t.get("key"), t.get("value"), t.get("effect")) for t in items]
    seen = [(t["key"], t["effect"]) for t in taints]
    if len(set(seen)) != len(seen):
        raise fail("nodeTaints", seen, "each key and effect at most once")
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


def _check_pool_inputs(
    *,
    runtime_name: str,
    node_class_name: str,
    instance_types: Sequence[str],
    instance_families: Sequence[str],
    max_gpus: int,
    durations: tuple[str, str, str],
    disruption_budget_nodes: str,
    arch: str,
) -> None:
    consolidate_after, expire_after, termination_grace_period = durations
    check_name("runtime_name", runtime_name, max_len=40)
    check_name("node_class_name", node_class_name)
    if not instance_types and not instance_families:
        raise fail("instanceTypes", list(instance_types), "at least one instance type or family")
    for field, items in (
        ("instanceTypes", instance_types),
        ("instanceFamilies", instance_families),
    ):
        for i, item in enumerate(items):
            if not isinstance(item, str) or not re.match(r"^[a-z0-9][a-z0-9.-]*$", item):
                raise fail(f"{field}[{i}]", item, "an EC2 instance type/family such as 'g6'")
    if isinstance(max_gpus, bool) or not isinstance(max_gpus, int) or max_gpus < 1:
        raise fail("maxGpus", max_gpus, "an integer >= 1")
    _check_duration("consolidateAfter", consolidate_after, allow_never=True)
    _check_duration("expireAfter", expire_after, allow_never=True)
    _check_duration("terminationGracePeriod", termination_grace_period)
    if not isinstance(disruption_budget_nodes, str) or not _BUDGET_NODES.match(
        disruption_budget_nodes
    ):
        raise fail("disruptionBudgetNodes", disruption_budget_nodes, "'N' or 'N%' as a string")
    if arch not in ("amd64", "arm64"):
        raise fail("arch", arch, "'amd64' or 'arm64'")


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
    _check_pool_inputs(
        runtime_name=runtime_name,
        node_class_name=node_class_name,
        instance_types=instance_types,
        instance_families=instance_families,
        max_gpus=max_gpus,
        durations=(consolidate_after, expire_after, termination_grace_period),
        disruption_budget_nodes=disruption_budget_nodes,
        arch=arch,
    )
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
