"""Pure builders for IAM documents shared by the components."""

from __future__ import annotations

from typing import Any

# Actions that AWS only grants on `Resource: "*"`. The security invariants allow `*` for
# these and nothing else (the platform builders add their own, see iam_platform).
RESOURCE_STAR_ALLOWED_ACTIONS: frozenset[str] = frozenset(
    {"xray:PutTraceSegments", "xray:PutTelemetryRecords"}
)


def policy(*statements: dict[str, Any]) -> dict[str, Any]:
    return {"Version": "2012-10-17", "Statement": list(statements)}


def service_trust_policy(service: str, source_account: str | None = None) -> dict[str, Any]:
    statement: dict[str, Any] = {
        "Effect": "Allow",
        "Principal": {"Service": service},
        "Action": "sts:AssumeRole",
    }
    if source_account:
        statement["Condition"] = {"StringEquals": {"aws:SourceAccount": source_account}}
    return policy(statement)


def task_api_lambda_policy(
    *, input_topic_arn: str, output_bucket_arn: str, log_group_arn: str
) -> dict[str, Any]:
    """The task Lambda publishes tasks, offloads large contents, and writes its own logs."""
    return policy(
        {
            "Sid": "PublishTasks",
            "Effect": "Allow",
            "Action": ["sns:Publish"],
            "Resource": input_topic_arn,
        },
        {
            "Sid": "OffloadLargeRequests",
            "Effect": "Allow",
            # Delete: the handler removes its own offloaded request when the publish fails.
            "Action": ["s3:PutObject", "s3:DeleteObject"],
            "Resource": f"{output_bucket_arn}/*request.json",
        },
        {
            "Sid": "WriteLogs",
            "Effect": "Allow",
            "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
            "Resource": f"{log_group_arn}:*",
        },
        {
            "Sid": "Tracing",
            "Effect": "Allow",
            "Action": ["xray:PutTraceSegments", "xray:PutTelemetryRecords"],
            "Resource": "*",
        },
    )
