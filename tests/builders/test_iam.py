from __future__ import annotations

import json
from typing import Any

import pytest

from sdfleet.components.builders import iam
from sdfleet.components.builders.s3 import OUTPUT_SUFFIXES

ACCOUNT = "111122223333"
REGION = "us-west-2"
CLUSTER = "sdfleet"
NODE_ROLE = f"arn:aws:iam::{ACCOUNT}:role/KarpenterNodeRole-sdfleet"
INT_QUEUE = f"arn:aws:sqs:{REGION}:{ACCOUNT}:sdfleet"
OWNED = "kubernetes.io/cluster/sdfleet"


def _controller(**overrides: Any) -> dict[str, dict[str, Any]]:
    args: dict[str, Any] = {
        "cluster_name": CLUSTER,
        "region": REGION,
        "account_id": ACCOUNT,
        "node_role_arn": NODE_ROLE,
        "interruption_queue_arn": INT_QUEUE,
    }
    args.update(overrides)
    return iam.karpenter_controller_policies(**args)


def _by_sid(policies: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {s["Sid"]: s for doc in policies.values() for s in doc["Statement"]}


def _actions(stmt: dict[str, Any]) -> set[str]:
    a = stmt["Action"]
    return {a} if isinstance(a, str) else set(a)


def _resources(stmt: dict[str, Any]) -> list[str]:
    r = stmt["Resource"]
    return [r] if isinstance(r, str) else list(r)


def test_controller_policy_names_and_statement_count() -> None:
    policies = _controller()
    assert list(policies) == [
        "KarpenterControllerNodeLifecyclePolicy",
        "KarpenterControllerIAMIntegrationPolicy",
        "KarpenterControllerEKSIntegrationPolicy",
        "KarpenterControllerInterruptionPolicy",
        "KarpenterControllerResourceDiscoveryPolicy",
    ]
    assert len(_by_sid(policies)) == 17
    with_shift = _controller(enable_zonal_shift=True)
    assert len(_by_sid(with_shift)) == 18
    shift = _by_sid(with_shift)["AllowZonalShiftStatusReadOnly"]
    assert shift["Condition"] == {
        "StringEquals": {
            "arc-zonal-shift:ResourceIdentifier": f"arn:aws:eks:{REGION}:{ACCOUNT}:cluster/{CLUSTER}"
        }
    }
    for doc in with_shift.values():
        # Each stays well under the 6144-character managed-policy limit.
        assert len(json.dumps(doc, separators=(",", ":"))) < 6144


def test_controller_policy_keeps_tag_and_cluster_conditions() -> None:
    s = _by_sid(_controller())
    assert "Condition" not in s["AllowScopedEC2InstanceAccessActions"]
    assert s["AllowScopedEC2InstanceAccessActions"]["Resource"] == [
        f"arn:aws:ec2:{REGION}::image/*",
        f"arn:aws:ec2:{REGION}::snapshot/*",
        f"arn:aws:ec2:{REGION}:*:security-group/*",
        f"arn:aws:ec2:{REGION}:*:subnet/*",
        f"arn:aws:ec2:{REGION}:*:capacity-reservation/*",
        f"arn:aws:ec2:{REGION}:*:placement-group/*",
    ]
    assert s["AllowScopedEC2LaunchTemplateAccessActions"]["Condition"] == {
        "StringEquals": {f"aws:ResourceTag/{OWNED}": "owned"},
        "StringLike": {"aws:ResourceTag/karpenter.sh/nodepool": "*"},
    }
    with_tags = s["AllowScopedEC2InstanceActionsWithTags"]
    assert _actions(with_tags) == {
        "ec2:RunInstances",
        "ec2:CreateFleet",
        "ec2:CreateLaunchTemplate",
    }
    assert with_tags["Condition"] == {
        "StringEquals": {
            f"aws:RequestTag/{OWNED}": "owned",
            "aws:RequestTag/eks:eks-cluster-name": CLUSTER,
        },
        "StringLike": {"aws:RequestTag/karpenter.sh/nodepool": "*"},
    }
    assert len(with_tags["Resource"]) == 6
    creation = s["AllowScopedResourceCreationTagging"]["Condition"]
    assert creation["StringEquals"]["ec2:CreateAction"] == [
        "RunInstances",
        "CreateFleet",
        "CreateLaunchTemplate",
    ]
    assert creation["StringEquals"][f"aws:RequestTag/{OWNED}"] == "owned"
    tagging = s["AllowScopedResourceTagging"]
    assert tagging["Resource"] == f"arn:aws:ec2:{REGION}:*:instance/*"
    assert tagging["Condition"] == {
        "StringEquals": {f"aws:ResourceTag/{OWNED}": "owned"},
        "StringLike": {"aws:ResourceTag/karpenter.sh/nodepool": "*"},
        "StringEqualsIfExists": {"aws:RequestTag/eks:eks-cluster-name": CLUSTER},
        "ForAllValues:StringEquals": {
            "aws:TagKeys": ["eks:eks-cluster-name", "karpenter.sh/nodeclaim", "Name"]
        },
    }
    deletion = s["AllowScopedDeletion"]
    assert _actions(deletion) == {"ec2:TerminateInstances", "ec2:DeleteLaunchTemplate"}
    assert deletion["Condition"]["StringEquals"] == {f"aws:ResourceTag/{OWNED}": "owned"}
    passrole = s["AllowPassingInstanceRole"]
    assert passrole["Resource"] == NODE_ROLE
    assert passrole["Condition"] == {
        "StringEquals": {"iam:PassedToService": ["ec2.amazonaws.com", "ec2.amazonaws.com.cn"]}
    }
    profile = f"arn:aws:iam::{ACCOUNT}:instance-profile/*"
    create = s["AllowScopedInstanceProfileCreationActions"]
    assert create["Resource"] == profile
    assert create["Condition"]["StringEquals"] == {
        f"aws:RequestTag/{OWNED}": "owned",
        "aws:RequestTag/eks:eks-cluster-name": CLUSTER,
        "aws:RequestTag/topology.kubernetes.io/region": REGION,
    }
    assert len(s["AllowScopedInstanceProfileTagActions"]["Condition"]["StringEquals"]) == 5
    assert len(s["AllowScopedInstanceProfileTagActions"]["Condition"]["StringLike"]) == 2
    assert s["AllowScopedInstanceProfileActions"]["Condition"]["StringLike"] == {
        "aws:ResourceTag/karpenter.k8s.aws/ec2nodeclass": "*"
    }
    assert s["AllowAPIServerEndpointDiscovery"]["Resource"] == (
        f"arn:aws:eks:{REGION}:{ACCOUNT}:cluster/{CLUSTER}"
    )
    assert s["AllowInterruptionQueueActions"]["Resource"] == INT_QUEUE
    assert _actions(s["AllowInterruptionQueueActions"]) == {
        "sqs:DeleteMessage",
        "sqs:GetQueueUrl",
        "sqs:ReceiveMessage",
    }
    regional = s["AllowRegionalReadActions"]
    assert regional["Condition"] == {"StringEquals": {"aws:RequestedRegion": REGION}}
    assert s["AllowSSMReadActions"]["Resource"] == f"arn:aws:ssm:{REGION}::parameter/aws/service/*"
    assert s["AllowInstanceProfileReadActions"]["Resource"] == profile


def test_resource_star_only_for_allow_listed_actions() -> None:
    star_actions: set[str] = set()
    for stmt in _by_sid(_controller(enable_zonal_shift=True)).values():
        if "*" in _resources(stmt):
            star_actions |= _actions(stmt)
    assert star_actions == iam.DISCOVERY_STAR_ACTIONS


def test_partition_is_used_everywhere() -> None:
    text = json.dumps(
        _controller(
            partition="aws-cn",
            node_role_arn=f"arn:aws-cn:iam::{ACCOUNT}:role/n",
            interruption_queue_arn=f"arn:aws-cn:sqs:{REGION}:{ACCOUNT}:q",
        )
    )
    assert "arn:aws:" not in text
    assert "arn:aws-cn:ec2:" in text


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"account_id": "123"}, "account_id"),
        ({"node_role_arn": "KarpenterNodeRole"}, "node_role_arn"),
        ({"interruption_queue_arn": "https://sqs/q"}, "interruption_queue_arn"),
    ],
)
def test_controller_policy_rejects_bad_input(overrides: dict[str, Any], field: str) -> None:
    with pytest.raises(ValueError, match=rf"^{field}: got .*allowed"):
        _controller(**overrides)


