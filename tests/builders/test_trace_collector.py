"""The trace collector's pure builders: its config (every pipeline component defined and of a
type ADOT ships), its manifests (valid for Kubernetes 1.33, hardened, fenced), its IAM."""

from __future__ import annotations

import copy
from typing import Any

import pytest
import yaml

from sdfleet.components import versions
from sdfleet.components.builders import iam
from sdfleet.components.builders import trace_collector as tcb
from tests.k8s_validation import assert_valid

K8S = versions.KUBERNETES_VERSION
IMAGE = versions.ADOT_COLLECTOR_IMAGE
SYSTEM = {"sdfleet.io/pool": "system"}


def _manifests(**overrides: Any) -> dict[str, dict[str, Any]]:
    args: dict[str, Any] = {"region": "us-west-2", "image": IMAGE, "node_selector": SYSTEM}
    args.update(overrides)
    return tcb.collector_manifests(**args)


def _pod(manifests: dict[str, dict[str, Any]]) -> dict[str, Any]:
    spec: dict[str, Any] = manifests["deployment"]["spec"]["template"]["spec"]
    return spec


# --- config -----------------------------------------------------------------------------


def test_config_traces_otlp_to_xray_with_the_task_annotations() -> None:
    config = tcb.collector_config("us-west-2")
    assert config["receivers"] == {"otlp": {"protocols": {"http": {"endpoint": "0.0.0.0:4318"}}}}
    assert config["exporters"]["awsxray"] == {
        "region": "us-west-2",
        "indexed_attributes": ["sdfleet.task_id", "sdfleet.runtime"],
    }
    assert config["service"]["pipelines"] == {
        "traces": {
            "receivers": ["otlp"],
            "processors": ["memory_limiter", "batch"],
            "exporters": ["awsxray"],
        }
    }
    assert config["service"]["extensions"] == ["health_check"]
    assert config["extensions"]["health_check"]["endpoint"] == "0.0.0.0:13133"
    assert tcb.config_problems(config) == []


def test_memory_limiter_stays_under_the_container_limit() -> None:
    limiter = tcb.collector_config("us-west-2")["processors"]["memory_limiter"]
    container = _pod(_manifests())["containers"][0]
    limit_mib = int(container["resources"]["limits"]["memory"].removesuffix("Mi"))
    assert limiter["limit_mib"] + limiter["spike_limit_mib"] <= limit_mib
    assert 0 < limiter["spike_limit_mib"] < limiter["limit_mib"]


def test_grpc_is_optional() -> None:
    protocols = tcb.collector_config("eu-west-1", otlp_grpc=True)["receivers"]["otlp"]["protocols"]
    assert protocols["grpc"] == {"endpoint": "0.0.0.0:4317"}
    assert protocols["http"] == {"endpoint": "0.0.0.0:4318"}


def test_config_file_is_the_config_and_refuses_a_broken_one() -> None:
    config = tcb.collector_config("us-west-2")
    assert yaml.safe_load(tcb.config_yaml(config)) == config
    broken = copy.deepcopy(config)
    broken["service"]["pipelines"]["traces"]["exporters"] = ["otlphttp"]
    with pytest.raises(ValueError, match=r"exporters\.otlphttp: used in service but not defined"):
        tcb.config_yaml(broken)


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        (
            lambda c: c["exporters"].update({"datadog": {}}),
            "exporters.datadog: defined but not used",
        ),
        (
            lambda c: c["service"]["pipelines"]["traces"]["exporters"].append("datadog"),
            "exporters.datadog: used in service but not defined",
        ),
        (
            lambda c: c["service"]["pipelines"]["traces"]["processors"].reverse(),
            "service.pipelines.traces.processors: memory_limiter not first",
        ),
        (
            lambda c: c["service"]["pipelines"]["traces"].update(exporters=[]),
            "service.pipelines.traces.exporters: empty",
        ),
        (
            lambda c: c["service"]["pipelines"].update(spans=c["service"]["pipelines"]["traces"]),
            "service.pipelines.spans: not a traces/metrics/logs pipeline",
        ),
        (lambda c: c["service"].update(extensions=[]), "extensions.health_check: defined but not"),
        (lambda c: c["service"].pop("pipelines"), "service.pipelines: none defined"),
    ],
)
def test_config_problems_are_found(change: Any, problem: str) -> None:
    config = tcb.collector_config("us-west-2")
    change(config)
    assert any(p.startswith(problem) for p in tcb.config_problems(config)), tcb.config_problems(
        config
    )


