"""Least-privilege policies of sdfleet's workloads: the runtimes' pods, the Mountpoint S3 CSI
driver, the KEDA operator and the task API's Lambda."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

# The modules, not the names: s3 and task_table build their statements with this package's
# helper, so either may be imported first.
from sdfleet.components.builders import s3, task_table
from sdfleet.components.builders.errors import fail
from sdfleet.components.builders.iam.documents import checked_arn, policy, statement

# Actions that AWS only grants on `Resource: "*"`; the security invariants allow `*` for these
# (and the Karpenter controller's, see karpenter.DISCOVERY_STAR_ACTIONS) and nothing else.
TRACING_STAR_ACTIONS: frozenset[str] = frozenset(
    {"xray:PutTraceSegments", "xray:PutTelemetryRecords"}
)


def tracing_statement(sid: str = "Tracing") -> dict[str, Any]:
    """A traced Lambda's (or collector's) segments and telemetry to X-Ray: AWS grants these
    two on ``*`` only."""
    return statement(sorted(TRACING_STAR_ACTIONS), "*", sid=sid)


_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
# A log group's own ARN (no ":*", no wildcard): the one group the agent writes metrics to.
_LOG_GROUP_ARN = re.compile(
    r"^arn:aws[a-z-]*:logs:[a-z0-9-]+:\d{12}:log-group:[.\-_/#A-Za-z0-9]{1,512}$"
)
# Wildcards in a key prefix would widen an object ARN.
_KEY_PREFIX = re.compile(r"^[!-)+->@-~]{0,512}$")


def task_api_lambda_policy(
    *,
    input_topic_arn: str,
    output_bucket_arn: str,
    log_group_arn: str,
    task_table_arn: str | None = None,
) -> dict[str, Any]:
    """The task Lambda publishes tasks, offloads large contents, and writes its own logs.
    With ``task_table_arn``: it records tasks and reads them back (status API), and may read
    result objects, only to presign their URLs for the tasks' owners (never request objects)."""
    statements = [
        statement(["sns:Publish"], input_topic_arn, sid="PublishTasks"),
        # Delete: the handler removes its own offloaded request when the publish fails.
        statement(
            ["s3:PutObject", "s3:DeleteObject"],
            f"{output_bucket_arn}/*request.json",
            sid="OffloadLargeRequests",
        ),
        statement(
            ["logs:CreateLogStream", "logs:PutLogEvents"], f"{log_group_arn}:*", sid="WriteLogs"
        ),
        tracing_statement(),
    ]
    if task_table_arn is not None:
        statements += task_table.api_task_table_statements(task_table_arn)
        statements.append(result_presign_statement(output_bucket_arn))
    return policy(*statements)


def result_presign_statement(output_bucket_arn: str) -> dict[str, Any]:
    """``s3:GetObject`` on the kinds of object the agent writes as results (the suffixes of
    ``s3.OUTPUT_SUFFIXES``): a presigned URL works only if its signer may read the object."""
    return statement(
        "s3:GetObject",
        [f"{output_bucket_arn}/*{suffix}" for suffix in s3.OUTPUT_SUFFIXES],
        sid="PresignResults",
    )


def keda_operator_policy(queue_arns: Sequence[str]) -> dict[str, Any]:
    """The KEDA operator reads queue depth, nothing else (GetQueueAttributes is the only call
    the aws-sqs-queue scaler makes)."""
    if not queue_arns:
        raise fail("queue_arns", list(queue_arns), "at least one SQS queue ARN")
    arns = [checked_arn(f"queue_arns[{i}]", a, "sqs") for i, a in enumerate(queue_arns)]
    return policy(statement("sqs:GetQueueAttributes", arns, sid="ReadRuntimeQueueDepth"))


def _prefix(model_prefix: str | None) -> str:
    if not model_prefix:
        return ""
    if model_prefix.startswith("/") or not model_prefix.endswith("/"):
        raise fail("model_prefix", model_prefix, "a key prefix ending with '/', e.g. 'sd15/'")
    return model_prefix


def model_read_statements(
    model_bucket_arn: str, model_prefix: str | None = None, sid_prefix: str = "Model"
) -> list[dict[str, Any]]:
    """Read-only access to the model bucket (or a prefix of it), as Mountpoint needs it."""
    bucket = checked_arn("model_bucket_arn", model_bucket_arn, "s3")
    prefix = _prefix(model_prefix)
    # ListBucket cannot be scoped by resource; a prefix needs the s3:prefix condition.
    listing = {"StringLike": {"s3:prefix": [f"{prefix}*"]}} if prefix else None
    return [
        statement("s3:ListBucket", bucket, sid=f"{sid_prefix}List", condition=listing),
        statement("s3:GetObject", f"{bucket}/{prefix}*", sid=f"{sid_prefix}Read"),
    ]


