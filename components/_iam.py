"""The one way sdfleet creates a role for EKS Pod Identity."""

from __future__ import annotations

import json

import pulumi
import pulumi_aws as aws

from sdfleet.components.builders import iam


def pod_identity_role(
    name: str, parent: pulumi.Resource, description: str | None = None
) -> aws.iam.Role:
    """A role that only EKS Pod Identity, in this account, may assume."""
    account = aws.get_caller_identity_output(
        opts=pulumi.InvokeOutputOptions(parent=parent)
    ).account_id
    return aws.iam.Role(
        name,
        description=description,
        assume_role_policy=account.apply(lambda a: json.dumps(iam.pod_identity_trust_policy(a))),
        opts=pulumi.ResourceOptions(parent=parent),
    )