def test_only_component_types_adot_ships() -> None:
    config = tcb.collector_config("us-west-2")
    config["exporters"]["googlecloud"] = {}
    config["service"]["pipelines"]["traces"]["exporters"].append("googlecloud")
    assert tcb.config_problems(config) == ["exporters.googlecloud: not a component type ADOT ships"]
    # Named instances (type/name) count by their type.
    config["exporters"]["awsxray/secondary"] = config["exporters"].pop("googlecloud")
    config["service"]["pipelines"]["traces"]["exporters"][-1] = "awsxray/secondary"
    assert tcb.config_problems(config) == []


def test_region_is_required() -> None:
    with pytest.raises(ValueError, match=r"^region: got ''; allowed"):
        tcb.collector_config("")


# --- manifests ----------------------------------------------------------------------------


@pytest.mark.parametrize("grpc", [False, True])
def test_every_manifest_is_valid_for_the_cluster_version(grpc: bool) -> None:
    manifests = _manifests(otlp_grpc=grpc)
    assert list(manifests) == [
        "namespace",
        "service_account",
        "config_map",
        "network_policy",
        "deployment",
        "service",
        "pod_disruption_budget",
    ]
    for manifest in manifests.values():
        assert_valid(manifest, K8S)
        if manifest["kind"] != "Namespace":
            assert manifest["metadata"]["namespace"] == "sdfleet-telemetry"


def test_pods_are_hardened_like_the_agent() -> None:
    pod = _pod(_manifests())
    assert pod["automountServiceAccountToken"] is False
    assert pod["serviceAccountName"] == "otel-collector"
    assert pod["securityContext"] == {
        "runAsNonRoot": True,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    (container,) = pod["containers"]
    context = container["securityContext"]
    assert context["runAsUser"] >= 10000 and context["runAsNonRoot"] is True
    assert context["readOnlyRootFilesystem"] is True
    assert context["allowPrivilegeEscalation"] is False
    assert context["capabilities"] == {"drop": ["ALL"]}
    assert set(container["resources"]) == {"requests", "limits"}
    assert container["image"] == IMAGE and "@sha256:" in IMAGE
    assert container["imagePullPolicy"] == "IfNotPresent"


def test_probes_use_the_health_check_extension_and_config_is_mounted() -> None:
    manifests = _manifests()
    (container,) = _pod(manifests)["containers"]
    config = yaml.safe_load(manifests["config_map"]["data"][tcb.CONFIG_FILE])
    health_port = int(config["extensions"]["health_check"]["endpoint"].rsplit(":", 1)[1])
    for probe in ("livenessProbe", "readinessProbe"):
        assert container[probe]["httpGet"] == {"path": "/", "port": health_port}
    (mount,) = container["volumeMounts"]
    assert container["args"] == [f"--config={mount['mountPath']}/{tcb.CONFIG_FILE}"]
    assert mount["readOnly"] is True
    (volume,) = _pod(manifests)["volumes"]
    assert volume == {"name": mount["name"], "configMap": {"name": "otel-collector"}}


def test_two_replicas_on_the_system_nodes_one_per_node() -> None:
    manifests = _manifests()
    spec = manifests["deployment"]["spec"]
    assert spec["replicas"] == 2
    assert spec["strategy"]["rollingUpdate"] == {"maxUnavailable": 0, "maxSurge": 1}
    pod = _pod(manifests)
    assert pod["nodeSelector"] == SYSTEM
    spread = {c["topologyKey"]: c["whenUnsatisfiable"] for c in pod["topologySpreadConstraints"]}
    assert spread == {
        "kubernetes.io/hostname": "DoNotSchedule",
        "topology.kubernetes.io/zone": "ScheduleAnyway",
    }
    selector = spec["selector"]["matchLabels"]
    assert manifests["pod_disruption_budget"]["spec"] == {
        "minAvailable": 1,
        "selector": {"matchLabels": selector},
    }
    assert manifests["service"]["spec"]["selector"] == selector
    assert "nodeSelector" not in _pod(_manifests(node_selector={}))


def test_a_config_change_rolls_the_pods() -> None:
    def checksum(region: str) -> str:
        template = _manifests(region=region)["deployment"]["spec"]["template"]
        value: str = template["metadata"]["annotations"]["sdfleet.io/config-sha256"]
        return value

    assert checksum("us-west-2") == checksum("us-west-2")
    assert checksum("us-west-2") != checksum("eu-west-1")


def test_the_service_is_the_agents_endpoint() -> None:
    service = _manifests()["service"]
    name, namespace = service["metadata"]["name"], service["metadata"]["namespace"]
    (port,) = service["spec"]["ports"]
    assert (
        f"http://{name}.{namespace}.svc.cluster.local:{port['port']}/v1/traces"
    ) == tcb.OTLP_TRACES_URL
    assert port == {"name": "otlp-http", "port": 4318, "targetPort": "otlp-http", "protocol": "TCP"}


def test_network_policy_admits_runtime_namespaces_on_otlp_only() -> None:
    policy = _manifests()["network_policy"]["spec"]
    assert policy["policyTypes"] == ["Ingress", "Egress"]
    (ingress,) = policy["ingress"]
    assert ingress["from"] == [
        {"namespaceSelector": {"matchLabels": {"sdfleet.io/runtime-namespace": "true"}}}
    ]
    assert ingress["ports"] == [{"protocol": "TCP", "port": 4318}]
    grpc = tcb.network_policy(otlp_grpc=True)["spec"]["ingress"][0]["ports"]
    assert [p["port"] for p in grpc] == [4318, 4317]


def test_network_policy_egress_is_dns_https_and_pod_identity() -> None:
    dns, https, credentials = _manifests()["network_policy"]["spec"]["egress"]
    assert {(p["protocol"], p["port"]) for p in dns["ports"]} == {("UDP", 53), ("TCP", 53)}
    assert dns["to"][0]["podSelector"] == {"matchLabels": {"k8s-app": "kube-dns"}}
    assert https["ports"] == [{"protocol": "TCP", "port": 443}]
    assert {b["ipBlock"]["cidr"]: b["ipBlock"]["except"] for b in https["to"]} == {
        "0.0.0.0/0": ["169.254.169.254/32"],
        "::/0": ["fd00:ec2::254/128"],
    }
    assert credentials["ports"] == [{"protocol": "TCP", "port": 80}]
    assert [b["ipBlock"]["cidr"] for b in credentials["to"]] == [
        "169.254.170.23/32",
        "fd00:ec2::23/128",
    ]


def test_namespace_enforces_the_restricted_pod_security_standard() -> None:
    labels = _manifests()["namespace"]["metadata"]["labels"]
    assert labels["pod-security.kubernetes.io/enforce"] == "restricted"


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"image": "aws-otel-collector"}, "image"),
        ({"replicas": 0}, "replicas"),
        ({"replicas": True}, "replicas"),
        ({"region": None}, "region"),
    ],
)
def test_bad_inputs_name_the_field(overrides: dict[str, Any], field: str) -> None:
    with pytest.raises(ValueError, match=rf"^{field}: got"):
        _manifests(**overrides)


