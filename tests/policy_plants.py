"""Weaknesses to plant into the dev stack's resources.json (tests/test_policy_rules.py), and
least-privilege patterns the rules must accept. Each plant edits the entries in place and
returns the name of the resource the finding must name."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

Entries = list[dict[str, Any]]
ROLE_POLICY = "sdfleet-api-task-fn-policy"
OUTPUTS = "arn:aws:s3:::sdfleet-events-outputs-mock"
QUEUE_ARN = "arn:aws:sqs:us-east-1:123456789012:sdfleet-events-sd15-queue-mock"
TOPIC_ARN = "arn:aws:sns:us-east-1:123456789012:sdfleet-events-input-mock"


def _entry(data: Entries, type_: str, name: str | None = None) -> dict[str, Any]:
    return next(e for e in data if e["type"] == type_ and name in (None, e["name"]))


def _doc(*statements: dict[str, Any]) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": list(statements)})


def _allow(action: Any, resource: Any = f"{OUTPUTS}/*", **extra: Any) -> dict[str, Any]:
    return {"Effect": "Allow", "Action": action, "Resource": resource, **extra}


def _grant(statement: dict[str, Any]) -> Callable[[Entries], str]:
    """Replace the task Lambda's role policy with one statement."""

    def plant(data: Entries) -> str:
        _entry(data, "aws:iam/rolePolicy:RolePolicy", ROLE_POLICY)["inputs"]["policy"] = _doc(
            statement
        )
        return ROLE_POLICY

    return plant


def _add(type_: str, name: str, inputs: dict[str, Any]) -> Callable[[Entries], str]:
    def plant(data: Entries) -> str:
        data.append({"type": type_, "name": name, "parent": "sdfleet", "inputs": inputs})
        return name

    return plant


def _set(type_: str, name: str, key: str, value: Any) -> Callable[[Entries], str]:
    def plant(data: Entries) -> str:
        _entry(data, type_, name)["inputs"][key] = value
        return name

    return plant


def _extend_policy(type_: str, name: str, statement: dict[str, Any]) -> Callable[[Entries], str]:
    """Add a statement to an existing resource policy (its Deny statements stay)."""

    def plant(data: Entries) -> str:
        inputs = _entry(data, type_, name)["inputs"]
        doc = json.loads(inputs["policy"])
        doc["Statement"].append(statement)
        inputs["policy"] = json.dumps(doc)
        return name

    return plant


def _drop(type_: str, name: str, key: str | None = None) -> Callable[[Entries], str]:
    """Remove an input (or, without a key, the whole resource); returns the affected name."""

    def plant(data: Entries) -> str:
        entry = _entry(data, type_, name)
        if key is None:
            data.remove(entry)
        else:
            entry["inputs"].pop(key)
        return name

    return plant


def _attach(policy: str, name: str = "planted-attachment") -> Callable[[Entries], str]:
    return _add(
        "aws:iam/rolePolicyAttachment:RolePolicyAttachment",
        name,
        {"policyArn": f"arn:aws:iam::aws:policy/{policy}", "role": "sdfleet-sd15-role-mock"},
    )


def _sqs_public(**extra: Any) -> dict[str, Any]:
    return {
        "Effect": "Allow",
        "Principal": "*",
        "Action": "sqs:SendMessage",
        "Resource": QUEUE_ARN,
        **extra,
    }


def _trust(principal: Any) -> str:
    return _doc({"Effect": "Allow", "Principal": principal, "Action": "sts:AssumeRole"})


def _first_policy(data: Entries) -> str:
    entry = _entry(data, "aws:iam/policy:Policy")
    entry["inputs"]["policy"] = _doc(
        _allow("ec2:*", "arn:aws:ec2:us-east-1:123456789012:instance/*")
    )
    return str(entry["name"])


def _bpa_off(data: Entries) -> str:
    _entry(
        data, "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock", "sdfleet-events-outputs-bpa"
    )["inputs"]["restrictPublicBuckets"] = False
    return "sdfleet-events-outputs"


