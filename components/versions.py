"""Every version sdfleet deploys, in one table. Nothing here may say ``latest``.

The version table in docs/compute-plane.md is generated from :data:`PINS` by :func:`version_table_markdown`.
The ``source`` column says how each pin was checked. EKS addon builds are published per
Kubernetes minor version; the ones below were read from public infrastructure code pinning them
for 1.33, not from the AWS API (no account here). Before changing the Kubernetes version, check
them with ``aws eks describe-addon-versions --kubernetes-version <v> --addon-name <name>`` or
resolve them in the program with ``aws.eks.get_addon_version(addon_name=..., kubernetes_version=...,
most_recent=False)`` (the default build for that Kubernetes version), then pin the result here.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType
from typing import Final


@dataclass(frozen=True)
class Pin:
    """One pinned artifact. ``location`` is the chart repo, image repository or addon name."""

    key: str
    what: str
    location: str
    version: str
    source: str

    @property
    def image(self) -> str:
        """``repository:tag`` for image pins."""
        return f"{self.location}:{self.version}"


_ROWS: tuple[Pin, ...] = (
    # Karpenter controller chart; schemas/crds (see schemas/versions.json) hold the CRDs of this exact release.
    Pin(
        "karpenter_chart",
        "Karpenter Helm chart",
        "oci://public.ecr.aws/karpenter/karpenter",
        "1.14.1",
        "aws/karpenter-provider-aws tag v1.14.1 (charts/karpenter/Chart.yaml)",
    ),
    # KEDA operator chart; schemas/crds (see schemas/versions.json) hold the CRDs of this exact release.
    Pin(
        "keda_chart",
        "KEDA Helm chart `keda`",
        "https://kedacore.github.io/charts",
        "2.20.2",
        "kedacore/charts keda/Chart.yaml (appVersion 2.20.2)",
    ),
    # Cluster version: native sidecars are GA from 1.33; Mountpoint CSI v2 needs >= 1.31.
    Pin(
        "kubernetes",
        "Kubernetes (EKS) version, default",
        "eks",
        "1.33",
        "platform reference §0 (KEDA >= 1.30, Mountpoint >= 1.31, Karpenter <= 1.36)",
    ),
    # Bottlerocket release for the GPU EC2NodeClass alias; the NVIDIA variant is picked per
    # instance type by Karpenter. Bumping it drifts (replaces) every GPU node, deliberately.
    Pin(
        "bottlerocket",
        "Bottlerocket AMI alias (EC2NodeClass amiSelectorTerms)",
        "bottlerocket",
        "v1.63.0",
        "bottlerocket-os/bottlerocket release v1.63.0 (2026-07-17; ships aws-k8s-1.33-nvidia)",
    ),
    # EKS managed addons for Kubernetes 1.33 (see the module docstring for how to re-check).
    Pin(
        "addon_vpc_cni",
        "EKS addon vpc-cni (k8s 1.33)",
        "vpc-cni",
        "v1.20.1-eksbuild.3",
        "public IaC pin for 1.33; re-check with describe-addon-versions",
    ),
    Pin(
        "addon_coredns",
        "EKS addon coredns (k8s 1.33)",
        "coredns",
        "v1.11.4-eksbuild.22",
        "public IaC pin for 1.33; re-check with describe-addon-versions",
    ),
    Pin(
        "addon_kube_proxy",
        "EKS addon kube-proxy (k8s 1.33)",
        "kube-proxy",
        "v1.33.0-eksbuild.1",
        "public IaC pin for 1.33; re-check with describe-addon-versions",
    ),
    Pin(
        "addon_pod_identity_agent",
        "EKS addon eks-pod-identity-agent (k8s 1.33)",
        "eks-pod-identity-agent",
        "v1.3.8-eksbuild.2",
        "public IaC pin for 1.33; re-check with describe-addon-versions",
    ),
    # The v2 driver (Mountpoint pods, emptyDir cache) is what the PV builder targets.
    Pin(
        "addon_mountpoint_s3_csi",
        "EKS addon aws-mountpoint-s3-csi-driver (k8s 1.33)",
        "aws-mountpoint-s3-csi-driver",
        "v2.0.0-eksbuild.1",
        "public IaC pin for 1.33 (driver v2.x); newer v2 builds exist, re-check before bumping",
    ),
    # Container Insights: ships container stdout (the agent's JSON logs and EMF metric lines)
    # to CloudWatch Logs, where EMF lines become metrics, and runs dcgm-exporter on GPU nodes.
    # The dcgm-exporter SYS_ADMIN fix for Bottlerocket NVIDIA (aws-observability/helm-charts
    # PR #217, merged 2025-06-11) shipped in chart v4.2.0 (2025-06-25, RELEASE_NOTES: "Extend
    # support for DCGM scraping on Bottlerocket instances"); this build is chart v4.5.0
    # (2025-09-24). Add-on builds carry their chart's version (chart v3.7.0's notes name
    # add-on v3.7.0-eksbuild.1); the add-on's own manifest was not read here.
    Pin(
        "addon_cloudwatch_observability",
        "EKS addon amazon-cloudwatch-observability",
        "amazon-cloudwatch-observability",
        "v4.5.0-eksbuild.1",
        "public IaC pin; chart v4.5.0 (2025-09-24) is after the Bottlerocket DCGM fix "
        "(chart v4.2.0); re-check with describe-addon-versions",
    ),
    # TraceCollector's image: the ADOT collector (awsxray exporter). Tag and digest as two
    # public repositories pin them (one from public.ecr.aws, one from Docker Hub's
    # amazon/aws-otel-collector: the same digest). System nodes default to arm64: that the
    # digest is a multi-arch index was not checked here (no registry access); check before use.
    Pin(
        "adot_collector_image",
        "ADOT collector image (TraceCollector)",
        "public.ecr.aws/aws-observability/aws-otel-collector",
        "v0.48.0@sha256:9b28046359054b414f4ba76056ba4e8cffda2d53fbcee06171d7eeecd71326c3",
        "aws-observability/aws-otel-collector release v0.48.0; digest as pinned in public "
        "Dockerfiles (not pulled here)",
    ),
    # Default SD WebUI (A1111) server image: a community build, pinned by tag, not verified
    # here. The pod contract is what matters: the API on port 8080 and models read from the
    # mount path (workload.DEFAULT_SERVER_ARGS / DEFAULT_MODEL_PATHS); production runtimes
    # should name their own image, args and model path.
    Pin(
        "sdwebui_image",
        "Default SD WebUI server image",
        "ghcr.io/ai-dock/stable-diffusion-webui",
        "v2-cuda-12.1.1-base-22.04-v1.10.1",
        "ai-dock tag scheme `v2-cuda-<cuda>-base-<ubuntu>-<webui version>`; not pulled here",
    ),
    # Default ComfyUI server image: a community build, pinned by tag; same contract as above.
    Pin(
        "comfyui_image",
        "Default ComfyUI server image",
        "ghcr.io/ai-dock/comfyui",
        "v2-cuda-12.1.1-base-22.04-v0.3.20",
        "tag used as a FROM base in public Dockerfiles; not pulled here",
    ),
    # Base image of the queue agent (agent/Dockerfile); agent code must stay 3.12-compatible.
    Pin(
        "agent_python_image",
        "Queue agent base image",
        "python",
        "3.12.12-slim-trixie",
        "Docker official image tag (CPython 3.12.12, Debian 13)",
    ),
)

PINS: Final = MappingProxyType({row.key: row for row in _ROWS})

KARPENTER_CHART: Final = PINS["karpenter_chart"].location
KARPENTER_CHART_VERSION: Final = PINS["karpenter_chart"].version
# The CRD-only chart of the same release (CRDs in templates/, so `helm upgrade` updates them;
# the controller chart's crds/ are installed once and never upgraded). Same version, always.
KARPENTER_CRD_CHART: Final = "oci://public.ecr.aws/karpenter/karpenter-crd"
KARPENTER_CRD_CHART_VERSION: Final = KARPENTER_CHART_VERSION
KEDA_CHART_REPO: Final = PINS["keda_chart"].location
KEDA_CHART: Final = "keda"
KEDA_CHART_VERSION: Final = PINS["keda_chart"].version
KUBERNETES_VERSION: Final = PINS["kubernetes"].version
BOTTLEROCKET_VERSION: Final = PINS["bottlerocket"].version
BOTTLEROCKET_ALIAS: Final = f"bottlerocket@{BOTTLEROCKET_VERSION}"
DEFAULT_SDWEBUI_IMAGE: Final = PINS["sdwebui_image"].image
DEFAULT_COMFYUI_IMAGE: Final = PINS["comfyui_image"].image
AGENT_BASE_IMAGE: Final = PINS["agent_python_image"].image
ADOT_COLLECTOR_IMAGE: Final = PINS["adot_collector_image"].image

# Addon name -> version, for the Kubernetes version the addon pins were taken for.
EKS_ADDON_VERSIONS: Final = MappingProxyType(
    {row.location: row.version for row in _ROWS if row.key.startswith("addon_")}
)


def addon_version(addon_name: str, kubernetes_version: str) -> str | None:
    """The pinned build of an EKS addon, or None when none is pinned for that Kubernetes
    version (the caller then resolves it with ``aws.eks.get_addon_version``)."""
    if addon_name not in EKS_ADDON_VERSIONS:
        raise ValueError(
            f"addon_name: got {addon_name!r}; allowed: {', '.join(sorted(EKS_ADDON_VERSIONS))}"
        )
    if kubernetes_version != KUBERNETES_VERSION:
        return None
    return EKS_ADDON_VERSIONS[addon_name]


def default_server_image(runtime_type: str) -> str:
    images = {"sdwebui": DEFAULT_SDWEBUI_IMAGE, "comfyui": DEFAULT_COMFYUI_IMAGE}
    if runtime_type not in images:
        raise ValueError(f"runtime_type: got {runtime_type!r}; allowed: {', '.join(images)}")
    return images[runtime_type]


def version_table_markdown() -> str:
    """The version table of docs/compute-plane.md."""
    lines = [
        "| what | where | version | checked against |",
        "| --- | --- | --- | --- |",
    ]
    for row in _ROWS:
        lines.append(f"| {row.what} | `{row.location}` | `{row.version}` | {row.source} |")
    return "\n".join(lines) + "\n"
