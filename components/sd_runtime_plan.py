"""SdRuntime's inputs: the args dataclass (read by Pulumi's schema analyzer: each field's
docstring is its schema description, an optional field is typed ``X | None``) and how the
stack config fills it. Defaults are not declared here: a field left as None takes the stack
config model's default (see :mod:`sdfleet.components.builders.runtime_plan`), so the Args and
the config cannot drift. The manifests are built in
:mod:`sdfleet.components.builders.runtime_manifests`.
"""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pulumi

from sdfleet.agent.contract import Limits
from sdfleet.components.builders.enums import ImagePullPolicy, RuntimeType
from sdfleet.components.builders.errors import fail
from sdfleet.components.builders.runtime_plan import TELEMETRY_PLACEHOLDERS
from sdfleet.components.config import RuntimeConfig


@dataclass
class SdRuntimeArgs:
    """Inputs of one SdRuntime. The queue, topic, buckets and cluster come in as IDs, ARNs and
    URLs (Outputs or plain strings), so the runtime also deploys into a cluster this stack does
    not manage. Every optional field left unset (or None) takes the documented default."""

    runtime_name: str
    """The runtime's name (a DNS label): the Deployment, ScaledObject and the prefix of every
    other object's name; the agent reports it in results."""
    runtime_type: RuntimeType
    """Which inference server runs: ``sdwebui`` or ``comfyui``."""
    namespace: str
    """Kubernetes namespace for the runtime's objects (a DNS label)."""
    cluster_name: pulumi.Input[str]
    """EKS cluster name, for the Pod Identity association."""
    region: pulumi.Input[str]
    """AWS region of the queue, topic and buckets (e.g. ``us-east-1``)."""
    queue_url: pulumi.Input[str]
    """URL of the runtime's SQS task queue (the agent reads it; KEDA scales on its length)."""
    queue_arn: pulumi.Input[str]
    """ARN of the same queue, for the pods' IAM policy."""
    output_topic_arn: pulumi.Input[str]
    """ARN of the SNS topic the agent publishes task results to."""
    output_bucket_name: pulumi.Input[str]
    """S3 bucket the agent writes generated images to."""
    output_bucket_arn: pulumi.Input[str]
    """ARN of the same bucket, for the pods' IAM policy."""
    model_bucket_name: pulumi.Input[str]
    """S3 bucket holding the models; mounted read-only into the server (Mountpoint CSI)."""
    agent_image: pulumi.Input[str]
    """The queue agent's image, pinned by digest (``AgentImage.ref``)."""
    scheduling: Mapping[str, Any]
    """Pod spec fields (camelCase: tolerations, nodeSelector, affinity,
    topologySpreadConstraints) that land the pods on the runtime's GPU nodes: pass
    ``GpuNodePool.scheduling``; ``{}`` for no constraints."""
    server_image: pulumi.Input[str] | None = None
    """Inference server image pinned by tag or digest (``ContainerImage.ref`` for one built
    from ``runtimes/<type>/``); unset: the documented default image for the runtime type
    (``sdfleet.components.versions``)."""
    server_args: Sequence[str] | None = None
    """The server's arguments; unset: the ones that make the default image serve its HTTP API
    on port 8080 (``workload.DEFAULT_SERVER_ARGS``)."""
    server_command: Sequence[str] | None = None
    """Replaces the image's entrypoint (non-empty strings); unset: the image's entrypoint. Set
    it for images whose entrypoint does not take the server's flags (e.g. a supervisor)."""
    server_env: Mapping[str, str] | None = None
    """Extra server environment variables; never ``AWS_*`` (the server gets no AWS access)."""
    server_extra_args: Sequence[str] | None = None
    """Appended to the server's arguments (the defaults or ``server_args``)."""
    agent_extra_env: Mapping[str, str] | None = None
    """Other agent settings (``agent/settings.py``), never ones sdfleet sets nor ``AWS_*``."""
    pod_labels: Mapping[str, str] | None = None
    """Extra pod labels (never keys sdfleet sets)."""
    pod_annotations: Mapping[str, str] | None = None
    """Extra pod annotations (never keys sdfleet sets)."""
    image_pull_policy: ImagePullPolicy | None = None
    """The server container's ``Always``, ``IfNotPresent`` or ``Never``; unset: Kubernetes'
    default for the image reference."""
    input_s3_buckets: Sequence[str] | None = None
    """``bucket`` or ``bucket/prefix`` locations ``s3://`` task inputs may name; the pods' role
    may read exactly these. Unset: none."""
    task_limits: Limits | None = None
    """What one task may ask (steps, pixels, images, inputs); the agent enforces it too. Unset:
    the task contract's defaults."""
    model_path: str | None = None
    """Absolute path where the server looks for models (the bucket is mounted there); unset:
    the runtime type's default (``workload.DEFAULT_MODEL_PATHS``)."""
    model_prefix: str | None = None
    """Key prefix in the model bucket to mount (e.g. ``sd15/``); unset: the whole bucket."""
    model_filename: str | None = None
    """Checkpoint file the server loads at start (the agent selects it); unset: the server's
    own choice."""
    dynamic_model: bool | None = None
    """True: a task may name another checkpoint and the agent switches to it. Unset: false."""
    model_cache_size: str | None = None
    """Size limit (Kubernetes quantity) of Mountpoint's local cache of model files (an emptyDir
    on the node); ``"0"`` turns the cache off. Unset: ``20Gi``."""
    job_timeout_seconds: int | None = None
    """Seconds one task may run before the agent gives up on it. Unset: 600."""
    drain_seconds: int | None = None
    """Seconds the agent keeps finishing its task after SIGTERM. Unset: 90."""
    termination_grace_period_seconds: int | None = None
    """The pods' grace period in seconds, at least ``drain_seconds`` + 10. Unset: drain + 30,
    capped at the 2-minute spot notice."""
    startup_failure_threshold: int | None = None
    """Startup probe failures (one per 10 s) before the server is restarted; the budget for
    loading its model. Unset: 90 (15 minutes)."""
    cpu: str | None = None
    """The server container's CPU request (a Kubernetes quantity such as ``6`` or
    ``3500m``). Unset: 4."""
    memory: str | None = None
    """The server container's memory request and limit (a Kubernetes quantity such as
    ``30Gi``). Unset: 24Gi."""
    min_replicas: int | None = None
    """Pods KEDA keeps running when the queue is empty (a warm pool). Unset: 0."""
    max_replicas: int | None = None
    """Most pods KEDA runs. Unset: 4."""
    queue_length: int | None = None
    """Target messages (visible + in flight) per pod. Unset: 2."""
    activation_queue_length: int | None = None
    """Messages above which KEDA scales from zero. Unset: 0."""
    polling_interval: int | None = None
    """Seconds between KEDA's checks of the queue. Unset: 15."""
    cooldown_period: int | None = None
    """Seconds after the last message before KEDA scales to zero. Unset: 300."""
    scale_down_pods: int | None = None
    """Most pods removed per scale-down period. Unset: 1."""
    scale_down_period_seconds: int | None = None
    """The scale-down period in seconds. Unset: 60."""
    kms_key_arns: Sequence[str] | None = None
    """Customer-managed KMS keys of the queue, bucket or topic the pods must use. Unset:
    none (AWS managed keys)."""
    create_namespace: bool | None = None
    """False: the namespace exists already (bring your own cluster). Unset: true."""
    task_table_name: pulumi.Input[str] | None = None
    """The task state table (``ApiIngress.task_table_name``): the agent records there each
    task's state (running, completed, failed). Unset: no task state, the agent runs as before.
    Set it together with ``task_table_arn``."""
    task_table_arn: pulumi.Input[str] | None = None
    """The same table's ARN, for the pods' IAM policy (UpdateItem and GetItem on it only)."""
    task_ttl_seconds: int | None = None
    """Seconds a task record lives after its last write (the API's TTL). Unset: 7 days."""
    otlp_traces_endpoint: pulumi.Input[str] | None = None
    """The trace collector's OTLP/HTTP traces URL (``TraceCollector``'s endpoint, e.g.
    ``http://otel-collector.sdfleet-telemetry.svc.cluster.local:4318/v1/traces``): the agent
    sends its task spans there. Unset: tracing off."""
    telemetry_namespace: str | None = None
    """The trace collector's namespace: with ``otlp_traces_endpoint`` set, the pods'
    NetworkPolicy allows egress to it on TCP 4318. Unset: no such rule."""
    metrics_log_retention_days: int | None = None
    """Days the agents' metrics log group (``/sdfleet/<project>-<stack>/<runtime>/agent-metrics``)
    keeps its events, a CloudWatch retention value; pass the stack's
    ``observability.logRetentionDays``. Unset: 30."""


