"""The rule table: one id, one description and one check per rule (docs/policy-checks.md).

Resource rules look at one resource's properties; stack rules at the whole graph (a bucket and
the resources that configure it). ``sdfleet check``, ``sdfleet synth``, the tests and the Pulumi
policy pack all run these same functions.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from sdfleet.policy import data_rules as d
from sdfleet.policy import iam_rules as i
from sdfleet.policy.model import Finding, Resource


@dataclass(frozen=True)
class ResourceRule:
    id: str
    description: str
    check: Callable[[Resource], Iterable[Finding]]


@dataclass(frozen=True)
class StackRule:
    id: str
    description: str
    check: Callable[[Sequence[Resource]], Iterable[Finding]]


RESOURCE_RULES: tuple[ResourceRule, ...] = (
    ResourceRule(
        "iam-action-wildcard",
        "No Allow with a wildcard action: '*', 's3:*', 's3:Put*', 'iam:*Role*', 's3:?etObject'.",
        i.check_action_wildcards,
    ),
    ResourceRule("iam-not-action", "No Allow with NotAction.", i.check_not_action),
    ResourceRule("iam-not-resource", "No Allow with NotResource.", i.check_not_resource),
    ResourceRule(
        "iam-resource-wildcard",
        "No Allow on '*' or a wildcard ARN ('arn:aws:s3:::*', 'arn:*:*:*:*:*') unless every "
        "action is one AWS grants on '*' only.",
        i.check_resource_wildcards,
    ),
    ResourceRule(
        "public-principal",
        "No bucket, queue, topic, key or other resource policy allows Principal '*' (or uses "
        "NotPrincipal) unless a condition pins the source ARN, account or owner.",
        i.check_public_principals,
    ),
    ResourceRule(
        "trust-public",
        "No role trust policy open to any AWS principal.",
        i.check_public_trust,
    ),
    ResourceRule(
        "admin-managed-policy",
        "No AdministratorAccess, PowerUserAccess or *FullAccess AWS managed policy attached.",
        i.check_admin_policies,
    ),
    ResourceRule(
        "managed-policy-not-allowed",
        "AWS managed policies only from the documented allow-list.",
        i.check_managed_policy_allow_list,
    ),
    ResourceRule("iam-user", "No IAM users, user policies or access keys.", i.check_iam_users),
    ResourceRule(
        "lambda-public-permission",
        "No Lambda permission for principal '*', none for a service without sourceArn, and no "
        "function URL without authorization.",
        i.check_lambda_permissions,
    ),
    ResourceRule(
        "policy-invalid",
        "Every policy document parses, so the other rules can read it.",
        i.check_invalid_documents,
    ),
    ResourceRule("queue-encryption", "Every queue is encrypted.", d.check_queue_encryption),
    ResourceRule("topic-encryption", "Every topic is encrypted.", d.check_topic_encryption),
)

STACK_RULES: tuple[StackRule, ...] = (
    StackRule(
        "bucket-public-access-block",
        "Every bucket has a public access block with all four flags.",
        d.check_bucket_public_access_blocks,
    ),
    StackRule(
        "bucket-encryption",
        "Every bucket has a server-side encryption configuration.",
        d.check_bucket_encryption,
    ),
    StackRule(
        "bucket-tls-only",
        "Every bucket policy denies requests without TLS.",
        d.check_bucket_tls_only,
    ),
    StackRule(
        "queue-dead-letter",
        "Every queue has a dead-letter queue, is one, or is tagged 'sdfleet:sink'.",
        d.check_queue_dead_letters,
    ),
)

RULE_IDS: tuple[str, ...] = tuple(r.id for r in RESOURCE_RULES) + tuple(r.id for r in STACK_RULES)


def run_rules(resources: Sequence[Resource]) -> list[Finding]:
    """Every finding of every rule, resource rules first, in resource order."""
    found: list[Finding] = []
    for res in resources:
        for rule in RESOURCE_RULES:
            found.extend(rule.check(res))
    for stack_rule in STACK_RULES:
        found.extend(stack_rule.check(resources))
    return found
