"""The stack configuration model (namespace ``sdfleet:``): one frozen dataclass per config
object. Each field's metadata names its camelCase key and its check (see config_checks);
components/config_parse.py walks raw values into these. Pure Python: no Pulumi import.
Every field must carry a ``cfg(...)`` key. The per-runtime objects are in config_runtime.
"""

import dataclasses
from dataclasses import dataclass
from typing import Any

from sdfleet.components import versions
from sdfleet.components.builders.enums import Arch, NatGateways, QuotaPeriod
from sdfleet.components.config_checks import (
    BUCKET_NAME,
    K8S_VERSION,
    LOG_RETENTION_DAYS,
    STAGE_NAME,
    VPC_ID,
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
from sdfleet.components.config_runtime import RuntimeConfig
from sdfleet.components.patterns import BOTTLEROCKET_ALIAS


def config_default(model: type, name: str) -> Any:
    """One config field's default (a fresh value for a factory), for component Args to reuse."""
    spec = {f.name: f for f in dataclasses.fields(model)}[name]
    if spec.default_factory is not dataclasses.MISSING:
        return spec.default_factory()
    if spec.default is dataclasses.MISSING:
        raise KeyError(f"{model.__name__}.{name} has no default")
    return spec.default


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
    status_url_expiry_seconds: int = cfg(
        "statusUrlExpirySeconds",
        900,
        in_range(60, 43200),
        doc="lifetime of the status API's presigned result URLs",
    )


@dataclass(frozen=True)
class TasksConfig:
    ttl_days: int = cfg(
        "ttlDays", 7, in_range(1, 365), doc="days a task record is kept after its latest change"
    )
    point_in_time_recovery: bool = cfg(
        "pointInTimeRecovery", False, doc="point-in-time recovery of the task table"
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
    tracing: bool = cfg(
        "tracing", True, doc="deploy the trace collector and send agent spans to X-Ray"
    )
    oldest_message_alarm_seconds: int = cfg("oldestMessageAlarmSeconds", 900, in_range(60, 86400))
    gpu_idle_alarm_minutes: int = cfg("gpuIdleAlarmMinutes", 15, in_range(5, 1440))
    spot_interruptions_alarm_per_hour: int = cfg(
        "spotInterruptionsAlarmPerHour", 5, in_range(1, 1000)
    )
    sns_active_tracing: bool = cfg(
        "snsActiveTracing",
        True,
        doc="SNS segments in the traces; needs one of the account's 5 X-Ray resource policies",
    )
    trace_sample_rate: float = cfg(
        "traceSampleRate",
        1.0,
        in_range(0, 1),
        doc="share of task requests X-Ray records (1: every task's trace can be found by its id)",
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
    tasks: TasksConfig = cfg("tasks", factory=TasksConfig)
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
