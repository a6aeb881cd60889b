"""SdRuntime: one inference runtime on the GPU plane.

A namespace and service account whose pods get a least-privilege AWS role through EKS Pod
Identity; the model bucket mounted read-only through the Mountpoint S3 CSI driver (a static
PersistentVolume per runtime and its claim); a Deployment whose pods run the inference server
as a native sidecar and the queue agent as the main container; and a KEDA ScaledObject that
scales the Deployment between 0 and ``max_replicas`` on the runtime's SQS queue.

Everything it needs comes in as IDs, ARNs, URLs and a Kubernetes provider, so it works against a
cluster this stack does not manage ("bring your own cluster").
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pulumi
import pulumi_aws as aws
import pulumi_kubernetes as k8s

from agent.contract import Limits
from components import versions
from components._iam import pod_identity_role
from components.builders import iam_platform as iamp
from components.builders import isolation as iso
from components.builders import keda as kb
from components.builders import workload as wl
from components.config import RuntimeConfig

PART_OF_LABEL = {"app.kubernetes.io/part-of": "sdfleet"}
# Pulumi would otherwise wait for the first pod to be ready: a GPU node, a multi-GB image and
# the model load can take longer than its timeout, and KEDA scales the pod away anyway.
SKIP_AWAIT = {"pulumi.com/skipAwait": "true"}
DEFAULT_MODEL_CACHE_SIZE = "20Gi"

# Values the builders check eagerly when the real ones are not known yet (Outputs).
_PLACEHOLDERS: dict[str, str] = {
    "region": "us-east-1",
    "queue_url": "https://sqs.us-east-1.amazonaws.com/000000000000/placeholder",
    "queue_arn": "arn:aws:sqs:us-east-1:000000000000:placeholder",
    "output_topic_arn": "arn:aws:sns:us-east-1:000000000000:placeholder",
    "output_bucket_name": "placeholder-outputs",
    "output_bucket_arn": "arn:aws:s3:::placeholder-outputs",
    "model_bucket_name": "placeholder-models",
    "agent_image": f"placeholder.invalid/agent@sha256:{'0' * 64}",
}
_WIRED = tuple(_PLACEHOLDERS)


@dataclass
class SdRuntimeArgs:
    runtime_name: str
    runtime_type: str
    namespace: str
    k8s_provider: pulumi.ProviderResource
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
    # None: the documented default per type (components.versions).
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
    # Unused, accepted for older callers: the pods get no model bucket access (models come
    # through the Mountpoint driver's own role).
    model_bucket_arn: pulumi.Input[str] | None = None
    # Only when the queue/bucket/topic use customer-managed KMS keys.
    kms_key_arns: Sequence[str] = ()
    # False: the namespace exists already (bring your own cluster).
    create_namespace: bool = True
    # CRDs and controllers that must exist first: the KEDA release, the Mountpoint addon, the
    # Pod Identity agent addon (and Karpenter's NodePools for the pods to land anywhere).
    depends_on: list[pulumi.Resource] = field(default_factory=list)


def runtime_args(runtime: RuntimeConfig, **wiring: Any) -> SdRuntimeArgs:
    """SdRuntimeArgs from a validated runtime config; ``wiring`` gives the rest (provider,
    cluster name, region, queue, topic, buckets, agent image, scheduling, depends_on)."""
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
    def of(cls, runtime_name: str, namespace: str) -> RuntimeNames:
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
    (keys of ``_PLACEHOLDERS``). Raises ValueError naming the field for bad input."""
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


def _known(args: SdRuntimeArgs) -> dict[str, str]:
    """Plain values where given, placeholders for Outputs: checks the config before any
    resource is registered, so a bad value fails the program with a clear message."""
    return {
        key: value if isinstance(value := getattr(args, key), str) else _PLACEHOLDERS[key]
        for key in _WIRED
    }


def _part(manifests: pulumi.Output[dict[str, dict[str, Any]]], kind: str, key: str) -> Any:
    """One field of one manifest as a resource input (``Any``: the manifest dicts are
    camelCase, as the provider sends them)."""
    return manifests.apply(lambda m: m[kind][key])


def _named(resource: pulumi.CustomResource, value: str) -> pulumi.Output[str]:
    """A name we chose, as an Output that depends on the resource carrying it."""
    return resource.urn.apply(lambda _: value)


