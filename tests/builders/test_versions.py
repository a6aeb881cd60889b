from __future__ import annotations

import pytest

from components import versions


def test_required_pins() -> None:
    assert versions.KARPENTER_CHART == "oci://public.ecr.aws/karpenter/karpenter"
    assert versions.KARPENTER_CHART_VERSION == "1.14.1"
    assert versions.KEDA_CHART_REPO == "https://kedacore.github.io/charts"
    assert versions.KEDA_CHART_VERSION == "2.20.2"
    assert versions.KUBERNETES_VERSION == "1.33"
    assert versions.BOTTLEROCKET_ALIAS.startswith("bottlerocket@v1.")
    assert set(versions.EKS_ADDON_VERSIONS) == {
        "vpc-cni",
        "coredns",
        "kube-proxy",
        "eks-pod-identity-agent",
        "aws-mountpoint-s3-csi-driver",
        "amazon-cloudwatch-observability",
    }
    assert versions.EKS_ADDON_VERSIONS["aws-mountpoint-s3-csi-driver"].startswith("v2.")


def test_nothing_is_latest() -> None:
    for pin in versions.PINS.values():
        assert "latest" not in pin.version.lower(), pin
        assert pin.version and pin.source


def test_addon_versions_by_kubernetes_version() -> None:
    assert versions.addon_version("coredns", "1.33") == versions.EKS_ADDON_VERSIONS["coredns"]
    assert versions.addon_version("coredns", "1.34") is None
    with pytest.raises(ValueError, match=r"^addon_name: got 'nope'; allowed"):
        versions.addon_version("nope", "1.33")


def test_default_server_images_are_pinned_tags() -> None:
    for runtime_type in ("sdwebui", "comfyui"):
        image = versions.default_server_image(runtime_type)
        repo, _, tag = image.rpartition(":")
        assert repo and tag and tag != "latest"
    with pytest.raises(ValueError, match=r"^runtime_type: got 'x'; allowed"):
        versions.default_server_image("x")


def test_markdown_table_lists_every_pin() -> None:
    table = versions.version_table_markdown()
    lines = table.strip().splitlines()
    assert lines[0].startswith("| what |")
    assert len(lines) == 2 + len(versions.PINS)
    for pin in versions.PINS.values():
        assert f"`{pin.version}`" in table