def test_node_role_policies_and_trust() -> None:
    assert iam.node_role_managed_policy_arns() == [
        "arn:aws:iam::aws:policy/AmazonEKS_CNI_Policy",
        "arn:aws:iam::aws:policy/AmazonEKSWorkerNodePolicy",
        "arn:aws:iam::aws:policy/AmazonEC2ContainerRegistryPullOnly",
        "arn:aws:iam::aws:policy/AmazonSSMManagedInstanceCore",
    ]
    trust = iam.ec2_trust_policy()
    assert trust["Statement"] == [
        {
            "Effect": "Allow",
            "Principal": {"Service": "ec2.amazonaws.com"},
            "Action": "sts:AssumeRole",
        }
    ]


def test_pod_identity_trust() -> None:
    (stmt,) = iam.pod_identity_trust_policy()["Statement"]
    assert stmt["Principal"] == {"Service": "pods.eks.amazonaws.com"}
    assert stmt["Action"] == ["sts:AssumeRole", "sts:TagSession"]
    assert "Condition" not in stmt
    (pinned,) = iam.pod_identity_trust_policy(source_account=ACCOUNT)["Statement"]
    assert pinned["Condition"] == {"StringEquals": {"aws:SourceAccount": ACCOUNT}}
    with pytest.raises(ValueError, match=r"^source_account: got"):
        iam.pod_identity_trust_policy(source_account="abc")


