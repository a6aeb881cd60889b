"""Pure builder for a runtime's Karpenter EC2NodeClass (Bottlerocket GPU nodes)."""

from __future__ import annotations

import tomllib
from collections.abc import Mapping, Sequence
from typing import Any

from sdfleet.components.builders.enums import ImagePullMode
from sdfleet.components.builders.errors import check_name, fail
from sdfleet.components.builders.karpenter_capacity import (
    DISCOVERY_TAG,
    NODECLASS_API_VERSION,
)
from sdfleet.components.patterns import BOTTLEROCKET_ALIAS as _ALIAS
from sdfleet.components.patterns import SNAPSHOT_ID as _SNAPSHOT_ID

# gp3 baseline is 3000 IOPS / 125 MiB/s at no extra cost. A volume restored from a snapshot
# loads its blocks lazily from S3 on first read, so image layers read at pod start are the
# slow path; higher provisioned IOPS/throughput lets those reads run in parallel. Extra gp3
# performance costs about $0.005 per IOPS-month and $0.04 per MiB/s-month (us-east-1), i.e.
# about $30/month for 6000 IOPS + 500 MiB/s, billed per second while the node lives (a few cents
# for a node that lives two hours). ``volume_initialization_rate`` (EBS provisioned volume
# initialization, 100-300 MiB/s, charged per GiB initialised) removes the lazy-load penalty
# entirely and is the stronger, costlier knob.
SNAPSHOT_DATA_VOLUME_IOPS = 6000
SNAPSHOT_DATA_VOLUME_THROUGHPUT = 500
BASELINE_GP3_IOPS = 3000
BASELINE_GP3_THROUGHPUT = 125


# Settings per mode, as Bottlerocket TOML tables. Each exists in the pinned Bottlerocket
# (versions.py) and in every version from the one in _MIN_VERSION:
# - settings.container-runtime.max-concurrent-downloads: since 2022 (bottlerocket PR #2494).
# - settings.container-runtime.concurrent-download-chunk-size: containerd 2.1 variants only
#   (aws-k8s-1.33 ships containerd 2.1 from v1.51.0); listed in the 1.52.x settings
#   reference, not in 1.45.x. Bottlerocket left it off by default (0) after pull failures with
#   some registries (bottlerocket issue #4709): "parallel" turns it back on.
# - settings.container-runtime.snapshotter and settings.container-runtime-plugins.
#   soci-snapshotter.*: since v1.44.0.
# The numbers are starting points taken from published Bottlerocket/SOCI examples; the SOCI
# project's parallel-mode tuning guide says how to adjust them.
_PULL_SETTINGS: dict[ImagePullMode, dict[str, dict[str, Any]]] = {
    ImagePullMode.DEFAULT: {},
    ImagePullMode.PARALLEL: {
        "settings.container-runtime": {
            "max-concurrent-downloads": 8,
            "concurrent-download-chunk-size": "16mb",
        },
    },
    ImagePullMode.SOCI: {
        "settings.container-runtime": {"snapshotter": "soci"},
        "settings.container-runtime-plugins.soci-snapshotter": {
            "pull-mode": "parallel-pull-unpack",
        },
        "settings.container-runtime-plugins.soci-snapshotter.parallel-pull-unpack": {
            "max-concurrent-downloads-per-image": 10,
            "concurrent-download-chunk-size": "16mb",
            "max-concurrent-unpacks-per-image": 10,
            # Keep only the unpacked layers: the compressed copies would double the disk use.
            "discard-unpacked-layers": True,
        },
    },
}
_MIN_VERSION = {ImagePullMode.PARALLEL: (1, 52, 0), ImagePullMode.SOCI: (1, 44, 0)}
_OWNED_SETTINGS = ("container-runtime", "container-runtime-plugins")


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


def pull_settings_toml(mode: str | ImagePullMode) -> str:
    """The Bottlerocket user data (TOML) for an image pull mode; empty for ``default``."""
    tables = _PULL_SETTINGS[ImagePullMode(mode)]
    blocks = []
    for table, values in tables.items():
        lines = [f"[{table}]", *(f"{k} = {_toml_value(v)}" for k, v in values.items())]
        blocks.append("\n".join(lines) + "\n")
    return "\n".join(blocks)


def _alias_version(ami_alias: str) -> tuple[int, ...]:
    return tuple(int(part) for part in ami_alias.partition("@")[2].lstrip("v").split("."))


