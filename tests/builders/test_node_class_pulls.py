"""EC2NodeClass image pull modes: the Bottlerocket TOML each mode adds to userData, the
combinations the builder refuses, and the result against the vendored Karpenter CRD."""

from __future__ import annotations

import tomllib
from typing import Any

import pytest

from sdfleet.components import versions
from sdfleet.components.builders import karpenter_node_class as nc
from sdfleet.components.builders.enums import ImagePullMode
from tests.builders.conftest import K8S_VERSION
from tests.k8s_validation import assert_valid, validate_crd

SNAP = "snap-0123456789abcdef0"


def _node_class(**overrides: Any) -> dict[str, Any]:
    args: dict[str, Any] = {
        "name": "sd15-gpu",
        "cluster_name": "sdfleet-dev",
        "node_role_name": "KarpenterNodeRole-sdfleet",
        "ami_alias": versions.BOTTLEROCKET_ALIAS,
        "data_volume_size_gib": 100,
    }
    args.update(overrides)
    return nc.ec2_node_class(**args)


def _settings(manifest: dict[str, Any]) -> dict[str, Any]:
    return dict(tomllib.loads(manifest["spec"]["userData"])["settings"])


@pytest.mark.parametrize("mode", [None, "default", ImagePullMode.DEFAULT])
def test_default_mode_adds_no_user_data(mode: Any) -> None:
    manifest = _node_class(image_pull_mode=mode)
    assert "userData" not in manifest["spec"]
    assert manifest == _node_class()  # byte for byte what callers got before the parameter
    assert_valid(manifest, K8S_VERSION)


def test_parallel_mode_sets_containerd_downloads_and_chunks() -> None:
    manifest = _node_class(image_pull_mode="parallel")
    assert _settings(manifest) == {
        "container-runtime": {
            "max-concurrent-downloads": 8,
            "concurrent-download-chunk-size": "16mb",
        }
    }
    assert validate_crd(manifest) == []


def test_soci_mode_sets_the_snapshotter_and_parallel_pull_unpack() -> None:
    settings = _settings(_node_class(image_pull_mode="soci"))
    assert settings["container-runtime"] == {"snapshotter": "soci"}
    soci = settings["container-runtime-plugins"]["soci-snapshotter"]
    assert soci["pull-mode"] == "parallel-pull-unpack"
    assert soci["parallel-pull-unpack"] == {
        "max-concurrent-downloads-per-image": 10,
        "concurrent-download-chunk-size": "16mb",
        "max-concurrent-unpacks-per-image": 10,
        "discard-unpacked-layers": True,
    }
    assert validate_crd(_node_class(image_pull_mode="soci")) == []


def test_parallel_mode_works_with_an_image_cache_snapshot() -> None:
    manifest = _node_class(image_pull_mode="parallel", data_volume_snapshot_id=SNAP)
    data = manifest["spec"]["blockDeviceMappings"][1]["ebs"]
    assert data["snapshotID"] == SNAP
    assert "max-concurrent-downloads" in _settings(manifest)["container-runtime"]
    assert_valid(manifest, K8S_VERSION)


def test_soci_is_refused_with_a_snapshot() -> None:
    # Bottlerocket drops the other snapshotter's images when the snapshotter changes at boot.
    with pytest.raises(ValueError, match="'default' or 'parallel' with a snapshotId"):
        _node_class(image_pull_mode="soci", data_volume_snapshot_id=SNAP)


def test_existing_user_data_is_kept_and_merged() -> None:
    user_data = "[settings.kubelet-device-plugins.nvidia]\npass-device-specs = true\n"
    manifest = _node_class(user_data=user_data, image_pull_mode="soci")
    text = manifest["spec"]["userData"]
    assert text.startswith(user_data)
    settings = _settings(manifest)
    assert settings["kubelet-device-plugins"] == {"nvidia": {"pass-device-specs": True}}
    assert settings["container-runtime"] == {"snapshotter": "soci"}
    assert validate_crd(manifest) == []


@pytest.mark.parametrize(
    "user_data",
    [
        "[settings.container-runtime]\nmax-concurrent-downloads = 2\n",
        "[settings]\ncontainer-runtime-plugins.soci-snapshotter.pull-mode = 'soci-v2'\n",
    ],
)
def test_user_data_setting_the_same_settings_is_refused(user_data: str) -> None:
    with pytest.raises(ValueError, match="with imagePullMode"):
        _node_class(user_data=user_data, image_pull_mode="parallel")
    # Without a pull mode the user's own settings pass through untouched.
    assert _node_class(user_data=user_data)["spec"]["userData"] == user_data


def test_invalid_toml_user_data_is_reported_with_a_pull_mode() -> None:
    with pytest.raises(ValueError, match="Bottlerocket TOML"):
        _node_class(user_data="[settings", image_pull_mode="parallel")


@pytest.mark.parametrize(
    ("mode", "alias", "ok"),
    [
        ("soci", "bottlerocket@v1.43.2", False),
        ("soci", "bottlerocket@v1.44.0", True),
        ("parallel", "bottlerocket@v1.51.9", False),
        ("parallel", "bottlerocket@1.52.0", True),
        ("default", "bottlerocket@v1.20.0", True),
    ],
)
def test_modes_need_the_bottlerocket_version_that_has_their_settings(
    mode: str, alias: str, ok: bool
) -> None:
    if ok:
        assert_valid(_node_class(image_pull_mode=mode, ami_alias=alias), K8S_VERSION)
    else:
        with pytest.raises(ValueError, match="needs Bottlerocket >= v"):
            _node_class(image_pull_mode=mode, ami_alias=alias)


def test_the_pinned_bottlerocket_supports_every_mode() -> None:
    for mode in ImagePullMode:
        assert_valid(_node_class(image_pull_mode=mode), K8S_VERSION)


def test_unknown_mode_lists_the_allowed_ones() -> None:
    with pytest.raises(
        ValueError, match="imagePullMode: got 'fast'; allowed: default, parallel, soci"
    ):
        _node_class(image_pull_mode="fast")
