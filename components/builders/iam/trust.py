"""Who may assume sdfleet's roles, and the AWS managed policies its node roles carry.

Deviation from Karpenter's getting-started template: its node role also trusts
``pods.eks.amazonaws.com``; our node roles trust EC2 only (pods never get a node role: Pod
Identity roles are separate).
"""

from __future__ import annotations

from typing import Any

from sdfleet.components.builders.iam.documents import check_account_id, policy, statement

NODE_ROLE_MANAGED_POLICIES: tuple[str, ...] = (
    "AmazonEKS_CNI_Policy",
    "AmazonEKSWorkerNodePolicy",
    "AmazonEC2ContainerRegistryPullOnly",
    "AmazonSSMManagedInstanceCore",
)


def node_role_managed_policy_arns(partition: str = "aws") -> list[str]:
    return [f"arn:{partition}:iam::aws:policy/{name}" for name in NODE_ROLE_MANAGED_POLICIES]


def _source_account(account: str | None) -> dict[str, dict[str, str]] | None:
    return {"StringEquals": {"aws:SourceAccount": account}} if account else None


def service_trust_policy(service: str, source_account: str | None = None) -> dict[str, Any]:
    """Trust for an AWS service (Lambda, API Gateway, ...); ``source_account`` pins the
    calling account with ``aws:SourceAccount``."""
    return policy(
        statement(
            "sts:AssumeRole",
            principal={"Service": service},
            condition=_source_account(source_account),
        )
    )


def ec2_trust_policy(url_suffix: str = "amazonaws.com") -> dict[str, Any]:
    """Trust for the node roles: EC2 instances only."""
    return service_trust_policy(f"ec2.{url_suffix}")


def pod_identity_trust_policy(source_account: str | None = None) -> dict[str, Any]:
    """Trust for roles used through EKS Pod Identity (sts:TagSession carries its session
    tags). ``source_account`` pins the calling account with ``aws:SourceAccount``."""
    if source_account is not None:
        check_account_id("source_account", source_account)
    return policy(
        statement(
            ["sts:AssumeRole", "sts:TagSession"],
            principal={"Service": "pods.eks.amazonaws.com"},
            condition=_source_account(source_account),
        )
    )
