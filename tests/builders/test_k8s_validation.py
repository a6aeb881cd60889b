"""The validator itself must catch what the API server would reject."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest

from sdfleet.components.builders import karpenter as k
from sdfleet.components.builders import keda
from sdfleet.components.builders import workload as w
from tests import k8s_validation as v

K8S = "1.33"


def _pool() -> dict:
    return k.node_pools(
        runtime_name="sd15",
        node_class_name="sd15",
        split=k.capacity_split(0.5),
        instance_types=["g6.2xlarge"],
        max_gpus=2,
    )[0]


def test_crd_unknown_field_is_an_error(crd_dir: Path) -> None:
    pool = _pool()
    assert v.validate_crd(pool) == []
    bad = copy.deepcopy(pool)
    bad["spec"]["template"]["spec"]["nodeClassReference"] = {"name": "x"}
    errors = v.validate_crd(bad)
    assert any("nodeClassReference" in e for e in errors), errors


def test_crd_nested_unknown_field_is_an_error(crd_dir: Path) -> None:
    bad = copy.deepcopy(_pool())
    bad["spec"]["disruption"]["consolidateWhenEmpty"] = True
    assert any("consolidateWhenEmpty" in e for e in v.validate_crd(bad))


def test_crd_wrong_type_is_an_error(crd_dir: Path) -> None:
    bad = copy.deepcopy(_pool())
    bad["spec"]["weight"] = "high"
    errors = v.validate_crd(bad)
    assert any(e.startswith("spec.weight:") for e in errors), errors


def test_crd_enum_and_required_are_checked(crd_dir: Path) -> None:
    bad = copy.deepcopy(_pool())
    bad["spec"]["disruption"]["consolidationPolicy"] = "Sometimes"
    del bad["spec"]["template"]["spec"]["nodeClassRef"]
    errors = v.validate_crd(bad)
    assert any("consolidationPolicy" in e for e in errors), errors
    assert any("nodeClassRef" in e for e in errors), errors


def test_preserve_unknown_fields_is_respected(crd_dir: Path) -> None:
    # Trigger metadata is an open string map: extra keys are fine, non-strings are not.
    so = keda.scaled_object(
        name="a",
        namespace="a",
        deployment_name="a",
        queue_url="https://sqs.us-west-2.amazonaws.com/111122223333/q",
        region="us-west-2",
        trigger_authentication_name="a",
        max_replicas=1,
    )
    so["spec"]["triggers"][0]["metadata"]["scaleOnDelayed"] = "false"
    assert v.validate_crd(so) == []


def test_unknown_crd_kind_is_reported(crd_dir: Path) -> None:
    errors = v.validate_crd(
        {"apiVersion": "karpenter.sh/v1", "kind": "Provisioner", "metadata": {}}
    )
    assert errors and "Provisioner" in errors[0]
    errors = v.validate_crd(
        {"apiVersion": "karpenter.sh/v1beta9", "kind": "NodePool", "metadata": {}}
    )
    assert errors and "v1beta9" in errors[0]


def test_builtin_unknown_field_and_wrong_type() -> None:
    ns = w.namespace("sd15")
    assert v.validate_builtin(ns, K8S) == []
    unknown = copy.deepcopy(ns)
    unknown["spec"] = {"finalizers": ["kubernetes"], "colour": "blue"}
    assert v.validate_builtin(unknown, K8S)
    pvc = w.model_claim(name="m", namespace="n", volume_name="v")
    wrong = copy.deepcopy(pvc)
    wrong["spec"]["accessModes"] = "ReadOnlyMany"
    errors = v.validate_builtin(wrong, K8S)
    assert errors and "accessModes" in errors[0]


def test_dispatch_on_kind(crd_dir: Path) -> None:
    assert v.is_custom_resource(_pool())
    assert not v.is_custom_resource(w.namespace("a"))
    bad_ns = w.namespace("a")
    bad_ns["metadata"]["labelz"] = {}
    assert v.validate_manifest(bad_ns, K8S)
    bad_pool = _pool()
    bad_pool["spec"]["limitz"] = {}
    assert v.validate_manifest(bad_pool, K8S)


def test_schemas_are_vendored_in_the_repository() -> None:
    assert v.schemas_dir() == v.REPO_ROOT / "schemas" / "crds"
    groups = {group for group, _ in v._crd_index(str(v.schemas_dir()))}
    assert groups == set(v.CRD_GROUPS)


def test_missing_schemas_are_an_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(v, "CRD_DIR", tmp_path / "absent")
    with pytest.raises(FileNotFoundError, match="vendored CRD schemas missing"):
        v.validate_crd(_pool())
