"""Where policy documents live in a resource's properties, and how to read their statements."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal

from sdfleet.policy.model import Resource, Unknown

# identity: grants to the role/user/group holding it; trust: who may assume a role;
# resource: who may use a bucket/queue/topic/...; key: a KMS key policy (Resource "*" = the key).
Kind = Literal["identity", "trust", "resource", "key"]

# (resource type, property, kind) of every policy document property the rules read. Queues,
# topics and buckets accept an inline `policy` as well as a separate *Policy resource: both
# are checked the same way.
POLICY_PROPERTIES: tuple[tuple[str, str, Kind], ...] = (
    ("aws:iam/rolePolicy:RolePolicy", "policy", "identity"),
    ("aws:iam/policy:Policy", "policy", "identity"),
    ("aws:iam/userPolicy:UserPolicy", "policy", "identity"),
    ("aws:iam/groupPolicy:GroupPolicy", "policy", "identity"),
    ("aws:iam/role:Role", "assumeRolePolicy", "trust"),
    ("aws:sqs/queuePolicy:QueuePolicy", "policy", "resource"),
    ("aws:sqs/queue:Queue", "policy", "resource"),
    ("aws:sns/topicPolicy:TopicPolicy", "policy", "resource"),
    ("aws:sns/topic:Topic", "policy", "resource"),
    ("aws:s3/bucketPolicy:BucketPolicy", "policy", "resource"),
    ("aws:s3/bucket:Bucket", "policy", "resource"),
    ("aws:s3/bucketV2:BucketV2", "policy", "resource"),
    ("aws:ecr/repositoryPolicy:RepositoryPolicy", "policy", "resource"),
    ("aws:secretsmanager/secretPolicy:SecretPolicy", "policy", "resource"),
    ("aws:apigateway/restApi:RestApi", "policy", "resource"),
    ("aws:xray/resourcePolicy:ResourcePolicy", "policyDocument", "resource"),
    ("aws:apigateway/restApiPolicy:RestApiPolicy", "policy", "resource"),
    ("aws:kms/key:Key", "policy", "key"),
    ("aws:kms/keyPolicy:KeyPolicy", "policy", "key"),
)


@dataclass(frozen=True)
class PolicyDocument:
    resource: Resource
    where: str  # the property, e.g. "policy" or "inlinePolicies[0].policy"
    kind: Kind
    statements: list[dict[str, Any]] | None  # None: present but not a readable document
    problem: str = ""


def _parse(raw: Any) -> tuple[list[dict[str, Any]] | None, str]:
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except json.JSONDecodeError as err:
            return None, f"not valid JSON ({err.msg} at char {err.pos})"
    if not isinstance(raw, dict):
        return None, f"not a JSON object (got {type(raw).__name__})"
    statements = as_list(raw.get("Statement"))
    if not statements or not all(isinstance(st, dict) for st in statements):
        return None, "no 'Statement' list of objects"
    return statements, ""


def _present(raw: Any) -> bool:
    return raw not in (None, "", {}) and not isinstance(raw, Unknown)


def documents(res: Resource) -> Iterator[PolicyDocument]:
    """Every policy document of a resource, parsed; unknown (preview) values are skipped."""
    for type_, key, kind in POLICY_PROPERTIES:
        if res.type == type_ and _present(raw := res.props.get(key)):
            statements, problem = _parse(raw)
            yield PolicyDocument(res, key, kind, statements, problem)
    if res.type == "aws:iam/role:Role":
        for i, inline in enumerate(as_list(res.props.get("inlinePolicies"))):
            raw = inline.get("policy") if isinstance(inline, dict) else None
            if _present(raw):
                statements, problem = _parse(raw)
                yield PolicyDocument(
                    res, f"inlinePolicies[{i}].policy", "identity", statements, problem
                )


def as_list(value: Any) -> list[Any]:
    if value is None or isinstance(value, Unknown):
        return []
    return list(value) if isinstance(value, (list, tuple)) else [value]


def strings(value: Any) -> list[str]:
    """The string entries of a string-or-list element (unknown entries are left out)."""
    return [v for v in as_list(value) if isinstance(v, str)]


def allows(doc: PolicyDocument) -> Iterator[tuple[str, dict[str, Any]]]:
    """(label, statement) of each Allow statement; the label names the property and Sid."""
    for i, st in enumerate(doc.statements or []):
        if st.get("Effect") == "Allow":
            sid = st.get("Sid")
            yield f"{doc.where} statement {sid if isinstance(sid, str) and sid else f'#{i}'}", st


def principal_values(principal: Any) -> list[str]:
    """Every principal a `Principal` element names ("*" alone counts as "*")."""
    if isinstance(principal, str):
        return [principal]
    if isinstance(principal, dict):
        return [v for values in principal.values() for v in strings(values)]
    return []
