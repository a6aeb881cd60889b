"""Rules over buckets, queues and topics (some look at the resources that configure them)."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from typing import Any

from sdfleet.policy.documents import documents
from sdfleet.policy.model import Finding, Resource, Unknown, finding

# Queues that are the end of the line: a DLQ would only move the problem one hop.
SINK_QUEUE_TAG = "sdfleet:sink"

BUCKET_TYPES = ("aws:s3/bucket:Bucket", "aws:s3/bucketV2:BucketV2")
BPA_TYPE = "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock"
SSE_TYPES = (
    "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration",
    "aws:s3/bucketServerSideEncryptionConfigurationV2:BucketServerSideEncryptionConfigurationV2",
)
BUCKET_POLICY_TYPE = "aws:s3/bucketPolicy:BucketPolicy"
BPA_FLAGS = ("blockPublicAcls", "blockPublicPolicy", "ignorePublicAcls", "restrictPublicBuckets")


def _true_or_unknown(value: Any) -> bool:
    return value is True or isinstance(value, Unknown)


def _set_or_unknown(value: Any) -> bool:
    """Set, or not known yet during a preview (judged again once known)."""
    return isinstance(value, Unknown) or bool(value)


def _refers_to(ref: Resource, key: str, target: Resource, ids: set[str]) -> bool:
    value = ref.props.get(key)
    return (isinstance(value, str) and value in ids) or (
        target.urn is not None and target.urn in ref.property_dependencies.get(key, ())
    )


def _configuring(
    resources: Sequence[Resource], types: Sequence[str], bucket: Resource
) -> list[Resource]:
    ids = {v for k in ("id", "bucket") if isinstance(v := bucket.props.get(k), str)}
    return [r for r in resources if r.type in types and _refers_to(r, "bucket", bucket, ids)]


def _denies_plain_http(doc_statements: list[dict[str, Any]]) -> bool:
    for st in doc_statements:
        cond = st.get("Condition")
        bools = cond.get("Bool") if isinstance(cond, dict) else None
        flag = bools.get("aws:SecureTransport") if isinstance(bools, dict) else None
        if st.get("Effect") == "Deny" and str(flag).lower() == "false":
            return True
    return False


def _tls_only(bucket: Resource, policies: list[Resource]) -> bool:
    for holder in (bucket, *policies):
        if isinstance(holder.props.get("policy"), Unknown):
            return True
        for doc in documents(holder):
            if doc.statements and _denies_plain_http(doc.statements):
                return True
    return False


def _buckets(resources: Sequence[Resource]) -> Iterator[Resource]:
    return (r for r in resources if r.type in BUCKET_TYPES)


def check_bucket_public_access_blocks(resources: Sequence[Resource]) -> Iterator[Finding]:
    for bucket in _buckets(resources):
        blocks = _configuring(resources, (BPA_TYPE,), bucket)
        if not any(all(_true_or_unknown(b.props.get(f)) for f in BPA_FLAGS) for b in blocks):
            yield finding(
                "bucket-public-access-block", bucket, "no block-public-access with all four flags"
            )


def check_bucket_encryption(resources: Sequence[Resource]) -> Iterator[Finding]:
    for bucket in _buckets(resources):
        sse = _configuring(resources, SSE_TYPES, bucket)
        configured = sse and all(_set_or_unknown(s.props.get("rules")) for s in sse)
        if not configured and not _set_or_unknown(
            bucket.props.get("serverSideEncryptionConfiguration")
        ):
            yield finding("bucket-encryption", bucket, "no server-side encryption configuration")


def check_bucket_tls_only(resources: Sequence[Resource]) -> Iterator[Finding]:
    for bucket in _buckets(resources):
        if not _tls_only(bucket, _configuring(resources, (BUCKET_POLICY_TYPE,), bucket)):
            yield finding(
                "bucket-tls-only",
                bucket,
                "no TLS-only policy (a Deny on aws:SecureTransport false)",
            )


def _redrive_target(raw: Any) -> str | None:
    if isinstance(raw, str) and raw:
        try:
            raw = json.loads(raw)
        except ValueError:
            return None
    target = raw.get("deadLetterTargetArn") if isinstance(raw, dict) else None
    return target if isinstance(target, str) else None


def check_queue_dead_letters(resources: Sequence[Resource]) -> Iterator[Finding]:
    queues = [r for r in resources if r.type == "aws:sqs/queue:Queue"]
    redrives = [r for r in resources if r.type == "aws:sqs/redrivePolicy:RedrivePolicy"]
    dlq_arns: set[str] = set()
    dlq_urns: set[str] = set()
    for holder in (*queues, *redrives):
        if target := _redrive_target(holder.props.get("redrivePolicy")):
            dlq_arns.add(target)
        dlq_urns.update(holder.property_dependencies.get("redrivePolicy", ()))
    for q in queues:
        url = q.props.get("url") or q.props.get("id")
        redriven = _set_or_unknown(q.props.get("redrivePolicy")) or any(
            _refers_to(r, "queueUrl", q, {url} if isinstance(url, str) else set()) for r in redrives
        )
        is_dlq = q.props.get("arn") in dlq_arns or (q.urn is not None and q.urn in dlq_urns)
        tags = q.props.get("tags")
        is_sink = isinstance(tags, dict) and SINK_QUEUE_TAG in tags
        if not (redriven or is_dlq or is_sink):
            yield finding(
                "queue-dead-letter", q, "no dead-letter queue (and not a DLQ or a tagged sink)"
            )


def check_queue_encryption(res: Resource) -> Iterator[Finding]:
    if res.type == "aws:sqs/queue:Queue" and not (
        _set_or_unknown(res.props.get("sqsManagedSseEnabled"))
        or _set_or_unknown(res.props.get("kmsMasterKeyId"))
    ):
        yield finding("queue-encryption", res, "not encrypted (no SSE-SQS or KMS key)")


def check_topic_encryption(res: Resource) -> Iterator[Finding]:
    if res.type == "aws:sns/topic:Topic" and not _set_or_unknown(res.props.get("kmsMasterKeyId")):
        yield finding("topic-encryption", res, "not encrypted (no kmsMasterKeyId)")
