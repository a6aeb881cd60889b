"""Closed sets that component Args and the config model share, as ``StrEnum``s: Pulumi's
schema analyzer turns an Enum subclass into a schema enum (it rejects ``typing.Literal``), and a
member compares and formats as its plain string value, so callers may still pass strings."""

from enum import StrEnum


class RuntimeType(StrEnum):
    """The inference server a runtime runs; it decides the server's default image, arguments,
    model path, startup probe and the agent's API client."""

    SDWEBUI = "sdwebui"
    """AUTOMATIC1111 Stable Diffusion WebUI, driven through its ``/sdapi/v1`` HTTP API."""
    COMFYUI = "comfyui"
    """ComfyUI, driven through its workflow (``/prompt``) HTTP API."""


class InstanceStorePolicy(StrEnum):
    """What Karpenter does with a GPU node's local NVMe instance store."""

    RAID0 = "RAID0"
    """Stripe every NVMe disk into one RAID0 array used for the kubelet, container images and
    emptyDir volumes (faster image pulls and model cache than EBS)."""


class QuotaPeriod(StrEnum):
    """The period an API usage plan's quota counts over: DAY, WEEK or MONTH."""

    DAY = "DAY"
    WEEK = "WEEK"
    MONTH = "MONTH"


class NatGateways(StrEnum):
    """NAT gateways of a new VPC: ``single`` (cheapest) or ``onePerAz`` (survives a zone)."""

    SINGLE = "single"
    ONE_PER_AZ = "onePerAz"


class Arch(StrEnum):
    """CPU architecture of the system node group: ``arm64`` (Graviton) or ``amd64``."""

    ARM64 = "arm64"
    AMD64 = "amd64"


class ImagePullPolicy(StrEnum):
    """When the kubelet pulls a container's image (Kubernetes' ``imagePullPolicy``)."""

    ALWAYS = "Always"
    """Resolve the reference against the registry at every container start."""
    IF_NOT_PRESENT = "IfNotPresent"
    """Pull only when the node does not have the image yet."""
    NEVER = "Never"
    """Never pull: the image must be on the node already (e.g. a pre-pulled snapshot)."""


class ImagePullMode(StrEnum):
    """How a GPU node pulls images that are not already on its data volume."""

    DEFAULT = "default"
    """Bottlerocket's own containerd settings; no user data is added."""
    PARALLEL = "parallel"
    """containerd downloads more layers at once and fetches each large layer in parallel
    chunks (``settings.container-runtime.*``). Works with a data-volume snapshot."""
    SOCI = "soci"
    """The SOCI snapshotter in parallel-pull-unpack mode: layers download in chunks and
    unpack concurrently. Not with a data-volume snapshot (see ``pull_settings_toml``)."""