def _check_pull_mode(
    mode: Any, ami_alias: str, snapshot_id: str | None, user_data: str | None
) -> ImagePullMode:
    if mode not in tuple(ImagePullMode):
        raise fail("imagePullMode", mode, ", ".join(m.value for m in ImagePullMode))
    mode = ImagePullMode(mode)
    minimum = _MIN_VERSION.get(mode)
    if minimum and _alias_version(ami_alias) < minimum:
        need = ".".join(map(str, minimum))
        raise fail("imagePullMode", mode.value, f"{mode.value!r} needs Bottlerocket >= v{need}")
    if mode is ImagePullMode.SOCI and snapshot_id is not None:
        # The snapshot's images sit in containerd's overlayfs store; Bottlerocket deletes the
        # images of the other snapshotter when it sees the snapshotter change at boot.
        raise fail("imagePullMode", mode.value, "'default' or 'parallel' with a snapshotId")
    if mode is not ImagePullMode.DEFAULT and user_data:
        try:
            settings = tomllib.loads(user_data).get("settings", {})
        except tomllib.TOMLDecodeError as err:
            raise fail("userData", user_data, f"Bottlerocket TOML ({err})") from None
        clash = sorted(k for k in _OWNED_SETTINGS if k in settings)
        if clash:
            raise fail("userData", clash, f"no settings.{clash[0]} with imagePullMode")
    return mode


_FORBIDDEN_TAG_KEYS = (
    "eks:eks-cluster-name",
    "karpenter.sh/nodepool",
    "karpenter.sh/nodeclaim",
    "karpenter.k8s.aws/ec2nodeclass",
)


def _ebs(
    size_gib: int,
    *,
    iops: int,
    throughput: int,
    snapshot_id: str | None = None,
    initialization_rate: int | None = None,
    kms_key_id: str | None = None,
) -> dict[str, Any]:
    ebs: dict[str, Any] = {
        "volumeSize": f"{size_gib}Gi",
        "volumeType": "gp3",
        "iops": iops,
        "throughput": throughput,
        "encrypted": True,
        "deleteOnTermination": True,
    }
    if snapshot_id:
        ebs["snapshotID"] = snapshot_id
    if initialization_rate is not None:
        ebs["volumeInitializationRate"] = initialization_rate
    if kms_key_id:
        ebs["kmsKeyID"] = kms_key_id
    return ebs


def _block_devices(
    os_volume_gib: int,
    data_volume_gib: int,
    snapshot_id: str | None,
    initialization_rate: int | None,
    kms_key_id: str | None,
) -> list[dict[str, Any]]:
    # Any non-empty list replaces both Bottlerocket defaults, so both devices are listed.
    fast = snapshot_id is not None
    os_volume = _ebs(
        os_volume_gib,
        iops=BASELINE_GP3_IOPS,
        throughput=BASELINE_GP3_THROUGHPUT,
        kms_key_id=kms_key_id,
    )
    data_volume = _ebs(
        data_volume_gib,
        iops=SNAPSHOT_DATA_VOLUME_IOPS if fast else BASELINE_GP3_IOPS,
        throughput=SNAPSHOT_DATA_VOLUME_THROUGHPUT if fast else BASELINE_GP3_THROUGHPUT,
        snapshot_id=snapshot_id,
        initialization_rate=initialization_rate,
        kms_key_id=kms_key_id,
    )
    return [
        # No rootVolume flag: Karpenter then sizes ephemeral storage from /dev/xvdb, the
        # Bottlerocket data volume, which is where images and pod storage live.
        {"deviceName": "/dev/xvda", "ebs": os_volume},
        {"deviceName": "/dev/xvdb", "ebs": data_volume},
    ]


def _metadata_options() -> dict[str, Any]:
    # Hop limit 1: pods on the pod network cannot reach IMDS (they use Pod Identity).
    return {
        "httpEndpoint": "enabled",
        "httpProtocolIPv6": "disabled",
        "httpPutResponseHopLimit": 1,
        "httpTokens": "required",
    }


def _selector_terms(cluster_name: str, ids: Sequence[str]) -> list[dict[str, Any]]:
    if ids:
        return [{"id": i} for i in ids]
    return [{"tags": {DISCOVERY_TAG: cluster_name}}]