def mountpoint_driver_policy(
    model_bucket_arn: str, model_prefix: str | None = None
) -> dict[str, Any]:
    """For the Mountpoint S3 CSI driver's Pod Identity role: read the model bucket only."""
    return policy(*model_read_statements(model_bucket_arn, model_prefix))


def _input_bucket_objects(index: int, entry: Any, partition: str) -> str:
    """``bucket`` or ``bucket/prefix`` -> the object ARN pattern (the agent allows the same)."""
    bucket, _, prefix = entry.partition("/") if isinstance(entry, str) else ("", "", "")
    if not _BUCKET.match(bucket) or ".." in bucket or not _KEY_PREFIX.match(prefix):
        raise fail(
            f"input_s3_buckets[{index}]",
            entry,
            "an S3 bucket name, optionally /key-prefix without * or ? (not an ARN)",
        )
    return f"arn:{partition}:s3:::{bucket}/{prefix}*"


def metrics_log_streams_statement(log_group_arn: str) -> dict[str, Any]:
    """Create and write log streams (one per pod) in one log group, nothing else: no other
    group, no reading, no deleting, no retention change. The resource is the group's ARN with
    a trailing ``:*``, the form the CloudWatch Logs access-control guide gives for every action
    but a few group-level ones; it covers the group's streams and nothing outside it."""
    if not isinstance(log_group_arn, str) or not _LOG_GROUP_ARN.match(log_group_arn):
        raise fail(
            "metrics_log_group_arn",
            log_group_arn,
            "a log group's ARN (arn:<partition>:logs:<region>:<account>:log-group:<name>)",
        )
    return statement(
        ["logs:CreateLogStream", "logs:PutLogEvents"],
        f"{log_group_arn}:*",
        sid="WriteAgentMetrics",
    )


def runtime_pod_policy(
    *,
    queue_arn: str,
    output_bucket_arn: str,
    output_topic_arn: str,
    input_s3_buckets: Sequence[str] = (),
    kms_key_arns: Sequence[str] = (),
    task_table_arn: str | None = None,
    metrics_log_group_arn: str | None = None,
) -> dict[str, Any]:
    """Least privilege for a runtime's pods (the queue agent): its own queue, writing results
    and reading offloaded requests in the output bucket, publishing completions, and reading
    objects (never listing) in the buckets ``s3://`` task inputs may name. No model access:
    models reach the server through the Mountpoint driver's own role. ``kms_key_arns`` only
    when the queue/bucket/topic use customer-managed keys. ``task_table_arn``: the agent moves
    its tasks' states forward in the task table. ``metrics_log_group_arn``: the agent ships its
    EMF metrics to that log group (:func:`metrics_log_streams_statement`)."""
    checked_arn("queue_arn", queue_arn, "sqs")
    out = checked_arn("output_bucket_arn", output_bucket_arn, "s3")
    partition = out.split(":")[1]
    checked_arn("output_topic_arn", output_topic_arn, "sns")
    statements = [
        statement(
            [
                "sqs:ReceiveMessage",
                "sqs:DeleteMessage",
                "sqs:ChangeMessageVisibility",
                "sqs:GetQueueAttributes",
            ],
            queue_arn,
            sid="ConsumeOwnQueue",
        ),
        *s3.output_writer_statements(out),
        statement("sns:Publish", output_topic_arn, sid="PublishCompletions"),
    ]
    if input_s3_buckets:
        arns = [_input_bucket_objects(i, b, partition) for i, b in enumerate(input_s3_buckets)]
        statements.append(statement("s3:GetObject", arns, sid="ReadTaskInputs"))
    if kms_key_arns:
        keys = [checked_arn(f"kms_key_arns[{i}]", k, "kms") for i, k in enumerate(kms_key_arns)]
        statements.append(
            statement(["kms:Decrypt", "kms:GenerateDataKey"], keys, sid="UseEncryptionKeys")
        )
    if task_table_arn is not None:
        statements += task_table.agent_task_table_statements(task_table_arn)
    if metrics_log_group_arn is not None:
        statements.append(metrics_log_streams_statement(metrics_log_group_arn))
    return policy(*statements)
