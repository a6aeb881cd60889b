"""EksCluster: the EKS control plane (API auth mode, KMS secrets, control-plane logs), a small
system node group for the controllers, the managed addons, Pod Identity and the Mountpoint for
S3 CSI driver with a role that can only read the model bucket. GPU nodes come from Karpenter."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import partial

import pulumi
import pulumi_aws as aws
import pulumi_eks as eks
import pulumi_kubernetes as k8s

from sdfleet.components import versions
from sdfleet.components._iam import pod_identity_role
from sdfleet.components.builders import iam
from sdfleet.components.builders.karpenter import DISCOVERY_TAG
from sdfleet.components.config_model import (
    Arch,
    ClusterConfig,
    ObservabilityConfig,
    SystemNodesConfig,
    config_default,
)

CONTROL_PLANE_LOGS = ("api", "audit", "authenticator")
MOUNTPOINT_SERVICE_ACCOUNT = "s3-csi-driver-sa"
CLOUDWATCH_SERVICE_ACCOUNT = "cloudwatch-agent"
CLOUDWATCH_AGENT_POLICY = "arn:aws:iam::aws:policy/CloudWatchAgentServerPolicy"
# The log groups the CloudWatch Observability addon writes to; it would create them itself
# with no expiry, so they are created first, with the stack's retention.
CONTAINER_INSIGHTS_LOG_GROUPS = ("application", "dataplane", "host", "performance")
SYSTEM_POOL_LABEL = {"sdfleet.io/pool": "system"}


_CLUSTER = partial(config_default, ClusterConfig)
_SYSTEM = partial(config_default, SystemNodesConfig)


@dataclass
class EksClusterArgs:
    """Inputs of EksCluster: where the cluster runs, its endpoint access, the system node
    group and the model bucket the Mountpoint driver may read. Defaults are the stack
    configuration's (``sdfleet:cluster``, ``sdfleet:observability``)."""

    cluster_name: str
    """Name of the EKS cluster."""
    vpc_id: pulumi.Input[str]
    """The VPC the cluster runs in."""
    private_subnet_ids: pulumi.Input[Sequence[str]]
    """Subnets for the nodes and the control plane's network interfaces."""
    public_subnet_ids: pulumi.Input[Sequence[str]]
    """Subnets for public load balancers."""
    model_bucket_arn: pulumi.Input[str]
    """ARN of the model bucket; the Mountpoint driver's role may only read it."""
    kubernetes_version: str = _CLUSTER("version")
    """Kubernetes minor version, such as 1.33."""
    endpoint_public_access: bool = _CLUSTER("endpoint_public_access")
    """Expose the API server endpoint on the internet (to public_access_cidrs)."""
    endpoint_private_access: bool = _CLUSTER("endpoint_private_access")
    """Expose the API server endpoint inside the VPC."""
    public_access_cidrs: list[str] = field(default_factory=lambda: _CLUSTER("public_access_cidrs"))
    """CIDR blocks that may reach the public endpoint."""
    system_instance_types: list[str] = field(default_factory=lambda: _SYSTEM("instance_types"))
    """EC2 instance types of the system node group (matching system_arch)."""
    system_arch: Arch = _SYSTEM("arch")  # noqa: RUF009 (an enum member: immutable)
    """CPU architecture of the system node group: ``arm64`` or ``amd64``."""
    system_min_size: int = _SYSTEM("min_size")
    """Minimum system nodes."""
    system_desired_size: int = _SYSTEM("desired_size")
    """Desired system nodes."""
    system_max_size: int = _SYSTEM("max_size")
    """Maximum system nodes."""
    model_prefix: str | None = None
    """Key prefix the Mountpoint driver may read under; unset for the whole bucket."""
    container_insights: bool = config_default(ObservabilityConfig, "container_insights")
    """Install the CloudWatch Observability addon (container logs, EMF metrics)."""
    log_retention_days: int = config_default(ObservabilityConfig, "log_retention_days")
    """Retention of the Container Insights log groups, in days (a CloudWatch retention)."""


def container_insights_log_group(cluster_name: str, group: str) -> str:
    """``/aws/containerinsights/<cluster>/<group>``, the name the addon writes to."""
    if group not in CONTAINER_INSIGHTS_LOG_GROUPS:
        allowed = ", ".join(CONTAINER_INSIGHTS_LOG_GROUPS)
        raise ValueError(f"group: got {group!r}; allowed: {allowed}")
    return f"/aws/containerinsights/{cluster_name}/{group}"


def _addon_version(addon: str, kubernetes_version: str) -> pulumi.Input[str]:
    """The pinned build; for an unpinned Kubernetes version, the default build EKS names."""
    pinned = versions.addon_version(addon, kubernetes_version)
    if pinned is not None:
        return pinned
    return aws.eks.get_addon_version_output(
        addon_name=addon, kubernetes_version=kubernetes_version, most_recent=False
    ).version


