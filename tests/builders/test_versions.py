from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from sdfleet.components import versions


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


SCHEMAS = Path(__file__).resolve().parents[2] / "schemas"


def _vendored_sources() -> dict[str, Any]:
    data = json.loads((SCHEMAS / "versions.json").read_text())
    sources: dict[str, Any] = data["sources"]
    return sources


@pytest.mark.parametrize("pin_key", ["keda_chart", "karpenter_chart"])
def test_vendored_crds_match_the_pinned_chart(pin_key: str) -> None:
    source = _vendored_sources()[pin_key]
    pin = versions.PINS[pin_key]
    assert source["version"] == pin.version, (
        f"schemas/versions.json has {pin_key} {source['version']}, components/versions.py pins "
        f"{pin.version}: vendor the CRDs of the new release (schemas/README.md)"
    )
    assert source["tag"] == f"v{pin.version}"
    # The README table names the same release for the same files.
    readme = (SCHEMAS / "README.md").read_text()
    row = next(line for line in readme.splitlines() if source["project"] in line)
    assert f"release tag {source['tag']}" in row
    assert all(f"crds/{name}" in row for name in source["files"])


def test_vendored_crd_files_are_listed_and_unchanged() -> None:
    listed: dict[str, str] = {}
    for source in _vendored_sources().values():
        listed.update(source["files"])
    on_disk = {p.name for p in (SCHEMAS / "crds").glob("*.yaml")}
    assert on_disk == set(listed)
    for name, digest in listed.items():
        assert hashlib.sha256((SCHEMAS / "crds" / name).read_bytes()).hexdigest() == digest, name
