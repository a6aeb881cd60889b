"""A private, encrypted, TLS-only bucket: the one way sdfleet creates buckets."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import pulumi
import pulumi_aws as aws

from sdfleet.components.builders import s3 as s3b


def secure_bucket(
    name: str,
    parent: pulumi.Resource,
    *,
    versioning: bool = False,
    lifecycle_rules: Sequence[Any] | None = None,
    force_destroy: bool = False,
) -> aws.s3.Bucket:
    """Create a bucket with block public access, SSE-S3 with bucket keys, owner-enforced
    ownership (no ACLs), a TLS-only policy, and optional versioning and lifecycle rules."""
    opts = pulumi.ResourceOptions(parent=parent)
    bucket = aws.s3.Bucket(name, force_destroy=force_destroy, opts=opts)
    child = pulumi.ResourceOptions(parent=bucket)
    bpa = aws.s3.BucketPublicAccessBlock(
        f"{name}-bpa",
        bucket=bucket.id,
        block_public_acls=True,
        block_public_policy=True,
        ignore_public_acls=True,
        restrict_public_buckets=True,
        opts=child,
    )
    aws.s3.BucketOwnershipControls(
        f"{name}-ownership",
        bucket=bucket.id,
        rule=aws.s3.BucketOwnershipControlsRuleArgs(object_ownership="BucketOwnerEnforced"),
        opts=child,
    )
    aws.s3.BucketServerSideEncryptionConfiguration(
        f"{name}-sse",
        bucket=bucket.id,
        rules=[
            aws.s3.BucketServerSideEncryptionConfigurationRuleArgs(
                apply_server_side_encryption_by_default=aws.s3.BucketServerSideEncryptionConfigurationRuleApplyServerSideEncryptionByDefaultArgs(
                    sse_algorithm="AES256"
                ),
                bucket_key_enabled=True,
            )
        ],
        opts=child,
    )
    # The policy waits for BPA: S3 rejects a policy write racing the BPA update.
    aws.s3.BucketPolicy(
        f"{name}-policy",
        bucket=bucket.id,
        policy=bucket.arn.apply(lambda arn: json.dumps(s3b.tls_only_bucket_policy(arn))),
        opts=pulumi.ResourceOptions(parent=bucket, depends_on=[bpa]),
    )
    if versioning:
        aws.s3.BucketVersioning(
            f"{name}-versioning",
            bucket=bucket.id,
            versioning_configuration=aws.s3.BucketVersioningVersioningConfigurationArgs(
                status="Enabled"
            ),
            opts=child,
        )
    if lifecycle_rules:
        aws.s3.BucketLifecycleConfiguration(
            f"{name}-lifecycle", bucket=bucket.id, rules=lifecycle_rules, opts=child
        )
    return bucket
