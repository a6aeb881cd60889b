"""SdRuntime's inputs and its plain output: the args dataclass (and how the stack config fills
it), the Kubernetes object names, every manifest and the pods' IAM policy, built from plain
values. No resources are registered here; :mod:`sdfleet.components.sd_runtime` does that.
"""

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pulumi

from sdfleet.agent.contract import Limits
from sdfleet.components import versions
from sdfleet.components.builders import iam_platform as iamp
from sdfleet.components.builders import isolation as iso
from sdfleet.components.builders import keda as kb
from sdfleet.components.builders import workload as wl
from sdfleet.components.config import RuntimeConfig

PART_OF_LABEL = {"app.kubernetes.io/part-of": "sdfleet"}
# Pulumi would otherwise wait for the first pod to be ready: a GPU node, a multi-GB image and
# the model load can take longer than its timeout, and KEDA scales the pod away anyway.
SKIP_AWAIT = {"pulumi.com/skipAwait": "true"}
DEFAULT_MODEL_CACHE_SIZE = "20Gi"

# Values the builders check eagerly when the real ones are not known yet (Outputs).
PLACEHOLDERS: dict[str, str] = {
    "region": "us-east-1",
    "queue_url": "https://sqs.us-east-1.amazonaws.com/000000000000/placeholder",
    "queue_arn": "arn:aws:sqs:us-east-1:000000000000:placeholder",
    "output_topic_arn": "arn:aws:sns:us-east-1:000000000000:placeholder",
    "output_bucket_name": "placeholder-outputs",
    "output_bucket_arn": "arn:aws:s3:::placeholder-outputs",
    "model_bucket_name": "placeholder-models",
    "agent_image": f"placeholder.invalid/agent@sha256:{'0' * 64}",
}
WIRED = tuple(PLACEHOLDERS)


@dataclass
class SdRuntimeArgs:
    runtime_name: str
    runtime_type: str
    namespace: str
    cluster_name: pulumi.Input[str]
    region: pulumi.Input[str]
    queue_url: pulumi.Input[str]
    queue_arn: pulumi.Input[str]
    output_topic_arn: pulumi.Input[str]
    output_bucket_name: pulumi.Input[str]
    output_bucket_arn: pulumi.Input[str]
    model_bucket_name: pulumi.Input[str]
    # Digest-pinned agent image (AgentImage.ref).
    agent_image: pulumi.Input[str]
    # Pod spec fields from karpenter.pod_scheduling / GpuNodePool.scheduling.
    scheduling: Mapping[str, Any]
    # None: the documented default per type (sdfleet.components.versions).
    server_image: str | None = None
    # None: the default args for the default image (workload.DEFAULT_SERVER_ARGS).
    server_args: Sequence[str] | None = None
    # None: the image's entrypoint. Set it for images whose entrypoint does not take the
    # server's flags (e.g. ones that start a process supervisor).
    server_command: Sequence[str] | None = None
    server_env: Mapping[str, str] = field(default_factory=dict)
    # Appended to the server's arguments (the defaults or server_args).
    server_extra_args: Sequence[str] = ()
    # Extra agent variables (never its own settings nor AWS_*).
    agent_extra_env: Mapping[str, str] = field(default_factory=dict)
    # Extra pod labels/annotations (never keys sdfleet sets).
    pod_labels: Mapping[str, str] = field(default_factory=dict)
    pod_annotations: Mapping[str, str] = field(default_factory=dict)
    # The server container's; None: the Kubernetes default.
    image_pull_policy: str | None = None
    # Buckets s3:// task inputs may name; the pod role may read exactly these.
    input_s3_buckets: Sequence[str] = ()
    # What one task may ask (the agent enforces it too); None: the contract's defaults.
    task_limits: Limits | None = None
    # None: workload.DEFAULT_MODEL_PATHS for the type.
    model_path: str | None = None
    model_prefix: str | None = None
    model_filename: str | None = None
    dynamic_model: bool = False
    # Mountpoint's local data cache (emptyDir on the node); None turns it off.
    model_cache_size: str | None = DEFAULT_MODEL_CACHE_SIZE
    job_timeout_seconds: int = 600
    drain_seconds: int = 90
    # None: drain + 30 s, capped at the 2-minute spot notice.
    termination_grace_period_seconds: int | None = None
    # Startup budget = 10 s x this (15 minutes by default) for the server to load its model.
    startup_failure_threshold: int = 90
    cpu: str = "4"
    memory: str = "24Gi"
    min_replicas: int = 0
    max_replicas: int = 4
    queue_length: int = kb.DEFAULT_QUEUE_LENGTH
    activation_queue_length: int = 0
    polling_interval: int = 15
    cooldown_period: int = kb.DEFAULT_COOLDOWN_PERIOD
    scale_down_pods: int = 1
    scale_down_period_seconds: int = 60
    # Only when the queue/bucket/topic use customer-managed KMS keys.
    kms_key_arns: Sequence[str] = ()
    # False: the namespace exists already (bring your own cluster).
    create_namespace: bool = True


