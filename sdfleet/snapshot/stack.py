"""What the snapshot tools need from a stack's config file (stacks/Pulumi.<stack>.yaml).

The file is validated with the program's own parser, so the tools read exactly what
``pulumi up`` would deploy: the cluster name (the Karpenter discovery tag on the private
subnets), the Kubernetes and Bottlerocket versions the GPU nodes run, and per runtime its
image override, snapshot id, data volume size and instance types.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from sdfleet.components import versions
from sdfleet.components.config import ConfigError, parse_config, split_namespaced

# The x86_64 NVIDIA variant: the one Karpenter picks for the GPU instance types (see
# components/versions.py); Bottlerocket publishes its SSM parameters without the leading v.
AMI_PARAMETER = "/aws/service/bottlerocket/aws-k8s-{k8s}-nvidia/x86_64/{version}/image_id"


@dataclass(frozen=True)
class RuntimeInfo:
    index: int
    name: str
    image: str | None
    snapshot_id: str | None
    data_volume_size_gib: int
    instance_types: tuple[str, ...]

    @property
    def config_path(self) -> str:
        """The key ``pulumi config set --path`` takes for this runtime's snapshot id."""
        return f"sdfleet:runtimes[{self.index}].gpu.snapshotId"


@dataclass(frozen=True)
class StackInfo:
    name: str
    region: str | None
    cluster_name: str
    kubernetes_version: str
    bottlerocket_version: str
    vpc_id: str | None
    private_subnet_ids: tuple[str, ...]
    agent_image: str | None
    runtimes: tuple[RuntimeInfo, ...]

    @property
    def ami_parameter(self) -> str:
        return AMI_PARAMETER.format(
            k8s=self.kubernetes_version, version=self.bottlerocket_version.lstrip("v")
        )

    @property
    def variant(self) -> str:
        return f"aws-k8s-{self.kubernetes_version}-nvidia"

    def set_commands(self, snapshot_id: str) -> list[str]:
        return [
            f"pulumi config set --path '{rt.config_path}' {snapshot_id} --stack {self.name}"
            for rt in self.runtimes
        ]


def load_stack(project_dir: Path, stack: str) -> StackInfo:
    """The stack's config file, validated; ValueError with every problem when invalid."""
    from sdfleet.cli import load_stack_config

    raw = load_stack_config(project_dir, stack)
    try:
        config = parse_config(split_namespaced(raw))
    except ConfigError as err:
        raise ValueError(f"stack {stack!r} has an invalid configuration: {err}") from None
    alias = config.cluster.bottlerocket_alias or versions.BOTTLEROCKET_ALIAS
    region = raw.get("aws:region")
    return StackInfo(
        name=stack,
        region=str(region) if region else None,
        cluster_name=config.cluster.name or f"sdfleet-{stack}",
        kubernetes_version=config.cluster.version,
        bottlerocket_version=alias.partition("@")[2],
        vpc_id=config.network.vpc_id,
        private_subnet_ids=tuple(config.network.private_subnet_ids),
        agent_image=config.agent.image_ref,
        runtimes=tuple(
            RuntimeInfo(
                index=i,
                name=rt.name,
                image=rt.image,
                snapshot_id=rt.gpu.snapshot_id,
                data_volume_size_gib=rt.gpu.data_volume_size_gib,
                instance_types=tuple(rt.gpu.instance_types),
            )
            for i, rt in enumerate(config.runtimes)
        ),
    )