class EksCluster(pulumi.ComponentResource):
    """An EKS cluster (API authentication mode, KMS-encrypted secrets, control-plane logs), a
    system node group for the controllers, the managed addons (Pod Identity, Mountpoint for
    S3 with a read-only model role, optionally CloudWatch Observability) and a Kubernetes
    provider for it. GPU nodes come from Karpenter."""

    cluster_name: pulumi.Output[str]
    kubeconfig_json: pulumi.Output[str]
    cluster_security_group_id: pulumi.Output[str]
    k8s_provider: k8s.Provider
    system_node_selector: dict[str, str]
    addons: list[pulumi.Resource]
    mountpoint_role_arn: pulumi.Output[str]

    def __init__(
        self, name: str, args: EksClusterArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("sdfleet:index:EksCluster", name, None, opts)
        cluster = self._control_plane(name, args)
        system_nodes = self._system_nodes(name, args, cluster)

        coredns = self._addon(name, args, "coredns", "coredns", [system_nodes, cluster])
        pod_identity = self._addon(
            name, args, "pod-identity-agent", "eks-pod-identity-agent", [system_nodes, cluster]
        )
        mountpoint, mountpoint_role = self._mountpoint(name, args, pod_identity, system_nodes)

        self.addons = [coredns, pod_identity, mountpoint]
        if args.container_insights:
            self.addons.append(self._container_insights(name, args, pod_identity, system_nodes))

        # Karpenter selects the GPU nodes' security group by the discovery tag.
        aws.ec2.Tag(
            f"{name}-sg-discovery",
            resource_id=cluster.cluster_security_group_id,
            key=DISCOVERY_TAG,
            value=args.cluster_name,
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.k8s_provider = k8s.Provider(
            f"{name}-k8s",
            kubeconfig=cluster.kubeconfig_json,
            enable_server_side_apply=True,
            opts=pulumi.ResourceOptions(parent=self, depends_on=[system_nodes]),
        )
        self.cluster_name = pulumi.Output.from_input(args.cluster_name)
        self.kubeconfig_json = pulumi.Output.secret(cluster.kubeconfig_json)
        self.cluster_security_group_id = cluster.cluster_security_group_id
        self.system_node_selector = dict(SYSTEM_POOL_LABEL)
        self.mountpoint_role_arn = mountpoint_role.arn
        self.register_outputs(
            {
                "cluster_name": self.cluster_name,
                "kubeconfig_json": self.kubeconfig_json,
                "cluster_security_group_id": self.cluster_security_group_id,
            }
        )

    def _control_plane(self, name: str, args: EksClusterArgs) -> eks.Cluster:
        """The cluster with its KMS secrets key; API auth mode, no default nodes."""
        child = pulumi.ResourceOptions(parent=self)
        version = args.kubernetes_version
        secrets_key = aws.kms.Key(
            f"{name}-secrets",
            description=f"EKS secrets encryption for {args.cluster_name}",
            enable_key_rotation=True,
            opts=child,
        )
        return eks.Cluster(
            f"{name}-eks",
            name=args.cluster_name,
            version=version,
            vpc_id=args.vpc_id,
            private_subnet_ids=args.private_subnet_ids,
            public_subnet_ids=args.public_subnet_ids,
            authentication_mode=eks.AuthenticationMode.API,
            skip_default_node_group=True,
            # The EKS-created cluster security group is then shared by nodes and control plane.
            skip_default_security_groups=True,
            endpoint_public_access=args.endpoint_public_access,
            endpoint_private_access=args.endpoint_private_access,
            public_access_cidrs=args.public_access_cidrs if args.endpoint_public_access else None,
            enabled_cluster_log_types=list(CONTROL_PLANE_LOGS),
            encryption_config_key_arn=secrets_key.arn,
            # Network policy enforcement (the node agent in aws-node) for the runtimes'
            # NetworkPolicies; the addon configuration value is enableNetworkPolicy: "true".
            vpc_cni_options=eks.VpcCniOptionsArgs(
                addon_version=_addon_version("vpc-cni", version), enable_network_policy=True
            ),
            kube_proxy_addon_options=eks.KubeProxyAddonOptionsArgs(
                enabled=True, version=_addon_version("kube-proxy", version)
            ),
            # CoreDNS is added as an addon later, once nodes exist to run it.
            coredns_addon_options=eks.CoreDnsAddonOptionsArgs(enabled=False),
            create_oidc_provider=False,
            tags={"sdfleet:cluster": args.cluster_name},
            opts=child,
        )

    def _system_nodes(
        self, name: str, args: EksClusterArgs, cluster: eks.Cluster
    ) -> eks.ManagedNodeGroup:
        """The on-demand node group the controllers run on, with its node role."""
        system_role = aws.iam.Role(
            f"{name}-system-node-role",
            assume_role_policy=json.dumps(iam.ec2_trust_policy()),
            opts=pulumi.ResourceOptions(parent=self),
        )
        attachments = [
            aws.iam.RolePolicyAttachment(
                f"{name}-system-node-{arn.rsplit('/', 1)[-1]}",
                role=system_role.name,
                policy_arn=arn,
                opts=pulumi.ResourceOptions(parent=system_role),
            )
            for arn in iam.node_role_managed_policy_arns()
        ]
        arm = Arch(args.system_arch) is Arch.ARM64
        return eks.ManagedNodeGroup(
            f"{name}-system",
            cluster=cluster,
            node_role=system_role,
            instance_types=args.system_instance_types,
            ami_type="AL2023_ARM_64_STANDARD" if arm else "AL2023_x86_64_STANDARD",
            capacity_type="ON_DEMAND",
            scaling_config=aws.eks.NodeGroupScalingConfigArgs(
                min_size=args.system_min_size,
                desired_size=args.system_desired_size,
                max_size=args.system_max_size,
            ),
            subnet_ids=args.private_subnet_ids,
            labels=SYSTEM_POOL_LABEL,
            opts=pulumi.ResourceOptions(parent=self, depends_on=attachments),
        )

    def _mountpoint(
        self,
        name: str,
        args: EksClusterArgs,
        pod_identity: pulumi.Resource,
        system_nodes: pulumi.Resource,
    ) -> tuple[aws.eks.Addon, aws.iam.Role]:
        """The Mountpoint for S3 CSI addon and its role, which may only read the model bucket."""
        mountpoint_role = pod_identity_role(f"{name}-mountpoint-role", self)
        mountpoint_policy = aws.iam.RolePolicy(
            f"{name}-mountpoint-read-models",
            role=mountpoint_role.id,
            policy=pulumi.Output.from_input(args.model_bucket_arn).apply(
                lambda arn: json.dumps(iam.mountpoint_driver_policy(arn, args.model_prefix))
            ),
            opts=pulumi.ResourceOptions(parent=mountpoint_role),
        )
        mountpoint = self._addon(
            name,
            args,
            "mountpoint-s3-csi",
            "aws-mountpoint-s3-csi-driver",
            [pod_identity, mountpoint_policy, system_nodes],
            identity=(MOUNTPOINT_SERVICE_ACCOUNT, mountpoint_role.arn),
        )
        return mountpoint, mountpoint_role

    def _container_insights(
        self,
        name: str,
        args: EksClusterArgs,
        pod_identity: pulumi.Resource,
        system_nodes: pulumi.Resource,
    ) -> aws.eks.Addon:
        """Container logs and EMF metrics to CloudWatch, through the AWS-managed agent policy.
        Its log groups exist, with the stack's retention, before the addon starts writing."""
        log_groups = [
            aws.cloudwatch.LogGroup(
                f"{name}-ci-{group}",
                name=container_insights_log_group(args.cluster_name, group),
                retention_in_days=args.log_retention_days,
                opts=pulumi.ResourceOptions(parent=self),
            )
            for group in CONTAINER_INSIGHTS_LOG_GROUPS
        ]
        role = pod_identity_role(f"{name}-cloudwatch-agent-role", self)
        attachment = aws.iam.RolePolicyAttachment(
            f"{name}-cloudwatch-agent-policy",
            role=role.name,
            policy_arn=CLOUDWATCH_AGENT_POLICY,
            opts=pulumi.ResourceOptions(parent=role),
        )
        return self._addon(
            name,
            args,
            "cloudwatch-observability",
            "amazon-cloudwatch-observability",
            [pod_identity, attachment, system_nodes, *log_groups],
            identity=(CLOUDWATCH_SERVICE_ACCOUNT, role.arn),
        )

    def _addon(
        self,
        name: str,
        args: EksClusterArgs,
        suffix: str,
        addon: str,
        depends_on: list[pulumi.Resource],
        identity: tuple[str, pulumi.Input[str]] | None = None,
    ) -> aws.eks.Addon:
        """A pinned managed addon; ``identity`` is (service account, role ARN) for Pod Identity."""
        associations = None
        if identity is not None:
            associations = [
                aws.eks.AddonPodIdentityAssociationArgs(
                    service_account=identity[0], role_arn=identity[1]
                )
            ]
        return aws.eks.Addon(
            f"{name}-{suffix}",
            cluster_name=args.cluster_name,
            addon_name=addon,
            addon_version=_addon_version(addon, args.kubernetes_version),
            pod_identity_associations=associations,
            resolve_conflicts_on_create="OVERWRITE",
            resolve_conflicts_on_update="OVERWRITE",
            opts=pulumi.ResourceOptions(parent=self, depends_on=depends_on),
        )
