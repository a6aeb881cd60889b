"""Every Kubernetes object of one runtime, final as applied: Namespace, ServiceAccount, the
model PersistentVolume and claim, the Deployment, its NetworkPolicy, the agent's RBAC (the
pod-deletion-cost Role, the node-reading ClusterRole) and KEDA's TriggerAuthentication and
ScaledObject. Pure: SdRuntime registers these dicts as
they are, so tests assert on exactly what a deploy applies.
"""

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from sdfleet.agent.contract import Limits
from sdfleet.components import versions
from sdfleet.components.builders import isolation as iso
from sdfleet.components.builders import keda as kb
from sdfleet.components.builders import workload as wl
from sdfleet.components.builders.runtime_plan import (
    PART_OF_LABEL,
    SKIP_AWAIT,
    RuntimeNames,
    model_cache_size,
    setting,
)

if TYPE_CHECKING:  # the Args class imports this module
    from sdfleet.components.sd_runtime_plan import SdRuntimeArgs


def _agent_env(args: "SdRuntimeArgs", wired: Mapping[str, str]) -> wl.AgentEnv:
    return wl.AgentEnv(
        sqs_queue_url=wired["queue_url"],
        sns_topic_arn=wired["output_topic_arn"],
        s3_bucket=wired["output_bucket_name"],
        runtime_type=str(args.runtime_type),
        runtime_name=args.runtime_name,
        aws_region=wired["region"],
        job_timeout_seconds=setting(args, "job_timeout_seconds"),
        drain_seconds=setting(args, "drain_seconds"),
        dynamic_sd_model=setting(args, "dynamic_model"),
        model_filename=args.model_filename,
        task_limits=(args.task_limits or Limits()).to_json(),
        input_s3_buckets=tuple(args.input_s3_buckets or ()),
        task_table_name=wired.get("task_table_name"),
        task_ttl_seconds=args.task_ttl_seconds,
        metrics_log_group=wired.get("metrics_log_group_name"),
        otlp_traces_endpoint=wired.get("otlp_traces_endpoint"),
        extra=dict(args.agent_extra_env or {}),
    )


def runtime_deployment(
    args: "SdRuntimeArgs", wired: Mapping[str, str], names: RuntimeNames
) -> dict[str, Any]:
    """The runtime's Deployment: the type's default server image and the pod contract's
    arguments (server_contract) unless the args set them, the extra arguments appended, the
    static checkpoint in the server's env, and Pulumi told not to await its pods."""
    runtime_type = str(args.runtime_type)
    server_args = (
        wl.DEFAULT_SERVER_ARGS.get(runtime_type, ())
        if args.server_args is None
        else args.server_args
    )
    # A dynamic-model runtime starts without a forced checkpoint; the agent switches per task.
    model_filename = None if setting(args, "dynamic_model") else args.model_filename
    return wl.runtime_deployment(
        name=names.deployment,
        namespace=names.namespace,
        runtime_name=args.runtime_name,
        runtime_type=runtime_type,
        agent_image=wired["agent_image"],
        # Given (a string or an Output, resolved in `wired`) or the type's default.
        server_image=(
            wired["server_image"]
            if args.server_image is not None
            else versions.default_server_image(runtime_type)
        ),
        agent_env=_agent_env(args, wired),
        service_account_name=names.service_account,
        model_claim_name=names.claim,
        scheduling=args.scheduling,
        server_resources=wl.Resources(cpu=setting(args, "cpu"), memory=setting(args, "memory")),
        server_args=(*server_args, *(args.server_extra_args or ())),
        server_command=args.server_command,
        server_env=args.server_env,
        model_mount_path=args.model_path,
        model_filename=model_filename,
        startup_failure_threshold=(
            wl.STARTUP_FAILURE_THRESHOLD
            if args.startup_failure_threshold is None
            else args.startup_failure_threshold
        ),
        termination_grace_period_seconds=args.termination_grace_period_seconds,
        labels=PART_OF_LABEL,
        annotations=SKIP_AWAIT,
        pod_labels=args.pod_labels,
        pod_annotations=args.pod_annotations,
        image_pull_policy=None if args.image_pull_policy is None else str(args.image_pull_policy),
    )


