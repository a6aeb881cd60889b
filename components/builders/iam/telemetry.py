"""Tracing: the trace collector's pod policy and the X-Ray resource policy that lets SNS put
the segments of actively traced topics.

X-Ray has no resource-level permissions: every X-Ray action is granted on ``Resource: "*"``
(the actions are allow-listed for that in sdfleet/policy/allowlists.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sdfleet.components.builders.errors import fail
from sdfleet.components.builders.iam.documents import (
    check_account_id,
    checked_arn,
    policy,
    statement,
)
from sdfleet.components.builders.iam.workload import tracing_statement

# What SNS calls for an actively traced topic (X-Ray developer guide, "Amazon SNS and AWS
# X-Ray"; the AWS::XRay::ResourcePolicy example grants exactly these to sns.amazonaws.com).
SNS_TRACING_ACTIONS: tuple[str, ...] = (
    "xray:PutTraceSegments",
    "xray:GetSamplingRules",
    "xray:GetSamplingTargets",
)


def trace_collector_policy() -> dict[str, Any]:
    """The collector's awsxray exporter sends segments and its own telemetry records; it
    reads nothing and needs no other call."""
    return policy(tracing_statement("PutTraces"))


def sns_tracing_policy(account_id: str, topic_arns: Sequence[str]) -> dict[str, Any]:
    """X-Ray resource policy: SNS may put segments (and read sampling rules) for these topics
    of this account only (``aws:SourceAccount`` and ``aws:SourceArn``, as AWS's example)."""
    check_account_id("account_id", account_id)
    if not topic_arns:
        raise fail("topic_arns", list(topic_arns), "at least one SNS topic ARN")
    arns = [checked_arn(f"topic_arns[{i}]", a, "sns") for i, a in enumerate(topic_arns)]
    foreign = [a for a in arns if a.split(":")[4] != account_id]
    if foreign:
        raise fail("topic_arns", foreign, f"topics of account {account_id}")
    return policy(
        statement(
            list(SNS_TRACING_ACTIONS),
            "*",
            sid="SnsActiveTracing",
            principal={"Service": "sns.amazonaws.com"},
            condition={
                "StringEquals": {"aws:SourceAccount": account_id},
                "StringLike": {"aws:SourceArn": arns[0] if len(arns) == 1 else arns},
            },
        )
    )
