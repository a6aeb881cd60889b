"""The Karpenter controller's IAM policies.

They follow Karpenter's getting-started CloudFormation template for v1.14
(``website/content/en/v1.14/getting-started/getting-started-with-karpenter/
cloudformation.yaml``) statement by statement, with every tag and cluster condition kept. The
template splits them into managed policies; :func:`karpenter_controller_policies` returns them
by the template's names so each becomes one ``aws.iam.Policy`` (merged, they would sit a few
hundred characters under the 6144-character managed-policy limit, and the cluster name occurs
in them more than twenty times).
"""

from __future__ import annotations

from typing import Any

from sdfleet.components.builders.errors import fail
from sdfleet.components.builders.iam.documents import (
    check_account_id,
    checked_arn,
    policy,
    statement,
)

# The only actions the controller is granted on Resource "*": they have no resource-level
# permissions, and the template grants them this way (most with a region/cluster condition).
DISCOVERY_STAR_ACTIONS: frozenset[str] = frozenset(
    {
        "ec2:DescribeCapacityReservations",
        "ec2:DescribeImages",
        "ec2:DescribeInstances",
        "ec2:DescribeInstanceStatus",
        "ec2:DescribeInstanceTypeOfferings",
        "ec2:DescribeInstanceTypes",
        "ec2:DescribeLaunchTemplates",
        "ec2:DescribePlacementGroups",
        "ec2:DescribeSecurityGroups",
        "ec2:DescribeSpotPriceHistory",
        "ec2:DescribeSubnets",
        "pricing:GetProducts",
        "iam:ListInstanceProfiles",
        "arc-zonal-shift:GetManagedResource",
    }
)


class _Ctx:
    def __init__(self, partition: str, region: str, account_id: str, cluster_name: str) -> None:
        check_account_id("account_id", account_id)
        if not region or not cluster_name:
            raise fail("region/cluster_name", (region, cluster_name), "non-empty strings")
        self.p, self.r, self.a, self.c = partition, region, account_id, cluster_name

    def ec2(self, resource: str, account: str = "*") -> str:
        return f"arn:{self.p}:ec2:{self.r}:{account}:{resource}"

    @property
    def owned(self) -> str:
        return f"kubernetes.io/cluster/{self.c}"

    @property
    def instance_profiles(self) -> str:
        return f"arn:{self.p}:iam::{self.a}:instance-profile/*"

    @property
    def cluster_arn(self) -> str:
        return f"arn:{self.p}:eks:{self.r}:{self.a}:cluster/{self.c}"


def _node_lifecycle(x: _Ctx) -> dict[str, Any]:
    tagged = [
        x.ec2(r)
        for r in (
            "fleet/*",
            "instance/*",
            "volume/*",
            "network-interface/*",
            "launch-template/*",
            "spot-instances-request/*",
        )
    ]
    scoped = [
        x.ec2("image/*", ""),
        x.ec2("snapshot/*", ""),
        x.ec2("security-group/*"),
        x.ec2("subnet/*"),
        x.ec2("capacity-reservation/*"),
        x.ec2("placement-group/*"),
    ]
    request_tags = {
        f"aws:RequestTag/{x.owned}": "owned",
        "aws:RequestTag/eks:eks-cluster-name": x.c,
    }
    nodepool_req = {"aws:RequestTag/karpenter.sh/nodepool": "*"}
    owned_nodepool = {
        "StringEquals": {f"aws:ResourceTag/{x.owned}": "owned"},
        "StringLike": {"aws:ResourceTag/karpenter.sh/nodepool": "*"},
    }
    launch = ["ec2:RunInstances", "ec2:CreateFleet"]
    return policy(
        statement(launch, scoped, sid="AllowScopedEC2InstanceAccessActions"),
        statement(
            launch,
            x.ec2("launch-template/*"),
            sid="AllowScopedEC2LaunchTemplateAccessActions",
            condition=owned_nodepool,
        ),
        statement(
            [*launch, "ec2:CreateLaunchTemplate"],
            tagged,
            sid="AllowScopedEC2InstanceActionsWithTags",
            condition={"StringEquals": request_tags, "StringLike": nodepool_req},
        ),
        statement(
            "ec2:CreateTags",
            tagged,
            sid="AllowScopedResourceCreationTagging",
            condition={
                "StringEquals": {
                    **request_tags,
                    "ec2:CreateAction": ["RunInstances", "CreateFleet", "CreateLaunchTemplate"],
                },
                "StringLike": nodepool_req,
            },
        ),
        statement(
            "ec2:CreateTags",
            x.ec2("instance/*"),
            sid="AllowScopedResourceTagging",
            condition={
                **owned_nodepool,
                "StringEqualsIfExists": {"aws:RequestTag/eks:eks-cluster-name": x.c},
                "ForAllValues:StringEquals": {
                    "aws:TagKeys": ["eks:eks-cluster-name", "karpenter.sh/nodeclaim", "Name"]
                },
            },
        ),
        statement(
            ["ec2:TerminateInstances", "ec2:DeleteLaunchTemplate"],
            [x.ec2("instance/*"), x.ec2("launch-template/*")],
            sid="AllowScopedDeletion",
            condition=owned_nodepool,
        ),
    )


