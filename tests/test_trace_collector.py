"""TraceCollector under the recording mock: the Kubernetes objects, the Pod Identity role with
X-Ray put-only permissions, what waits for what, and the outputs the agents are wired with."""

from __future__ import annotations

import json
from typing import Any

import pulumi
import pulumi_aws as aws
import pulumi_kubernetes as k8s
import pytest
import yaml

from sdfleet.components import versions
from sdfleet.components.builders import iam
from sdfleet.components.builders import trace_collector as tcb
from sdfleet.components.trace_collector import TraceCollector, TraceCollectorArgs
from sdfleet.mocking import ACCOUNT_ID, Recorder, run_program

SYSTEM = {"sdfleet.io/pool": "system"}
URL = "http://otel-collector.sdfleet-telemetry.svc.cluster.local:4318/v1/traces"


def _synth(args: Any, seen: dict[str, Any] | None = None) -> Recorder:
    def program() -> None:
        cluster = k8s.Provider("cluster", kubeconfig="{}")
        addon = aws.eks.Addon(
            "pod-identity", cluster_name="c1", addon_name="eks-pod-identity-agent"
        )
        collector = TraceCollector(
            "traces", args, opts=pulumi.ResourceOptions(provider=cluster, depends_on=[addon])
        )
        if seen is not None:
            collector.otlp_traces_endpoint.apply(lambda v: seen.__setitem__("url", v))
            collector.namespace.apply(lambda v: seen.__setitem__("namespace", v))
            collector.role_arn.apply(lambda v: seen.__setitem__("role", v))

    return run_program(program, {"aws:region": "us-west-2"})


@pytest.fixture(scope="module")
def graph() -> Recorder:
    return _synth(TraceCollectorArgs(cluster_name="c1", system_node_selector=dict(SYSTEM)))


def _k8s(graph: Recorder, kind: str) -> dict[str, Any]:
    (found,) = graph.of_type(kind)
    return found.inputs


def test_the_kubernetes_objects_are_the_builders(graph: Recorder) -> None:
    expected = tcb.collector_manifests(
        region="us-west-2", image=versions.ADOT_COLLECTOR_IMAGE, node_selector=SYSTEM
    )
    deployment = _k8s(graph, "kubernetes:apps/v1:Deployment")
    assert deployment["spec"] == expected["deployment"]["spec"]
    assert deployment["metadata"] == expected["deployment"]["metadata"]
    config = _k8s(graph, "kubernetes:core/v1:ConfigMap")
    assert config["data"] == expected["config_map"]["data"]
    exporter = yaml.safe_load(config["data"][tcb.CONFIG_FILE])["exporters"]["awsxray"]
    assert exporter == {"region": "us-west-2", "indexed_attributes": list(tcb.INDEXED_ATTRIBUTES)}
    for kind, key in (
        ("kubernetes:core/v1:Namespace", "namespace"),
        ("kubernetes:networking.k8s.io/v1:NetworkPolicy", "network_policy"),
        ("kubernetes:core/v1:Service", "service"),
        ("kubernetes:policy/v1:PodDisruptionBudget", "pod_disruption_budget"),
    ):
        inputs = _k8s(graph, kind)
        assert inputs["metadata"] == expected[key]["metadata"], kind
        if "spec" in expected[key]:
            assert inputs["spec"] == expected[key]["spec"], kind
    sa = _k8s(graph, "kubernetes:core/v1:ServiceAccount")
    assert sa["metadata"]["name"] == tcb.SERVICE_ACCOUNT
    assert sa["automountServiceAccountToken"] is False


def test_the_role_may_only_put_traces_and_pod_identity_binds_it(graph: Recorder) -> None:
    (role,) = graph.of_type("aws:iam/role:Role")
    assert json.loads(role.inputs["assumeRolePolicy"]) == iam.pod_identity_trust_policy(ACCOUNT_ID)
    (policy,) = graph.of_type("aws:iam/rolePolicy:RolePolicy")
    document = json.loads(policy.inputs["policy"])
    assert document == iam.trace_collector_policy()
    (statement,) = document["Statement"]
    assert statement["Action"] == ["xray:PutTelemetryRecords", "xray:PutTraceSegments"]
    assert statement["Resource"] == "*"
    (association,) = graph.of_type("aws:eks/podIdentityAssociation:PodIdentityAssociation")
    assert association.inputs["namespace"] == tcb.NAMESPACE
    assert association.inputs["serviceAccount"] == tcb.SERVICE_ACCOUNT
    assert association.inputs["clusterName"] == "c1"
    assert association.inputs["roleArn"] == role.state["arn"]


def test_pods_wait_for_their_credentials_and_config(graph: Recorder) -> None:
    (deployment,) = graph.of_type("kubernetes:apps/v1:Deployment")
    assert {
        "traces-pod-identity",
        "traces-put-traces",
        "traces-sa",
        "traces-config",
        "traces-network-policy",
        "traces-namespace",
        "pod-identity",
    } <= set(deployment.dependencies)
    # Every Kubernetes object waits for what the caller passed in depends_on.
    for rec in graph.resources:
        if rec.type.startswith("kubernetes:") and rec.custom and rec.parent == "traces":
            assert "pod-identity" in rec.dependencies, rec.name


def test_outputs_are_the_in_cluster_endpoint_and_namespace() -> None:
    seen: dict[str, Any] = {}
    _synth(TraceCollectorArgs(cluster_name="c1"), seen)
    assert seen["url"] == URL == tcb.OTLP_TRACES_URL
    assert seen["namespace"] == "sdfleet-telemetry"
    assert seen["role"].startswith(f"arn:aws:iam::{ACCOUNT_ID}:role/")


def test_a_host_mapping_is_accepted_and_defaults_apply() -> None:
    graph = _synth({"cluster_name": "c1", "replicas": None, "otlp_grpc": True})
    spec = _k8s(graph, "kubernetes:apps/v1:Deployment")["spec"]
    assert spec["replicas"] == tcb.DEFAULT_REPLICAS
    assert "nodeSelector" not in spec["template"]["spec"]
    ports = _k8s(graph, "kubernetes:core/v1:Service")["spec"]["ports"]
    assert [p["port"] for p in ports] == [4318, 4317]


def test_bad_values_fail_before_any_resource() -> None:
    with pytest.raises(ValueError, match=r"^replicas: got 0; allowed"):
        _synth(TraceCollectorArgs(cluster_name="c1", replicas=0))
