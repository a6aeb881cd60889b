"""Every exception the rules make, in one place, each with its reason (docs/policy-checks.md)."""

from __future__ import annotations

from sdfleet.components.builders.iam import (
    DISCOVERY_STAR_ACTIONS as PLATFORM_STAR_ACTIONS,
)
from sdfleet.components.builders.iam import (
    SNS_TRACING_ACTIONS,
)
from sdfleet.components.builders.iam import (
    TRACING_STAR_ACTIONS as CORE_STAR_ACTIONS,
)
from sdfleet.components.builders.observability import KEY_ADMIN_ACTIONS

# Actions AWS only grants on `Resource: "*"` (no resource-level permissions). The builders own
# the lists, next to the statements that need them: X-Ray tracing (the Lambda and collector
# roles, and SNS active tracing through the X-Ray resource policy), and the describe-style calls
# of Karpenter's controller.
RESOURCE_STAR_ACTIONS: frozenset[str] = (
    frozenset(CORE_STAR_ACTIONS) | frozenset(SNS_TRACING_ACTIONS) | PLATFORM_STAR_ACTIONS
)

# Wildcard actions allowed in KMS key policies only: a key policy governs that one key, and
# these are AWS's key-administrator set (the console's default key policy) plus the
# GenerateDataKey family a service needs to publish to a topic encrypted with the key.
KMS_KEY_POLICY_ACTION_PATTERNS: frozenset[str] = frozenset(
    {a for a in KEY_ADMIN_ACTIONS if "*" in a} | {"kms:GenerateDataKey*"}
)

# AWS managed policies (arn:<partition>:iam::aws:policy/<path+name>) that may be attached. Any
# other AWS managed policy is reported: they are written for every account, so broader than a
# role needs. Key: the policy path and name; value: where sdfleet attaches it, and why.
AWS_MANAGED_POLICY_ALLOW_LIST: dict[str, str] = {
    "AmazonEKSWorkerNodePolicy": "system and Karpenter node roles: kubelet joins the cluster",
    "AmazonEKS_CNI_Policy": "system and Karpenter node roles: the VPC CNI assigns pod IPs",
    "AmazonEC2ContainerRegistryPullOnly": "system and Karpenter node roles: pull images",
    "AmazonSSMManagedInstanceCore": "system and Karpenter node roles: SSM sessions on nodes",
    "CloudWatchAgentServerPolicy": "Container Insights addon role (EksCluster)",
    "service-role/AmazonAPIGatewayPushToCloudWatchLogs": "API Gateway's account logging role",
    "AmazonEKSClusterPolicy": "the EKS cluster role pulumi-eks creates (seen by the policy pack)",
}

# Names of AWS managed policies that grant administration, power-user or full access to a
# service: reported as `admin-managed-policy`, never allow-listed.
ADMIN_POLICY_MARKERS: tuple[str, ...] = ("Administrator", "PowerUser", "FullAccess")

# Condition keys that pin a resource policy's `Principal: "*"` to one source (the caller's
# resource, account or organization), so the statement is not public.
PINNING_CONDITION_KEYS: frozenset[str] = frozenset(
    {
        "aws:sourcearn",
        "aws:sourceaccount",
        "aws:sourceowner",
        "aws:principalaccount",
        "aws:principalarn",
        "aws:principalorgid",
    }
)
PINNING_OPERATORS: frozenset[str] = frozenset(
    {"StringEquals", "StringEqualsIgnoreCase", "StringLike", "ArnEquals", "ArnLike"}
)
