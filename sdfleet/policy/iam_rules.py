"""Rules over one resource at a time: policy statements, managed policies, users, Lambda."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any, get_args

from sdfleet.policy.allowlists import (
    ADMIN_POLICY_MARKERS,
    AWS_MANAGED_POLICY_ALLOW_LIST,
    KMS_KEY_POLICY_ACTION_PATTERNS,
    PINNING_CONDITION_KEYS,
    PINNING_OPERATORS,
    RESOURCE_STAR_ACTIONS,
)
from sdfleet.policy.documents import (
    Kind,
    allows,
    as_list,
    documents,
    principal_values,
    strings,
)
from sdfleet.policy.model import Finding, Resource, Unknown, finding


def _has_wildcard(text: str) -> bool:
    return "*" in text or "?" in text


def is_wildcard_resource(arn: str) -> bool:
    """``*``, any ARN whose service is a wildcard, or whose resource part is nothing but
    wildcards and separators (``arn:aws:s3:::*``, ``arn:aws:s3:::*/*``, ``arn:*:*:*:*:*``).
    A typed pattern such as ``arn:aws:ec2:us-east-1:*:launch-template/*`` is not."""
    if arn == "*":
        return True
    parts = arn.split(":", 5)
    if len(parts) < 6:
        return _has_wildcard(arn)
    service, resource = parts[2], parts[5]
    return _has_wildcard(service) or (_has_wildcard(resource) and not resource.strip("*?/:"))


_ALL_KINDS: tuple[Kind, ...] = get_args(Kind)


def _allow_statements(
    res: Resource, kinds: tuple[Kind, ...] = _ALL_KINDS
) -> Iterator[tuple[Kind, str, dict[str, Any]]]:
    """(document kind, label, statement) of every Allow statement in the resource's policy
    documents of the given kinds."""
    for doc in documents(res):
        if doc.kind in kinds:
            for label, st in allows(doc):
                yield doc.kind, label, st


def check_action_wildcards(res: Resource) -> Iterator[Finding]:
    for kind, label, st in _allow_statements(res):
        for action in strings(st.get("Action")):
            if not _has_wildcard(action):
                continue
            if kind == "key" and action in KMS_KEY_POLICY_ACTION_PATTERNS:
                continue
            yield finding(
                "iam-action-wildcard",
                res,
                f"{label}: wildcard action {action!r}; name each action it needs",
            )


def _allows_with(res: Resource, key: str, rule: str, consequence: str) -> Iterator[Finding]:
    """A finding for every Allow statement that has ``key`` (NotAction, NotResource)."""
    for _, label, st in _allow_statements(res):
        if key in st:
            yield finding(rule, res, f"{label}: Allow with {key} {consequence}")


def check_not_action(res: Resource) -> Iterator[Finding]:
    return _allows_with(res, "NotAction", "iam-not-action", "grants every other action")


def check_not_resource(res: Resource) -> Iterator[Finding]:
    return _allows_with(res, "NotResource", "iam-not-resource", "grants on every other resource")


def check_resource_wildcards(res: Resource) -> Iterator[Finding]:
    # A key policy's "*" is the key itself; trust policies name no resource.
    for _, label, st in _allow_statements(res, ("identity", "resource")):
        wild = [r for r in strings(st.get("Resource")) if is_wildcard_resource(r)]
        actions = strings(st.get("Action"))
        if not wild or (actions and all(a in RESOURCE_STAR_ACTIONS for a in actions)):
            continue
        broad = [a for a in actions if a not in RESOURCE_STAR_ACTIONS] or ["NotAction"]
        yield finding(
            "iam-resource-wildcard",
            res,
            f"{label}: Resource {wild[0]!r} for {broad}; only actions AWS grants on '*' "
            "alone (the allow-list) may use a wildcard resource",
        )


def _pinned(condition: Any) -> bool:
    """Does a condition restrict the caller to one source ARN, account or organization?"""
    if not isinstance(condition, dict):
        return False
    for operator, block in condition.items():
        if operator not in PINNING_OPERATORS or not isinstance(block, dict):
            continue
        for key, value in block.items():
            values = as_list(value)
            exact = strings(value)
            if (
                key.lower() in PINNING_CONDITION_KEYS
                and exact
                and len(exact) == len(values)
                and not any(_has_wildcard(v) for v in exact)
            ):
                return True
    return False


def check_public_principals(res: Resource) -> Iterator[Finding]:
    for _, label, st in _allow_statements(res, ("resource", "key")):
        if "NotPrincipal" in st:
            yield finding(
                "public-principal",
                res,
                f"{label}: Allow with NotPrincipal grants everyone but the listed principals",
            )
        elif "*" in principal_values(st.get("Principal")) and not _pinned(st.get("Condition")):
            yield finding(
                "public-principal",
                res,
                f"{label}: Principal '*' (anyone) without a condition pinning aws:SourceArn, "
                "aws:SourceAccount or aws:SourceOwner to one exact value",
            )


def check_public_trust(res: Resource) -> Iterator[Finding]:
    for _, label, st in _allow_statements(res, ("trust",)):
        if "NotPrincipal" in st or "*" in principal_values(st.get("Principal")):
            yield finding(
                "trust-public",
                res,
                f"{label}: the role may be assumed by any AWS principal; name the service, "
                "account or role that assumes it",
            )


def check_invalid_documents(res: Resource) -> Iterator[Finding]:
    for doc in documents(res):
        if doc.statements is None:
            yield finding(
                "policy-invalid", res, f"{doc.where}: {doc.problem}; the rules cannot check it"
            )


# (resource type, property) holding managed policy ARNs attached to a role, user or group.
ATTACHMENT_PROPERTIES: tuple[tuple[str, str], ...] = (
    ("aws:iam/rolePolicyAttachment:RolePolicyAttachment", "policyArn"),
    ("aws:iam/userPolicyAttachment:UserPolicyAttachment", "policyArn"),
    ("aws:iam/groupPolicyAttachment:GroupPolicyAttachment", "policyArn"),
    ("aws:iam/policyAttachment:PolicyAttachment", "policyArn"),
    ("aws:iam/role:Role", "managedPolicyArns"),
    ("aws:iam/rolePolicyAttachmentsExclusive:RolePolicyAttachmentsExclusive", "policyArns"),
    ("aws:iam/group:Group", "managedPolicyArns"),
)
_AWS_MANAGED = re.compile(r"^arn:[a-z-]+:iam::aws:policy/(?P<name>.+)$")


def aws_managed_policy_names(res: Resource) -> list[str]:
    """The path+name of every AWS managed policy the resource attaches."""
    names: list[str] = []
    for type_, key in ATTACHMENT_PROPERTIES:
        if res.type == type_:
            for arn in strings(res.props.get(key)):
                if match := _AWS_MANAGED.match(arn):
                    names.append(match["name"])
    return names


def is_admin_policy(name: str) -> bool:
    base = name.rsplit("/", 1)[-1]
    return any(marker in base for marker in ADMIN_POLICY_MARKERS)


def check_admin_policies(res: Resource) -> Iterator[Finding]:
    for name in aws_managed_policy_names(res):
        if is_admin_policy(name):
            yield finding(
                "admin-managed-policy",
                res,
                f"attaches the AWS managed policy {name!r} (administrator, power-user or "
                "full-access); write a policy with the exact actions and resources",
            )


def check_managed_policy_allow_list(res: Resource) -> Iterator[Finding]:
    for name in aws_managed_policy_names(res):
        if not is_admin_policy(name) and name not in AWS_MANAGED_POLICY_ALLOW_LIST:
            yield finding(
                "managed-policy-not-allowed",
                res,
                f"attaches the AWS managed policy {name!r}, which is not on the allow-list "
                "(docs/policy-checks.md); write a policy with the exact actions and resources",
            )


IAM_USER_TYPES: frozenset[str] = frozenset(
    {
        "aws:iam/user:User",
        "aws:iam/userPolicy:UserPolicy",
        "aws:iam/userPolicyAttachment:UserPolicyAttachment",
        "aws:iam/userPoliciesExclusive:UserPoliciesExclusive",
        "aws:iam/userPolicyAttachmentsExclusive:UserPolicyAttachmentsExclusive",
        "aws:iam/accessKey:AccessKey",
        "aws:iam/userLoginProfile:UserLoginProfile",
        "aws:iam/userGroupMembership:UserGroupMembership",
        "aws:iam/sshKey:SshKey",
        "aws:iam/serviceSpecificCredential:ServiceSpecificCredential",
        "aws:iam/signingCertificate:SigningCertificate",
    }
)


def check_iam_users(res: Resource) -> Iterator[Finding]:
    users = res.type in IAM_USER_TYPES or (
        res.type
        in ("aws:iam/policyAttachment:PolicyAttachment", "aws:iam/groupMembership:GroupMembership")
        and bool(as_list(res.props.get("users")))
    )
    if users:
        yield finding(
            "iam-user",
            res,
            f"{res.type.rsplit(':', 1)[-1]}: IAM users and access keys are long-lived "
            "credentials; grant access through roles (Pod Identity, service roles)",
        )


def check_lambda_permissions(res: Resource) -> Iterator[Finding]:
    if res.type == "aws:lambda/functionUrl:FunctionUrl":
        if res.props.get("authorizationType") == "NONE":
            yield finding(
                "lambda-public-permission", res, "function URL with authorizationType NONE: public"
            )
        return
    if res.type not in (
        "aws:lambda/permission:Permission",
        "aws:lambda/layerVersionPermission:LayerVersionPermission",
    ):
        return
    principal = res.props.get("principal")
    if isinstance(principal, Unknown) or not isinstance(principal, str):
        return
    if principal == "*":
        yield finding("lambda-public-permission", res, "principal '*': anyone may invoke it")
    elif principal.endswith(".amazonaws.com") and res.type.endswith(":Permission"):
        source = res.props.get("sourceArn")
        if not source and not isinstance(source, Unknown):
            yield finding(
                "lambda-public-permission",
                res,
                f"service principal {principal!r} without sourceArn: any such resource, in any "
                "account, may invoke the function",
            )
