"""A runtime's pods wired for traces and metrics, without mocks: the agent's telemetry env
(metrics log group, OTLP endpoint, service name, node name), the node-reading RBAC, the
NetworkPolicy's collector rule (only with tracing on) and the pod role's metrics grant."""

from __future__ import annotations

import json
from typing import Any

import pytest

from sdfleet.agent.config import load_config
from sdfleet.components.builders import isolation as iso
from sdfleet.components.builders import pod_extras as px
from sdfleet.components.builders import workload as wl
from sdfleet.components.builders.enums import RuntimeType
from sdfleet.components.builders.iam.workload import (
    metrics_log_streams_statement,
    runtime_pod_policy,
)
from sdfleet.components.builders.runtime_manifests import runtime_manifests
from sdfleet.components.builders.runtime_plan import (
    RuntimeNames,
    metrics_log_group_name,
    metrics_log_retention_days,
    pod_policy,
)
from sdfleet.components.config import parse_config
from sdfleet.components.config_checks import ConfigError
from sdfleet.components.config_model import ObservabilityConfig
from sdfleet.components.sd_runtime_plan import SdRuntimeArgs, known_telemetry
from sdfleet.policy import run_rules
from sdfleet.policy.model import Resource
from tests.k8s_validation import assert_valid

K8S = "1.33"
REGION = "eu-west-1"
ACCOUNT = "111122223333"
GROUP = "/sdfleet/sdfleet-prod/sd15/agent-metrics"
GROUP_ARN = f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:{GROUP}"
ENDPOINT = "http://otel-collector.sdfleet-telemetry.svc.cluster.local:4318/v1/traces"
TELEMETRY_NS = "sdfleet-telemetry"
WIRED: dict[str, str] = {
    "region": REGION,
    "queue_url": f"https://sqs.{REGION}.amazonaws.com/{ACCOUNT}/sdfleet-sd15",
    "queue_arn": f"arn:aws:sqs:{REGION}:{ACCOUNT}:sdfleet-sd15",
    "output_topic_arn": f"arn:aws:sns:{REGION}:{ACCOUNT}:out",
    "output_bucket_name": "out-1111",
    "output_bucket_arn": "arn:aws:s3:::out-1111",
    "model_bucket_name": "models-1111",
    "agent_image": f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/agent@sha256:{'b' * 64}",
    "metrics_log_group_name": GROUP,
    "metrics_log_group_arn": GROUP_ARN,
}
TRACING = {**WIRED, "otlp_traces_endpoint": ENDPOINT}


def args(**over: Any) -> SdRuntimeArgs:
    values: dict[str, Any] = {
        "runtime_name": "sd15",
        "runtime_type": RuntimeType.SDWEBUI,
        "namespace": "gen",
        "cluster_name": "c1",
        "scheduling": {},
        **{k: v for k, v in WIRED.items() if not k.startswith("metrics_")},
        **over,
    }
    return SdRuntimeArgs(**values)


def agent_env(**over: Any) -> wl.AgentEnv:
    return wl.AgentEnv(
        sqs_queue_url=WIRED["queue_url"],
        sns_topic_arn=WIRED["output_topic_arn"],
        s3_bucket=WIRED["output_bucket_name"],
        runtime_type="comfyui",
        runtime_name="flux",
        aws_region=REGION,
        **over,
    )