class SdRuntime(pulumi.ComponentResource):
    names: RuntimeNames
    namespace: pulumi.Output[str]
    service_account: pulumi.Output[str]
    role_arn: pulumi.Output[str]
    deployment_name: pulumi.Output[str]
    scaled_object_name: pulumi.Output[str]
    # The plain manifests applied, in apply order (for synth and validation).
    manifests: pulumi.Output[list[dict[str, Any]]]

    def __init__(
        self, name: str, args: SdRuntimeArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("sdfleet:index:SdRuntime", name, None, opts)
        plain = build_manifests(args, _known(args))
        build_pod_policy(args, _known(args))
        self.names = names = RuntimeNames.of(args.runtime_name, args.namespace)

        wired = pulumi.Output.all(**{key: getattr(args, key) for key in _WIRED})
        manifests = wired.apply(lambda w: build_manifests(args, w))

        role, role_policy, association = self._identity(name, args, wired)

        def k8s_opts(*extra: pulumi.Resource) -> pulumi.ResourceOptions:
            return pulumi.ResourceOptions(
                parent=self, provider=args.k8s_provider, depends_on=[*args.depends_on, *extra]
            )

        namespace_deps: list[pulumi.Resource] = []
        if args.create_namespace:
            ns = k8s.core.v1.Namespace(
                f"{name}-namespace", metadata=plain["namespace"]["metadata"], opts=k8s_opts()
            )
            namespace_deps.append(ns)
            self.namespace = _named(ns, names.namespace)
        else:
            self.namespace = pulumi.Output.from_input(names.namespace)

        sa = k8s.core.v1.ServiceAccount(
            f"{name}-sa",
            metadata=plain["service_account"]["metadata"],
            opts=k8s_opts(*namespace_deps),
        )
        pv = k8s.core.v1.PersistentVolume(
            f"{name}-models-pv",
            metadata=plain["volume"]["metadata"],
            spec=_part(manifests, "volume", "spec"),
            opts=k8s_opts(),
        )
        pvc = k8s.core.v1.PersistentVolumeClaim(
            f"{name}-models-pvc",
            metadata=plain["claim"]["metadata"],
            spec=plain["claim"]["spec"],
            opts=k8s_opts(pv, *namespace_deps),
        )
        fences = self._isolation(name, plain, k8s_opts(sa, *namespace_deps))
        # Pods get their AWS credentials at admission: the association (and its permissions)
        # must exist before the first pod is created; the fences too, so no pod runs without.
        deployment = k8s.apps.v1.Deployment(
            f"{name}-deployment",
            metadata=plain["deployment"]["metadata"],
            spec=_part(manifests, "deployment", "spec"),
            opts=k8s_opts(sa, pvc, association, role_policy, *fences, *namespace_deps),
        )
        trigger_auth = k8s.apiextensions.CustomResource(
            f"{name}-trigger-auth",
            api_version=kb.API_VERSION,
            kind="TriggerAuthentication",
            metadata=plain["trigger_authentication"]["metadata"],
            spec=plain["trigger_authentication"]["spec"],
            opts=k8s_opts(*namespace_deps),
        )
        scaled = k8s.apiextensions.CustomResource(
            f"{name}-scaled-object",
            api_version=kb.API_VERSION,
            kind="ScaledObject",
            metadata=plain["scaled_object"]["metadata"],
            spec=_part(manifests, "scaled_object", "spec"),
            opts=k8s_opts(deployment, trigger_auth),
        )

        self.service_account = _named(sa, names.service_account)
        self.role_arn = role.arn
        self.deployment_name = _named(deployment, names.deployment)
        self.scaled_object_name = _named(scaled, names.scaled_object)
        self.manifests = manifests.apply(lambda m: list(m.values()))
        self.register_outputs(
            {
                "namespace": self.namespace,
                "service_account": self.service_account,
                "role_arn": self.role_arn,
                "deployment_name": self.deployment_name,
                "scaled_object_name": self.scaled_object_name,
            }
        )

    def _isolation(
        self, name: str, plain: Mapping[str, dict[str, Any]], opts: pulumi.ResourceOptions
    ) -> list[pulumi.Resource]:
        """NetworkPolicy, and the Role and RoleBinding for the pod-deletion-cost annotation."""
        policy = k8s.networking.v1.NetworkPolicy(
            f"{name}-network-policy",
            metadata=plain["network_policy"]["metadata"],
            spec=plain["network_policy"]["spec"],
            opts=opts,
        )
        role = k8s.rbac.v1.Role(
            f"{name}-deletion-cost-role",
            metadata=plain["role"]["metadata"],
            rules=plain["role"]["rules"],
            opts=opts,
        )
        binding = k8s.rbac.v1.RoleBinding(
            f"{name}-deletion-cost-binding",
            metadata=plain["role_binding"]["metadata"],
            role_ref=plain["role_binding"]["roleRef"],
            subjects=plain["role_binding"]["subjects"],
            opts=pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(depends_on=[role])),
        )
        return [policy, role, binding]

    def _identity(
        self, name: str, args: SdRuntimeArgs, wired: pulumi.Output[dict[str, Any]]
    ) -> tuple[aws.iam.Role, aws.iam.RolePolicy, aws.eks.PodIdentityAssociation]:
        """The pods' role (trusting Pod Identity in this account only), its inline policy and
        the association with the runtime's service account."""
        role = pod_identity_role(
            f"{name}-role",
            self,
            description=f"sdfleet runtime {args.runtime_name}: queue agent pods (Pod Identity)",
        )
        role_policy = aws.iam.RolePolicy(
            f"{name}-policy",
            role=role.id,
            policy=wired.apply(lambda w: json.dumps(build_pod_policy(args, w))),
            opts=pulumi.ResourceOptions(parent=role),
        )
        association = aws.eks.PodIdentityAssociation(
            f"{name}-pod-identity",
            cluster_name=args.cluster_name,
            namespace=args.namespace,
            service_account=self.names.service_account,
            role_arn=role.arn,
            opts=pulumi.ResourceOptions(parent=self),
        )
        return role, role_policy, association
