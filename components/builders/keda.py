"""Pure builders for KEDA: the TriggerAuthentication, a runtime's ScaledObject on its SQS queue,
and the KEDA chart values.

Identity: ``podIdentity.provider: aws`` with nothing else makes the KEDA operator use its own
AWS credentials, which come from the EKS Pod Identity association on ``keda/keda-operator``.
``identityOwner: workload`` would need the IRSA annotation and does not work with Pod Identity.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sdfleet.components.builders.errors import fail

API_VERSION = "keda.sh/v1alpha1"
OPERATOR_SERVICE_ACCOUNT = "keda-operator"
NAMESPACE = "keda"

# Target messages per replica. Each pod processes one task at a time (plus one prefetched), so
# a target of 2 starts a second pod as soon as a pod has more than one task waiting: queues
# drain fast without a pod per message, which would cost a GPU node start per task.
DEFAULT_QUEUE_LENGTH = 2
DEFAULT_POLLING_INTERVAL = 10
DEFAULT_COOLDOWN_PERIOD = 300


def _int(field: str, value: Any, low: int, high: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise fail(field, value, f"an integer >= {low}" + (f" and <= {high}" if high else ""))
    if high is not None and value > high:
        raise fail(field, value, f"an integer from {low} to {high}")
    return value


def trigger_authentication(name: str, namespace: str) -> dict[str, Any]:
    """A TriggerAuthentication that uses the KEDA operator's own (Pod Identity) credentials."""
    return {
        "apiVersion": API_VERSION,
        "kind": "TriggerAuthentication",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"podIdentity": {"provider": "aws"}},
    }


def sqs_trigger_metadata(
    *, queue_url: str, region: str, queue_length: int, activation_queue_length: int
) -> dict[str, str]:
    """Trigger metadata. Every value is a string: the CRD declares a string map."""
    if not isinstance(queue_url, str) or not queue_url.startswith("https://"):
        raise fail("queueURL", queue_url, "the full https:// SQS queue URL")
    if not isinstance(region, str) or not region:
        raise fail("awsRegion", region, "an AWS region such as 'us-west-2'")
    return {
        "queueURL": queue_url,
        "queueLength": str(_int("queueLength", queue_length, 1)),
        "activationQueueLength": str(_int("activationQueueLength", activation_queue_length, 0)),
        # Count messages being processed too, so busy pods are not scaled away mid-task.
        "scaleOnInFlight": "true",
        "awsRegion": region,
    }


def _behavior(
    pods_per_period: int, period_seconds: int, stabilization_seconds: int
) -> dict[str, Any]:
    scale_down = {
        "stabilizationWindowSeconds": stabilization_seconds,
        "selectPolicy": "Max",
        "policies": [{"type": "Pods", "value": pods_per_period, "periodSeconds": period_seconds}],
    }
    return {"scaleDown": scale_down}


def scaled_object(
    *,
    name: str,
    namespace: str,
    deployment_name: str,
    queue_url: str,
    region: str,
    trigger_authentication_name: str,
    max_replicas: int,
    queue_length: int = DEFAULT_QUEUE_LENGTH,
    activation_queue_length: int = 0,
    min_replicas: int = 0,
    polling_interval: int = DEFAULT_POLLING_INTERVAL,
    cooldown_period: int = DEFAULT_COOLDOWN_PERIOD,
    scale_down_pods_per_period: int = 1,
    scale_down_period_seconds: int = 60,
    scale_down_stabilization_seconds: int = 300,
) -> dict[str, Any]:
    """A ScaledObject that scales the runtime's Deployment on its SQS queue (0..max).

    Scale-down removes at most ``scale_down_pods_per_period`` pods per
    ``scale_down_period_seconds``, so a draining queue does not kill many GPU pods at once.
    """
    max_replicas = _int("maxReplicas", max_replicas, 1, 1000)
    min_replicas = _int("minReplicas", min_replicas, 0)
    if min_replicas > max_replicas:
        raise fail("minReplicas", min_replicas, f"at most maxReplicas ({max_replicas})")
    trigger = {
        "type": "aws-sqs-queue",
        "name": "sqs",
        "authenticationRef": {"name": trigger_authentication_name, "kind": "TriggerAuthentication"},
        "metadata": sqs_trigger_metadata(
            queue_url=queue_url,
            region=region,
            queue_length=queue_length,
            activation_queue_length=activation_queue_length,
        ),
    }
    behavior = _behavior(
        _int("scaleDownPodsPerPeriod", scale_down_pods_per_period, 1),
        _int("scaleDownPeriodSeconds", scale_down_period_seconds, 1, 1800),
        _int("scaleDownStabilizationSeconds", scale_down_stabilization_seconds, 0, 3600),
    )
    spec: dict[str, Any] = {
        "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": deployment_name},
        "pollingInterval": _int("pollingInterval", polling_interval, 1),
        "cooldownPeriod": _int("cooldownPeriod", cooldown_period, 0),
        "minReplicaCount": min_replicas,
        "maxReplicaCount": max_replicas,
        "advanced": {"horizontalPodAutoscalerConfig": {"behavior": behavior}},
        "triggers": [trigger],
    }
    return {
        "apiVersion": API_VERSION,
        "kind": "ScaledObject",
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec,
    }


def keda_values(
    *,
    region: str,
    node_selector: Mapping[str, str] | None = None,
    tolerations: Sequence[Mapping[str, Any]] | None = None,
) -> dict[str, Any]:
    """Values for the KEDA chart.

    The operator's service account name is fixed (``keda-operator``) so the Pod Identity
    association matches; EKS Pod Identity itself needs no chart values (the chart's
    ``podIdentity.aws.irsa`` values are IRSA-only and stay off). ``AWS_REGION`` is set for the
    operator so the SDK does not look for the region in IMDS.
    """
    if not isinstance(region, str) or not region:
        raise fail("region", region, "an AWS region such as 'us-west-2'")
    values: dict[str, Any] = {
        "serviceAccount": {"operator": {"create": True, "name": OPERATOR_SERVICE_ACCOUNT}},
        "env": [{"name": "AWS_REGION", "value": region}],
    }
    if node_selector:
        values["nodeSelector"] = dict(node_selector)
    if tolerations:
        values["tolerations"] = [dict(t) for t in tolerations]
    return values
