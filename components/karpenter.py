"""Karpenter: node role and access entry, interruption queue and its EventBridge rules, the
controller's Pod Identity role with the getting-started template's policies, and the chart."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import pulumi
import pulumi_aws as aws
import pulumi_kubernetes as k8s

from sdfleet.components import _opts, versions
from sdfleet.components._iam import pod_identity_role
from sdfleet.components.builders import iam
from sdfleet.components.builders import karpenter as kb
from sdfleet.components.config_model import ClusterConfig, config_default

NAMESPACE = "kube-system"
SERVICE_ACCOUNT = "karpenter"


@dataclass
class KarpenterArgs:
    """Inputs of Karpenter: the cluster, where the controller runs, and whether to create the
    account's Spot service-linked role."""

    cluster_name: str
    """The EKS cluster; names the node role, interruption queue and discovery tag."""
    system_node_selector: dict[str, str] = field(default_factory=dict)
    """Node labels the controller's pods are pinned to (the system nodes); empty for any node."""
    create_spot_service_linked_role: bool = config_default(
        ClusterConfig, "create_spot_service_linked_role"
    )
    """Create AWSServiceRoleForEC2Spot (fails if the account already has it)."""


def _policy_json(policy_name: str, policies: dict[str, dict[str, Any]]) -> str:
    return json.dumps(policies[policy_name])


def _crd_release(
    name: str, parent: pulumi.Resource, k8s_opts: pulumi.ResourceOptions
) -> k8s.helm.v3.Release:
    """Karpenter's CRDs as their own release of the same version, installed before the
    controller. take_ownership adopts CRDs an earlier install created from the controller
    chart's crds/ folder (Helm would otherwise refuse them as not part of this release)."""
    return k8s.helm.v3.Release(
        f"{name}-crd-release",
        name="karpenter-crd",
        chart=versions.KARPENTER_CRD_CHART,
        version=versions.KARPENTER_CRD_CHART_VERSION,
        namespace=NAMESPACE,
        atomic=True,
        take_ownership=True,
        opts=pulumi.ResourceOptions.merge(k8s_opts, pulumi.ResourceOptions(parent=parent)),
    )