def test_keda_operator_policy_reads_queue_depth_only() -> None:
    arns = [
        f"arn:aws:sqs:{REGION}:{ACCOUNT}:sdfleet-sd15",
        f"arn:aws:sqs:{REGION}:{ACCOUNT}:sdfleet-comfy",
    ]
    (stmt,) = iam.keda_operator_policy(arns)["Statement"]
    assert stmt["Effect"] == "Allow"
    assert stmt["Action"] == "sqs:GetQueueAttributes"
    assert stmt["Resource"] == arns
    with pytest.raises(ValueError, match=r"^queue_arns: got"):
        iam.keda_operator_policy([])
    with pytest.raises(ValueError, match=r"^queue_arns\[0\]: got"):
        iam.keda_operator_policy(["*"])


def test_runtime_pod_policy_exact_actions_and_resources() -> None:
    queue = f"arn:aws:sqs:{REGION}:{ACCOUNT}:sdfleet-sd15"
    topic = f"arn:aws:sns:{REGION}:{ACCOUNT}:sdfleet-output"
    doc = iam.runtime_pod_policy(
        queue_arn=queue,
        output_bucket_arn="arn:aws:s3:::sdfleet-output",
        output_topic_arn=topic,
    )
    grants = {(a, r) for s in doc["Statement"] for a in _actions(s) for r in _resources(s)}
    assert all(s["Effect"] == "Allow" for s in doc["Statement"])
    # No model bucket access (models come through the Mountpoint driver's role), no inputs.
    assert grants == {
        ("sqs:ReceiveMessage", queue),
        ("sqs:DeleteMessage", queue),
        ("sqs:ChangeMessageVisibility", queue),
        ("sqs:GetQueueAttributes", queue),
        ("s3:PutObject", "arn:aws:s3:::sdfleet-output/*"),
        ("s3:GetObject", "arn:aws:s3:::sdfleet-output/*request.json"),
        *(("s3:GetObject", f"arn:aws:s3:::sdfleet-output/*{x}") for x in OUTPUT_SUFFIXES),
        ("sns:Publish", topic),
    }
    assert not any("Condition" in s for s in doc["Statement"])


def test_runtime_pod_policy_input_buckets_and_kms() -> None:
    doc = iam.runtime_pod_policy(
        queue_arn=f"arn:aws-cn:sqs:cn-north-1:{ACCOUNT}:q",
        output_bucket_arn="arn:aws-cn:s3:::out",
        output_topic_arn=f"arn:aws-cn:sns:cn-north-1:{ACCOUNT}:t",
        input_s3_buckets=["team-inputs", "shared.assets/uploads/"],
        kms_key_arns=[f"arn:aws-cn:kms:cn-north-1:{ACCOUNT}:key/k1"],
    )
    s = {st["Sid"]: st for st in doc["Statement"]}
    # Objects only (no ListBucket), in the output bucket's partition.
    assert s["ReadTaskInputs"]["Action"] == "s3:GetObject"
    assert s["ReadTaskInputs"]["Resource"] == [
        "arn:aws-cn:s3:::team-inputs/*",
        "arn:aws-cn:s3:::shared.assets/uploads/*",
    ]
    assert s["UseEncryptionKeys"]["Resource"] == [f"arn:aws-cn:kms:cn-north-1:{ACCOUNT}:key/k1"]
    assert not any("ListBucket" in str(st["Action"]) for st in doc["Statement"])


@pytest.mark.parametrize(
    "bucket", ["*", "arn:aws:s3:::x", "Bad_Bucket", "a..b", "", "ok/*", "ok/a?b", "ok/a b"]
)
def test_runtime_pod_policy_refuses_bad_input_buckets(bucket: str) -> None:
    with pytest.raises(ValueError, match=r"^input_s3_buckets\[1\]: got"):
        iam.runtime_pod_policy(
            queue_arn=f"arn:aws:sqs:{REGION}:{ACCOUNT}:q",
            output_bucket_arn="arn:aws:s3:::out",
            output_topic_arn=f"arn:aws:sns:{REGION}:{ACCOUNT}:t",
            input_s3_buckets=["ok-bucket", bucket],
        )


