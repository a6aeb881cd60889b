"""One runtime's GPU capacity from GpuNodePoolArgs, final as applied: the EC2NodeClass, the
NodePools its spot ratio asks for, and the pod scheduling that lands the runtime's pods on
them. A field left as None takes the stack config model's default (GpuPoolConfig), so the Args
and the config cannot drift. Pure: GpuNodePool registers these dicts as they are.
"""

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from sdfleet.components import versions
from sdfleet.components.builders import karpenter as kb
from sdfleet.components.config_model import config_default
from sdfleet.components.config_runtime import GpuPoolConfig

if TYPE_CHECKING:  # the Args class imports this module
    from sdfleet.components.gpu_node_pool import GpuNodePoolArgs


def setting(args: "GpuNodePoolArgs", name: str) -> Any:
    """An Args field's value, or GpuPoolConfig's default for it when it is None."""
    value = getattr(args, name)
    return config_default(GpuPoolConfig, name) if value is None else value


def node_class_name(runtime_name: str) -> str:
    return f"{runtime_name}-gpu"


def capacity_split(args: "GpuNodePoolArgs") -> kb.CapacitySplit:
    return kb.capacity_split(args.spot_ratio, spot_fallback=setting(args, "spot_fallback"))


def _taints(args: "GpuNodePoolArgs") -> Sequence[Mapping[str, Any]]:
    return args.node_taints or ()


def node_class(args: "GpuNodePoolArgs", node_role_name: str) -> dict[str, Any]:
    """The runtime's Bottlerocket EC2NodeClass (tagged with the runtime's name)."""
    policy = setting(args, "instance_store_policy")
    return kb.ec2_node_class(
        name=node_class_name(args.runtime_name),
        cluster_name=args.cluster_name,
        node_role_name=node_role_name,
        ami_alias=args.ami_alias or versions.BOTTLEROCKET_ALIAS,
        data_volume_size_gib=setting(args, "data_volume_size_gib"),
        data_volume_snapshot_id=setting(args, "snapshot_id"),
        instance_store_policy=None if policy is None else str(policy),
        image_pull_mode=str(setting(args, "image_pull_mode")),
        tags={"sdfleet:runtime": args.runtime_name, **dict(args.tags or {})},
    )


def node_pools(args: "GpuNodePoolArgs") -> list[dict[str, Any]]:
    """The NodePools the spot ratio asks for (spot, on-demand or both)."""
    return kb.node_pools(
        runtime_name=args.runtime_name,
        node_class_name=node_class_name(args.runtime_name),
        split=capacity_split(args),
        instance_types=list(setting(args, "instance_types")),
        max_gpus=setting(args, "max_gpus"),
        consolidate_after=setting(args, "consolidate_after"),
        expire_after=setting(args, "expire_after"),
        extra_requirements=args.node_requirements or (),
        extra_taints=_taints(args),
    )


def pod_scheduling(args: "GpuNodePoolArgs") -> dict[str, Any]:
    """Pod spec fields (camelCase) for the runtime's pods: SdRuntimeArgs.scheduling."""
    return kb.pod_scheduling(
        runtime_name=args.runtime_name, split=capacity_split(args), extra_taints=_taints(args)
    )
