"""Least-privilege policies of the task-event Lambdas (``sdfleet.components.task_events``):
the DLQ sweeper and the webhook delivery function. Every statement names exact actions on
exact ARNs; neither function may delete from a runtime DLQ, scan the task table or read any
other secret.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sdfleet.components.builders import task_table
from sdfleet.components.builders.errors import fail
from sdfleet.components.builders.iam.documents import (
    checked_arn,
    policy,
    statement,
    topic_queue_policy,
)
from sdfleet.components.builders.iam.workload import tracing_statement

# The DLQ peek (sdfleet.dlq.peek): receive with a short visibility, then make visible again.
# No sqs:DeleteMessage: the messages stay for redrive.
SWEEPER_DLQ_ACTIONS: tuple[str, ...] = ("sqs:ReceiveMessage", "sqs:ChangeMessageVisibility")
# The event source mapping's calls, and the function's own re-enqueue (retries, hops).
WEBHOOK_QUEUE_ACTIONS: tuple[str, ...] = (
    "sqs:ReceiveMessage",
    "sqs:DeleteMessage",
    "sqs:GetQueueAttributes",
    "sqs:ChangeMessageVisibility",
    "sqs:SendMessage",
)
# TaskStore.record_webhook_attempt: one conditional UpdateItem, never a read or a put.
WEBHOOK_TABLE_ACTIONS: tuple[str, ...] = ("dynamodb:UpdateItem",)
LOG_ACTIONS: tuple[str, ...] = ("logs:CreateLogStream", "logs:PutLogEvents")


def _logs(log_group_arn: str) -> dict[str, Any]:
    checked_arn("log_group_arn", log_group_arn, "logs")
    return statement(list(LOG_ACTIONS), f"{log_group_arn}:*", sid="WriteLogs")


def _kms(kms_key_arns: Sequence[str]) -> list[dict[str, Any]]:
    """Customer-managed keys only (the queues, topic and table use AWS managed keys by
    default, which need no IAM grant)."""
    if not kms_key_arns:
        return []
    keys = [checked_arn(f"kms_key_arns[{i}]", k, "kms") for i, k in enumerate(kms_key_arns)]
    return [statement(["kms:Decrypt", "kms:GenerateDataKey"], keys, sid="UseEncryptionKeys")]


def sweeper_lambda_policy(
    *,
    dlq_arns: Sequence[str],
    output_topic_arn: str,
    task_table_arn: str,
    log_group_arn: str,
    kms_key_arns: Sequence[str] = (),
) -> dict[str, Any]:
    """The sweeper reads the runtime DLQs without consuming them, marks dead-lettered tasks
    failed in the task table, publishes their ``failed`` notification, and writes its logs and
    traces."""
    if not dlq_arns:
        raise fail("dlq_arns", list(dlq_arns), "at least one runtime DLQ ARN")
    dlqs = [checked_arn(f"dlq_arns[{i}]", a, "sqs") for i, a in enumerate(dlq_arns)]
    checked_arn("output_topic_arn", output_topic_arn, "sns")
    return policy(
        statement(list(SWEEPER_DLQ_ACTIONS), sorted(dlqs), sid="PeekDeadLetterQueues"),
        *task_table.sweeper_task_table_statements(task_table_arn),
        statement("sns:Publish", output_topic_arn, sid="PublishFinalWord"),
        _logs(log_group_arn),
        tracing_statement(),
        *_kms(kms_key_arns),
    )


def webhook_lambda_policy(
    *,
    queue_arn: str,
    dead_letter_queue_arn: str,
    secret_arn: str,
    log_group_arn: str,
    task_table_arn: str | None = None,
    kms_key_arns: Sequence[str] = (),
) -> dict[str, Any]:
    """The webhook function consumes and re-enqueues on its queue, sends exhausted deliveries
    to its DLQ, reads the one signing secret, records attempts on the task (UpdateItem only)
    and writes its logs and traces (active tracing continues the notification's trace)."""
    checked_arn("queue_arn", queue_arn, "sqs")
    checked_arn("dead_letter_queue_arn", dead_letter_queue_arn, "sqs")
    checked_arn("secret_arn", secret_arn, "secretsmanager")
    statements = [
        statement(list(WEBHOOK_QUEUE_ACTIONS), queue_arn, sid="ConsumeWebhookQueue"),
        statement("sqs:SendMessage", dead_letter_queue_arn, sid="DeadLetterDeliveries"),
        statement("secretsmanager:GetSecretValue", secret_arn, sid="ReadSigningSecret"),
        _logs(log_group_arn),
        tracing_statement(),
    ]
    if task_table_arn is not None:
        _check_table(task_table_arn)
        statements.append(
            statement(list(WEBHOOK_TABLE_ACTIONS), task_table_arn, sid="RecordWebhookAttempts")
        )
    return policy(*statements, *_kms(kms_key_arns))


def webhook_queue_policy(queue_arn: str, topic_arn: str) -> dict[str, Any]:
    """Only the output topic may send to the webhook queue (the function's own re-enqueue is
    its role's grant); TLS only."""
    checked_arn("queue_arn", queue_arn, "sqs")
    checked_arn("topic_arn", topic_arn, "sns")
    return topic_queue_policy(queue_arn, topic_arn, "AllowOutputTopic")


def _check_table(table_arn: str) -> None:
    """One table, no index, no wildcard: the same shape the task table's statements accept."""
    checked_arn("task_table_arn", table_arn, "dynamodb")
    if ":table/" not in table_arn or "/index" in table_arn or "*" in table_arn:
        raise fail("task_table_arn", table_arn, "a DynamoDB table ARN (no index, no wildcard)")
