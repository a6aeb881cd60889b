"""IAM policy documents and EventBridge patterns for the GPU plane and the runtimes.

The Karpenter controller policy follows Karpenter's getting-started CloudFormation template for
v1.14 (``website/content/en/v1.14/getting-started/getting-started-with-karpenter/
cloudformation.yaml``) statement by statement, with every tag and cluster condition kept. The
template splits it into managed policies; :func:`karpenter_controller_policies` returns them by
the template's names so each becomes one ``aws.iam.Policy`` (merged, they would sit a few
hundred characters under the 6144-character managed-policy limit, and the cluster name occurs
in them more than twenty times).

Deviation from the template: its node role also trusts ``pods.eks.amazonaws.com``; our node role
trusts EC2 only (pods never get the node role: Pod Identity roles are separate).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from sdfleet.components.builders.errors import fail
from sdfleet.components.builders.s3 import output_writer_statements

_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
# Wildcards in a key prefix would widen an object ARN.
_KEY_PREFIX = re.compile(r"^[!-)+->@-~]{0,512}$")

VERSION = "2012-10-17"

# The only actions that may be granted on Resource "*": they have no resource-level
# permissions, and the template grants them this way (most with a region/cluster condition).
RESOURCE_STAR_ALLOWED_ACTIONS: frozenset[str] = frozenset(
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

NODE_ROLE_MANAGED_POLICIES: tuple[str, ...] = (
    "AmazonEKS_CNI_Policy",
    "AmazonEKSWorkerNodePolicy",
    "AmazonEC2ContainerRegistryPullOnly",
    "AmazonSSMManagedInstanceCore",
)

INTERRUPTION_TARGET_ID = "KarpenterInterruptionQueueTarget"
# Rule name -> EventBridge pattern, as in the template.
INTERRUPTION_EVENT_PATTERNS: dict[str, dict[str, list[str]]] = {
    "ScheduledChangeRule": {"source": ["aws.health"], "detail-type": ["AWS Health Event"]},
    "SpotInterruptionRule": {
        "source": ["aws.ec2"],
        "detail-type": ["EC2 Spot Instance Interruption Warning"],
    },
    "RebalanceRule": {
        "source": ["aws.ec2"],
        "detail-type": ["EC2 Instance Rebalance Recommendation"],
    },
    "InstanceStateChangeRule": {
        "source": ["aws.ec2"],
        "detail-type": ["EC2 Instance State-change Notification"],
    },
    "CapacityReservationInterruptionRule": {
        "source": ["aws.ec2"],
        "detail-type": ["EC2 Capacity Reservation Instance Interruption Warning"],
    },
}
# The template keeps interruption messages 5 minutes: older ones are useless to Karpenter.
INTERRUPTION_QUEUE_RETENTION_SECONDS = 300


def _arn(field: str, value: str, service: str) -> str:
    if not isinstance(value, str) or not value.startswith("arn:") or f":{service}:" not in value:
        raise fail(field, value, f"an {service} ARN")
    return value


def _doc(*statements: dict[str, Any]) -> dict[str, Any]:
    return {"Version": VERSION, "Statement": list(statements)}


def _stmt(
    sid: str, actions: Sequence[str] | str, resources: Sequence[str] | str, **condition: Any
) -> dict[str, Any]:
    s: dict[str, Any] = {
        "Sid": sid,
        "Effect": "Allow",
        "Action": actions if isinstance(actions, str) else list(actions),
        "Resource": resources if isinstance(resources, str) else list(resources),
    }
    if condition:
        s["Condition"] = condition
    return s


# ------------------------------------------------------------------------------------------
# Karpenter controller


class _Ctx:
    def __init__(self, partition: str, region: str, account_id: str, cluster_name: str) -> None:
        if not account_id.isdigit() or len(account_id) != 12:
            raise fail("account_id", account_id, "a 12-digit AWS account id")
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
    owned_res = {f"aws:ResourceTag/{x.owned}": "owned"}
    nodepool_res = {"aws:ResourceTag/karpenter.sh/nodepool": "*"}
    return _doc(
        _stmt(
            "AllowScopedEC2InstanceAccessActions", ["ec2:RunInstances", "ec2:CreateFleet"], scoped
        ),
        _stmt(
            "AllowScopedEC2LaunchTemplateAccessActions",
            ["ec2:RunInstances", "ec2:CreateFleet"],
            x.ec2("launch-template/*"),
            StringEquals=dict(owned_res),
            StringLike=dict(nodepool_res),
        ),
        _stmt(
            "AllowScopedEC2InstanceActionsWithTags",
            ["ec2:RunInstances", "ec2:CreateFleet", "ec2:CreateLaunchTemplate"],
            tagged,
            StringEquals=dict(request_tags),
            StringLike=dict(nodepool_req),
        ),
        _stmt(
            "AllowScopedResourceCreationTagging",
            "ec2:CreateTags",
            tagged,
            StringEquals={
                **request_tags,
                "ec2:CreateAction": ["RunInstances", "CreateFleet", "CreateLaunchTemplate"],
            },
            StringLike=dict(nodepool_req),
        ),
        _stmt(
            "AllowScopedResourceTagging",
            "ec2:CreateTags",
            x.ec2("instance/*"),
            StringEquals=dict(owned_res),
            StringLike=dict(nodepool_res),
            StringEqualsIfExists={"aws:RequestTag/eks:eks-cluster-name": x.c},
            **{
                "ForAllValues:StringEquals": {
                    "aws:TagKeys": ["eks:eks-cluster-name", "karpenter.sh/nodeclaim", "Name"]
                }
            },
        ),
        _stmt(
            "AllowScopedDeletion",
            ["ec2:TerminateInstances", "ec2:DeleteLaunchTemplate"],
            [x.ec2("instance/*"), x.ec2("launch-template/*")],
            StringEquals=dict(owned_res),
            StringLike=dict(nodepool_res),
        ),
    )


def _iam_integration(x: _Ctx, node_role_arn: str) -> dict[str, Any]:
    region_tag = "topology.kubernetes.io/region"
    nodeclass_tag = "karpenter.k8s.aws/ec2nodeclass"
    return _doc(
        _stmt(
            "AllowPassingInstanceRole",
            "iam:PassRole",
            node_role_arn,
            StringEquals={"iam:PassedToService": ["ec2.amazonaws.com", "ec2.amazonaws.com.cn"]},
        ),
        _stmt(
            "AllowScopedInstanceProfileCreationActions",
            ["iam:CreateInstanceProfile"],
            x.instance_profiles,
            StringEquals={
                f"aws:RequestTag/{x.owned}": "owned",
                "aws:RequestTag/eks:eks-cluster-name": x.c,
                f"aws:RequestTag/{region_tag}": x.r,
            },
            StringLike={f"aws:RequestTag/{nodeclass_tag}": "*"},
        ),
        _stmt(
            "AllowScopedInstanceProfileTagActions",
            ["iam:TagInstanceProfile"],
            x.instance_profiles,
            StringEquals={
                f"aws:ResourceTag/{x.owned}": "owned",
                f"aws:ResourceTag/{region_tag}": x.r,
                f"aws:RequestTag/{x.owned}": "owned",
                "aws:RequestTag/eks:eks-cluster-name": x.c,
                f"aws:RequestTag/{region_tag}": x.r,
            },
            StringLike={
                f"aws:ResourceTag/{nodeclass_tag}": "*",
                f"aws:RequestTag/{nodeclass_tag}": "*",
            },
        ),
        _stmt(
            "AllowScopedInstanceProfileActions",
            [
                "iam:AddRoleToInstanceProfile",
                "iam:RemoveRoleFromInstanceProfile",
                "iam:DeleteInstanceProfile",
            ],
            x.instance_profiles,
            StringEquals={
                f"aws:ResourceTag/{x.owned}": "owned",
                f"aws:ResourceTag/{region_tag}": x.r,
            },
            StringLike={f"aws:ResourceTag/{nodeclass_tag}": "*"},
        ),
    )


def _resource_discovery(x: _Ctx) -> dict[str, Any]:
    describe = sorted(a for a in RESOURCE_STAR_ALLOWED_ACTIONS if a.startswith("ec2:"))
    return _doc(
        _stmt(
            "AllowRegionalReadActions",
            describe,
            "*",
            StringEquals={"aws:RequestedRegion": x.r},
        ),
        _stmt(
            "AllowSSMReadActions",
            "ssm:GetParameter",
            f"arn:{x.p}:ssm:{x.r}::parameter/aws/service/*",
        ),
        _stmt("AllowPricingReadActions", "pricing:GetProducts", "*"),
        _stmt("AllowUnscopedInstanceProfileListAction", "iam:ListInstanceProfiles", "*"),
        _stmt("AllowInstanceProfileReadActions", "iam:GetInstanceProfile", x.instance_profiles),
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
    _arn("node_role_arn", node_role_arn, "iam")
    _arn("interruption_queue_arn", interruption_queue_arn, "sqs")
    policies = {
        "KarpenterControllerNodeLifecyclePolicy": _node_lifecycle(x),
        "KarpenterControllerIAMIntegrationPolicy": _iam_integration(x, node_role_arn),
        "KarpenterControllerEKSIntegrationPolicy": _doc(
            _stmt("AllowAPIServerEndpointDiscovery", "eks:DescribeCluster", x.cluster_arn)
        ),
        "KarpenterControllerInterruptionPolicy": _doc(
            _stmt(
                "AllowInterruptionQueueActions",
                ["sqs:DeleteMessage", "sqs:GetQueueUrl", "sqs:ReceiveMessage"],
                interruption_queue_arn,
            )
        ),
        "KarpenterControllerResourceDiscoveryPolicy": _resource_discovery(x),
    }
    if enable_zonal_shift:
        policies["KarpenterControllerZonalShiftPolicy"] = _doc(
            _stmt(
                "AllowZonalShiftStatusReadOnly",
                ["arc-zonal-shift:GetManagedResource"],
                "*",
                StringEquals={"arc-zonal-shift:ResourceIdentifier": x.cluster_arn},
            )
        )
    return policies


# ------------------------------------------------------------------------------------------
# Trust policies and managed policies


def node_role_managed_policy_arns(partition: str = "aws") -> list[str]:
    return [f"arn:{partition}:iam::aws:policy/{name}" for name in NODE_ROLE_MANAGED_POLICIES]


def ec2_trust_policy(url_suffix: str = "amazonaws.com") -> dict[str, Any]:
    """Trust for the Karpenter node role: EC2 instances only."""
    return _doc(
        {
            "Effect": "Allow",
            "Principal": {"Service": f"ec2.{url_suffix}"},
            "Action": "sts:AssumeRole",
        }
    )


def pod_identity_trust_policy(source_account: str | None = None) -> dict[str, Any]:
    """Trust for roles used through EKS Pod Identity (sts:TagSession carries its session
    tags). ``source_account`` pins the calling account with ``aws:SourceAccount``."""
    stmt: dict[str, Any] = {
        "Effect": "Allow",
        "Principal": {"Service": "pods.eks.amazonaws.com"},
        "Action": ["sts:AssumeRole", "sts:TagSession"],
    }
    if source_account is not None:
        if not source_account.isdigit() or len(source_account) != 12:
            raise fail("source_account", source_account, "a 12-digit AWS account id")
        stmt["Condition"] = {"StringEquals": {"aws:SourceAccount": source_account}}
    return _doc(stmt)


# ------------------------------------------------------------------------------------------
# Workload policies


def keda_operator_policy(queue_arns: Sequence[str]) -> dict[str, Any]:
    """The KEDA operator reads queue depth, nothing else (GetQueueAttributes is the only call
    the aws-sqs-queue scaler makes)."""
    if not queue_arns:
        raise fail("queue_arns", list(queue_arns), "at least one SQS queue ARN")
    arns = [_arn(f"queue_arns[{i}]", a, "sqs") for i, a in enumerate(queue_arns)]
    return _doc(_stmt("ReadRuntimeQueueDepth", "sqs:GetQueueAttributes", arns))


def _prefix(model_prefix: str | None) -> str:
    if not model_prefix:
        return ""
    if model_prefix.startswith("/") or not model_prefix.endswith("/"):
        raise fail("model_prefix", model_prefix, "a key prefix ending with '/', e.g. 'sd15/'")
    return model_prefix


def model_read_statements(
    model_bucket_arn: str, model_prefix: str | None = None, sid_prefix: str = "Model"
) -> list[dict[str, Any]]:
    """Read-only access to the model bucket (or a prefix of it), as Mountpoint needs it."""
    bucket = _arn("model_bucket_arn", model_bucket_arn, "s3")
    prefix = _prefix(model_prefix)
    list_stmt = _stmt(f"{sid_prefix}List", "s3:ListBucket", bucket)
    if prefix:
        # ListBucket cannot be scoped by resource; a prefix needs the s3:prefix condition.
        list_stmt["Condition"] = {"StringLike": {"s3:prefix": [f"{prefix}*"]}}
    return [list_stmt, _stmt(f"{sid_prefix}Read", "s3:GetObject", f"{bucket}/{prefix}*")]


def mountpoint_driver_policy(
    model_bucket_arn: str, model_prefix: str | None = None
) -> dict[str, Any]:
    """For the Mountpoint S3 CSI driver's Pod Identity role: read the model bucket only."""
    return _doc(*model_read_statements(model_bucket_arn, model_prefix))