class Karpenter(pulumi.ComponentResource):
    """Karpenter on an existing EKS cluster. The Kubernetes provider and the resources the
    chart must wait for (the cluster's addons) come through ``ResourceOptions``."""

    node_role_name: pulumi.Output[str]
    node_role_arn: pulumi.Output[str]
    interruption_queue_name: pulumi.Output[str]
    spot_interruption_rule_name: pulumi.Output[str]
    """The EventBridge rule of spot interruption warnings (its TriggeredRules count spot
    reclaims; Observability alarms on it)."""
    controller_role_arn: pulumi.Output[str]
    crd_release: k8s.helm.v3.Release
    release: k8s.helm.v3.Release

    def __init__(
        self, name: str, args: KarpenterArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("sdfleet:index:Karpenter", name, None, opts)
        provider, deps = _opts.k8s_provider(opts), _opts.depends_on(opts)
        k8s_opts = pulumi.ResourceOptions(parent=self, provider=provider, depends_on=deps)
        invoke = pulumi.InvokeOutputOptions(parent=self)
        identity = aws.get_caller_identity_output(opts=invoke)
        region = aws.get_region_output(opts=invoke)
        partition = aws.get_partition_output(opts=invoke)

        node_role, access_entry = self._node_role(name, args, deps)
        queue = self._interruption_queue(name, args)
        controller_role = pod_identity_role(f"{name}-controller-role", self)
        policies = pulumi.Output.all(
            region.region, identity.account_id, partition.partition, node_role.arn, queue.arn
        ).apply(
            lambda v: iam.karpenter_controller_policies(
                cluster_name=args.cluster_name,
                region=v[0],
                account_id=v[1],
                partition=v[2],
                node_role_arn=v[3],
                interruption_queue_arn=v[4],
            )
        )
        attached = self._controller_policies(name, args, controller_role, policies)
        association = aws.eks.PodIdentityAssociation(
            f"{name}-pod-identity",
            cluster_name=args.cluster_name,
            namespace=NAMESPACE,
            service_account=SERVICE_ACCOUNT,
            role_arn=controller_role.arn,
            opts=pulumi.ResourceOptions(parent=self, depends_on=deps),
        )
        if args.create_spot_service_linked_role:
            aws.iam.ServiceLinkedRole(
                f"{name}-spot-slr",
                aws_service_name="spot.amazonaws.com",
                opts=pulumi.ResourceOptions(parent=self),
            )

        values: pulumi.Output[dict[str, Any]] = pulumi.Output.all(queue.name, region.region).apply(
            lambda v: kb.karpenter_values(
                cluster_name=args.cluster_name,
                interruption_queue_name=v[0],
                region=v[1],
                node_selector=args.system_node_selector,
                service_account_name=SERVICE_ACCOUNT,
            )
        )
        self.crd_release = _crd_release(name, self, k8s_opts)
        self.release = k8s.helm.v3.Release(
            f"{name}-release",
            name="karpenter",
            chart=versions.KARPENTER_CHART,
            version=versions.KARPENTER_CHART_VERSION,
            namespace=NAMESPACE,
            values=values,
            atomic=True,
            # The CRDs come from the karpenter-crd release, which upgrades them.
            skip_crds=True,
            opts=pulumi.ResourceOptions(
                parent=self,
                provider=provider,
                depends_on=[self.crd_release, association, access_entry, *attached, *deps],
            ),
        )
        self.node_role_name = node_role.name
        self.node_role_arn = node_role.arn
        self.interruption_queue_name = queue.name
        self.controller_role_arn = controller_role.arn
        self.register_outputs(
            {
                "node_role_name": self.node_role_name,
                "interruption_queue_name": self.interruption_queue_name,
                "spot_interruption_rule_name": self.spot_interruption_rule_name,
                "controller_role_arn": self.controller_role_arn,
            }
        )

    def _node_role(
        self, name: str, args: KarpenterArgs, deps: list[pulumi.Resource]
    ) -> tuple[aws.iam.Role, aws.eks.AccessEntry]:
        """The role of the nodes Karpenter launches and the access entry that lets them join.
        EC2 trust only (pods use Pod Identity, and IMDS hop limit 1 hides this role)."""
        node_role = aws.iam.Role(
            f"{name}-node-role",
            name=f"KarpenterNodeRole-{args.cluster_name}",
            assume_role_policy=json.dumps(iam.ec2_trust_policy()),
            opts=pulumi.ResourceOptions(parent=self),
        )
        for arn in iam.node_role_managed_policy_arns():
            aws.iam.RolePolicyAttachment(
                f"{name}-node-{arn.rsplit('/', 1)[-1]}",
                role=node_role.name,
                policy_arn=arn,
                opts=pulumi.ResourceOptions(parent=node_role),
            )
        access_entry = aws.eks.AccessEntry(
            f"{name}-node-access",
            cluster_name=args.cluster_name,
            principal_arn=node_role.arn,
            type="EC2_LINUX",
            opts=pulumi.ResourceOptions(parent=self, depends_on=deps),
        )
        return node_role, access_entry

    def _interruption_queue(self, name: str, args: KarpenterArgs) -> aws.sqs.Queue:
        """The queue Karpenter reads interruption events from (Spot, rebalance, health,
        instance state, capacity reservation) and the EventBridge rules that feed it (the
        spot one's name is ``spot_interruption_rule_name``)."""
        child = pulumi.ResourceOptions(parent=self)
        queue = aws.sqs.Queue(
            f"{name}-interruptions",
            name=args.cluster_name,
            message_retention_seconds=iam.INTERRUPTION_QUEUE_RETENTION_SECONDS,
            sqs_managed_sse_enabled=True,
            # Karpenter deletes what it reads; stale events expire in 5 minutes by design.
            tags={"sdfleet:sink": "karpenter interruption events expire after 5 minutes"},
            opts=child,
        )
        aws.sqs.QueuePolicy(
            f"{name}-interruptions-policy",
            queue_url=queue.url,
            policy=queue.arn.apply(lambda arn: json.dumps(iam.interruption_queue_policy(arn))),
            opts=pulumi.ResourceOptions(parent=queue),
        )
        rules = {}
        for rule_name, pattern in iam.interruption_event_patterns().items():
            rule = aws.cloudwatch.EventRule(
                f"{name}-{rule_name}",
                event_pattern=json.dumps(pattern),
                opts=child,
            )
            aws.cloudwatch.EventTarget(
                f"{name}-{rule_name}-target",
                rule=rule.name,
                target_id=iam.INTERRUPTION_TARGET_ID,
                arn=queue.arn,
                opts=pulumi.ResourceOptions(parent=rule),
            )
            rules[rule_name] = rule
        self.spot_interruption_rule_name = rules["SpotInterruptionRule"].name
        return queue

    def _controller_policies(
        self,
        name: str,
        args: KarpenterArgs,
        controller_role: aws.iam.Role,
        policies: pulumi.Output[dict[str, dict[str, Any]]],
    ) -> list[pulumi.Resource]:
        """The getting-started template's five controller policies, attached to its role."""
        attached: list[pulumi.Resource] = []
        for policy_name in (
            "KarpenterControllerNodeLifecyclePolicy",
            "KarpenterControllerIAMIntegrationPolicy",
            "KarpenterControllerEKSIntegrationPolicy",
            "KarpenterControllerInterruptionPolicy",
            "KarpenterControllerResourceDiscoveryPolicy",
        ):
            policy = aws.iam.Policy(
                f"{name}-{policy_name}",
                name=f"{policy_name}-{args.cluster_name}",
                policy=policies.apply(partial(_policy_json, policy_name)),
                opts=pulumi.ResourceOptions(parent=controller_role),
            )
            attached.append(
                aws.iam.RolePolicyAttachment(
                    f"{name}-{policy_name}-attachment",
                    role=controller_role.name,
                    policy_arn=policy.arn,
                    opts=pulumi.ResourceOptions(parent=controller_role),
                )
            )
        return attached
