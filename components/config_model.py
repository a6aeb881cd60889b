"""The stack configuration model (namespace ``sdfleet:``): one frozen dataclass per config
object. Each field's metadata names its camelCase key and its check (see config_checks);
components/config_parse.py walks raw values into these. Pure Python: no Pulumi import.
Later issues add fields here; every field must carry a ``cfg(...)`` key.
"""

import dataclasses
from dataclasses import dataclass
from typing import Any

from sdfleet.agent import settings as agent_settings
from sdfleet.agent.contract import MAX_SIDE, Limits
from sdfleet.components import versions
from sdfleet.components.builders import pod_extras as px
from sdfleet.components.builders.enums import Arch, NatGateways, QuotaPeriod
from sdfleet.components.builders.workload import AgentEnv
from sdfleet.components.config_checks import (
    BUCKET_NAME,
    K8S_VERSION,
    LOG_RETENTION_DAYS,
    RUNTIME_NAME_MAX,
    STAGE_NAME,
    VPC_ID,
    args_check,
    cfg,
    cidr_check,
    dns_label,
    in_range,
    input_locations,
    instance_types_check,
    matches,
    one_of,
    pinned_image,
    public_cidrs_check,
    subnet_ids_check,
)
from sdfleet.components.patterns import BOTTLEROCKET_ALIAS, DURATION, QUANTITY, SNAPSHOT_ID


def config_default(model: type, name: str) -> Any:
    """One config field's default (a fresh value for a factory), for component Args to reuse."""
    spec = {f.name: f for f in dataclasses.fields(model)}[name]
    if spec.default_factory is not dataclasses.MISSING:
        return spec.default_factory()
    if spec.default is dataclasses.MISSING:
        raise KeyError(f"{model.__name__}.{name} has no default")
    return spec.default


# Task limit defaults are the contract's (the API and the agent enforce the same object).
_LIMITS = Limits()


def _map_check(problem: Any) -> Any:
    return lambda v: None if (p := px.map_problem(v, problem)) is None else f"has {p}"


def _agent_env_problem(name: Any, value: Any) -> str | None:
    """An agent setting (agent/settings.py) that no config key already sets, with a value the
    agent accepts."""
    allowed = sorted(
        n
        for n in set(agent_settings.BY_NAME) - set(AgentEnv.names())
        if not n.startswith(px.RESERVED_ENV_PREFIXES)  # AWS settings come from the stack
    )
    if name not in allowed:
        return f"name {name!r}: one of the agent's other settings: {', '.join(allowed)}"
    if not isinstance(value, str):
        return f"{name}: a string value"
    try:
        agent_settings.parse({name: value}, name)
    except ValueError as exc:
        return f"{name}={value!r}: {exc}"
    return None