def _input_bucket_objects(index: int, entry: Any, partition: str) -> str:
    """``bucket`` or ``bucket/prefix`` -> the object ARN pattern (the agent allows the same)."""
    bucket, _, prefix = entry.partition("/") if isinstance(entry, str) else ("", "", "")
    if not _BUCKET.match(bucket) or ".." in bucket or not _KEY_PREFIX.match(prefix):
        raise fail(
            f"input_s3_buckets[{index}]",
            entry,
            "an S3 bucket name, optionally /key-prefix without * or ? (not an ARN)",
        )
    return f"arn:{partition}:s3:::{bucket}/{prefix}*"


def runtime_pod_policy(
    *,
    queue_arn: str,
    output_bucket_arn: str,
    output_topic_arn: str,
    input_s3_buckets: Sequence[str] = (),
    kms_key_arns: Sequence[str] = (),
) -> dict[str, Any]:
    """Least privilege for a runtime's pods (the queue agent): its own queue, writing results
    and reading offloaded requests in the output bucket, publishing completions, and reading
    objects (never listing) in the buckets ``s3://`` task inputs may name. No model access:
    models reach the server through the Mountpoint driver's own role. ``kms_key_arns`` only
    when the queue/bucket/topic use customer-managed keys."""
    _arn("queue_arn", queue_arn, "sqs")
    out = _arn("output_bucket_arn", output_bucket_arn, "s3")
    partition = out.split(":")[1]
    _arn("output_topic_arn", output_topic_arn, "sns")
    statements = [
        _stmt(
            "ConsumeOwnQueue",
            [
                "sqs:ReceiveMessage",
                "sqs:DeleteMessage",
                "sqs:ChangeMessageVisibility",
                "sqs:GetQueueAttributes",
            ],
            queue_arn,
        ),
        *output_writer_statements(out),
        _stmt("PublishCompletions", "sns:Publish", output_topic_arn),
    ]
    if input_s3_buckets:
        arns = [_input_bucket_objects(i, b, partition) for i, b in enumerate(input_s3_buckets)]
        statements.append(_stmt("ReadTaskInputs", "s3:GetObject", arns))
    if kms_key_arns:
        keys = [_arn(f"kms_key_arns[{i}]", k, "kms") for i, k in enumerate(kms_key_arns)]
        statements.append(_stmt("UseEncryptionKeys", ["kms:Decrypt", "kms:GenerateDataKey"], keys))
    return _doc(*statements)


# ------------------------------------------------------------------------------------------
# Interruption queue


def interruption_queue_policy(queue_arn: str) -> dict[str, Any]:
    """Only EventBridge (and SQS itself) may send; any non-TLS access is denied."""
    _arn("queue_arn", queue_arn, "sqs")
    return {
        "Version": VERSION,
        "Id": "EC2InterruptionPolicy",
        "Statement": [
            {
                "Sid": "AllowInterruptionEvents",
                "Effect": "Allow",
                "Principal": {"Service": ["events.amazonaws.com", "sqs.amazonaws.com"]},
                "Action": "sqs:SendMessage",
                "Resource": queue_arn,
            },
            {
                "Sid": "DenyHTTP",
                "Effect": "Deny",
                "Principal": "*",
                "Action": "sqs:*",
                "Resource": queue_arn,
                "Condition": {"Bool": {"aws:SecureTransport": "false"}},
            },
        ],
    }


def interruption_event_patterns() -> dict[str, dict[str, list[str]]]:
    """A fresh copy of :data:`INTERRUPTION_EVENT_PATTERNS` (rule name -> pattern)."""
    return {
        name: {k: list(v) for k, v in p.items()} for name, p in INTERRUPTION_EVENT_PATTERNS.items()
    }
