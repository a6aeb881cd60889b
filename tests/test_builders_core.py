"""Pure builders of the event plane and the core IAM documents (no mocks)."""

from __future__ import annotations

import fnmatch
import json

import pytest

from sdfleet.agent.contract import image_key, result_key
from sdfleet.agent.outputs import sniff
from sdfleet.components.builders import api as apib
from sdfleet.components.builders import fanout as fb
from sdfleet.components.builders import iam as iamb
from sdfleet.components.builders import observability as ob
from sdfleet.components.builders import s3 as s3b

TOPIC = "arn:aws:sns:us-east-1:123456789012:input"
QUEUE = "arn:aws:sqs:us-east-1:123456789012:sd15"
BUCKET = "arn:aws:s3:::outputs"


def test_filter_policies() -> None:
    assert fb.runtime_filter_policy("sd15") == {"runtime": ["sd15"]}
    assert json.loads(fb.runtime_filter_policy_json("sd15")) == {"runtime": ["sd15"]}
    assert fb.unrouted_filter_policy(["b", "a"]) == {
        "$or": [{"runtime": [{"anything-but": ["a", "b"]}]}, {"runtime": [{"exists": False}]}]
    }


def test_redrive_documents() -> None:
    assert json.loads(fb.redrive_policy("arn:dlq", 3)) == {
        "deadLetterTargetArn": "arn:dlq",
        "maxReceiveCount": 3,
    }
    assert json.loads(fb.redrive_allow_policy(QUEUE)) == {
        "redrivePermission": "byQueue",
        "sourceQueueArns": [QUEUE],
    }


def test_queue_policy_allows_only_the_topic_over_tls() -> None:
    allow, deny = fb.queue_policy(QUEUE, TOPIC)["Statement"]
    assert allow["Principal"] == {"Service": "sns.amazonaws.com"}
    assert allow["Action"] == "sqs:SendMessage"
    assert allow["Resource"] == QUEUE
    assert allow["Condition"] == {"ArnEquals": {"aws:SourceArn": TOPIC}}
    assert deny["Effect"] == "Deny"
    assert deny["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}


def test_tls_only_bucket_policy() -> None:
    statements = s3b.tls_only_bucket_policy(BUCKET)["Statement"]
    assert all(s["Effect"] == "Deny" for s in statements)
    assert statements[0]["Resource"] == [BUCKET, f"{BUCKET}/*"]
    assert statements[1]["Condition"] == {"NumericLessThan": {"s3:TlsVersion": "1.2"}}


def test_output_writer_reads_only_requests_and_what_it_writes() -> None:
    statements = {s["Sid"]: s for s in s3b.output_writer_statements(BUCKET)}
    actions = sorted({a for s in statements.values() for a in s["Action"]})
    assert actions == ["s3:GetObject", "s3:PutObject"]
    assert statements["ReadOffloadedRequests"]["Resource"] == f"{BUCKET}/*request.json"
    reads = statements["ReadOwnResults"]["Resource"]
    assert f"{BUCKET}/*.out" in reads
    assert all(r.startswith(f"{BUCKET}/*.") for r in reads)


@pytest.mark.parametrize(
    "data",
    [b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"RIFF\0\0\0\0WEBP", b"GIF89a", b"\0\0\0\0ftyp", b"??"],
)
def test_the_agent_may_read_back_every_image_type_it_writes(data: bytes) -> None:
    ext, _ = sniff(data)
    key = image_key("out", "t1", 1, ext)
    reads = next(s for s in s3b.output_writer_statements(BUCKET) if s["Sid"] == "ReadOwnResults")[
        "Resource"
    ]
    assert any(fnmatch.fnmatchcase(f"{BUCKET}/{key}", r) for r in reads)
    assert any(fnmatch.fnmatchcase(f"{BUCKET}/{result_key('out', 't1')}", r) for r in reads)


def test_lifecycle_rule() -> None:
    rule = s3b.output_lifecycle_rule(7)
    assert rule["expiration"] == {"days": 7}
    assert rule["abort_incomplete_multipart_upload"] == {"days_after_initiation": 1}


def test_lambda_policy_is_exact() -> None:
    doc = iamb.task_api_lambda_policy(
        input_topic_arn=TOPIC, output_bucket_arn=BUCKET, log_group_arn="arn:logs"
    )
    star = [s for s in doc["Statement"] if s["Resource"] == "*"]
    assert {a for s in star for a in s["Action"]} == set(iamb.TRACING_STAR_ACTIONS)


def test_trust_policy() -> None:
    st = iamb.service_trust_policy("lambda.amazonaws.com", "123456789012")["Statement"][0]
    assert st["Principal"] == {"Service": "lambda.amazonaws.com"}
    assert st["Condition"] == {"StringEquals": {"aws:SourceAccount": "123456789012"}}


def test_access_log_format_has_no_secrets() -> None:
    fields = json.loads(apib.access_log_format())
    assert "$context.identity.apiKey" not in fields.values()
    assert fields["apiKeyId"] == "$context.identity.apiKeyId"


def test_alarm_topic_key_policy() -> None:
    # Alarms, dashboard and queries: tests/builders/test_observability.py.
    key_policy = ob.alarm_topic_key_policy("123456789012")
    assert all(not a.endswith(":*") for s in key_policy["Statement"] for a in s["Action"])


def test_docs_version_table_matches_code() -> None:
    from pathlib import Path

    from sdfleet.components.versions import version_table_markdown

    doc = Path(__file__).resolve().parent.parent / "docs" / "compute-plane.md"
    assert version_table_markdown() in doc.read_text()