# The task table's optional wiring, and what stands in for Outputs in the eager checks.
TASK_TABLE_PLACEHOLDERS: dict[str, str] = {
    "task_table_name": "placeholder-tasks",
    "task_table_arn": "arn:aws:dynamodb:us-east-1:000000000000:table/placeholder-tasks",
}


def task_table_wiring(args: SdRuntimeArgs) -> dict[str, Any]:
    """The task table's name and ARN (Inputs) when the args set them: both or neither (the
    agent would write to a table its role may not touch, or hold a grant it never uses)."""
    given = {key: getattr(args, key) for key in TASK_TABLE_PLACEHOLDERS}
    given = {key: value for key, value in given.items() if value is not None}
    if len(given) == 1:
        [(key, value)] = given.items()
        other = next(k for k in TASK_TABLE_PLACEHOLDERS if k != key)
        raise fail(key, value, f"set together with {other} (both, or neither for no task state)")
    return given


def known_task_table(args: SdRuntimeArgs) -> dict[str, str]:
    """The task table's plain values where given, placeholders for Outputs (see
    ``runtime_plan.known_values``)."""
    return {
        key: value if isinstance(value, str) else TASK_TABLE_PLACEHOLDERS[key]
        for key, value in task_table_wiring(args).items()
    }


def telemetry_wiring(args: SdRuntimeArgs) -> dict[str, Any]:
    """The trace collector's URL (an Input) when tracing is on."""
    endpoint = args.otlp_traces_endpoint
    return {} if endpoint is None else {"otlp_traces_endpoint": endpoint}