def scaled_object(
    args: "SdRuntimeArgs", wired: Mapping[str, str], names: RuntimeNames
) -> dict[str, Any]:
    """KEDA's ScaledObject: the Deployment between min and max replicas on the queue."""
    return kb.scaled_object(
        name=names.scaled_object,
        namespace=names.namespace,
        deployment_name=names.deployment,
        queue_url=wired["queue_url"],
        region=wired["region"],
        trigger_authentication_name=names.trigger_authentication,
        min_replicas=setting(args, "min_replicas"),
        max_replicas=setting(args, "max_replicas"),
        queue_length=setting(args, "queue_length"),
        activation_queue_length=setting(args, "activation_queue_length"),
        polling_interval=setting(args, "polling_interval"),
        cooldown_period=setting(args, "cooldown_period"),
        scale_down_pods_per_period=setting(args, "scale_down_pods"),
        scale_down_period_seconds=setting(args, "scale_down_period_seconds"),
    )


def isolation_manifests(
    names: RuntimeNames, pod_selector: Mapping[str, str], telemetry_namespace: str | None = None
) -> dict[str, dict[str, Any]]:
    """The runtime's NetworkPolicy (selecting the Deployment's pods; egress to the trace
    collector's ``telemetry_namespace`` when given), the agent's pod-deletion-cost Role and
    binding, and its node-reading ClusterRole and binding."""
    ns = names.namespace
    return {
        "network_policy": iso.runtime_network_policy(
            name=names.network_policy,
            namespace=ns,
            pod_labels=pod_selector,
            telemetry_namespace=telemetry_namespace,
        ),
        "role": iso.deletion_cost_role(name=names.deletion_cost_role, namespace=ns),
        "role_binding": iso.role_binding(
            name=names.deletion_cost_role,
            namespace=ns,
            role_name=names.deletion_cost_role,
            service_accounts=[names.service_account],
        ),
        "node_reader_role": iso.node_reader_cluster_role(name=names.node_reader),
        "node_reader_binding": iso.cluster_role_binding(
            name=names.node_reader,
            role_name=names.node_reader,
            namespace=ns,
            service_accounts=[names.service_account],
        ),
    }


def runtime_manifests(args: "SdRuntimeArgs", wired: Mapping[str, str]) -> dict[str, dict[str, Any]]:
    """Every Kubernetes object of the runtime, keyed by role, in apply order, from the args and
    the resolved ``wired`` values (keys of ``runtime_plan.PLACEHOLDERS``; optionally the task
    table's, ``otlp_traces_endpoint`` and ``metrics_log_group_name``). Raises ValueError
    naming the field for bad input."""
    names = RuntimeNames.of(args.runtime_name, args.namespace)
    deployment = runtime_deployment(args, wired, names)
    manifests: dict[str, dict[str, Any]] = {}
    if args.create_namespace is not False:
        manifests["namespace"] = wl.namespace(
            names.namespace, labels={**PART_OF_LABEL, **iso.RUNTIME_NAMESPACE_LABEL}
        )
    manifests["service_account"] = wl.service_account(
        names.service_account, names.namespace, labels=PART_OF_LABEL
    )
    manifests["volume"] = wl.model_volume(
        name=names.volume,
        volume_handle=names.volume_handle,
        bucket_name=wired["model_bucket_name"],
        region=wired["region"],
        claim_name=names.claim,
        claim_namespace=names.namespace,
        prefix=args.model_prefix,
        cache_size_limit=model_cache_size(args),
    )
    manifests["claim"] = wl.model_claim(
        name=names.claim, namespace=names.namespace, volume_name=names.volume
    )
    manifests["deployment"] = deployment
    # The collector's namespace matters only when the agent sends it spans.
    tracing = "otlp_traces_endpoint" in wired
    manifests.update(
        isolation_manifests(
            names,
            deployment["spec"]["selector"]["matchLabels"],
            args.telemetry_namespace if tracing else None,
        )
    )
    manifests["trigger_authentication"] = kb.trigger_authentication(
        names.trigger_authentication, names.namespace
    )
    manifests["scaled_object"] = scaled_object(args, wired, names)
    return manifests
