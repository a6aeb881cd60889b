"""A runtime's plan from its Args, before any manifest: the Kubernetes object names, the
agent's metrics log group name, the placeholders that stand in for values not known yet
(Outputs), the defaults an Args field left as None takes (read from the stack config model, so
each default is declared once) and the pods' IAM policy. Pure: no Pulumi resources, testable
without mocks.
"""

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sdfleet.components.builders import iam
from sdfleet.components.builders.errors import fail
from sdfleet.components.config_checks import LOG_RETENTION_DAYS
from sdfleet.components.config_model import ObservabilityConfig, config_default
from sdfleet.components.config_runtime import ResourcesConfig, RuntimeConfig, ScalingConfig

if TYPE_CHECKING:  # the Args class imports this module
    from sdfleet.components.sd_runtime_plan import SdRuntimeArgs

PART_OF_LABEL = {"app.kubernetes.io/part-of": "sdfleet"}
# Pulumi would otherwise wait for the first pod to be ready: a GPU node, a multi-GB image and
# the model load can take longer than its timeout, and KEDA scales the pod away anyway.
SKIP_AWAIT = {"pulumi.com/skipAwait": "true"}
DEFAULT_MODEL_CACHE_SIZE = "20Gi"
# model_cache_size that turns Mountpoint's local cache off.
MODEL_CACHE_OFF = "0"

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
    "server_image": f"placeholder.invalid/server@sha256:{'0' * 64}",
}
# The Args fields that may be Outputs and go into the manifests or the policy.
WIRED = tuple(PLACEHOLDERS)
# Optional wiring: the trace collector's URL (an Args field) and the metrics log group the
# component creates (its ARN is known only after creation).
TELEMETRY_PLACEHOLDERS: dict[str, str] = {
    "otlp_traces_endpoint": "http://placeholder.invalid:4318/v1/traces",
    "metrics_log_group_arn": (
        "arn:aws:logs:us-east-1:000000000000:log-group:/sdfleet/placeholder/agent-metrics"
    ),
}
_LOG_GROUP_NAME = re.compile(r"[.\-_/#A-Za-z0-9]{1,512}")


def known_values(args: "SdRuntimeArgs") -> dict[str, str]:
    """The wired fields' plain values where given, placeholders for Outputs: lets the
    component check the config before it registers any resource, so a bad value fails the
    program with a clear message."""
    return {
        key: value if isinstance(value := getattr(args, key), str) else PLACEHOLDERS[key]
        for key in WIRED
    }


# Where a None field's default lives: the config model's field of the same meaning.
_CONFIG_DEFAULTS: dict[str, tuple[type, str]] = {
    "job_timeout_seconds": (RuntimeConfig, "job_timeout_seconds"),
    "drain_seconds": (RuntimeConfig, "drain_seconds"),
    "dynamic_model": (RuntimeConfig, "dynamic_model"),
    "cpu": (ResourcesConfig, "cpu"),
    "metrics_log_retention_days": (ObservabilityConfig, "log_retention_days"),
    "memory": (ResourcesConfig, "memory"),
    **{
        name: (ScalingConfig, name)
        for name in (
            "min_replicas",
            "max_replicas",
            "queue_length",
            "activation_queue_length",
            "polling_interval",
            "cooldown_period",
            "scale_down_pods",
            "scale_down_period_seconds",
        )
    },
}


def setting(args: Any, name: str) -> Any:
    """An Args field's value, or the config model's default for it when it is None."""
    value = getattr(args, name)
    if value is None:
        model, field_name = _CONFIG_DEFAULTS[name]
        return config_default(model, field_name)
    return value


def metrics_log_group_name(project: str, stack: str, runtime_name: str) -> str:
    """The log group a runtime's agents ship their EMF metrics to (one per runtime and stack)."""
    name = f"/sdfleet/{project}-{stack}/{runtime_name}/agent-metrics"
    if not _LOG_GROUP_NAME.fullmatch(name):
        raise fail(
            "metrics log group name",
            name,
            "1-512 of A-Z a-z 0-9 . - _ / # (from the project, stack and runtime names)",
        )
    return name


def metrics_log_retention_days(args: "SdRuntimeArgs") -> int:
    """The metrics log group's retention: the Args value, else the stack's log retention."""
    days = setting(args, "metrics_log_retention_days")
    if isinstance(days, bool) or days not in LOG_RETENTION_DAYS:
        raise fail(
            "metrics_log_retention_days",
            days,
            f"a CloudWatch retention, one of {', '.join(map(str, LOG_RETENTION_DAYS))}",
        )
    return int(days)


def model_cache_size(args: "SdRuntimeArgs") -> str | None:
    """Mountpoint's cache size limit, or None when ``MODEL_CACHE_OFF`` turns the cache off."""
    size = args.model_cache_size
    if size is None:
        return DEFAULT_MODEL_CACHE_SIZE
    return None if size == MODEL_CACHE_OFF else size


@dataclass(frozen=True)
class RuntimeNames:
    """Kubernetes object names of one runtime."""

    namespace: str
    """The runtime's namespace."""
    deployment: str
    """The Deployment (the runtime's name)."""
    service_account: str
    """The pods' ServiceAccount."""
    claim: str
    """The model PersistentVolumeClaim."""
    volume: str
    """The model PersistentVolume (cluster-scoped, so it carries a hash of namespace/name)."""
    volume_handle: str
    """The Mountpoint CSI volume handle (unique in the cluster)."""
    trigger_authentication: str
    """KEDA's TriggerAuthentication (the operator's Pod Identity)."""
    scaled_object: str
    """KEDA's ScaledObject (the runtime's name)."""
    network_policy: str
    """The NetworkPolicy isolating the pods."""
    deletion_cost_role: str
    """The Role and RoleBinding letting the agent set its pod's deletion cost."""
    node_reader: str
    """The ClusterRole and ClusterRoleBinding letting the agent read Node objects
    (cluster-scoped: namespace and runtime in the name, ':'-separated as neither has one)."""

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
            node_reader=f"sdfleet:{namespace}:{runtime_name}:node-reader",
        )


def pod_policy(args: "SdRuntimeArgs", wired: Mapping[str, str]) -> dict[str, Any]:
    """The runtime pods' inline IAM policy, from the args and the resolved ``wired`` values
    (with ``metrics_log_group_arn``: the agent writes its metrics log streams there)."""
    return iam.runtime_pod_policy(
        queue_arn=wired["queue_arn"],
        output_bucket_arn=wired["output_bucket_arn"],
        output_topic_arn=wired["output_topic_arn"],
        input_s3_buckets=list(args.input_s3_buckets or ()),
        kms_key_arns=list(args.kms_key_arns or ()),
        task_table_arn=wired.get("task_table_arn"),
        metrics_log_group_arn=wired.get("metrics_log_group_arn"),
    )
