"""Parsing the raw ``sdfleet:`` values into the model (components/config_model.py).

:func:`parse_config` walks the raw values once, collects *every* error with its config path,
the bad value and what is allowed, and raises :class:`ConfigError` with all of them.
Values set with ``pulumi config set`` arrive as strings unless typed, so numbers and booleans
are also accepted in their string form ("0.7", "true").
"""

from __future__ import annotations

import dataclasses
import re
import types
import typing
from collections.abc import Callable, Mapping
from typing import Any

from sdfleet.agent.config import load_config as load_agent_config
from sdfleet.agent.settings import ConfigError as AgentConfigError
from sdfleet.components.config_checks import NAMESPACE, ConfigError
from sdfleet.components.config_model import ClusterConfig, StackConfig
from sdfleet.components.config_runtime import RuntimeConfig


def _fmt(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _coerce(tp: Any, value: Any, path: str, errors: list[str]) -> Any:
    """Convert a raw value to ``tp``; on failure record an error and return a sentinel."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if value is None:
            return None
        return _coerce(args[0], value, path, errors)
    if origin is list:
        (item_tp,) = typing.get_args(tp)
        if isinstance(value, str) and item_tp is str:
            # `pulumi config set k "a,b"` is a natural way to give a list of names.
            value = [part.strip() for part in value.split(",") if part.strip()]
        if not isinstance(value, list):
            errors.append(f"{path}: {_fmt(value)} must be a list")
            return _INVALID
        items = [_coerce(item_tp, item, f"{path}[{i}]", errors) for i, item in enumerate(value)]
        return _INVALID if any(item is _INVALID for item in items) else items
    if origin is dict:
        if not isinstance(value, Mapping):
            errors.append(f"{path}: {_fmt(value)} must be an object of names to strings")
            return _INVALID
        bad = [k for k, v in value.items() if not isinstance(k, str) or not isinstance(v, str)]
        for key in bad:
            errors.append(
                f"{path}.{key}: {_fmt(value[key])} must be a string (quote numbers and booleans)"
            )
        return _INVALID if bad else dict(value)
    if dataclasses.is_dataclass(tp):
        return _parse_object(tp, value, path, errors)
    if tp in _SCALARS:
        convert, allowed = _SCALARS[tp]
        result = convert(value)
        if result is _INVALID:
            errors.append(f"{path}: {_fmt(value)} must be {allowed}")
        return result
    raise TypeError(f"unsupported config type {tp!r} at {path}")


class _Invalid:
    def __repr__(self) -> str:
        return "<invalid>"


_INVALID: Any = _Invalid()


# Scalars: the value itself or its string form (``pulumi config set`` gives strings); a bool is
# never taken for a number.
def _to_bool(value: Any) -> Any:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    return _INVALID


def _to_int(value: Any) -> Any:
    if isinstance(value, bool):
        return _INVALID
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and re.fullmatch(r"-?\d+", value.strip()):
        return int(value)
    return _INVALID


def _to_float(value: Any) -> Any:
    if isinstance(value, bool):
        return _INVALID
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            pass
    return _INVALID


def _to_str(value: Any) -> Any:
    return value if isinstance(value, str) else _INVALID


# type -> (converter returning _INVALID on failure, what the error says is allowed)
_SCALARS: dict[Any, tuple[Callable[[Any], Any], str]] = {
    bool: (_to_bool, "true or false"),
    int: (_to_int, "a whole number"),
    float: (_to_float, "a number"),
    str: (_to_str, "a string"),
}


def _parse_object(cls: Any, raw: Any, path: str, errors: list[str]) -> Any:
    if not isinstance(raw, Mapping):
        errors.append(f"{path}: {_fmt(raw)} must be an object")
        return _INVALID
    hints = typing.get_type_hints(cls)
    fields = dataclasses.fields(cls)
    known = {f.metadata["key"] for f in fields}
    for key in raw:
        if key not in known:
            errors.append(f"{path}.{key}: unknown key; allowed: {', '.join(sorted(known))}")
    values: dict[str, Any] = {}
    for f in fields:
        key = f.metadata["key"]
        sub = f"{path}.{key}"
        if key not in raw or raw[key] is None:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                errors.append(f"{sub}: is required")
                values[f.name] = _INVALID
            continue
        value = _coerce(hints[f.name], raw[key], sub, errors)
        check = f.metadata["check"]
        if value is not _INVALID and check is not None:
            problem = check(value)
            if problem:
                errors.append(f"{sub}: {_fmt(raw[key])} {problem}")
                value = _INVALID
        values[f.name] = value
    if any(v is _INVALID for v in values.values()):
        return _INVALID
    obj = cls(**values)
    # Objects whose fields are only valid together (a node requirement, a taint).
    whole = getattr(obj, "problem", None)
    if whole is not None and (problem := whole()):
        errors.append(f"{path}: {problem}")
        return _INVALID
    if isinstance(obj, RuntimeConfig):
        problems = _runtime_checks(obj, path.replace(f"{NAMESPACE}.", f"{NAMESPACE}:", 1))
        errors.extend(problems)
        if problems:
            return _INVALID
    return obj


def _runtime_checks(rt: RuntimeConfig, base: str) -> list[str]:
    errors = []
    if rt.type == "comfyui":
        if rt.model_filename is not None:
            errors.append(
                f"{base}.modelFilename: {rt.model_filename!r} is for sdwebui runtimes "
                "only; ComfyUI workflows name their own models"
            )
        if rt.dynamic_model:
            errors.append(f"{base}.dynamicModel: True is for sdwebui runtimes only")
    elif not rt.dynamic_model and not rt.model_filename:
        errors.append(
            f"{base}.modelFilename: is required for an sdwebui runtime unless dynamicModel is true"
        )
    grace = rt.termination_grace_period_seconds
    if grace is None and rt.drain_seconds + 10 > 120:
        errors.append(
            f"{base}.drainSeconds: {rt.drain_seconds} does not fit the default grace "
            "period (at most 120 s, the spot notice, and drain + 10 s): lower it to "
            "110 or set terminationGracePeriodSeconds"
        )
    elif grace is not None and grace < rt.drain_seconds + 10:
        errors.append(
            f"{base}.terminationGracePeriodSeconds: {grace} must be at least "
            f"drainSeconds + 10 = {rt.drain_seconds + 10}"
        )
    if rt.scaling.min_replicas > rt.scaling.max_replicas:
        errors.append(
            f"{base}.scaling.minReplicas: {rt.scaling.min_replicas} must be at most "
            f"maxReplicas ({rt.scaling.max_replicas})"
        )
    if rt.agent.extra_env:
        errors.extend(_agent_env_combination(rt, f"{base}.agent.extraEnv"))
    taint_keys = [(t.key, t.effect) for t in rt.node_taints]
    if len(set(taint_keys)) != len(taint_keys):
        errors.append(f"{base}.nodeTaints: {taint_keys!r} must not repeat a key and effect")
    if rt.scaling.activation_queue_length > rt.scaling.queue_length * rt.scaling.max_replicas:
        errors.append(
            f"{base}.scaling.activationQueueLength: {rt.scaling.activation_queue_length}"
            " would never activate; must be at most queueLength x maxReplicas"
        )
    return errors


# Stand-ins for the values only a deployed stack knows; the agent checks their form alone.
_SAMPLE_AGENT_IDENTITY = {
    "SQS_QUEUE_URL": "https://sqs.us-east-1.amazonaws.com/123456789012/sample",
    "SNS_TOPIC_ARN": "arn:aws:sns:us-east-1:123456789012:sample",
    "S3_BUCKET": "sample-bucket",
}


def _agent_env_combination(rt: RuntimeConfig, path: str) -> list[str]:
    """Each extraEnv value is checked alone by the model; the agent also checks how settings
    combine (heartbeat vs visibility extension), so a bad mix fails here, not as a crash loop."""
    env = {
        **_SAMPLE_AGENT_IDENTITY,
        "RUNTIME_TYPE": rt.type,
        "RUNTIME_NAME": rt.name,
        **rt.agent.extra_env,
    }
    try:
        load_agent_config(env)
    except AgentConfigError as exc:
        if exc.name in rt.agent.extra_env:
            return [f"{path}.{exc}"]
        return [f"{path}: {exc}"]
    return []


def _stack_checks(config: StackConfig) -> list[str]:
    errors = []
    net = config.network
    if net.vpc_id is None and (net.private_subnet_ids or net.public_subnet_ids):
        errors.append(f"{NAMESPACE}:network.privateSubnetIds: subnet ids need network.vpcId")
    if net.vpc_id is not None and len(net.private_subnet_ids) < 2:
        errors.append(
            f"{NAMESPACE}:network.privateSubnetIds: {net.private_subnet_ids!r} must "
            "list at least two private subnets (in two zones) with your vpcId"
        )
    errors += _endpoint_checks(config.cluster)
    errors += _teardown_checks(config)
    errors += _pull_mode_checks(config)
    sysn = config.cluster.system_nodes
    if not sysn.min_size <= sysn.desired_size <= sysn.max_size:
        errors.append(
            f"{NAMESPACE}:cluster.systemNodes: minSize {sysn.min_size} <= desiredSize "
            f"{sysn.desired_size} <= maxSize {sysn.max_size} must hold"
        )
    return errors


def _pull_mode_checks(config: StackConfig) -> list[str]:
    """SOCI changes the snapshotter; Bottlerocket then drops the images a snapshot holds."""
    return [
        f"{NAMESPACE}:runtimes[{i}].gpu.imagePullMode: 'soci' with gpu.snapshotId "
        f"{rt.gpu.snapshot_id!r} would discard the snapshot's images; use 'parallel' or "
        "'default' with a snapshot"
        for i, rt in enumerate(config.runtimes)
        if rt.gpu.image_pull_mode == "soci" and rt.gpu.snapshot_id
    ]


def _teardown_checks(config: StackConfig) -> list[str]:
    """forceDestroy applies to what the stack creates: never to a bucket it only looks up."""
    errors = []
    models = config.models
    if models.bucket_name is not None and models.force_destroy:
        errors.append(
            f"{NAMESPACE}:models.forceDestroy: True would apply to the existing bucket "
            f"{models.bucket_name!r}, which sdfleet only reads and never deletes; remove it"
        )
    return errors


def _endpoint_checks(cl: ClusterConfig) -> list[str]:
    """The EKS API endpoint: reachable somehow, and from the nodes."""
    base = f"{NAMESPACE}:cluster"
    everyone = cl.public_access_cidrs == ["0.0.0.0/0"]
    if not cl.endpoint_public_access and not cl.endpoint_private_access:
        return [
            f"{base}.endpointPrivateAccess: False with endpointPublicAccess False leaves no "
            "way to reach the cluster; turn at least one on (private is recommended)"
        ]
    if not cl.endpoint_public_access and not everyone:
        return [
            f"{base}.publicAccessCidrs: {cl.public_access_cidrs!r} has no effect with "
            "endpointPublicAccess False; remove it"
        ]
    if cl.endpoint_public_access and not cl.endpoint_private_access and not everyone:
        return [
            f"{base}.endpointPrivateAccess: False with restricted publicAccessCidrs "
            f"{cl.public_access_cidrs!r} would lock out the nodes (they reach the endpoint "
            "from NAT addresses); keep private access on"
        ]
    return []


def _unique(raw: Any, key: str, fallback: str | None, what: str) -> list[str]:
    """Duplicate names among the raw runtime entries, checked even when others are invalid."""
    errors: list[str] = []
    if not isinstance(raw, list):
        return errors
    seen: dict[Any, tuple[int, bool]] = {}
    for i, item in enumerate(raw):
        if not isinstance(item, Mapping):
            continue
        explicit = item.get(key) is not None
        value = item.get(key) if explicit else item.get(fallback or key)
        if not isinstance(value, str):
            continue
        # A defaulted namespace clashing with a defaulted one is already a duplicate name.
        if value in seen and (fallback is None or explicit or seen[value][1]):
            errors.append(
                f"{NAMESPACE}:runtimes[{i}].{key}: {value!r} is already used by "
                f"runtimes[{seen[value][0]}]; {what}"
            )
        seen.setdefault(value, (i, explicit))
    return errors


def parse_config(raw: Mapping[str, Any]) -> StackConfig:
    """Validate the ``sdfleet:`` values (keys without the namespace) and return the model."""
    errors: list[str] = []
    config = _parse_object(StackConfig, raw, NAMESPACE, errors)
    # Top-level keys read `sdfleet.api`; users write `sdfleet:api`.
    errors = [e.replace(f"{NAMESPACE}.", f"{NAMESPACE}:", 1) for e in errors]
    runtimes = raw.get("runtimes") if isinstance(raw, Mapping) else None
    errors += _unique(runtimes, "name", None, "names must be unique")
    errors += _unique(runtimes, "namespace", "name", "each runtime needs its own namespace")
    if config is not _INVALID:
        errors += _stack_checks(config)
    if errors:
        raise ConfigError(errors)
    return typing.cast(StackConfig, config)


def split_namespaced(values: Mapping[str, Any]) -> dict[str, Any]:
    """``{"sdfleet:api": ...}`` -> ``{"api": ...}``; other namespaces are ignored."""
    prefix = f"{NAMESPACE}:"
    return {k[len(prefix) :]: v for k, v in values.items() if k.startswith(prefix)}
