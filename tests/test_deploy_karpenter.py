"""Karpenter's CRDs come from the karpenter-crd chart (same version), installed before the
controller chart, which skips its own crds/ (Helm installs those once and never upgrades them)."""

from __future__ import annotations

from typing import Any, ClassVar

import pulumi
import pulumi_aws as aws
import pulumi_kubernetes as k8s
import pytest

from sdfleet import mocking
from sdfleet.components import versions
from sdfleet.components.karpenter import Karpenter, KarpenterArgs
from sdfleet.mocking import Recorder, run_program

RELEASE = "kubernetes:helm.sh/v3:Release"


class _DependencyMonitor(mocking.RecordingMonitor):
    """Also records each resource's dependencies, by name."""

    dependencies: ClassVar[dict[str, set[str]]] = {}

    def RegisterResource(self, request: Any) -> Any:
        self.dependencies[request.name] = {u.rsplit("::", 1)[-1] for u in request.dependencies}
        return super().RegisterResource(request)


@pytest.fixture
def karpenter_graph(monkeypatch: pytest.MonkeyPatch) -> tuple[Recorder, dict[str, set[str]]]:
    _DependencyMonitor.dependencies.clear()
    monkeypatch.setattr(mocking, "RecordingMonitor", _DependencyMonitor)

    def program() -> None:
        provider = k8s.Provider("cluster", kubeconfig="{}")
        addon = aws.eks.Addon("addon", cluster_name="c1", addon_name="vpc-cni")
        Karpenter(
            "kp",
            KarpenterArgs(cluster_name="c1"),
            pulumi.ResourceOptions(provider=provider, depends_on=[addon]),
        )

    graph = run_program(program, {"aws:region": "us-east-1"})
    return graph, dict(_DependencyMonitor.dependencies)


def test_crd_chart_is_pinned_to_the_controller_chart_version() -> None:
    assert versions.KARPENTER_CRD_CHART == "oci://public.ecr.aws/karpenter/karpenter-crd"
    assert versions.KARPENTER_CRD_CHART_VERSION == versions.KARPENTER_CHART_VERSION


def test_crd_release_inputs(karpenter_graph: tuple[Recorder, dict[str, set[str]]]) -> None:
    graph, _ = karpenter_graph
    crds = graph.one(RELEASE, "kp-crd-release")
    assert crds.parent == "kp"
    assert crds.inputs["name"] == "karpenter-crd"
    assert crds.inputs["chart"] == versions.KARPENTER_CRD_CHART
    assert crds.inputs["version"] == versions.KARPENTER_CHART_VERSION
    assert crds.inputs["namespace"] == "kube-system"
    # Adopts CRDs that an earlier install created from the controller chart's crds/.
    assert crds.inputs["takeOwnership"] is True
    assert "skipCrds" not in crds.inputs


def test_controller_skips_its_crds_and_waits_for_the_crd_release(
    karpenter_graph: tuple[Recorder, dict[str, set[str]]],
) -> None:
    graph, deps = karpenter_graph
    controller = graph.one(RELEASE, "kp-release")
    assert controller.inputs["chart"] == versions.KARPENTER_CHART
    assert controller.inputs["version"] == versions.KARPENTER_CRD_CHART_VERSION
    assert controller.inputs["skipCrds"] is True
    assert "kp-crd-release" in deps["kp-release"]
    # Both wait for what the cluster needs first (its addons).
    assert "addon" in deps["kp-crd-release"]
    assert "addon" in deps["kp-release"]


def test_dev_stack_installs_both_releases(dev_graph: Recorder) -> None:
    names = {r.name: r.inputs["chart"] for r in dev_graph.of_type(RELEASE)}
    assert names["sdfleet-karpenter-crd-release"] == versions.KARPENTER_CRD_CHART
    assert names["sdfleet-karpenter-release"] == versions.KARPENTER_CHART
