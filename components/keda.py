"""KEDA: the operator chart with a Pod Identity role that may only read the runtime queues'
depth. ScaledObjects use ``podIdentity.provider: aws`` and so act as the operator: KEDA's
workload-identity mode does not work with EKS Pod Identity."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field

import pulumi
import pulumi_aws as aws
import pulumi_kubernetes as k8s

from sdfleet.components import _opts, versions
from sdfleet.components._iam import pod_identity_role
from sdfleet.components.builders import iam
from sdfleet.components.builders import keda as kedab


@dataclass
class KedaArgs:
    """Inputs of Keda: the cluster, the queues whose depth the operator may read, and where
    its pods run."""

    cluster_name: str
    """The EKS cluster (for the operator's Pod Identity association)."""
    queue_arns: Sequence[pulumi.Input[str]]
    """ARNs of the queues ScaledObjects scale on; the operator may read only their depth."""
    system_node_selector: dict[str, str] = field(default_factory=dict)
    """Node labels the operator's pods are pinned to (the system nodes); empty for any node."""


class Keda(pulumi.ComponentResource):
    """KEDA with a Pod Identity role that may read the given queues' depth. The Kubernetes
    provider and the resources the chart must wait for come through ``ResourceOptions``."""

    operator_role_arn: pulumi.Output[str]
    namespace: str
    release: k8s.helm.v3.Release

    def __init__(self, name: str, args: KedaArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("sdfleet:index:Keda", name, None, opts)
        provider, deps = _opts.k8s_provider(opts), _opts.depends_on(opts)
        region = aws.get_region_output(opts=pulumi.InvokeOutputOptions(parent=self))

        role = pod_identity_role(f"{name}-operator-role", self)
        policy = aws.iam.RolePolicy(
            f"{name}-read-queue-depth",
            role=role.id,
            policy=pulumi.Output.all(*args.queue_arns).apply(
                lambda arns: json.dumps(iam.keda_operator_policy(arns))
            ),
            opts=pulumi.ResourceOptions(parent=role),
        )
        association = aws.eks.PodIdentityAssociation(
            f"{name}-pod-identity",
            cluster_name=args.cluster_name,
            namespace=kedab.NAMESPACE,
            service_account=kedab.OPERATOR_SERVICE_ACCOUNT,
            role_arn=role.arn,
            opts=pulumi.ResourceOptions(parent=self, depends_on=deps),
        )
        namespace = k8s.core.v1.Namespace(
            f"{name}-namespace",
            metadata=k8s.meta.v1.ObjectMetaArgs(name=kedab.NAMESPACE),
            opts=pulumi.ResourceOptions(parent=self, provider=provider, depends_on=deps),
        )
        self.release = k8s.helm.v3.Release(
            f"{name}-release",
            name="keda",
            chart=versions.KEDA_CHART,
            version=versions.KEDA_CHART_VERSION,
            repository_opts=k8s.helm.v3.RepositoryOptsArgs(repo=versions.KEDA_CHART_REPO),
            namespace=kedab.NAMESPACE,
            values=region.region.apply(
                lambda r: kedab.keda_values(region=r, node_selector=args.system_node_selector)
            ),
            atomic=True,
            opts=pulumi.ResourceOptions(
                parent=self,
                provider=provider,
                depends_on=[namespace, association, policy, *deps],
            ),
        )
        self.operator_role_arn = role.arn
        self.namespace = kedab.NAMESPACE
        self.register_outputs({"operator_role_arn": self.operator_role_arn})
