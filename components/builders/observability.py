"""Pure builders for alarms, the dashboard and the alarm topic's key policy."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from sdfleet.components.builders.iam.documents import policy, statement

# The agent writes these as CloudWatch Embedded Metric Format log lines.
AGENT_METRIC_NAMESPACE = "sdfleet/agent"
OLDEST_MESSAGE_ALARM_SECONDS = 900
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


@dataclass(frozen=True)
class AlarmSpec:
    name: str
    description: str
    namespace: str
    metric: str
    # dimension name -> role ("queue", "dlq", "unrouted", "function", "api", "stage"): the
    # component fills in the resource names, which are only known at deploy time.
    dimensions: dict[str, str]
    statistic: str
    threshold: float
    comparison: str = "GreaterThanThreshold"
    period: int = 60
    evaluation_periods: int = 1


def queue_alarms(runtime: str) -> list[AlarmSpec]:
    return [
        AlarmSpec(
            name=f"{runtime}-dlq-not-empty",
            description=f"Tasks of runtime {runtime} failed repeatedly and wait in "
            "its dead-letter queue; inspect and redrive them.",
            namespace="AWS/SQS",
            metric="ApproximateNumberOfMessagesVisible",
            dimensions={"QueueName": "dlq"},
            statistic="Maximum",
            threshold=0,
        ),
        AlarmSpec(
            name=f"{runtime}-queue-stalled",
            description=f"The oldest task of runtime {runtime} has waited over "
            f"{OLDEST_MESSAGE_ALARM_SECONDS // 60} minutes: no capacity or a stuck agent.",
            namespace="AWS/SQS",
            metric="ApproximateAgeOfOldestMessage",
            dimensions={"QueueName": "queue"},
            statistic="Maximum",
            threshold=OLDEST_MESSAGE_ALARM_SECONDS,
            period=300,
        ),
    ]


def platform_alarms() -> list[AlarmSpec]:
    return [
        AlarmSpec(
            name="unrouted-tasks",
            description="Tasks were published for a runtime that does not exist; they are kept "
            "in the unrouted queue.",
            namespace="AWS/SQS",
            metric="ApproximateNumberOfMessagesVisible",
            dimensions={"QueueName": "unrouted"},
            statistic="Maximum",
            threshold=0,
        ),
        AlarmSpec(
            name="task-api-errors",
            description="The task Lambda raised errors (bad input never does).",
            namespace="AWS/Lambda",
            metric="Errors",
            dimensions={"FunctionName": "function"},
            statistic="Sum",
            threshold=0,
        ),
        AlarmSpec(
            name="task-api-5xx",
            description="The task API answered 5xx.",
            namespace="AWS/ApiGateway",
            metric="5XXError",
            dimensions={"ApiName": "api", "Stage": "stage"},
            statistic="Sum",
            threshold=0,
        ),
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


def dashboard_body(*, region: str, runtimes: dict[str, tuple[str, str]], function_name: str) -> str:
    """``runtimes`` maps runtime name -> (queue name, DLQ name)."""
    widgets: list[dict[str, Any]] = []

    def metric_widget(title: str, metrics: list[list[Any]], x: int, y: int) -> dict[str, Any]:
        return {
            "type": "metric",
            "x": x,
            "y": y,
            "width": 12,
            "height": 6,
            "properties": {
                "title": title,
                "region": region,
                "metrics": metrics,
                "stat": "Sum",
                "period": 60,
                "view": "timeSeries",
            },
        }

    queue_metrics: list[list[Any]] = []
    dlq_metrics: list[list[Any]] = []
    agent_metrics: list[list[Any]] = []
    for runtime, (queue, dlq) in runtimes.items():
        queue_metrics.append(
            [
                "AWS/SQS",
                "ApproximateNumberOfMessagesVisible",
                "QueueName",
                queue,
                {"label": f"{runtime} waiting", "stat": "Maximum"},
            ]
        )
        queue_metrics.append(
            [
                "AWS/SQS",
                "ApproximateNumberOfMessagesNotVisible",
                "QueueName",
                queue,
                {"label": f"{runtime} running", "stat": "Maximum"},
            ]
        )
        dlq_metrics.append(
            [
                "AWS/SQS",
                "ApproximateNumberOfMessagesVisible",
                "QueueName",
                dlq,
                {"label": f"{runtime} DLQ", "stat": "Maximum"},
            ]
        )
        agent_metrics.append([AGENT_METRIC_NAMESPACE, "TasksCompleted", "Runtime", runtime])
        agent_metrics.append([AGENT_METRIC_NAMESPACE, "TasksFailed", "Runtime", runtime])
    widgets.append(metric_widget("Queue depth", queue_metrics, 0, 0))
    widgets.append(metric_widget("Dead-letter queues", dlq_metrics, 12, 0))
    widgets.append(metric_widget("Tasks", agent_metrics, 0, 6))
    widgets.append(
        metric_widget(
            "Task API",
            [
                ["AWS/Lambda", "Invocations", "FunctionName", function_name],
                ["AWS/Lambda", "Errors", "FunctionName", function_name],
            ],
            12,
            6,
        )
    )
    return json.dumps({"widgets": widgets})
