"""The alarm topic's key policy. Alarms, dashboard, saved queries and the metric catalogue are
in builders/alarms.py, dashboard.py, log_queries.py and metric_catalog.py."""

from __future__ import annotations

from typing import Any

from sdfleet.components.builders.iam.documents import policy, statement

KEY_ADMIN_ACTIONS = [
    "kms:Create*",
    "kms:Describe*",
    "kms:Enable*",
    "kms:List*",
    "kms:Put*",
    "kms:Update*",
    "kms:Revoke*",
    "kms:Disable*",
    "kms:Get*",
    "kms:Delete*",
    "kms:TagResource",
    "kms:UntagResource",
    "kms:ScheduleKeyDeletion",
    "kms:CancelKeyDeletion",
]


def alarm_topic_key_policy(account_id: str, partition: str = "aws") -> dict[str, Any]:
    """CloudWatch cannot publish to a topic under the AWS-managed SNS key, so the alarm
    topic has its own key that CloudWatch may use."""
    return policy(
        statement(
            # The console's key-administrator set, without use of the key by others.
            KEY_ADMIN_ACTIONS,
            "*",
            sid="AccountAdmin",
            principal={"AWS": f"arn:{partition}:iam::{account_id}:root"},
        ),
        statement(
            ["kms:Decrypt", "kms:GenerateDataKey*"],
            "*",
            sid="CloudWatchAlarms",
            principal={"Service": "cloudwatch.amazonaws.com"},
            condition={"StringEquals": {"aws:SourceAccount": account_id}},
        ),
    )