def runtime_args(runtime: RuntimeConfig, **wiring: Any) -> SdRuntimeArgs:
    """SdRuntimeArgs from a validated runtime config; ``wiring`` gives the rest (cluster
    name, region, queue, topic, buckets, agent image, scheduling); the Kubernetes provider and
    ``depends_on`` go in the component's ResourceOptions."""
    scaling = runtime.scaling
    return SdRuntimeArgs(
        runtime_name=runtime.name,
        runtime_type=runtime.type,
        namespace=runtime.k8s_namespace,
        server_image=runtime.image,
        model_path=runtime.model_path,
        model_prefix=runtime.model_prefix,
        model_filename=runtime.model_filename,
        dynamic_model=runtime.dynamic_model,
        job_timeout_seconds=runtime.job_timeout_seconds,
        drain_seconds=runtime.drain_seconds,
        termination_grace_period_seconds=runtime.termination_grace_period_seconds,
        cpu=runtime.resources.cpu,
        memory=runtime.resources.memory,
        server_extra_args=tuple(runtime.server.extra_args),
        server_env=dict(runtime.server.extra_env),
        agent_extra_env=dict(runtime.agent.extra_env),
        pod_labels=dict(runtime.pod_labels),
        pod_annotations=dict(runtime.pod_annotations),
        image_pull_policy=runtime.image_pull_policy,
        task_limits=runtime.limits.to_contract(),
        min_replicas=scaling.min_replicas,
        max_replicas=scaling.max_replicas,
        queue_length=scaling.queue_length,
        activation_queue_length=scaling.activation_queue_length,
        polling_interval=scaling.polling_interval,
        cooldown_period=scaling.cooldown_period,
        scale_down_pods=scaling.scale_down_pods,
        scale_down_period_seconds=scaling.scale_down_period_seconds,
        **wiring,
    )


@dataclass(frozen=True)
class RuntimeNames:
    """Kubernetes object names of one runtime."""

    namespace: str
    deployment: str
    service_account: str
    claim: str
    volume: str
    volume_handle: str
    trigger_authentication: str
    scaled_object: str
    network_policy: str
    deletion_cost_role: str

    @classmethod
    def of(cls, runtime_name: str, namespace: str) -> "RuntimeNames":
        # The PV is cluster-scoped: a hash of namespace/runtime keeps its name (and the CSI
        # volume handle, which must be unique in the cluster) apart from every other runtime's.
        digest = hashlib.sha256(f"{namespace}/{runtime_name}".encode()).hexdigest()[:8]
        volume = f"{runtime_name}-models-{digest}"
        return cls(
            namespace=namespace,
            deployment=runtime_name,
            service_account=f"{runtime_name}-runtime",
            claim=f"{runtime_name}-models",
            volume=volume,
            volume_handle=f"sdfleet-{volume}",
            trigger_authentication=f"{runtime_name}-keda-aws",
            scaled_object=runtime_name,
            network_policy=f"{runtime_name}-isolation",
            deletion_cost_role=f"{runtime_name}-pod-deletion-cost",
        )


