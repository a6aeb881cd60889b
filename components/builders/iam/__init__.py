"""Pure builders of sdfleet's IAM documents: one package, one document helper.

- ``documents``: :func:`policy` and :func:`statement`, the only code that writes policy
  documents, and the checks of ARNs and account ids.
- ``trust``: who may assume the roles; the node roles' AWS managed policies.
- ``karpenter``: the Karpenter controller's policies; ``interruption``: its interruption queue.
- ``events``: the DLQ sweeper and webhook Lambdas, and the webhook queue's policy.
- ``workload``: the runtimes' pods, the Mountpoint driver, the KEDA operator, the task Lambda.
- ``telemetry``: the trace collector's pods, and SNS active tracing's X-Ray resource policy.

Callers import the package (``from sdfleet.components.builders import iam``) and use the
names below.
"""

from __future__ import annotations

from sdfleet.components.builders.iam.documents import (
    VERSION,
    check_account_id,
    checked_arn,
    policy,
    statement,
)
from sdfleet.components.builders.iam.events import (
    sweeper_lambda_policy,
    webhook_lambda_policy,
    webhook_queue_policy,
)
from sdfleet.components.builders.iam.interruption import (
    INTERRUPTION_EVENT_PATTERNS,
    INTERRUPTION_QUEUE_RETENTION_SECONDS,
    INTERRUPTION_TARGET_ID,
    interruption_event_patterns,
    interruption_queue_policy,
)
from sdfleet.components.builders.iam.karpenter import (
    DISCOVERY_STAR_ACTIONS,
    karpenter_controller_policies,
)
from sdfleet.components.builders.iam.telemetry import (
    SNS_TRACING_ACTIONS,
    sns_tracing_policy,
    trace_collector_policy,
)
from sdfleet.components.builders.iam.trust import (
    NODE_ROLE_MANAGED_POLICIES,
    ec2_trust_policy,
    node_role_managed_policy_arns,
    pod_identity_trust_policy,
    service_trust_policy,
)
from sdfleet.components.builders.iam.workload import (
    TRACING_STAR_ACTIONS,
    keda_operator_policy,
    model_read_statements,
    mountpoint_driver_policy,
    result_presign_statement,
    runtime_pod_policy,
    task_api_lambda_policy,
)

__all__ = [
    "DISCOVERY_STAR_ACTIONS",
    "INTERRUPTION_EVENT_PATTERNS",
    "INTERRUPTION_QUEUE_RETENTION_SECONDS",
    "INTERRUPTION_TARGET_ID",
    "NODE_ROLE_MANAGED_POLICIES",
    "SNS_TRACING_ACTIONS",
    "TRACING_STAR_ACTIONS",
    "VERSION",
    "check_account_id",
    "checked_arn",
    "ec2_trust_policy",
    "interruption_event_patterns",
    "interruption_queue_policy",
    "karpenter_controller_policies",
    "keda_operator_policy",
    "model_read_statements",
    "mountpoint_driver_policy",
    "node_role_managed_policy_arns",
    "pod_identity_trust_policy",
    "policy",
    "result_presign_statement",
    "runtime_pod_policy",
    "service_trust_policy",
    "sns_tracing_policy",
    "statement",
    "sweeper_lambda_policy",
    "task_api_lambda_policy",
    "trace_collector_policy",
    "webhook_lambda_policy",
    "webhook_queue_policy",
]
