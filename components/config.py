"""The validated stack configuration (namespace ``sdfleet:``).

Pure Python: no Pulumi import, so it is tested without mocks and reused by the offline synth.
Each field is a dataclass field whose metadata names its camelCase config key and its check.
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
from dataclasses import dataclass, field
from typing import Any

from components import versions
from components.patterns import BOTTLEROCKET_ALIAS, DNS_LABEL, DURATION, QUANTITY, SNAPSHOT_ID

NAMESPACE = "sdfleet"

RUNTIME_NAME_MAX = 40  # room for suffixes in queue, role and NodePool names
BUCKET_NAME = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
STAGE_NAME = re.compile(r"^[A-Za-z0-9_-]{1,128}$")
VPC_ID = re.compile(r"^vpc-[0-9a-f]{8,17}$")
SUBNET_ID = re.compile(r"^subnet-[0-9a-f]{8,17}$")
CIDR = re.compile(r"^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})/(\d{1,2})$")
K8S_VERSION = re.compile(r"^1\.(3[1-9])$")
INSTANCE_TYPE = re.compile(r"^[a-z][a-z0-9-]*\.[a-z0-9]+$")
# CloudWatch Logs accepts only these retention periods.
LOG_RETENTION_DAYS = (
    1,
    3,
    5,
    7,
    14,
    30,
    60,
    90,
    120,
    150,
    180,
    365,
    400,
    545,
    731,
    1096,
    1827,
    2192,
    2557,
    2922,
    3288,
    3653,
)


class ConfigError(ValueError):
    def __init__(self, errors: list[str]) -> None:
        self.errors = errors
        super().__init__("invalid stack configuration:\n" + "\n".join(f"  {e}" for e in errors))


Check = Callable[[Any], str | None]


def cfg(
    key: str,
    default: Any = dataclasses.MISSING,
    check: Check | None = None,
    factory: Callable[[], Any] | None = None,
    doc: str = "",
) -> Any:
    """A config field: ``key`` is the camelCase name users write; ``check`` returns an error
    text (what is allowed) or None."""
    meta = {"key": key, "check": check, "doc": doc}
    if factory is not None:
        return field(default_factory=factory, metadata=meta)
    return field(default=default, metadata=meta)


def one_of(*allowed: str) -> Check:
    return lambda v: None if v in allowed else f"is not one of {', '.join(allowed)}"


def in_range(lo: float | None = None, hi: float | None = None) -> Check:
    def check(v: Any) -> str | None:
        if (lo is not None and v < lo) or (hi is not None and v > hi):
            if hi is None:
                return f"must be at least {lo}"
            if lo is None:
                return f"must be at most {hi}"
            return f"must be between {lo} and {hi}"
        return None

    return check


def matches(pattern: re.Pattern[str], what: str) -> Check:
    return lambda v: None if pattern.match(v) else f"must be {what}"


def dns_label(max_len: int = 63) -> Check:
    def check(v: str) -> str | None:
        if len(v) > max_len or not DNS_LABEL.match(v):
            return (
                f"must be a DNS-1123 label: lower-case letters, digits and '-', starting and "
                f"ending with a letter or digit, at most {max_len} characters"
            )
        return None

    return check


def cidr_check(v: str) -> str | None:
    m = CIDR.match(v)
    if not m or any(int(g) > 255 for g in m.groups()[:4]) or int(m.group(5)) > 32:
        return "must be an IPv4 CIDR such as 203.0.113.0/24"
    return None


def _is_pinned_image(ref: str) -> bool:
    if "@sha256:" in ref:
        return True
    tag = ref.rsplit("/", 1)[-1].partition(":")[2]
    return bool(tag) and tag != "latest"


# ------------------------------------------------------------------------------------------
# The model. Later issues add fields here; every field must carry a `cfg(...)` key.


@dataclass(frozen=True)
class GpuPoolConfig:
    instance_types: list[str] = cfg(
        "instanceTypes",
        factory=lambda: ["g6.2xlarge", "g5.2xlarge"],
        check=lambda v: (
            None
            if v and all(INSTANCE_TYPE.match(t) for t in v)
            else "must be a non-empty list of EC2 instance types such as g6.2xlarge"
        ),
        doc="EC2 instance types Karpenter may launch for this runtime",
    )
    max_gpus: int = cfg("maxGpus", 8, in_range(1, 1000), doc="limit on the pool's total GPUs")
    data_volume_size_gib: int = cfg("dataVolumeSizeGiB", 100, in_range(20, 16384))
    snapshot_id: str | None = cfg(
        "snapshotId", None, matches(SNAPSHOT_ID, "an EBS snapshot id (snap-...)")
    )
    consolidate_after: str = cfg(
        "consolidateAfter", "5m", matches(DURATION, "a duration such as 30s, 5m or 1h")
    )
    expire_after: str = cfg("expireAfter", "168h", matches(DURATION, "a duration such as 168h"))
    spot_fallback: bool = cfg("spotFallback", True)
    instance_store_policy: str | None = cfg("instanceStorePolicy", None, one_of("RAID0"))


@dataclass(frozen=True)
class ResourcesConfig:
    cpu: str = cfg("cpu", "4", matches(QUANTITY, "a Kubernetes quantity such as 4 or 3500m"))
    memory: str = cfg("memory", "24Gi", matches(QUANTITY, "a Kubernetes quantity such as 24Gi"))


@dataclass(frozen=True)
class ScalingConfig:
    max_replicas: int = cfg("maxReplicas", 4, in_range(1, 1000))
    queue_length: int = cfg(
        "queueLength", 2, in_range(1, 1000), doc="target messages per pod (visible + in flight)"
    )
    activation_queue_length: int = cfg("activationQueueLength", 0, in_range(0, 1000))
    polling_interval: int = cfg("pollingInterval", 15, in_range(5, 3600))
    cooldown_period: int = cfg("cooldownPeriod", 300, in_range(0, 86400))
    scale_down_pods: int = cfg("scaleDownPods", 1, in_range(1, 1000))
    scale_down_period_seconds: int = cfg("scaleDownPeriodSeconds", 60, in_range(1, 1800))


@dataclass(frozen=True)
class RuntimeConfig:
    name: str = cfg("name", check=dns_label(RUNTIME_NAME_MAX))
    type: str = cfg("type", check=one_of("sdwebui", "comfyui"))
    namespace: str | None = cfg("namespace", None, dns_label())
    model_filename: str | None = cfg(
        "modelFilename", None, lambda v: None if v.strip() else "must not be empty"
    )
    dynamic_model: bool = cfg("dynamicModel", False)
    job_timeout_seconds: int = cfg("jobTimeoutSeconds", 600, in_range(10, 36000))
    spot_ratio: float | None = cfg("spotRatio", None, in_range(0, 1))
    image: str | None = cfg(
        "image",
        None,
        lambda v: (
            None if _is_pinned_image(v) else "must be an image reference pinned by a tag or digest"
        ),
    )
    model_path: str | None = cfg(
        "modelPath", None, lambda v: None if v.startswith("/") else "must be an absolute path"
    )
    model_prefix: str | None = cfg("modelPrefix", None)
    drain_seconds: int = cfg("drainSeconds", 90, in_range(0, 3600))
    termination_grace_period_seconds: int | None = cfg(
        "terminationGracePeriodSeconds",
        None,
        in_range(1, 7200),
        doc="pod grace period; default drain + 30 s, at most the 2-minute spot notice",
    )
    gpu: GpuPoolConfig = cfg("gpu", factory=GpuPoolConfig)
    resources: ResourcesConfig = cfg("resources", factory=ResourcesConfig)
    scaling: ScalingConfig = cfg("scaling", factory=ScalingConfig)

    @property
    def k8s_namespace(self) -> str:
        return self.namespace or self.name


@dataclass(frozen=True)
class ThrottleConfig:
    rate_limit: float = cfg("rateLimit", 30.0, in_range(0.1, 10000))
    burst_limit: int = cfg("burstLimit", 50, in_range(1, 5000))


@dataclass(frozen=True)
class QuotaConfig:
    limit: int = cfg("limit", check=in_range(1, None))
    period: str = cfg("period", "DAY", one_of("DAY", "WEEK", "MONTH"))


@dataclass(frozen=True)
class ApiConfig:
    stage_name: str = cfg("stageName", "v1", matches(STAGE_NAME, "1-128 of A-Z a-z 0-9 _ -"))
    throttle: ThrottleConfig = cfg("throttle", factory=ThrottleConfig)
    quota: QuotaConfig | None = cfg("quota", None)
    reserved_concurrency: int | None = cfg("reservedConcurrency", None, in_range(1, 1000))
    manage_account_log_role: bool = cfg(
        "manageAccountLogRole", True, doc="set the region's API Gateway CloudWatch role"
    )


@dataclass(frozen=True)
class ModelsConfig:
    bucket_name: str | None = cfg("bucketName", None, matches(BUCKET_NAME, "an S3 bucket name"))


@dataclass(frozen=True)
class OutputsConfig:
    expire_after_days: int = cfg("expireAfterDays", 30, in_range(1, 3650))


@dataclass(frozen=True)
class QueuesConfig:
    max_receive_count: int = cfg("maxReceiveCount", 3, in_range(1, 1000))
    visibility_timeout_seconds: int = cfg("visibilityTimeoutSeconds", 60, in_range(30, 43200))


@dataclass(frozen=True)
class ObservabilityConfig:
    log_retention_days: int = cfg(
        "logRetentionDays",
        30,
        lambda v: (
            None
            if v in LOG_RETENTION_DAYS
            else f"is not a CloudWatch retention; one of {', '.join(map(str, LOG_RETENTION_DAYS))}"
        ),
    )
    container_insights: bool = cfg(
        "containerInsights",
        True,
        doc="install the CloudWatch Observability addon (container logs, EMF metrics)",
    )
    alarm_email: str | None = cfg(
        "alarmEmail", None, lambda v: None if "@" in v else "must be an e-mail address"
    )


@dataclass(frozen=True)
class NetworkConfig:
    vpc_id: str | None = cfg("vpcId", None, matches(VPC_ID, "a VPC id (vpc-...)"))
    private_subnet_ids: list[str] = cfg(
        "privateSubnetIds",
        factory=list,
        check=lambda v: None if all(SUBNET_ID.match(s) for s in v) else "must be subnet ids",
    )
    public_subnet_ids: list[str] = cfg(
        "publicSubnetIds",
        factory=list,
        check=lambda v: None if all(SUBNET_ID.match(s) for s in v) else "must be subnet ids",
    )
    cidr_block: str = cfg("cidrBlock", "10.0.0.0/16", cidr_check)
    availability_zones: int = cfg("availabilityZones", 3, in_range(2, 6))
    nat_gateways: str = cfg("natGateways", "single", one_of("single", "onePerAz"))
    s3_gateway_endpoint: bool = cfg(
        "s3GatewayEndpoint", True, doc="create an S3 gateway endpoint on the VPC's route tables"
    )


@dataclass(frozen=True)
class SystemNodesConfig:
    instance_types: list[str] = cfg(
        "instanceTypes",
        factory=lambda: ["m7g.large"],
        check=lambda v: (
            None
            if v and all(INSTANCE_TYPE.match(t) for t in v)
            else "must be a non-empty list of EC2 instance types"
        ),
    )
    arch: str = cfg("arch", "arm64", one_of("arm64", "amd64"))
    min_size: int = cfg("minSize", 2, in_range(1, 100))
    max_size: int = cfg("maxSize", 3, in_range(1, 100))
    desired_size: int = cfg("desiredSize", 2, in_range(1, 100))


@dataclass(frozen=True)
class ClusterConfig:
    name: str | None = cfg("name", None, dns_label(100))
    version: str = cfg(
        "version",
        versions.KUBERNETES_VERSION,
        matches(K8S_VERSION, "a Kubernetes minor such as 1.33 (1.31 or newer)"),
    )
    endpoint_public_access: bool = cfg("endpointPublicAccess", True)
    endpoint_private_access: bool = cfg("endpointPrivateAccess", True)
    public_access_cidrs: list[str] = cfg(
        "publicAccessCidrs",
        factory=lambda: ["0.0.0.0/0"],
        check=lambda v: next((f"{c!r} " + (cidr_check(c) or "") for c in v if cidr_check(c)), None),
    )
    bottlerocket_alias: str | None = cfg(
        "bottlerocketAlias",
        None,
        matches(
            BOTTLEROCKET_ALIAS, "bottlerocket@<version>, e.g. bottlerocket@v1.49.0 (never latest)"
        ),
    )
    system_nodes: SystemNodesConfig = cfg("systemNodes", factory=SystemNodesConfig)
    create_spot_service_linked_role: bool = cfg(
        "createSpotServiceLinkedRole",
        False,
        doc="create AWSServiceRoleForEC2Spot (fails if the account already has it)",
    )


@dataclass(frozen=True)
class AgentImageConfig:
    image_ref: str | None = cfg(
        "imageRef",
        None,
        lambda v: (
            None if _is_pinned_image(v) else "must be an image reference pinned by a tag or digest"
        ),
    )
    keep_images: int = cfg("keepImages", 10, in_range(1, 1000))


@dataclass(frozen=True)
class StackConfig:
    runtimes: list[RuntimeConfig] = cfg(
        "runtimes", check=lambda v: None if v else "must list at least one runtime"
    )
    spot_ratio: float = cfg("spotRatio", 0.5, in_range(0, 1))
    api: ApiConfig = cfg("api", factory=ApiConfig)
    models: ModelsConfig = cfg("models", factory=ModelsConfig)
    outputs: OutputsConfig = cfg("outputs", factory=OutputsConfig)
    queues: QueuesConfig = cfg("queues", factory=QueuesConfig)
    observability: ObservabilityConfig = cfg("observability", factory=ObservabilityConfig)
    network: NetworkConfig = cfg("network", factory=NetworkConfig)
    cluster: ClusterConfig = cfg("cluster", factory=ClusterConfig)
    agent: AgentImageConfig = cfg("agent", factory=AgentImageConfig)

    def runtime_spot_ratio(self, runtime: RuntimeConfig) -> float:
        return self.spot_ratio if runtime.spot_ratio is None else runtime.spot_ratio


# ------------------------------------------------------------------------------------------
# Parsing


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
        return [_coerce(item_tp, item, f"{path}[{i}]", errors) for i, item in enumerate(value)]
    if dataclasses.is_dataclass(tp):
        return _parse_object(tp, value, path, errors)
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
        errors.append(f"{path}: {_fmt(value)} must be true or false")
        return _INVALID
    if tp is int:
        if isinstance(value, bool):
            errors.append(f"{path}: {_fmt(value)} must be a whole number")
            return _INVALID
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str) and re.fullmatch(r"-?\d+", value.strip()):
            return int(value)
        errors.append(f"{path}: {_fmt(value)} must be a whole number")
        return _INVALID
    if tp is float:
        if isinstance(value, bool):
            errors.append(f"{path}: {_fmt(value)} must be a number")
            return _INVALID
        if isinstance(value, (int, float)):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
        errors.append(f"{path}: {_fmt(value)} must be a number")
        return _INVALID
    if tp is str:
        if isinstance(value, str):
            return value
        errors.append(f"{path}: {_fmt(value)} must be a string")
        return _INVALID
    raise TypeError(f"unsupported config type {tp!r} at {path}")


class _Invalid:
    def __repr__(self) -> str:
        return "<invalid>"


_INVALID: Any = _Invalid()


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
    if rt.scaling.activation_queue_length > rt.scaling.queue_length * rt.scaling.max_replicas:
        errors.append(
            f"{base}.scaling.activationQueueLength: {rt.scaling.activation_queue_length}"
            " would never activate; must be at most queueLength x maxReplicas"
        )
    return errors


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
    sysn = config.cluster.system_nodes
    if not sysn.min_size <= sysn.desired_size <= sysn.max_size:
        errors.append(
            f"{NAMESPACE}:cluster.systemNodes: minSize {sysn.min_size} <= desiredSize "
            f"{sysn.desired_size} <= maxSize {sysn.max_size} must hold"
        )
    return errors


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
