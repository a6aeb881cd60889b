"""The per-runtime pass-through settings (extra pod labels/annotations, env, node requirements
and taints): what is allowed and what sdfleet keeps for itself, defined once for the config
checks and the builders. Each ``*_problem`` returns what is allowed, or None when fine."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from sdfleet.components.builders.karpenter_capacity import (
    GPU_TAINT_KEY,
    MOUNTPOINT_STARTUP_TAINT_KEY,
    RUNTIME_LABEL,
    SPREAD_LABEL,
)

POD_DELETION_COST = "controller.kubernetes.io/pod-deletion-cost"
DO_NOT_DISRUPT = "karpenter.sh/do-not-disrupt"
SKIP_CONTAINERS = "eks.amazonaws.com/skip-containers"
IMAGE_PULL_POLICIES = ("Always", "IfNotPresent", "Never")

# Keys sdfleet sets, and domains whose controllers (or sdfleet) own the keys in them.
OWNED_LABELS = frozenset({"app.kubernetes.io/name", "app.kubernetes.io/part-of", RUNTIME_LABEL})
OWNED_LABELS |= {"pod-template-hash"}
OWNED_ANNOTATIONS = frozenset({POD_DELETION_COST, DO_NOT_DISRUPT, SKIP_CONTAINERS})
OWNED_DOMAINS = ("sdfleet.io", "eks.amazonaws.com", "karpenter.sh", "karpenter.k8s.aws")
# Reserved for Kubernetes itself (subdomains such as app.kubernetes.io stay usable).
KUBERNETES_DOMAINS = ("kubernetes.io", "k8s.io")
ANNOTATION_VALUE_MAX = 4096

# NodePool requirement keys sdfleet sets (spot ratio, instance types, GPU guard).
OWNED_REQUIREMENT_KEYS = frozenset(
    {
        "karpenter.sh/capacity-type",
        "kubernetes.io/arch",
        "kubernetes.io/os",
        "node.kubernetes.io/instance-type",
        "karpenter.k8s.aws/instance-gpu-count",
        "kubernetes.io/hostname",
        SPREAD_LABEL,
        RUNTIME_LABEL,
    }
)
# karpenter.k8s.aws labels a NodePool may select on (its CRD's allow-list, less the ones above).
KARPENTER_AWS_REQUIREMENT_KEYS = frozenset(
    "karpenter.k8s.aws/" + k
    for k in [
        "instance-tenancy",
        "capacity-reservation-type",
        "capacity-reservation-id",
        "capacity-reservation-interruptible",
        "instance-encryption-in-transit-supported",
        "instance-category",
        "instance-hypervisor",
        "instance-family",
        "instance-generation",
        "instance-local-nvme",
        "instance-size",
        "instance-cpu",
        "instance-cpu-manufacturer",
        "instance-cpu-sustained-clock-speed-mhz",
        "instance-memory",
        "instance-ebs-bandwidth",
        "instance-network-bandwidth",
        "instance-gpu-name",
        "instance-gpu-manufacturer",
        "instance-gpu-memory",
        "instance-accelerator-name",
        "instance-accelerator-manufacturer",
        "instance-accelerator-count",
        "instance-capability-flex",
        "placement-group-id",
        "placement-group-partition",
    ]
)
REQUIREMENT_OPERATORS = ("In", "NotIn", "Exists", "DoesNotExist", "Gt", "Lt", "Gte", "Lte")
TAINT_EFFECTS = ("NoSchedule", "PreferNoSchedule", "NoExecute")
OWNED_TAINT_KEYS = frozenset({GPU_TAINT_KEY, RUNTIME_LABEL, MOUNTPOINT_STARTUP_TAINT_KEY})

_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# The server never gets AWS settings; the agent's AWS settings come from Pod Identity.
RESERVED_ENV_PREFIXES = ("AWS_",)
AGENT_DOWNWARD_ENV = ("POD_NAME", "POD_NAMESPACE", "NODE_NAME")


def qualified_name_problem(key: Any) -> str | None:
    if not isinstance(key, str):
        return "a string"
    prefix, slash, name = key.rpartition("/")
    if not name or len(name) > 63 or not _NAME.match(name):
        return "[prefix/]name with a name of at most 63 of A-Z a-z 0-9 - _ . (alphanumeric ends)"
    if slash and (len(prefix) > 253 or not _SUBDOMAIN.match(prefix)):
        return "[prefix/]name with a prefix that is a lower-case DNS subdomain"
    return None


def _owned(key: str, exact: Iterable[str]) -> bool:
    prefix = key.rpartition("/")[0]
    in_domain = any(prefix == d or prefix.endswith("." + d) for d in OWNED_DOMAINS)
    return key in exact or in_domain or prefix in KUBERNETES_DOMAINS


def _key_problem(key: Any, what: str, owned: Iterable[str]) -> str | None:
    """A label or annotation key: a qualified name, and none that sdfleet sets itself."""
    problem = qualified_name_problem(key)
    if problem:
        return f"key {key!r}: {problem}"
    if _owned(key, owned):
        return (
            f"key {key!r}: {what} sdfleet does not set itself (not {', '.join(sorted(owned))}, "
            f"nor in the domains {', '.join(OWNED_DOMAINS + KUBERNETES_DOMAINS)})"
        )
    return None


def label_problem(key: Any, value: Any) -> str | None:
    problem = _key_problem(key, "a label", OWNED_LABELS)
    if problem:
        return problem
    if not isinstance(value, str) or len(value) > 63 or not _LABEL_VALUE.match(value):
        return f"{key}={value!r}: a value of at most 63 of A-Z a-z 0-9 - _ . (alphanumeric ends)"
    return None


def annotation_problem(key: Any, value: Any) -> str | None:
    problem = _key_problem(key, "an annotation", OWNED_ANNOTATIONS)
    if problem:
        return problem
    if not isinstance(value, str) or len(value) > ANNOTATION_VALUE_MAX:
        return f"{key}: a string value of at most {ANNOTATION_VALUE_MAX} characters"
    return None


def env_problem(name: Any, value: Any, reserved: Iterable[str] = ()) -> str | None:
    """``reserved``: names the program sets itself for this container."""
    if not isinstance(name, str) or not ENV_NAME.match(name):
        return f"name {name!r}: letters, digits and '_', not starting with a digit"
    if name.startswith(RESERVED_ENV_PREFIXES):
        return f"name {name!r}: no AWS_* variables (the server gets no AWS access)"
    if name in reserved:
        return f"name {name!r}: a variable sdfleet does not set itself"
    if not isinstance(value, str):
        return f"{name}: a string value"
    return None


def map_problem(items: Mapping[Any, Any], problem: Any) -> str | None:
    for key, value in items.items():
        found = problem(key, value)
        if found:
            return str(found)
    return None


def requirement_problem(key: Any, operator: Any, values: Sequence[Any]) -> str | None:
    """A Karpenter NodeSelectorRequirement added to the runtime's NodePools."""
    problem = qualified_name_problem(key)
    if problem:
        return f"key {key!r}: {problem}"
    prefix = key.rpartition("/")[0]
    if key in OWNED_REQUIREMENT_KEYS or (
        (prefix == "karpenter.k8s.aws" and key not in KARPENTER_AWS_REQUIREMENT_KEYS)
        or prefix == "karpenter.sh"
    ):
        return (
            f"key {key!r}: a label sdfleet does not already require (not "
            f"{', '.join(sorted(OWNED_REQUIREMENT_KEYS))}); karpenter.k8s.aws keys from "
            "Karpenter's list, no karpenter.sh keys"
        )
    if operator not in REQUIREMENT_OPERATORS:
        return f"operator {operator!r}: one of {', '.join(REQUIREMENT_OPERATORS)}"
    bad = next(
        (v for v in values if not isinstance(v, str) or len(v) > 63 or not _LABEL_VALUE.match(v)),
        None,
    )
    if bad is not None:
        return f"value {bad!r}: label values of at most 63 of A-Z a-z 0-9 - _ ."
    if operator in ("In", "NotIn") and not values:
        return f"{key} {operator}: at least one value"
    if operator in ("Exists", "DoesNotExist") and values:
        return f"{key} {operator}: no values"
    if operator in ("Gt", "Lt", "Gte", "Lte") and (len(values) != 1 or not values[0].isdigit()):
        return f"{key} {operator}: exactly one non-negative integer value"
    return None