def _no_sse(data: Entries) -> str:
    sse = "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration"
    data.remove(_entry(data, sse, "sdfleet-models-models-sse"))
    return "sdfleet-models-models"


def _no_tls(data: Entries) -> str:
    policy = _entry(data, "aws:s3/bucketPolicy:BucketPolicy", "sdfleet-events-outputs-policy")
    doc = json.loads(policy["inputs"]["policy"])
    doc["Statement"] = [s for s in doc["Statement"] if s["Sid"] != "DenyInsecureTransport"]
    policy["inputs"]["policy"] = json.dumps(doc)
    return "sdfleet-events-outputs"


TOPIC_POLICY = {
    "Effect": "Allow",
    "Principal": {"AWS": "*"},
    "Action": "sns:Publish",
    "Resource": TOPIC_ARN,
}
KEY = ("aws:kms/key:Key", "sdfleet-observability-alarm-key")
QUEUE = ("aws:sqs/queue:Queue", "sdfleet-events-sd15-queue")
LAMBDA = ("aws:lambda/permission:Permission", "sdfleet-api-invoke")

# (case id, rule it must trip, plant(data) -> name of the resource it must be reported on)
PLANTED: list[tuple[str, str, Callable[[Entries], str]]] = [
    ("action-star", "iam-action-wildcard", _grant(_allow("*"))),
    ("action-service-star", "iam-action-wildcard", _grant(_allow("s3:*"))),
    ("action-s3-put-star", "iam-action-wildcard", _grant(_allow("s3:Put*"))),
    ("action-iam-star-role-star", "iam-action-wildcard", _grant(_allow(["iam:*Role*"]))),
    ("action-question-mark", "iam-action-wildcard", _grant(_allow("s3:?etObject"))),
    ("action-wildcard-managed-policy", "iam-action-wildcard", _first_policy),
    (
        "action-wildcard-role-inline-policy",
        "iam-action-wildcard",
        _set(
            "aws:iam/role:Role",
            "sdfleet-flux-role",
            "inlinePolicies",
            [{"name": "x", "policy": _doc(_allow("s3:Get*"))}],
        ),
    ),
    (
        "not-action",
        "iam-not-action",
        _grant({"Effect": "Allow", "NotAction": "iam:*", "Resource": OUTPUTS}),
    ),
    (
        "not-resource",
        "iam-not-resource",
        _grant({"Effect": "Allow", "Action": "s3:GetObject", "NotResource": OUTPUTS}),
    ),
    ("resource-star", "iam-resource-wildcard", _grant(_allow("sqs:SendMessage", "*"))),
    (
        "resource-all-buckets",
        "iam-resource-wildcard",
        _grant(_allow("s3:GetObject", "arn:aws:s3:::*")),
    ),
    (
        "resource-all-objects",
        "iam-resource-wildcard",
        _grant(_allow("s3:GetObject", "arn:aws:s3:::*/*")),
    ),
    ("resource-any-arn", "iam-resource-wildcard", _grant(_allow("s3:GetObject", "arn:*:*:*:*:*"))),
    (
        "resource-any-queue",
        "iam-resource-wildcard",
        _grant(_allow(["sqs:SendMessage"], ["arn:aws:sqs:us-east-1:123456789012:*"])),
    ),
    (
        "resource-star-beside-allow-listed",
        "iam-resource-wildcard",
        _grant(_allow(["xray:PutTraceSegments", "s3:GetObject"], "*")),
    ),
    (
        "bucket-policy-principal-star",
        "public-principal",
        _extend_policy(
            "aws:s3/bucketPolicy:BucketPolicy",
            "sdfleet-events-outputs-policy",
            {
                "Effect": "Allow",
                "Principal": "*",
                "Action": "s3:GetObject",
                "Resource": f"{OUTPUTS}/*",
            },
        ),
    ),
    (
        "bucket-policy-aws-star",
        "public-principal",
        _extend_policy(
            "aws:s3/bucketPolicy:BucketPolicy",
            "sdfleet-models-models-policy",
            {
                "Effect": "Allow",
                "Principal": {"AWS": ["*"]},
                "Action": "s3:ListBucket",
                "Resource": OUTPUTS,
            },
        ),
    ),
    (
        "bucket-policy-not-principal",
        "public-principal",
        _extend_policy(
            "aws:s3/bucketPolicy:BucketPolicy",
            "sdfleet-events-outputs-policy",
            {
                "Effect": "Allow",
                "NotPrincipal": {"AWS": "arn:aws:iam::123456789012:root"},
                "Action": "s3:GetObject",
                "Resource": f"{OUTPUTS}/*",
            },
        ),
    ),
    (
        "queue-policy-principal-star",
        "public-principal",
        _extend_policy(
            "aws:sqs/queuePolicy:QueuePolicy", "sdfleet-events-sd15-queue-policy", _sqs_public()
        ),
    ),
    (
        "queue-policy-source-arn-wildcard",
        "public-principal",
        _extend_policy(
            "aws:sqs/queuePolicy:QueuePolicy",
            "sdfleet-events-sd15-queue-policy",
            _sqs_public(Condition={"ArnLike": {"aws:SourceArn": "arn:aws:sns:*:*:*"}}),
        ),
    ),
    (
        "queue-policy-if-exists-condition",
        "public-principal",
        _extend_policy(
            "aws:sqs/queuePolicy:QueuePolicy",
            "sdfleet-events-sd15-queue-policy",
            _sqs_public(Condition={"ArnEqualsIfExists": {"aws:SourceArn": TOPIC_ARN}}),
        ),
    ),
    (
        "topic-policy-principal-star",
        "public-principal",
        _add(
            "aws:sns/topicPolicy:TopicPolicy",
            "planted-topic-policy",
            {"arn": TOPIC_ARN, "policy": _doc(TOPIC_POLICY)},
        ),
    ),
    ("queue-inline-policy", "public-principal", _set(*QUEUE, "policy", _doc(_sqs_public()))),
    (
        "topic-inline-policy",
        "public-principal",
        _set("aws:sns/topic:Topic", "sdfleet-events-input", "policy", _doc(TOPIC_POLICY)),
    ),
    (
        "key-policy-principal-star",
        "public-principal",
        _extend_policy(
            *KEY, {"Effect": "Allow", "Principal": "*", "Action": "kms:Decrypt", "Resource": "*"}
        ),
    ),
    (
        "key-policy-kms-star",
        "iam-action-wildcard",
        _extend_policy(
            *KEY,
            {
                "Effect": "Allow",
                "Principal": {"AWS": "arn:aws:iam::123456789012:root"},
                "Action": "kms:*",
                "Resource": "*",
            },
        ),
    ),
    (
        "trust-aws-star",
        "trust-public",
        _set("aws:iam/role:Role", "sdfleet-sd15-role", "assumeRolePolicy", _trust({"AWS": "*"})),
    ),
    (
        "trust-star",
        "trust-public",
        _set("aws:iam/role:Role", "sdfleet-flux-role", "assumeRolePolicy", _trust("*")),
    ),
    ("administrator-access", "admin-managed-policy", _attach("AdministratorAccess")),
    ("power-user-access", "admin-managed-policy", _attach("PowerUserAccess")),
    ("iam-full-access", "admin-managed-policy", _attach("IAMFullAccess")),
    ("s3-full-access", "admin-managed-policy", _attach("AmazonS3FullAccess")),
    ("job-function-admin", "admin-managed-policy", _attach("job-function/SystemAdministrator")),
    (
        "role-managed-policy-arns",
        "admin-managed-policy",
        _set(
            "aws:iam/role:Role",
            "sdfleet-sd15-role",
            "managedPolicyArns",
            ["arn:aws:iam::aws:policy/AdministratorAccess"],
        ),
    ),
    ("read-only-access", "managed-policy-not-allowed", _attach("ReadOnlyAccess")),
    ("iam-user", "iam-user", _add("aws:iam/user:User", "planted-user", {"name": "ci"})),
    (
        "iam-user-policy",
        "iam-user",
        _add(
            "aws:iam/userPolicy:UserPolicy",
            "planted-user-policy",
            {"user": "ci", "policy": _doc(_allow("s3:GetObject"))},
        ),
    ),
    (
        "iam-user-policy-attachment",
        "iam-user",
        _add(
            "aws:iam/userPolicyAttachment:UserPolicyAttachment",
            "planted-upa",
            {"user": "ci", "policyArn": "arn:aws:iam::123456789012:policy/x"},
        ),
    ),
    (
        "iam-access-key",
        "iam-user",
        _add("aws:iam/accessKey:AccessKey", "planted-key", {"user": "ci"}),
    ),
    ("lambda-principal-star", "lambda-public-permission", _set(*LAMBDA, "principal", "*")),
    ("lambda-no-source-arn", "lambda-public-permission", _drop(*LAMBDA, "sourceArn")),
    (
        "lambda-url-no-auth",
        "lambda-public-permission",
        _add(
            "aws:lambda/functionUrl:FunctionUrl",
            "planted-url",
            {"functionName": "f", "authorizationType": "NONE"},
        ),
    ),
    ("policy-not-json", "policy-invalid", _set(*QUEUE, "policy", "{not json")),
    ("bucket-public-access-off", "bucket-public-access-block", _bpa_off),
    ("bucket-no-encryption", "bucket-encryption", _no_sse),
    ("bucket-no-tls-deny", "bucket-tls-only", _no_tls),
    ("queue-unencrypted", "queue-encryption", _drop(*QUEUE, "sqsManagedSseEnabled")),
    (
        "queue-no-dlq",
        "queue-dead-letter",
        _add("aws:sqs/queue:Queue", "planted-queue", {"sqsManagedSseEnabled": True}),
    ),
    (
        "topic-unencrypted",
        "topic-encryption",
        _drop("aws:sns/topic:Topic", "sdfleet-events-output", "kmsMasterKeyId"),
    ),
]


