"""Karpenter's interruption queue: its resource policy and the EventBridge rules feeding it,
as in Karpenter's getting-started template."""

from __future__ import annotations

from typing import Any

from sdfleet.components.builders.iam.documents import checked_arn, policy, statement

INTERRUPTION_TARGET_ID = "KarpenterInterruptionQueueTarget"
# Rule name -> EventBridge pattern, as in the template.
INTERRUPTION_EVENT_PATTERNS: dict[str, dict[str, list[str]]] = {
    "ScheduledChangeRule": {"source": ["aws.health"], "detail-type": ["AWS Health Event"]},
    "SpotInterruptionRule": {
        "source": ["aws.ec2"],
        "detail-type": ["EC2 Spot Instance Interruption Warning"],
    },
    "RebalanceRule": {
        "source": ["aws.ec2"],
        "detail-type": ["EC2 Instance Rebalance Recommendation"],
    },
    "InstanceStateChangeRule": {
        "source": ["aws.ec2"],
        "detail-type": ["EC2 Instance State-change Notification"],
    },
    "CapacityReservationInterruptionRule": {
        "source": ["aws.ec2"],
        "detail-type": ["EC2 Capacity Reservation Instance Interruption Warning"],
    },
}
# The template keeps interruption messages 5 minutes: older ones are useless to Karpenter.
INTERRUPTION_QUEUE_RETENTION_SECONDS = 300


def interruption_queue_policy(queue_arn: str) -> dict[str, Any]:
    """Only EventBridge (and SQS itself) may send; any non-TLS access is denied."""
    checked_arn("queue_arn", queue_arn, "sqs")
    return policy(
        statement(
            "sqs:SendMessage",
            queue_arn,
            sid="AllowInterruptionEvents",
            principal={"Service": ["events.amazonaws.com", "sqs.amazonaws.com"]},
        ),
        statement(
            "sqs:*",
            queue_arn,
            sid="DenyHTTP",
            effect="Deny",
            principal="*",
            condition={"Bool": {"aws:SecureTransport": "false"}},
        ),
        policy_id="EC2InterruptionPolicy",
    )


def interruption_event_patterns() -> dict[str, dict[str, list[str]]]:
    """A fresh copy of :data:`INTERRUPTION_EVENT_PATTERNS` (rule name -> pattern)."""
    return {
        name: {k: list(v) for k, v in p.items()} for name, p in INTERRUPTION_EVENT_PATTERNS.items()
    }