def _check_node_class_inputs(
    *,
    name: str,
    cluster_name: str,
    node_role_name: str,
    ami_alias: str,
    sizes: tuple[int, int],
    data_volume_snapshot_id: str | None,
    volume_initialization_rate: int | None,
    instance_store_policy: str | None,
) -> None:
    data_volume_size_gib, os_volume_size_gib = sizes
    check_name("name", name)
    if not cluster_name or not isinstance(cluster_name, str):
        raise fail("cluster_name", cluster_name, "a non-empty cluster name")
    if (
        not node_role_name
        or not isinstance(node_role_name, str)
        or node_role_name.startswith("arn:")
    ):
        raise fail("node_role_name", node_role_name, "an IAM role name (not an ARN)")
    if not isinstance(ami_alias, str) or not _ALIAS.match(ami_alias) or len(ami_alias) > 30:
        raise fail("amiAlias", ami_alias, "a pinned alias such as 'bottlerocket@v1.63.0'")
    for field, size, low in (
        ("dataVolumeSizeGiB", data_volume_size_gib, 20),
        ("osVolumeSizeGiB", os_volume_size_gib, 4),
    ):
        if isinstance(size, bool) or not isinstance(size, int) or not low <= size <= 16384:
            raise fail(field, size, f"an integer from {low} to 16384 (GiB)")
    if data_volume_snapshot_id is not None and not _SNAPSHOT_ID.match(data_volume_snapshot_id):
        raise fail("dataVolumeSnapshotId", data_volume_snapshot_id, "an id like 'snap-0123abcd'")
    if volume_initialization_rate is not None:
        if data_volume_snapshot_id is None:
            raise fail(
                "volumeInitializationRate",
                volume_initialization_rate,
                "only together with dataVolumeSnapshotId",
            )
        rate = volume_initialization_rate
        if isinstance(rate, bool) or not isinstance(rate, int) or not 100 <= rate <= 300:
            raise fail("volumeInitializationRate", rate, "an integer from 100 to 300 (MiB/s)")
    if instance_store_policy not in (None, "RAID0"):
        raise fail("instanceStorePolicy", instance_store_policy, "'RAID0' or unset")


def ec2_node_class(
    *,
    name: str,
    cluster_name: str,
    node_role_name: str,
    ami_alias: str,
    data_volume_size_gib: int,
    data_volume_snapshot_id: str | None = None,
    volume_initialization_rate: int | None = None,
    os_volume_size_gib: int = 10,
    instance_store_policy: str | None = None,
    security_group_ids: Sequence[str] = (),
    subnet_ids: Sequence[str] = (),
    kms_key_id: str | None = None,
    tags: Mapping[str, str] | None = None,
    user_data: str | None = None,
    image_pull_mode: str | None = None,
) -> dict[str, Any]:
    """A Bottlerocket EC2NodeClass (the NVIDIA variant is chosen per GPU instance type).

    Subnets and security groups are selected by the ``karpenter.sh/discovery: <cluster>`` tag
    unless explicit ids are given. The OS volume is ``/dev/xvda``, the data volume (container
    images, kubelet, ephemeral storage) ``/dev/xvdb``; with ``data_volume_snapshot_id`` (an
    image-cache snapshot) the data volume gets raised gp3 IOPS/throughput (see the constants
    above for numbers and cost). ``image_pull_mode`` (:class:`ImagePullMode`; None means
    ``default``) appends its Bottlerocket settings to ``user_data``, which must then not set
    ``settings.container-runtime*`` itself.
    """
    _check_node_class_inputs(
        name=name,
        cluster_name=cluster_name,
        node_role_name=node_role_name,
        ami_alias=ami_alias,
        sizes=(data_volume_size_gib, os_volume_size_gib),
        data_volume_snapshot_id=data_volume_snapshot_id,
        volume_initialization_rate=volume_initialization_rate,
        instance_store_policy=instance_store_policy,
    )
    tag_map = dict(tags or {})
    for key in tag_map:
        if key in _FORBIDDEN_TAG_KEYS or key.startswith("kubernetes.io/cluster"):
            raise fail(f"tags.{key}", key, "any key except those Karpenter sets itself")
    spec: dict[str, Any] = {
        "role": node_role_name,
        "amiSelectorTerms": [{"alias": ami_alias}],
        "subnetSelectorTerms": _selector_terms(cluster_name, subnet_ids),
        "securityGroupSelectorTerms": _selector_terms(cluster_name, security_group_ids),
        "metadataOptions": _metadata_options(),
        "blockDeviceMappings": _block_devices(
            os_volume_size_gib,
            data_volume_size_gib,
            data_volume_snapshot_id,
            volume_initialization_rate,
            kms_key_id,
        ),
        "tags": tag_map,
    }
    if instance_store_policy:
        spec["instanceStorePolicy"] = instance_store_policy
    if image_pull_mode is not None:
        mode = _check_pull_mode(image_pull_mode, ami_alias, data_volume_snapshot_id, user_data)
        user_data = "\n".join(p for p in (user_data, pull_settings_toml(mode)) if p) or None
    if user_data:
        spec["userData"] = user_data
    return {
        "apiVersion": NODECLASS_API_VERSION,
        "kind": "EC2NodeClass",
        "metadata": {"name": name},
        "spec": spec,
    }