def taint_problem(key: Any, value: Any, effect: Any) -> str | None:
    problem = qualified_name_problem(key)
    if problem:
        return f"key {key!r}: {problem}"
    if key in OWNED_TAINT_KEYS:
        return f"key {key!r}: a taint sdfleet does not set itself (not {', '.join(sorted(OWNED_TAINT_KEYS))})"
    if value is not None and (qualified_name_problem(value) if value else None):
        return f"value {value!r}: empty or [prefix/]name like a key"
    if effect not in TAINT_EFFECTS:
        return f"effect {effect!r}: one of {', '.join(TAINT_EFFECTS)}"
    return None


def requirement(key: Any, operator: Any, values: Sequence[Any] = ()) -> dict[str, Any]:
    found = requirement_problem(key, operator, values)
    if found:
        raise ValueError(f"nodeRequirements: got {found}")
    req: dict[str, Any] = {"key": key, "operator": operator}
    if values:
        req["values"] = list(values)
    return req


def taint(key: Any, value: Any, effect: Any) -> dict[str, Any]:
    found = taint_problem(key, value, effect)
    if found:
        raise ValueError(f"nodeTaints: got {found}")
    out: dict[str, Any] = {"key": key, "effect": effect}
    if value:
        out["value"] = value
    return out


def toleration(taint: Mapping[str, Any]) -> dict[str, Any]:
    """The toleration that matches exactly one taint (key, value and effect)."""
    if taint.get("value"):
        return {
            "key": taint["key"],
            "operator": "Equal",
            "value": taint["value"],
            "effect": taint["effect"],
        }
    return {"key": taint["key"], "operator": "Exists", "effect": taint["effect"]}
