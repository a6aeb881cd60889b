"""SdPipeline's Args, and how SdPipeline maps the stack configuration onto its children's
args where the mapping is more than passing fields through."""

from dataclasses import dataclass
from typing import Any

import pulumi

from sdfleet.agent.contract import RuntimeInfo
from sdfleet.components import versions
from sdfleet.components.builders.enums import ImagePullMode, InstanceStorePolicy
from sdfleet.components.config import StackConfig, parse_config
from sdfleet.components.config_runtime import RuntimeConfig
from sdfleet.components.gpu_node_pool import GpuNodePoolArgs


def runtime_catalogue(config: StackConfig) -> list[RuntimeInfo]:
    """The runtimes tasks may name, with their type and limits, as the task API checks them."""
    return [
        RuntimeInfo(
            name=rt.name,
            type=rt.type,
            model_filename=rt.model_filename,
            dynamic_model=rt.dynamic_model,
            limits=rt.limits.to_contract(),
        )
        for rt in config.runtimes
    ]


def gpu_pool_args(
    cfg: StackConfig, rt: RuntimeConfig, cluster_name: str, node_role_name: pulumi.Output[str]
) -> GpuNodePoolArgs:
    """The runtime's GPU node pool settings from its configuration and the stack's."""
    gpu = rt.gpu
    return GpuNodePoolArgs(
        runtime_name=rt.name,
        cluster_name=cluster_name,
        node_role_name=node_role_name,
        spot_ratio=cfg.runtime_spot_ratio(rt),
        instance_types=gpu.instance_types,
        max_gpus=gpu.max_gpus,
        data_volume_size_gib=gpu.data_volume_size_gib,
        snapshot_id=gpu.snapshot_id,
        consolidate_after=gpu.consolidate_after,
        expire_after=gpu.expire_after,
        spot_fallback=gpu.spot_fallback,
        instance_store_policy=(
            InstanceStorePolicy(gpu.instance_store_policy) if gpu.instance_store_policy else None
        ),
        image_pull_mode=ImagePullMode(gpu.image_pull_mode),
        ami_alias=cfg.cluster.bottlerocket_alias or versions.BOTTLEROCKET_ALIAS,
        node_requirements=[
            {"key": r.key, "operator": r.operator, "values": list(r.values)}
            for r in rt.node_requirements
        ],
        node_taints=[{"key": t.key, "value": t.value, "effect": t.effect} for t in rt.node_taints],
    )


@dataclass
class SdPipelineArgs:
    """Inputs of SdPipeline: the stack configuration, either validated already (Python) or in
    its stack-file form (any language), which is validated exactly as ``pulumi up`` does."""

    config: StackConfig | None = None
    """The ``sdfleet:`` stack configuration as ``sdfleet.components.config.load_config``
    returns it (every default filled in and every check passed). Python programs pass this."""
    stack_config: dict[str, Any] | None = None
    """The same configuration in the stack file's form: the ``sdfleet:`` keys without the
    namespace, camelCase (``{"runtimes": [{"name": "sd15", "type": "sdwebui"}], ...}``).
    Programs in other languages pass this; every problem is reported with its path."""

    def __post_init__(self) -> None:
        if (self.config is None) == (self.stack_config is None):
            raise ValueError("SdPipelineArgs: give exactly one of config and stack_config")
        if self.config is None:
            self.config = parse_config(self.stack_config or {})

    @property
    def validated(self) -> StackConfig:
        """The validated configuration, whichever form was given."""
        assert self.config is not None  # __post_init__ fills it in
        return self.config