def test_mountpoint_driver_policy_prefix() -> None:
    doc = iam.mountpoint_driver_policy("arn:aws:s3:::models", "sd15/")
    s = {st["Sid"]: st for st in doc["Statement"]}
    assert s["ModelRead"]["Resource"] == "arn:aws:s3:::models/sd15/*"
    assert s["ModelList"]["Condition"] == {"StringLike": {"s3:prefix": ["sd15/*"]}}
    with pytest.raises(ValueError, match=r"^model_prefix: got"):
        iam.mountpoint_driver_policy("arn:aws:s3:::models", "sd15")


def test_mountpoint_driver_policy_is_read_only() -> None:
    doc = iam.mountpoint_driver_policy("arn:aws:s3:::models")
    assert {a for st in doc["Statement"] for a in _actions(st)} == {"s3:ListBucket", "s3:GetObject"}


def test_interruption_queue_policy() -> None:
    doc = iam.interruption_queue_policy(INT_QUEUE)
    allow, deny = doc["Statement"]
    assert allow["Effect"] == "Allow"
    assert allow["Principal"] == {"Service": ["events.amazonaws.com", "sqs.amazonaws.com"]}
    assert allow["Action"] == "sqs:SendMessage"
    assert allow["Resource"] == INT_QUEUE
    assert deny == {
        "Sid": "DenyHTTP",
        "Effect": "Deny",
        "Principal": "*",
        "Action": "sqs:*",
        "Resource": INT_QUEUE,
        "Condition": {"Bool": {"aws:SecureTransport": "false"}},
    }


def test_interruption_event_patterns() -> None:
    patterns = iam.interruption_event_patterns()
    assert patterns == {
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
    patterns["SpotInterruptionRule"]["source"].append("x")
    assert iam.INTERRUPTION_EVENT_PATTERNS["SpotInterruptionRule"]["source"] == ["aws.ec2"]


def test_statement_orders_keys_and_keeps_single_values_as_strings() -> None:
    s = iam.statement(
        ("sqs:*",),
        "arn:aws:sqs:us-west-2:111122223333:q",
        sid="DenyHTTP",
        effect="Deny",
        principal="*",
        condition={"Bool": {"aws:SecureTransport": "false"}},
    )
    assert list(s) == ["Sid", "Effect", "Principal", "Action", "Resource", "Condition"]
    assert s["Action"] == ["sqs:*"] and s["Resource"] == "arn:aws:sqs:us-west-2:111122223333:q"
    # A trust statement names no resource; an empty condition is left out.
    trust = iam.statement(
        "sts:AssumeRole", principal={"Service": "ec2.amazonaws.com"}, condition={}
    )
    assert trust == {
        "Effect": "Allow",
        "Principal": {"Service": "ec2.amazonaws.com"},
        "Action": "sts:AssumeRole",
    }


def test_statement_copies_its_inputs() -> None:
    # The controller policies reuse condition maps across statements; none may alias another.
    tags = {"aws:ResourceTag/x": "owned"}
    actions = ["s3:GetObject"]
    s = iam.statement(actions, "*", condition={"StringEquals": tags})
    tags["aws:ResourceTag/y"] = "changed"
    actions.append("s3:PutObject")
    assert s["Condition"] == {"StringEquals": {"aws:ResourceTag/x": "owned"}}
    assert s["Action"] == ["s3:GetObject"]


def test_policy_document_with_and_without_id() -> None:
    s = iam.statement("sqs:SendMessage", "*")
    assert iam.policy(s) == {"Version": "2012-10-17", "Statement": [s]}
    assert list(iam.policy(s, policy_id="P")) == ["Version", "Id", "Statement"]


@pytest.mark.parametrize(
    ("value", "service"),
    [("arn:aws:sns:us-west-2:111122223333:t", "sqs"), ("queue", "sqs"), (None, "s3")],
)
def test_checked_arn_rejects_other_services(value: Any, service: str) -> None:
    with pytest.raises(ValueError, match=rf"^arn: got .*allowed: an {service} ARN"):
        iam.checked_arn("arn", value, service)


@pytest.mark.parametrize("account", ["12345678901", "1234567890123", "12345678901a"])
def test_check_account_id(account: str) -> None:
    with pytest.raises(ValueError, match=r"^account: got .*12-digit"):
        iam.check_account_id("account", account)
    assert iam.check_account_id("account", "111122223333") == "111122223333"
