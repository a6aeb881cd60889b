"""Pure builders for bucket policies and the S3 permissions of each principal."""

from __future__ import annotations

from typing import Any

from sdfleet.components.builders.iam.documents import policy, statement


def bucket_arn(bucket: str, partition: str = "aws") -> str:
    return f"arn:{partition}:s3:::{bucket}"


def tls_only_bucket_policy(bucket_arn: str) -> dict[str, Any]:
    """Deny every request that does not use TLS (and TLS older than 1.2)."""
    resources = [bucket_arn, f"{bucket_arn}/*"]
    return policy(
        statement(
            "s3:*",
            resources,
            sid="DenyInsecureTransport",
            effect="Deny",
            principal="*",
            condition={"Bool": {"aws:SecureTransport": "false"}},
        ),
        statement(
            "s3:*",
            resources,
            sid="DenyOutdatedTls",
            effect="Deny",
            principal="*",
            condition={"NumericLessThan": {"s3:TlsVersion": "1.2"}},
        ),
    )


# The key endings the agent writes: the result document and each image type it sniffs.
OUTPUT_SUFFIXES = (".out", ".png", ".jpg", ".webp", ".gif", ".mp4", ".bin")


def output_writer_statements(output_bucket_arn: str) -> list[dict[str, Any]]:
    """The agent writes images and result documents, and reads offloaded requests and the
    kinds of object it writes (a redelivered task that already finished is announced again
    instead of rerun, once its result document and images are found).

    No List, no Delete, so a compromised pod cannot enumerate or erase results.
    """
    return [
        statement(["s3:PutObject"], f"{output_bucket_arn}/*", sid="WriteResults"),
        statement(
            ["s3:GetObject"], f"{output_bucket_arn}/*request.json", sid="ReadOffloadedRequests"
        ),
        statement(
            ["s3:GetObject"],
            [f"{output_bucket_arn}/*{suffix}" for suffix in OUTPUT_SUFFIXES],
            sid="ReadOwnResults",
        ),
    ]


def output_lifecycle_rule(expire_after_days: int) -> dict[str, Any]:
    """Results expire; incomplete multipart uploads (a pod killed mid-upload) are cleaned up."""
    return {
        "id": "expire-results",
        "status": "Enabled",
        "filter": {},
        "expiration": {"days": expire_after_days},
        "abort_incomplete_multipart_upload": {"days_after_initiation": 1},
    }