def test_the_image_pin_has_tag_and_digest() -> None:
    pin = versions.PINS["adot_collector_image"]
    tag, _, digest = pin.version.partition("@")
    assert tag == "v0.48.0"
    assert digest.startswith("sha256:") and len(digest) == len("sha256:") + 64
    assert f"public.ecr.aws/aws-observability/aws-otel-collector:{pin.version}" == IMAGE


# --- IAM ----------------------------------------------------------------------------------

ACCOUNT = "111122223333"
TOPICS = [f"arn:aws:sns:us-west-2:{ACCOUNT}:input", f"arn:aws:sns:us-west-2:{ACCOUNT}:output"]


def test_collector_policy_is_exactly_put_traces() -> None:
    assert iam.trace_collector_policy() == {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "PutTraces",
                "Effect": "Allow",
                "Action": ["xray:PutTelemetryRecords", "xray:PutTraceSegments"],
                "Resource": "*",
            }
        ],
    }
    assert set(iam.trace_collector_policy()["Statement"][0]["Action"]) == iam.TRACING_STAR_ACTIONS


def test_sns_tracing_policy_pins_account_and_topics() -> None:
    (statement,) = iam.sns_tracing_policy(ACCOUNT, TOPICS)["Statement"]
    assert statement == {
        "Sid": "SnsActiveTracing",
        "Effect": "Allow",
        "Principal": {"Service": "sns.amazonaws.com"},
        "Action": ["xray:PutTraceSegments", "xray:GetSamplingRules", "xray:GetSamplingTargets"],
        "Resource": "*",
        "Condition": {
            "StringEquals": {"aws:SourceAccount": ACCOUNT},
            "StringLike": {"aws:SourceArn": TOPICS},
        },
    }
    (one,) = iam.sns_tracing_policy(ACCOUNT, TOPICS[:1])["Statement"]
    assert one["Condition"]["StringLike"] == {"aws:SourceArn": TOPICS[0]}


@pytest.mark.parametrize(
    ("account", "topics", "field"),
    [
        ("12345", TOPICS, "account_id"),
        (ACCOUNT, [], "topic_arns"),
        (ACCOUNT, [f"arn:aws:sqs:us-west-2:{ACCOUNT}:q"], r"topic_arns\[0\]"),
        (ACCOUNT, ["arn:aws:sns:us-west-2:444455556666:other"], "topic_arns"),
    ],
)
def test_sns_tracing_policy_refuses_what_would_widen_it(
    account: str, topics: list[str], field: str
) -> None:
    with pytest.raises(ValueError, match=rf"^{field}: got"):
        iam.sns_tracing_policy(account, topics)
