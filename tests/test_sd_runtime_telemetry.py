"""SdRuntime's traces and metrics wiring under the recording mocks: the agents' metrics log group
(name, retention, outputs), the pod role's grant on it, the agent env in the pod spec, the
collector egress rule with tracing on, and the node-reading RBAC."""

from __future__ import annotations

import json
from typing import Any

import pulumi
import pulumi_kubernetes as k8s
import pytest

from sdfleet.components.sd_runtime import SdRuntime
from sdfleet.invariants import check_all
from sdfleet.mocking import run_program
from tests.test_sd_runtime import (
    CASES,
    KUBECONFIG,
    REGION,
    RUNTIMES,
    Run,
    _construct,
    make_args,
    on_cluster,
    run_runtimes,
)

ENDPOINT = "http://otel-collector.sdfleet-telemetry.svc.cluster.local:4318/v1/traces"
TELEMETRY_NS = "sdfleet-telemetry"
MOCK_ACCOUNT = "123456789012"


def group_name(runtime: str) -> str:
    # The mocks run project "sdfleet", stack "dev".
    return f"/sdfleet/sdfleet-dev/{runtime}/agent-metrics"


def agent_env(run: Run, runtime: str) -> dict[str, dict[str, Any]]:
    (agent,) = run.pod(runtime)["containers"]
    return {e["name"]: e for e in agent["env"]}


@pytest.fixture(scope="module")
def traced() -> Run:
    return run_runtimes(
        otlp_traces_endpoint=ENDPOINT,
        telemetry_namespace=TELEMETRY_NS,
        metrics_log_retention_days=14,
    )


@pytest.fixture(scope="module")
def untraced() -> Run:
    return run_runtimes()


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_metrics_log_group_with_retention_and_outputs(
    traced: Run, untraced: Run, runtime: str
) -> None:
    group = traced.res("aws:cloudwatch/logGroup:LogGroup", runtime, "agent-metrics")
    assert group.inputs == {"name": group_name(runtime), "retentionInDays": 14}
    assert group.parent == f"rt-{runtime}"
    # Unset: the stack config's default log retention.
    default = untraced.res("aws:cloudwatch/logGroup:LogGroup", runtime, "agent-metrics")
    assert default.inputs["retentionInDays"] == 30
    got = traced.outputs[runtime]
    assert got["metrics_log_group_name"] == group_name(runtime)
    assert got["metrics_log_group_arn"] == group.state["arn"]
    assert got["metrics_log_group_arn"] == (
        f"arn:aws:logs:{REGION}:{MOCK_ACCOUNT}:log-group:{group_name(runtime)}"
    )


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_pod_role_writes_only_its_own_metrics_streams(traced: Run, runtime: str) -> None:
    policy = traced.res("aws:iam/rolePolicy:RolePolicy", runtime, "policy")
    statements = json.loads(policy.inputs["policy"])["Statement"]
    logs = [s for s in statements if any(a.startswith("logs:") for a in s["Action"])]
    assert logs == [
        {
            "Sid": "WriteAgentMetrics",
            "Effect": "Allow",
            "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
            "Resource": f"arn:aws:logs:{REGION}:{MOCK_ACCOUNT}:log-group:{group_name(runtime)}:*",
        }
    ]


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_agent_env_in_the_pod_spec(traced: Run, untraced: Run, runtime: str) -> None:
    env = agent_env(traced, runtime)
    assert env["METRICS_LOG_GROUP"] == {"name": "METRICS_LOG_GROUP", "value": group_name(runtime)}
    assert env["OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"]["value"] == ENDPOINT
    assert env["OTEL_SERVICE_NAME"]["value"] == f"sdfleet-agent-{runtime}"
    assert env["NODE_NAME"]["valueFrom"] == {"fieldRef": {"fieldPath": "spec.nodeName"}}
    plain = agent_env(untraced, runtime)
    assert plain["METRICS_LOG_GROUP"]["value"] == group_name(runtime)
    assert "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT" not in plain


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_collector_egress_only_with_tracing(traced: Run, untraced: Run, runtime: str) -> None:
    kind = "kubernetes:networking.k8s.io/v1:NetworkPolicy"
    _, collector = traced.manifest(kind, runtime, "network-policy")["spec"]["egress"]
    assert collector == {
        "to": [
            {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": TELEMETRY_NS}}}
        ],
        "ports": [{"protocol": "TCP", "port": 4318}],
    }
    (general,) = untraced.manifest(kind, runtime, "network-policy")["spec"]["egress"]
    # AWS APIs, CloudWatch Logs among them, on 443: every public address, IMDS excepted.
    assert "ports" not in general
    assert {"ipBlock": {"cidr": "0.0.0.0/0", "except": ["169.254.169.254/32"]}} in general["to"]


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_runtime_namespace_is_labelled_for_the_collector(traced: Run, runtime: str) -> None:
    ns = traced.manifest("kubernetes:core/v1:Namespace", runtime, "namespace")
    assert ns["metadata"]["labels"]["sdfleet.io/runtime-namespace"] == "true"
    assert ns["metadata"]["name"] == CASES[runtime][1]


def test_policies_and_invariants_hold_with_tracing(traced: Run) -> None:
    assert check_all(traced.graph) == []


def test_endpoint_may_be_an_output() -> None:
    """The pipeline may hand over the collector's URL as an Output."""
    seen: dict[str, Any] = {}

    def program() -> None:
        provider = k8s.Provider("byo-cluster", kubeconfig=KUBECONFIG)
        rt = SdRuntime(
            "rt-sd15",
            make_args(
                "sd15",
                otlp_traces_endpoint=pulumi.Output.from_input(ENDPOINT),
                telemetry_namespace=TELEMETRY_NS,
            ),
            on_cluster(provider),
        )
        rt.manifests.apply(lambda m: seen.setdefault("manifests", m))

    run_program(program, {"aws:region": REGION})
    deployment = next(m for m in seen["manifests"] if m["kind"] == "Deployment")
    (agent,) = deployment["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e.get("value") for e in agent["env"]}
    assert env["OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"] == ENDPOINT
    policy = next(m for m in seen["manifests"] if m["kind"] == "NetworkPolicy")
    assert len(policy["spec"]["egress"]) == 2


@pytest.mark.parametrize(
    ("over", "message"),
    [
        ({"metrics_log_retention_days": 31}, r"metrics_log_retention_days: got 31"),
        ({"otlp_traces_endpoint": "collector:4318"}, r"agent_env.otlp_traces_endpoint: got"),
        (
            {"otlp_traces_endpoint": ENDPOINT, "telemetry_namespace": "Bad_NS"},
            r"telemetry_namespace: got 'Bad_NS'",
        ),
        ({"agent_extra_env": {"METRICS_LOG_GROUP": "/elsewhere"}}, r"agent_env.extra.METRICS_LOG"),
    ],
)
def test_bad_telemetry_input_fails_before_any_resource(over: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        _construct(**over)