def _iam_integration(x: _Ctx, node_role_arn: str) -> dict[str, Any]:
    region_tag = "topology.kubernetes.io/region"
    nodeclass_tag = "karpenter.k8s.aws/ec2nodeclass"
    request_tags = {
        f"aws:RequestTag/{x.owned}": "owned",
        "aws:RequestTag/eks:eks-cluster-name": x.c,
        f"aws:RequestTag/{region_tag}": x.r,
    }
    resource_tags = {
        f"aws:ResourceTag/{x.owned}": "owned",
        f"aws:ResourceTag/{region_tag}": x.r,
    }
    return policy(
        statement(
            "iam:PassRole",
            node_role_arn,
            sid="AllowPassingInstanceRole",
            condition={
                "StringEquals": {
                    "iam:PassedToService": ["ec2.amazonaws.com", "ec2.amazonaws.com.cn"]
                }
            },
        ),
        statement(
            ["iam:CreateInstanceProfile"],
            x.instance_profiles,
            sid="AllowScopedInstanceProfileCreationActions",
            condition={
                "StringEquals": request_tags,
                "StringLike": {f"aws:RequestTag/{nodeclass_tag}": "*"},
            },
        ),
        statement(
            ["iam:TagInstanceProfile"],
            x.instance_profiles,
            sid="AllowScopedInstanceProfileTagActions",
            condition={
                "StringEquals": {**resource_tags, **request_tags},
                "StringLike": {
                    f"aws:ResourceTag/{nodeclass_tag}": "*",
                    f"aws:RequestTag/{nodeclass_tag}": "*",
                },
            },
        ),
        statement(
            [
                "iam:AddRoleToInstanceProfile",
                "iam:RemoveRoleFromInstanceProfile",
                "iam:DeleteInstanceProfile",
            ],
            x.instance_profiles,
            sid="AllowScopedInstanceProfileActions",
            condition={
                "StringEquals": resource_tags,
                "StringLike": {f"aws:ResourceTag/{nodeclass_tag}": "*"},
            },
        ),
    )


def _resource_discovery(x: _Ctx) -> dict[str, Any]:
    describe = sorted(a for a in DISCOVERY_STAR_ACTIONS if a.startswith("ec2:"))
    return policy(
        statement(
            describe,
            "*",
            sid="AllowRegionalReadActions",
            condition={"StringEquals": {"aws:RequestedRegion": x.r}},
        ),
        statement(
            "ssm:GetParameter",
            f"arn:{x.p}:ssm:{x.r}::parameter/aws/service/*",
            sid="AllowSSMReadActions",
        ),
        statement("pricing:GetProducts", "*", sid="AllowPricingReadActions"),
        statement("iam:ListInstanceProfiles", "*", sid="AllowUnscopedInstanceProfileListAction"),
        statement(
            "iam:GetInstanceProfile", x.instance_profiles, sid="AllowInstanceProfileReadActions"
        ),
    )


def karpenter_controller_policies(
    *,
    cluster_name: str,
    region: str,
    account_id: str,
    node_role_arn: str,
    interruption_queue_arn: str,
    partition: str = "aws",
    enable_zonal_shift: bool = False,
) -> dict[str, dict[str, Any]]:
    """The controller's policy documents, keyed by the template's policy names (without the
    ``-<cluster>`` suffix): NodeLifecycle, IAMIntegration, EKSIntegration, Interruption,
    ResourceDiscovery and, with ``enable_zonal_shift``, ZonalShift."""
    x = _Ctx(partition, region, account_id, cluster_name)
    checked_arn("node_role_arn", node_role_arn, "iam")
    checked_arn("interruption_queue_arn", interruption_queue_arn, "sqs")
    policies = {
        "KarpenterControllerNodeLifecyclePolicy": _node_lifecycle(x),
        "KarpenterControllerIAMIntegrationPolicy": _iam_integration(x, node_role_arn),
        "KarpenterControllerEKSIntegrationPolicy": policy(
            statement("eks:DescribeCluster", x.cluster_arn, sid="AllowAPIServerEndpointDiscovery")
        ),
        "KarpenterControllerInterruptionPolicy": policy(
            statement(
                ["sqs:DeleteMessage", "sqs:GetQueueUrl", "sqs:ReceiveMessage"],
                interruption_queue_arn,
                sid="AllowInterruptionQueueActions",
            )
        ),
        "KarpenterControllerResourceDiscoveryPolicy": _resource_discovery(x),
    }
    if enable_zonal_shift:
        policies["KarpenterControllerZonalShiftPolicy"] = policy(
            statement(
                ["arc-zonal-shift:GetManagedResource"],
                "*",
                sid="AllowZonalShiftStatusReadOnly",
                condition={"StringEquals": {"arc-zonal-shift:ResourceIdentifier": x.cluster_arn}},
            )
        )
    return policies
