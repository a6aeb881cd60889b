"""GpuNodePool: one runtime's GPU capacity. A Bottlerocket EC2NodeClass and the NodePools its
spot ratio asks for; it exposes the pod constraints the runtime's pods must carry, so SdRuntime
applies them without knowing how the ratio is built."""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from sdfleet.components import _opts
from sdfleet.components._inputs import as_args
from sdfleet.components.builders import gpu_pool
from sdfleet.components.builders import karpenter as kb
from sdfleet.components.builders.enums import ImagePullMode, InstanceStorePolicy

__all__ = ["GpuNodePool", "GpuNodePoolArgs", "InstanceStorePolicy"]


@dataclass
class GpuNodePoolArgs:
    """Inputs of one runtime's GpuNodePool. Every optional field left unset (or None) takes the
    documented default (the stack config's ``runtimes[].gpu`` defaults)."""

    runtime_name: str
    """The runtime these nodes serve (a DNS label, at most 40 characters): names the
    EC2NodeClass and NodePools, and labels and taints the nodes."""
    cluster_name: str
    """EKS cluster name (Karpenter discovers its subnets and security groups by it)."""
    node_role_name: pulumi.Input[str]
    """IAM role of the GPU nodes (it needs an EC2_LINUX access entry on the cluster)."""
    spot_ratio: float
    """Share of the runtime's GPU nodes on spot capacity, from 0 (all on-demand) to 1 (all
    spot); in between the pods are spread across both capacity types."""
    instance_types: Sequence[str] | None = None
    """EC2 instance types Karpenter may launch, e.g. ``g6.2xlarge``. Unset: g6.2xlarge and
    g5.2xlarge."""
    max_gpus: int | None = None
    """Limit on the pools' total GPUs (all nodes together). Unset: 8."""
    data_volume_size_gib: int | None = None
    """Size in GiB of each node's data volume (images and containers). Unset: 100."""
    snapshot_id: str | None = None
    """EBS snapshot (``snap-...``) the data volume starts from, e.g. with the server image
    pre-pulled. Unset: an empty volume."""
    consolidate_after: str | None = None
    """How long a node stays empty before Karpenter removes it (a duration such as ``30s``,
    ``5m``, ``1h``). Unset: 5m."""
    expire_after: str | None = None
    """Node lifetime before Karpenter replaces it (a duration such as ``168h``). Unset: 168h."""
    spot_fallback: bool | None = None
    """With an all-spot ratio, also keep an on-demand NodePool for when spot capacity is out.
    Unset: true."""
    instance_store_policy: InstanceStorePolicy | None = None
    """``RAID0``: use the nodes' local NVMe disks for images and emptyDirs. Unset: not used."""
    image_pull_mode: ImagePullMode | None = None
    """How nodes pull images missing from the data volume: ``default`` (Bottlerocket's),
    ``parallel`` (containerd parallel downloads and chunked fetch, Bottlerocket >= 1.52) or
    ``soci`` (SOCI parallel pull/unpack, >= 1.44; not with ``snapshot_id``). Unset: default."""
    ami_alias: str | None = None
    """Bottlerocket AMI alias pinned to a version, e.g. ``bottlerocket@v1.49.0``. Unset: the
    version sdfleet is tested with (``versions.BOTTLEROCKET_ALIAS``)."""
    tags: Mapping[str, str] | None = None
    """Extra AWS tags on the nodes' instances and volumes."""
    node_requirements: Sequence[Mapping[str, Any]] | None = None
    """Extra NodePool requirements, each ``{key, operator, values}`` (Karpenter's
    NodeSelectorRequirement)."""
    node_taints: Sequence[Mapping[str, Any]] | None = None
    """Extra node taints, each ``{key, value, effect}``; the runtime's pods get matching
    tolerations through ``GpuNodePool.scheduling``."""


class GpuNodePool(pulumi.ComponentResource):
    """One runtime's GPU capacity: a Karpenter EC2NodeClass (Bottlerocket) and the NodePools its
    spot ratio asks for, plus the pod scheduling constraints that land pods on them. The
    Kubernetes provider and ``depends_on`` (Karpenter's release) come through ResourceOptions."""

    node_class_name: str
    """The EC2NodeClass (Bottlerocket, the data volume) the NodePools launch nodes from."""
    node_pool_names: list[str]
    """The NodePools the spot ratio asks for (spot, on-demand, or both)."""
    scheduling: dict[str, Any]
    """Pod spec fields (camelCase: tolerations, nodeSelector, affinity,
    topologySpreadConstraints) for the runtime's pods: pass it as ``SdRuntimeArgs.scheduling``."""
    pod_labels: dict[str, str]
    """Labels the runtime's pods must carry (SdRuntime sets them)."""
    manifests: pulumi.Output[list[dict[str, Any]]]
    """The plain manifests applied: the EC2NodeClass, then the NodePools."""

    def __init__(
        self, name: str, args: GpuNodePoolArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("sdfleet:index:GpuNodePool", name, None, opts)
        # Pulumi's provider host passes a mapping (TypeScript, Go, YAML programs).
        args = as_args(GpuNodePoolArgs, args)
        # Set in __init__, not declared on the class: the schema analyzer takes class-level
        # annotations as outputs, and a CapacitySplit (tuples) is not one.
        self.split: kb.CapacitySplit = gpu_pool.capacity_split(args)
        self.node_class_name = gpu_pool.node_class_name(args.runtime_name)
        provider, deps = _opts.k8s_provider(opts), _opts.depends_on(opts)
        k8s_opts = pulumi.ResourceOptions(parent=self, provider=provider, depends_on=deps)

        node_class = pulumi.Output.from_input(args.node_role_name).apply(
            lambda role: gpu_pool.node_class(args, role)
        )
        node_class_resource = k8s.apiextensions.CustomResource(
            f"{name}-nodeclass",
            api_version=kb.NODECLASS_API_VERSION,
            kind="EC2NodeClass",
            metadata=k8s.meta.v1.ObjectMetaArgs(name=self.node_class_name),
            spec=node_class.apply(lambda m: m["spec"]),
            opts=k8s_opts,
        )
        pools = gpu_pool.node_pools(args)
        self.node_pool_names = []
        for pool in pools:
            pool_name = pool["metadata"]["name"]
            self.node_pool_names.append(pool_name)
            k8s.apiextensions.CustomResource(
                f"{name}-{pool_name}",
                api_version=kb.NODEPOOL_API_VERSION,
                kind="NodePool",
                metadata=pool["metadata"],
                spec=pool["spec"],
                opts=pulumi.ResourceOptions(
                    parent=self,
                    provider=provider,
                    depends_on=[node_class_resource, *deps],
                ),
            )
        self.scheduling = gpu_pool.pod_scheduling(args)
        self.pod_labels = kb.runtime_selector_labels(args.runtime_name)
        self.manifests = node_class.apply(lambda m: [m, *pools])
        self.register_outputs(
            {
                "node_class_name": self.node_class_name,
                "node_pool_names": self.node_pool_names,
                "spot_slots": self.split.spot_slots,
                "on_demand_slots": self.split.on_demand_slots,
            }
        )