def env_entries(manifests: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    (agent,) = manifests["deployment"]["spec"]["template"]["spec"]["containers"]
    return {e["name"]: e for e in agent["env"]}


# ------------------------------------------------------------------------------------------
# The agent's env


def test_agent_env_carries_the_telemetry_settings() -> None:
    entries = agent_env(metrics_log_group=GROUP, otlp_traces_endpoint=ENDPOINT).to_env()
    by_name = {e["name"]: e for e in entries}
    assert len(by_name) == len(entries)
    assert by_name["METRICS_LOG_GROUP"] == {"name": "METRICS_LOG_GROUP", "value": GROUP}
    assert by_name["OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"] == {
        "name": "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
        "value": ENDPOINT,
    }
    # The name the agent gives its tracer's resource (agent/__main__.py) too.
    assert by_name["OTEL_SERVICE_NAME"] == {
        "name": "OTEL_SERVICE_NAME",
        "value": "sdfleet-agent-flux",
    }
    assert by_name["NODE_NAME"] == {
        "name": "NODE_NAME",
        "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}},
    }


def test_the_agent_reads_back_the_telemetry_settings() -> None:
    entries = agent_env(metrics_log_group=GROUP, otlp_traces_endpoint=ENDPOINT).to_env()
    node = "ip-10-0-1-2.eu-west-1.compute.internal"
    resolved = {
        "metadata.name": "flux-7d9f-abcde",
        "metadata.namespace": "gen",
        "spec.nodeName": node,
    }
    env = {
        e["name"]: e["value"] if "value" in e else resolved[e["valueFrom"]["fieldRef"]["fieldPath"]]
        for e in entries
    }
    config = load_config(env)
    assert (config.metrics_log_group, config.node_name) == (GROUP, node)
    assert config.otlp_endpoint == ENDPOINT
    assert config.service_name == "sdfleet-agent-flux"


def test_without_telemetry_the_agent_keeps_stdout_metrics_and_no_tracing() -> None:
    by_name = {e["name"]: e for e in agent_env().to_env()}
    assert "METRICS_LOG_GROUP" not in by_name
    assert "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT" not in by_name
    # The downward API and the service name do not depend on the wiring.
    assert by_name["NODE_NAME"]["valueFrom"] == {"fieldRef": {"fieldPath": "spec.nodeName"}}
    assert by_name["OTEL_SERVICE_NAME"]["value"] == "sdfleet-agent-flux"


def test_every_env_name_is_one_the_agent_env_declares() -> None:
    entries = agent_env(metrics_log_group=GROUP, otlp_traces_endpoint=ENDPOINT).to_env()
    names = {e["name"] for e in entries}
    assert names <= set(wl.AgentEnv.names())
    telemetry = {"METRICS_LOG_GROUP", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_SERVICE_NAME"}
    assert telemetry | {"NODE_NAME"} <= names
    assert tuple(wl.AgentEnv.FIELD_REFS) == px.AGENT_DOWNWARD_ENV


@pytest.mark.parametrize(
    "name",
    ["METRICS_LOG_GROUP", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_SERVICE_NAME", "NODE_NAME"],
)
def test_extra_env_cannot_override_the_telemetry_settings(name: str) -> None:
    with pytest.raises(ValueError, match=rf"^agent_env\.extra\.{name}: got "):
        agent_env(extra={name: "x"}).to_env()
    # Nor can the stack config's agent.extraEnv.
    runtime = {"name": "x", "type": "comfyui", "agent": {"extraEnv": {name: "x"}}}
    with pytest.raises(ConfigError, match=rf"has name '{name}'"):
        parse_config({"runtimes": [runtime]})


@pytest.mark.parametrize(
    ("over", "field"),
    [
        ({"metrics_log_group": "agent metrics"}, "metrics_log_group"),
        ({"metrics_log_group": ""}, "metrics_log_group"),
        ({"metrics_log_group": "/a:b"}, "metrics_log_group"),
        ({"otlp_traces_endpoint": "otel-collector:4318"}, "otlp_traces_endpoint"),
        ({"otlp_traces_endpoint": "grpc://otel:4317"}, "otlp_traces_endpoint"),
    ],
)
def test_bad_telemetry_values_name_the_field(over: dict[str, str], field: str) -> None:
    with pytest.raises(ValueError, match=rf"^agent_env\.{field}: got "):
        agent_env(**over).to_env()


def test_the_runtime_manifests_wire_the_env() -> None:
    on = env_entries(runtime_manifests(args(otlp_traces_endpoint=ENDPOINT), TRACING))
    assert on["METRICS_LOG_GROUP"]["value"] == GROUP
    assert on["OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"]["value"] == ENDPOINT
    assert on["OTEL_SERVICE_NAME"]["value"] == "sdfleet-agent-sd15"
    off = env_entries(runtime_manifests(args(), WIRED))
    assert off["METRICS_LOG_GROUP"]["value"] == GROUP
    assert "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT" not in off


# ------------------------------------------------------------------------------------------
# The metrics log group


def test_metrics_log_group_name() -> None:
    assert metrics_log_group_name("sdfleet", "prod", "sd15") == GROUP
    with pytest.raises(ValueError, match=r"^metrics log group name: got '/sdfleet/my app-"):
        metrics_log_group_name("my app", "prod", "sd15")


def test_metrics_retention_defaults_to_the_stacks_log_retention() -> None:
    assert metrics_log_retention_days(args()) == ObservabilityConfig().log_retention_days == 30
    assert metrics_log_retention_days(args(metrics_log_retention_days=14)) == 14
    for bad in (31, 0, True):
        with pytest.raises(ValueError, match=r"^metrics_log_retention_days: got "):
            metrics_log_retention_days(args(metrics_log_retention_days=bad))


def test_known_telemetry_uses_placeholders_for_outputs() -> None:
    known = known_telemetry(args(), GROUP)
    assert known["metrics_log_group_name"] == GROUP
    assert known["metrics_log_group_arn"].endswith(":log-group:/sdfleet/placeholder/agent-metrics")
    assert "otlp_traces_endpoint" not in known
    assert known_telemetry(args(otlp_traces_endpoint=ENDPOINT), GROUP)["otlp_traces_endpoint"] == (
        ENDPOINT
    )
    # A placeholder the builders accept stands in for an Output.
    placeholder = known_telemetry(args(otlp_traces_endpoint=object()), GROUP)
    runtime_manifests(args(), {**WIRED, **placeholder})


# ------------------------------------------------------------------------------------------
# RBAC: reading the node's capacity-type label


def test_node_reader_cluster_role_and_binding() -> None:
    m = runtime_manifests(args(), WIRED)
    names = RuntimeNames.of("sd15", "gen")
    assert names.node_reader == "sdfleet:gen:sd15:node-reader"
    assert m["node_reader_role"] == {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRole",
        "metadata": {"name": names.node_reader},
        "rules": [{"apiGroups": [""], "resources": ["nodes"], "verbs": ["get"]}],
    }
    assert m["node_reader_binding"] == {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRoleBinding",
        "metadata": {"name": names.node_reader},
        "roleRef": {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": "ClusterRole",
            "name": names.node_reader,
        },
        "subjects": [{"kind": "ServiceAccount", "name": "sd15-runtime", "namespace": "gen"}],
    }
    assert_valid(m["node_reader_role"], K8S)
    assert_valid(m["node_reader_binding"], K8S)


def test_node_reader_names_are_unique_in_the_cluster() -> None:
    # DNS labels have no ':', so no two (namespace, runtime) pairs share a name.
    assert RuntimeNames.of("c", "a-b").node_reader != RuntimeNames.of("b-c", "a").node_reader
    assert RuntimeNames.of("sd15", "a").node_reader != RuntimeNames.of("sd15", "b").node_reader
    with pytest.raises(ValueError, match=r"^service_accounts: got \[\]"):
        iso.cluster_role_binding(name="x", role_name="x", namespace="n", service_accounts=[])


# ------------------------------------------------------------------------------------------
# Network: the collector rule and the namespace label


def test_tracing_adds_the_collector_egress_rule() -> None:
    policy = runtime_manifests(
        args(otlp_traces_endpoint=ENDPOINT, telemetry_namespace=TELEMETRY_NS), TRACING
    )["network_policy"]
    general, collector = policy["spec"]["egress"]
    assert collector == {
        "to": [
            {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": TELEMETRY_NS}}}
        ],
        "ports": [{"protocol": "TCP", "port": 4318}],
    }
    # CloudWatch Logs, SQS, SNS, S3: any public address on any port (443), IMDS excepted.
    assert "ports" not in general
    assert general["to"][0] == {"ipBlock": {"cidr": "0.0.0.0/0", "except": ["169.254.169.254/32"]}}
    assert policy["spec"]["ingress"] == []
    assert_valid(policy, K8S)


@pytest.mark.parametrize(
    ("over", "wired"),
    [
        ({}, WIRED),  # tracing off
        ({"telemetry_namespace": TELEMETRY_NS}, WIRED),  # a namespace but tracing off
        ({"otlp_traces_endpoint": ENDPOINT}, TRACING),  # tracing on, no namespace given
    ],
)
def test_no_collector_rule_without_tracing_and_namespace(
    over: dict[str, str], wired: dict[str, str]
) -> None:
    policy = runtime_manifests(args(**over), wired)["network_policy"]
    (general,) = policy["spec"]["egress"]
    assert "ports" not in general
    assert_valid(policy, K8S)


def test_bad_telemetry_namespace_names_the_field() -> None:
    with pytest.raises(ValueError, match=r"^telemetry_namespace: got 'Telemetry'"):
        runtime_manifests(
            args(otlp_traces_endpoint=ENDPOINT, telemetry_namespace="Telemetry"), TRACING
        )


def test_runtime_namespace_carries_the_collectors_ingress_label() -> None:
    ns = runtime_manifests(args(), WIRED)["namespace"]
    assert ns["metadata"]["labels"] == {
        "app.kubernetes.io/part-of": "sdfleet",
        "sdfleet.io/runtime-namespace": "true",
    }
    assert_valid(ns, K8S)


# ------------------------------------------------------------------------------------------
# IAM: the metrics log group's streams, nothing more


def test_metrics_statement_is_exact() -> None:
    assert metrics_log_streams_statement(GROUP_ARN) == {
        "Sid": "WriteAgentMetrics",
        "Effect": "Allow",
        "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
        "Resource": f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:{GROUP}:*",
    }
    gov = "arn:aws-us-gov:logs:us-gov-west-1:111122223333:log-group:/x/agent-metrics"
    assert metrics_log_streams_statement(gov)["Resource"] == f"{gov}:*"


@pytest.mark.parametrize(
    "arn",
    [
        f"{GROUP_ARN}:*",  # already widened
        f"{GROUP_ARN}:log-stream:*",
        f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:*",
        f"arn:aws:logs:{REGION}:*:log-group:{GROUP}",
        f"arn:aws:sqs:{REGION}:{ACCOUNT}:sdfleet-sd15",
        GROUP,
    ],
)
def test_metrics_statement_refuses_anything_but_one_log_group(arn: str) -> None:
    with pytest.raises(ValueError, match=r"^metrics_log_group_arn: got "):
        metrics_log_streams_statement(arn)


def test_pod_policy_gains_exactly_the_metrics_statement() -> None:
    without = pod_policy(args(), {k: v for k, v in WIRED.items() if k != "metrics_log_group_arn"})
    with_metrics = pod_policy(args(), WIRED)
    assert with_metrics["Statement"] == [
        *without["Statement"],
        metrics_log_streams_statement(GROUP_ARN),
    ]
    direct = runtime_pod_policy(
        queue_arn=WIRED["queue_arn"],
        output_bucket_arn=WIRED["output_bucket_arn"],
        output_topic_arn=WIRED["output_topic_arn"],
        metrics_log_group_arn=GROUP_ARN,
    )
    assert direct == with_metrics
    # sdfleet's own policy rules (least privilege, no wildcards) hold for the role's policy.
    assert run_rules([_role_policy(with_metrics)]) == []
    # The same rules do read this document: a wildcard resource is reported.
    widened = {**with_metrics, "Statement": [{**with_metrics["Statement"][-1], "Resource": "*"}]}
    assert [f.rule for f in run_rules([_role_policy(widened)])] == ["iam-resource-wildcard"]


def _role_policy(document: dict[str, Any]) -> Resource:
    return Resource(
        type="aws:iam/rolePolicy:RolePolicy",
        name="rt-sd15-policy",
        props={"role": "rt-sd15-role", "policy": json.dumps(document)},
    )
