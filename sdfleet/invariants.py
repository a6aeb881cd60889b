"""Security invariants over a recorded resource graph (see :mod:`sdfleet.mocking`).

Run by the tests on every stack the suite synthesizes, and by ``sdfleet synth``:
- no Allow statement with ``Action: "*"``, a service-wide wildcard (``s3:*``) or NotAction;
- no ``Resource: "*"`` on an Allow unless every action is on the documented allow-list
  (actions AWS only grants on ``*``); KMS key policies are exempt, where ``*`` means the key;
- every bucket has block public access (all four), SSE and a TLS-only policy;
- every queue is encrypted and has a DLQ, or is itself a DLQ or a documented sink;
- every topic is encrypted.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from components.builders.iam import RESOURCE_STAR_ALLOWED_ACTIONS as CORE_STAR_ACTIONS
from components.builders.iam_platform import (
    RESOURCE_STAR_ALLOWED_ACTIONS as PLATFORM_STAR_ACTIONS,
)
from sdfleet.mocking import Recorded, Recorder

# Queues that are the end of the line: a DLQ would only move the problem one hop.
SINK_QUEUE_TAG = "sdfleet:sink"

# (resource type, input key) of every policy document we write.
POLICY_INPUTS: tuple[tuple[str, str], ...] = (
    ("aws:iam/rolePolicy:RolePolicy", "policy"),
    ("aws:iam/policy:Policy", "policy"),
    ("aws:sqs/queuePolicy:QueuePolicy", "policy"),
    ("aws:s3/bucketPolicy:BucketPolicy", "policy"),
    ("aws:sns/topicPolicy:TopicPolicy", "policy"),
    ("aws:kms/key:Key", "policy"),
    ("aws:iam/role:Role", "assumeRolePolicy"),
)


def resource_star_allowed_actions() -> frozenset[str]:
    """The event plane's and the compute plane's describe-style actions."""
    return frozenset(CORE_STAR_ACTIONS) | PLATFORM_STAR_ACTIONS


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def _document(raw: Any) -> dict[str, Any] | None:
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except ValueError:
            return None
    return raw if isinstance(raw, dict) else None


def policy_documents(recorder: Recorder) -> Iterable[tuple[Recorded, dict[str, Any]]]:
    for type_, key in POLICY_INPUTS:
        for rec in recorder.of_type(type_):
            doc = _document(rec.inputs.get(key))
            if doc is not None:
                yield rec, doc
    for rec in recorder.of_type("aws:iam/role:Role"):
        for inline in rec.inputs.get("inlinePolicies") or []:
            doc = _document(inline.get("policy"))
            if doc is not None:
                yield rec, doc


def check_statements(rec: Recorded, doc: dict[str, Any], star_ok: frozenset[str]) -> list[str]:
    problems: list[str] = []
    where = f"{rec.type} {rec.name}"
    for i, st in enumerate(_as_list(doc.get("Statement"))):
        if st.get("Effect") != "Allow":
            continue
        sid = st.get("Sid", f"#{i}")
        if "NotAction" in st:
            problems.append(f"{where} statement {sid}: Allow with NotAction")
        actions = [str(a) for a in _as_list(st.get("Action"))]
        for action in actions:
            if action == "*" or action.endswith(":*"):
                problems.append(f"{where} statement {sid}: wildcard action {action!r}")
        if rec.type == "aws:kms/key:Key":
            continue
        if "*" in [str(r) for r in _as_list(st.get("Resource"))]:
            broad = [a for a in actions if a not in star_ok]
            if broad:
                problems.append(
                    f"{where} statement {sid}: Resource '*' for {broad}; only "
                    "describe-style actions on the allow-list may use '*'"
                )
    return problems


def _targets(recorder: Recorder, type_: str, bucket_id: str) -> list[Recorded]:
    return [r for r in recorder.of_type(type_) if r.inputs.get("bucket") == bucket_id]


def check_buckets(recorder: Recorder) -> list[str]:
    problems: list[str] = []
    for bucket in recorder.of_type("aws:s3/bucket:Bucket"):
        bid = bucket.state["id"]
        bpa = _targets(recorder, "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock", bid)
        flags = (
            "blockPublicAcls",
            "blockPublicPolicy",
            "ignorePublicAcls",
            "restrictPublicBuckets",
        )
        if not any(all(b.inputs.get(f) is True for f in flags) for b in bpa):
            problems.append(f"bucket {bucket.name}: no block-public-access with all four flags")
        sse = _targets(
            recorder,
            "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration",
            bid,
        )
        if not sse or not all(s.inputs.get("rules") for s in sse):
            problems.append(f"bucket {bucket.name}: no server-side encryption configuration")
        tls = False
        for pol in _targets(recorder, "aws:s3/bucketPolicy:BucketPolicy", bid):
            doc = _document(pol.inputs.get("policy")) or {}
            for st in _as_list(doc.get("Statement")):
                cond = (st.get("Condition") or {}).get("Bool") or {}
                if st.get("Effect") == "Deny" and str(cond.get("aws:SecureTransport")) == "false":
                    tls = True
        if not tls:
            problems.append(f"bucket {bucket.name}: no TLS-only (aws:SecureTransport) policy")
    return problems


def check_queues(recorder: Recorder) -> list[str]:
    problems: list[str] = []
    queues = recorder.of_type("aws:sqs/queue:Queue")
    dlq_targets: set[str] = set()
    for q in queues:
        redrive = _document(q.inputs.get("redrivePolicy"))
        if redrive:
            dlq_targets.add(str(redrive.get("deadLetterTargetArn")))
    for q in queues:
        if not (q.inputs.get("sqsManagedSseEnabled") or q.inputs.get("kmsMasterKeyId")):
            problems.append(f"queue {q.name}: not encrypted")
        is_dlq = q.state.get("arn") in dlq_targets
        is_sink = SINK_QUEUE_TAG in (q.inputs.get("tags") or {})
        if not q.inputs.get("redrivePolicy") and not is_dlq and not is_sink:
            problems.append(f"queue {q.name}: no dead-letter queue (and not a DLQ or sink)")
    return problems


def check_topics(recorder: Recorder) -> list[str]:
    return [
        f"topic {t.name}: not encrypted (no kmsMasterKeyId)"
        for t in recorder.of_type("aws:sns/topic:Topic")
        if not t.inputs.get("kmsMasterKeyId")
    ]


def check_all(recorder: Recorder) -> list[str]:
    star_ok = resource_star_allowed_actions()
    problems: list[str] = []
    for rec, doc in policy_documents(recorder):
        problems += check_statements(rec, doc, star_ok)
    problems += check_buckets(recorder)
    problems += check_queues(recorder)
    problems += check_topics(recorder)
    return problems