def known_telemetry(args: SdRuntimeArgs, metrics_log_group_name: str) -> dict[str, str]:
    """The telemetry wiring's plain values where given, placeholders for Outputs (the metrics
    log group's ARN is an Output until the group exists)."""
    endpoint = args.otlp_traces_endpoint
    known = {
        "metrics_log_group_name": metrics_log_group_name,
        "metrics_log_group_arn": TELEMETRY_PLACEHOLDERS["metrics_log_group_arn"],
    }
    if endpoint is not None:
        known["otlp_traces_endpoint"] = (
            endpoint
            if isinstance(endpoint, str)
            else TELEMETRY_PLACEHOLDERS["otlp_traces_endpoint"]
        )
    return known


def runtime_args(runtime: RuntimeConfig, **wiring: Any) -> SdRuntimeArgs:
    """SdRuntimeArgs from a validated runtime config; ``wiring`` gives the rest (cluster
    name, region, queue, topic, buckets, agent image, scheduling; the trace collector's URL and
    namespace and the stack's log retention for telemetry); the Kubernetes provider and
    ``depends_on`` go in the component's ResourceOptions."""
    scaling = runtime.scaling
    return SdRuntimeArgs(
        runtime_name=runtime.name,
        runtime_type=RuntimeType(runtime.type),
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
        image_pull_policy=(
            None
            if runtime.image_pull_policy is None
            else ImagePullPolicy(runtime.image_pull_policy)
        ),
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