def build_manifests(args: SdRuntimeArgs, wired: Mapping[str, str]) -> dict[str, dict[str, Any]]:
    """Every Kubernetes object of the runtime, from the args and the resolved ``wired`` values
    (keys of ``PLACEHOLDERS``). Raises ValueError naming the field for bad input."""
    names = RuntimeNames.of(args.runtime_name, args.namespace)
    region = wired["region"]
    server_image = args.server_image or versions.default_server_image(args.runtime_type)
    agent_env = wl.AgentEnv(
        sqs_queue_url=wired["queue_url"],
        sns_topic_arn=wired["output_topic_arn"],
        s3_bucket=wired["output_bucket_name"],
        runtime_type=args.runtime_type,
        runtime_name=args.runtime_name,
        aws_region=region,
        job_timeout_seconds=args.job_timeout_seconds,
        drain_seconds=args.drain_seconds,
        dynamic_sd_model=args.dynamic_model,
        model_filename=args.model_filename,
        task_limits=(args.task_limits or Limits()).to_json(),
        input_s3_buckets=tuple(args.input_s3_buckets),
        extra=dict(args.agent_extra_env),
    )
    server_args = (
        wl.DEFAULT_SERVER_ARGS[args.runtime_type] if args.server_args is None else args.server_args
    )
    deployment = wl.runtime_deployment(
        name=names.deployment,
        namespace=names.namespace,
        runtime_name=args.runtime_name,
        runtime_type=args.runtime_type,
        agent_image=wired["agent_image"],
        server_image=server_image,
        agent_env=agent_env,
        service_account_name=names.service_account,
        model_claim_name=names.claim,
        scheduling=args.scheduling,
        server_resources=wl.Resources(cpu=args.cpu, memory=args.memory),
        server_args=(*server_args, *args.server_extra_args),
        server_env=args.server_env,
        model_mount_path=args.model_path,
        startup_failure_threshold=args.startup_failure_threshold,
        termination_grace_period_seconds=args.termination_grace_period_seconds,
        labels=PART_OF_LABEL,
        pod_labels=args.pod_labels,
        pod_annotations=args.pod_annotations,
        image_pull_policy=args.image_pull_policy,
    )
    deployment["metadata"]["annotations"] = dict(SKIP_AWAIT)
    if args.server_command is not None:
        command = list(args.server_command)
        if not command or not all(isinstance(c, str) and c for c in command):
            raise ValueError(
                f"server_command: got {args.server_command!r}; allowed: a non-empty list of "
                "non-empty strings, or None for the image's entrypoint"
            )
        deployment["spec"]["template"]["spec"]["initContainers"][0]["command"] = command
    manifests: dict[str, dict[str, Any]] = {}
    if args.create_namespace:
        manifests["namespace"] = wl.namespace(names.namespace, labels=PART_OF_LABEL)
    manifests["service_account"] = wl.service_account(
        names.service_account, names.namespace, labels=PART_OF_LABEL
    )
    manifests["volume"] = wl.model_volume(
        name=names.volume,
        volume_handle=names.volume_handle,
        bucket_name=wired["model_bucket_name"],
        region=region,
        claim_name=names.claim,
        claim_namespace=names.namespace,
        prefix=args.model_prefix,
        cache_size_limit=args.model_cache_size,
    )
    manifests["claim"] = wl.model_claim(
        name=names.claim, namespace=names.namespace, volume_name=names.volume
    )
    manifests["deployment"] = deployment
    manifests.update(_isolation_manifests(names, deployment["spec"]["selector"]["matchLabels"]))
    manifests["trigger_authentication"] = kb.trigger_authentication(
        names.trigger_authentication, names.namespace
    )
    manifests["scaled_object"] = kb.scaled_object(
        name=names.scaled_object,
        namespace=names.namespace,
        deployment_name=names.deployment,
        queue_url=wired["queue_url"],
        region=region,
        trigger_authentication_name=names.trigger_authentication,
        min_replicas=args.min_replicas,
        max_replicas=args.max_replicas,
        queue_length=args.queue_length,
        activation_queue_length=args.activation_queue_length,
        polling_interval=args.polling_interval,
        cooldown_period=args.cooldown_period,
        scale_down_pods_per_period=args.scale_down_pods,
        scale_down_period_seconds=args.scale_down_period_seconds,
    )
    return manifests


def _isolation_manifests(
    names: RuntimeNames, pod_selector: Mapping[str, str]
) -> dict[str, dict[str, Any]]:
    """The runtime's NetworkPolicy (selecting the Deployment's pods) and the agent's
    pod-deletion-cost Role and binding."""
    ns = names.namespace
    return {
        "network_policy": iso.runtime_network_policy(
            name=names.network_policy, namespace=ns, pod_labels=pod_selector
        ),
        "role": iso.deletion_cost_role(name=names.deletion_cost_role, namespace=ns),
        "role_binding": iso.role_binding(
            name=names.deletion_cost_role,
            namespace=ns,
            role_name=names.deletion_cost_role,
            service_accounts=[names.service_account],
        ),
    }


def build_pod_policy(args: SdRuntimeArgs, wired: Mapping[str, str]) -> dict[str, Any]:
    return iamp.runtime_pod_policy(
        queue_arn=wired["queue_arn"],
        output_bucket_arn=wired["output_bucket_arn"],
        output_topic_arn=wired["output_topic_arn"],
        input_s3_buckets=list(args.input_s3_buckets),
        kms_key_arns=list(args.kms_key_arns),
    )