ACCEPTED: list[tuple[str, Callable[[Entries], str]]] = [
    (
        "deny-principal-star",
        _extend_policy(
            "aws:sqs/queuePolicy:QueuePolicy",
            "sdfleet-events-sd15-queue-policy",
            {**_sqs_public(), "Effect": "Deny"},
        ),
    ),
    (
        "principal-star-pinned-source-arn",
        _extend_policy(
            "aws:sqs/queuePolicy:QueuePolicy",
            "sdfleet-events-sd15-queue-policy",
            _sqs_public(Condition={"ArnEquals": {"aws:SourceArn": TOPIC_ARN}}),
        ),
    ),
    (
        "principal-star-pinned-account",
        _extend_policy(
            "aws:sqs/queuePolicy:QueuePolicy",
            "sdfleet-events-sd15-queue-policy",
            _sqs_public(Condition={"StringEquals": {"aws:SourceAccount": "123456789012"}}),
        ),
    ),
    (
        "typed-arn-pattern",
        _grant(_allow("ec2:RunInstances", "arn:aws:ec2:us-east-1:*:launch-template/*")),
    ),
    ("bucket-prefix-pattern", _grant(_allow("s3:GetObject", "arn:aws:s3:::sdfleet-*/inputs/*"))),
    (
        "star-for-allow-listed-only",
        _grant(_allow(["ec2:DescribeSubnets", "pricing:GetProducts"], "*")),
    ),
    (
        "customer-managed-attachment",
        _add(
            "aws:iam/rolePolicyAttachment:RolePolicyAttachment",
            "own",
            {"policyArn": "arn:aws:iam::123456789012:policy/FullAccessToNothing", "role": "r"},
        ),
    ),
    ("lambda-account-principal", _set(*LAMBDA, "principal", "123456789012")),
]
