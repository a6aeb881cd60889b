"""GpuNodePool: one runtime's GPU capacity. A Bottlerocket EC2NodeClass and the NodePools its
spot ratio asks for; it exposes the pod constraints the runtime's pods must carry, so SdRuntime
applies them without knowing how the ratio is built."""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from sdfleet.components import _opts, versions
from sdfleet.components.builders import karpenter as kb


@dataclass
class GpuNodePoolArgs:
    runtime_name: str
    cluster_name: str
    node_role_name: pulumi.Input[str]
    spot_ratio: float
    instance_types: Sequence[str] = ("g6.2xlarge", "g5.2xlarge")
    max_gpus: int = 8
    data_volume_size_gib: int = 100
    snapshot_id: str | None = None
    consolidate_after: str = "5m"
    expire_after: str = "168h"
    spot_fallback: bool = True
    instance_store_policy: str | None = None
    ami_alias: str = versions.BOTTLEROCKET_ALIAS
    tags: dict[str, str] = field(default_factory=dict)
    # Extra NodePool requirements ({key, operator, values}) and node taints ({key, value,
    # effect}); the runtime's pods get matching tolerations through ``scheduling``.
    node_requirements: Sequence[Mapping[str, Any]] = ()
    node_taints: Sequence[Mapping[str, Any]] = ()


class GpuNodePool(pulumi.ComponentResource):
    """One runtime's GPU capacity: a Karpenter EC2NodeClass (Bottlerocket) and the NodePools its
    spot ratio asks for, plus the pod scheduling constraints that land pods on them. The
    Kubernetes provider and ``depends_on`` (Karpenter's release) come through ResourceOptions."""

    node_class_name: str
    node_pool_names: list[str]
    # Pod spec fields (camelCase): tolerations, nodeSelector, affinity, topologySpreadConstraints.
    scheduling: dict[str, Any]
    pod_labels: dict[str, str]
    manifests: pulumi.Output[list[dict[str, Any]]]

    def __init__(
        self, name: str, args: GpuNodePoolArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("sdfleet:index:GpuNodePool", name, None, opts)
        # Set in __init__, not declared on the class: the schema analyzer takes class-level
        # annotations as outputs, and a CapacitySplit (tuples) is not one.
        self.split: kb.CapacitySplit = kb.capacity_split(
            args.spot_ratio, spot_fallback=args.spot_fallback
        )
        self.node_class_name = f"{args.runtime_name}-gpu"
        provider, deps = _opts.k8s_provider(opts), _opts.depends_on(opts)
        k8s_opts = pulumi.ResourceOptions(parent=self, provider=provider, depends_on=deps)

        node_class = pulumi.Output.from_input(args.node_role_name).apply(
            lambda role: kb.ec2_node_class(
                name=self.node_class_name,
                cluster_name=args.cluster_name,
                node_role_name=role,
                ami_alias=args.ami_alias,
                data_volume_size_gib=args.data_volume_size_gib,
                data_volume_snapshot_id=args.snapshot_id,
                instance_store_policy=args.instance_store_policy,
                tags={"sdfleet:runtime": args.runtime_name, **args.tags},
            )
        )
        node_class_resource = k8s.apiextensions.CustomResource(
            f"{name}-nodeclass",
            api_version=kb.NODECLASS_API_VERSION,
            kind="EC2NodeClass",
            metadata=k8s.meta.v1.ObjectMetaArgs(name=self.node_class_name),
            spec=node_class.apply(lambda m: m["spec"]),
            opts=k8s_opts,
        )
        pools = kb.node_pools(
            runtime_name=args.runtime_name,
            node_class_name=self.node_class_name,
            split=self.split,
            instance_types=list(args.instance_types),
            max_gpus=args.max_gpus,
            consolidate_after=args.consolidate_after,
            expire_after=args.expire_after,
            extra_requirements=args.node_requirements,
            extra_taints=args.node_taints,
        )
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
        self.scheduling = kb.pod_scheduling(
            runtime_name=args.runtime_name, split=self.split, extra_taints=args.node_taints
        )
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