@dataclass(frozen=True)
class GpuPoolConfig:
    instance_types: list[str] = cfg(
        "instanceTypes",
        factory=lambda: ["g6.2xlarge", "g5.2xlarge"],
        check=instance_types_check(" such as g6.2xlarge"),
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
    min_replicas: int = cfg(
        "minReplicas", 0, in_range(0, 1000), doc="warm pool kept running (KEDA minReplicaCount)"
    )
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
class LimitsConfig:
    max_steps: int = cfg(
        "maxSteps", _LIMITS.max_steps, in_range(1, 10000), doc="sampling steps per task"
    )
    max_pixels: int = cfg(
        "maxPixels",
        _LIMITS.max_pixels,
        in_range(64 * 64, MAX_SIDE * MAX_SIDE),
        doc="width x height of one image",
    )
    max_images: int = cfg(
        "maxImages", _LIMITS.max_images, in_range(1, 1000), doc="images per task (batch x n_iter)"
    )
    max_inputs: int = cfg(
        "maxInputs", _LIMITS.max_inputs, in_range(1, 1000), doc="input images/URLs per task"
    )

    def to_contract(self) -> Limits:
        return Limits(
            max_steps=self.max_steps,
            max_pixels=self.max_pixels,
            max_images=self.max_images,
            max_inputs=self.max_inputs,
        )


@dataclass(frozen=True)
class ServerPassThroughConfig:
    extra_args: list[str] = cfg(
        "extraArgs", factory=list, check=args_check, doc="appended to the server's arguments"
    )
    extra_env: dict[str, str] = cfg(
        "extraEnv",
        factory=dict,
        check=_map_check(px.env_problem),
        doc="server environment; no AWS_* (the server gets no AWS access)",
    )


@dataclass(frozen=True)
class AgentPassThroughConfig:
    extra_env: dict[str, str] = cfg(
        "extraEnv",
        factory=dict,
        check=_map_check(_agent_env_problem),
        doc="other agent settings, e.g. EXP_CALLBACK_WHEN_RUNNING (see agent/settings.py)",
    )


@dataclass(frozen=True)
class NodeRequirementConfig:
    key: str = cfg("key")
    operator: str = cfg("operator", check=one_of(*px.REQUIREMENT_OPERATORS))
    values: list[str] = cfg("values", factory=list)

    def problem(self) -> str | None:
        return px.requirement_problem(self.key, self.operator, self.values)


@dataclass(frozen=True)
class NodeTaintConfig:
    key: str = cfg("key")
    effect: str = cfg("effect", check=one_of(*px.TAINT_EFFECTS))
    value: str | None = cfg("value", None)

    def problem(self) -> str | None:
        return px.taint_problem(self.key, self.value, self.effect)


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
    image: str | None = cfg("image", None, pinned_image)
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
    limits: LimitsConfig = cfg("limits", factory=LimitsConfig)
    server: ServerPassThroughConfig = cfg("server", factory=ServerPassThroughConfig)
    agent: AgentPassThroughConfig = cfg("agent", factory=AgentPassThroughConfig)
    pod_labels: dict[str, str] = cfg("podLabels", factory=dict, check=_map_check(px.label_problem))
    pod_annotations: dict[str, str] = cfg(
        "podAnnotations", factory=dict, check=_map_check(px.annotation_problem)
    )
    node_requirements: list[NodeRequirementConfig] = cfg(
        "nodeRequirements",
        factory=list,
        doc="extra Karpenter requirements on the runtime's NodePools",
    )
    node_taints: list[NodeTaintConfig] = cfg(
        "nodeTaints", factory=list, doc="extra taints on the GPU nodes; the pods tolerate them"
    )
    image_pull_policy: str | None = cfg(
        "imagePullPolicy", None, one_of(*px.IMAGE_PULL_POLICIES), doc="the server container's"
    )

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
    period: str = cfg("period", QuotaPeriod.DAY, one_of(*QuotaPeriod))


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
    force_destroy: bool = cfg(
        "forceDestroy", False, doc="pulumi destroy deletes the bucket we created with its models"
    )


@dataclass(frozen=True)
class InputsConfig:
    s3_buckets: list[str] = cfg(
        "s3Buckets",
        factory=list,
        check=input_locations,
        doc="bucket or bucket/prefix s3:// task inputs may name; the pods may read only these",
    )


@dataclass(frozen=True)
class OutputsConfig:
    expire_after_days: int = cfg("expireAfterDays", 30, in_range(1, 3650))
    force_destroy: bool = cfg(
        "forceDestroy", True, doc="pulumi destroy deletes the bucket with the results in it"
    )


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
    private_subnet_ids: list[str] = cfg("privateSubnetIds", factory=list, check=subnet_ids_check)
    public_subnet_ids: list[str] = cfg("publicSubnetIds", factory=list, check=subnet_ids_check)
    cidr_block: str = cfg("cidrBlock", "10.0.0.0/16", cidr_check)
    availability_zones: int = cfg("availabilityZones", 3, in_range(2, 6))
    nat_gateways: str = cfg("natGateways", NatGateways.SINGLE, one_of(*NatGateways))
    s3_gateway_endpoint: bool = cfg(
        "s3GatewayEndpoint", True, doc="create an S3 gateway endpoint on the VPC's route tables"
    )


@dataclass(frozen=True)
class SystemNodesConfig:
    instance_types: list[str] = cfg(
        "instanceTypes",
        factory=lambda: ["m7g.large"],
        check=instance_types_check(""),
    )
    arch: str = cfg("arch", Arch.ARM64, one_of(*Arch))
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
        check=public_cidrs_check,
        doc="who may reach the public endpoint; default the whole internet (as before)",
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
    image_ref: str | None = cfg("imageRef", None, pinned_image)
    keep_images: int = cfg("keepImages", 10, in_range(1, 1000))
    force_destroy: bool = cfg(
        "forceDestroy",
        True,
        doc="pulumi destroy deletes the ECR repository with its images (none with imageRef)",
    )


@dataclass(frozen=True)
class StackConfig:
    runtimes: list[RuntimeConfig] = cfg(
        "runtimes", check=lambda v: None if v else "must list at least one runtime"
    )
    spot_ratio: float = cfg("spotRatio", 0.5, in_range(0, 1))
    api: ApiConfig = cfg("api", factory=ApiConfig)
    models: ModelsConfig = cfg("models", factory=ModelsConfig)
    inputs: InputsConfig = cfg("inputs", factory=InputsConfig)
    outputs: OutputsConfig = cfg("outputs", factory=OutputsConfig)
    queues: QueuesConfig = cfg("queues", factory=QueuesConfig)
    observability: ObservabilityConfig = cfg("observability", factory=ObservabilityConfig)
    network: NetworkConfig = cfg("network", factory=NetworkConfig)
    cluster: ClusterConfig = cfg("cluster", factory=ClusterConfig)
    agent: AgentImageConfig = cfg("agent", factory=AgentImageConfig)

    def runtime_spot_ratio(self, runtime: RuntimeConfig) -> float:
        return self.spot_ratio if runtime.spot_ratio is None else runtime.spot_ratio
