"""Pure builders for the trace collector: an ADOT collector Deployment that takes OTLP/HTTP
spans from the runtimes' agents and exports them to X-Ray with the ``awsxray`` exporter.

The agents send to :data:`OTLP_TRACES_URL`. Only namespaces labelled
:data:`RUNTIME_NAMESPACE_LABEL` may reach the collector's OTLP port (its NetworkPolicy); the
collector itself may only resolve names and speak HTTPS (X-Ray) and reach the EKS Pod Identity
agent for its credentials. ``sdfleet.task_id`` and ``sdfleet.runtime`` become X-Ray
annotations (``annotation.sdfleet_task_id``), so a task's trace can be found by its id.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

import yaml

from sdfleet.components.builders.errors import fail
from sdfleet.components.builders.isolation import IMDS_IPV4, IMDS_IPV6
from sdfleet.components.builders.workload_checks import _meta
from sdfleet.components.builders.workload_containers import hardened_security_context

NAMESPACE = "sdfleet-telemetry"
NAME = "otel-collector"
SERVICE_ACCOUNT = NAME
OTLP_HTTP_PORT = 4318
OTLP_GRPC_PORT = 4317
HEALTH_PORT = 13133
OTLP_TRACES_URL = f"http://{NAME}.{NAMESPACE}.svc.cluster.local:{OTLP_HTTP_PORT}/v1/traces"
# The label a namespace needs for its pods to reach the collector (runtime namespaces).
RUNTIME_NAMESPACE_LABEL: Mapping[str, str] = {"sdfleet.io/runtime-namespace": "true"}
INDEXED_ATTRIBUTES = ("sdfleet.task_id", "sdfleet.runtime")
PART_OF_LABEL: Mapping[str, str] = {"app.kubernetes.io/part-of": "sdfleet"}
SELECTOR_LABELS: Mapping[str, str] = {"app.kubernetes.io/name": NAME}
# The image is FROM scratch with no USER (root): run it as a high numeric uid instead.
RUN_AS = 10001
CONFIG_DIR = "/etc/sdfleet-collector"
CONFIG_FILE = "collector.yaml"
CONFIG_VOLUME = "config"
MEMORY_LIMIT_MIB = 512
DEFAULT_REPLICAS = 2
# EKS Pod Identity agent (credentials), IPv4 and IPv6; it answers on port 80.
POD_IDENTITY_AGENT = ("169.254.170.23/32", "fd00:ec2::23/128")

# Component types the ADOT collector is built with (aws-observability/aws-otel-collector,
# pkg/defaultcomponents/defaults.go), the subset a config here may name.
ADOT_COMPONENTS: Mapping[str, frozenset[str]] = {
    "receivers": frozenset({"otlp", "awsxray", "jaeger", "zipkin", "prometheus", "statsd"}),
    "processors": frozenset(
        {
            "batch",
            "memory_limiter",
            "attributes",
            "resource",
            "span",
            "filter",
            "probabilistic_sampler",
            "tail_sampling",
            "groupbytrace",
            "resourcedetection",
            "k8sattributes",
        }
    ),
    "exporters": frozenset(
        {"awsxray", "awsemf", "otlp", "otlphttp", "debug", "prometheusremotewrite", "file"}
    ),
    "extensions": frozenset({"health_check", "awsproxy", "pprof", "sigv4auth", "zpages"}),
}
PIPELINE_SECTIONS = ("receivers", "processors", "exporters")


def collector_config(region: str, *, otlp_grpc: bool = False) -> dict[str, Any]:
    """The collector's configuration. Endpoints say 0.0.0.0: receivers and extensions listen
    on localhost by default since collector v0.104 (ADOT v0.41), which nothing else reaches."""
    if not isinstance(region, str) or not region:
        raise fail("region", region, "an AWS region such as 'us-west-2'")
    protocols: dict[str, Any] = {"http": {"endpoint": f"0.0.0.0:{OTLP_HTTP_PORT}"}}
    if otlp_grpc:
        protocols["grpc"] = {"endpoint": f"0.0.0.0:{OTLP_GRPC_PORT}"}
    return {
        "extensions": {"health_check": {"endpoint": f"0.0.0.0:{HEALTH_PORT}"}},
        "receivers": {"otlp": {"protocols": protocols}},
        "processors": {
            # First in the pipeline: refuses data before the container's memory limit is hit.
            "memory_limiter": {
                "check_interval": "1s",
                "limit_mib": MEMORY_LIMIT_MIB * 4 // 5,
                "spike_limit_mib": MEMORY_LIMIT_MIB // 5,
            },
            "batch": {"timeout": "1s"},
        },
        "exporters": {
            "awsxray": {"region": region, "indexed_attributes": list(INDEXED_ATTRIBUTES)}
        },
        "service": {
            "extensions": ["health_check"],
            "pipelines": {
                "traces": {
                    "receivers": ["otlp"],
                    "processors": ["memory_limiter", "batch"],
                    "exporters": ["awsxray"],
                }
            },
        },
    }


def config_problems(config: Mapping[str, Any]) -> list[str]:
    """What the collector would refuse or silently ignore in ``config``: a pipeline naming an
    undefined component, a component type ADOT does not ship, a defined but unused one."""
    problems: list[str] = []
    used: dict[str, set[str]] = {s: set() for s in (*PIPELINE_SECTIONS, "extensions")}
    service = config.get("service") or {}
    pipelines = service.get("pipelines") or {}
    if not pipelines:
        problems.append("service.pipelines: none defined")
    for pipeline, spec in pipelines.items():
        if pipeline.split("/", 1)[0] not in ("traces", "metrics", "logs"):
            problems.append(f"service.pipelines.{pipeline}: not a traces/metrics/logs pipeline")
        for section in PIPELINE_SECTIONS:
            ids = list((spec or {}).get(section) or [])
            if not ids and section != "processors":
                problems.append(f"service.pipelines.{pipeline}.{section}: empty")
            used[section].update(ids)
        processors = list((spec or {}).get("processors") or [])
        if "memory_limiter" in processors and processors[0] != "memory_limiter":
            problems.append(f"service.pipelines.{pipeline}.processors: memory_limiter not first")
    used["extensions"].update(service.get("extensions") or [])
    for section, names in used.items():
        defined = set(config.get(section) or {})
        problems += [
            f"{section}.{n}: used in service but not defined" for n in sorted(names - defined)
        ]
        problems += [f"{section}.{n}: defined but not used" for n in sorted(defined - names)]
        for component_id in sorted(defined):
            if component_id.split("/", 1)[0] not in ADOT_COMPONENTS[section]:
                problems.append(f"{section}.{component_id}: not a component type ADOT ships")
    return problems


def config_yaml(config: Mapping[str, Any]) -> str:
    """The config file; refuses a config :func:`config_problems` finds fault with."""
    problems = config_problems(config)
    if problems:
        raise ValueError(f"collector config: {'; '.join(problems)}")
    return yaml.safe_dump(dict(config), sort_keys=False)


def namespace() -> dict[str, Any]:
    """The collector's namespace; its pods meet the ``restricted`` Pod Security Standard."""
    labels = {**PART_OF_LABEL, "pod-security.kubernetes.io/enforce": "restricted"}
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": _meta(NAMESPACE, labels=labels)}


def service_account() -> dict[str, Any]:
    """Associated with the collector's role through EKS Pod Identity (no annotation needed)."""
    return {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": _meta(SERVICE_ACCOUNT, NAMESPACE, PART_OF_LABEL),
        "automountServiceAccountToken": False,
    }


def config_map(config_text: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": _meta(NAME, NAMESPACE, PART_OF_LABEL),
        "data": {CONFIG_FILE: config_text},
    }


def _ports(otlp_grpc: bool) -> list[tuple[str, int]]:
    ports = [("otlp-http", OTLP_HTTP_PORT)]
    if otlp_grpc:
        ports.append(("otlp-grpc", OTLP_GRPC_PORT))
    return ports


def _container(image: str, otlp_grpc: bool) -> dict[str, Any]:
    probe = {"httpGet": {"path": "/", "port": HEALTH_PORT}, "periodSeconds": 10}
    ports = [*_ports(otlp_grpc), ("health", HEALTH_PORT)]
    return {
        "name": "collector",
        "image": image,
        "imagePullPolicy": "IfNotPresent",
        "args": [f"--config={CONFIG_DIR}/{CONFIG_FILE}"],
        "ports": [{"name": n, "containerPort": p, "protocol": "TCP"} for n, p in ports],
        "resources": {
            "requests": {"cpu": "100m", "memory": "256Mi"},
            "limits": {"cpu": "1", "memory": f"{MEMORY_LIMIT_MIB}Mi"},
        },
        "livenessProbe": {**probe, "initialDelaySeconds": 5, "failureThreshold": 3},
        "readinessProbe": {**probe, "failureThreshold": 2},
        "securityContext": hardened_security_context(RUN_AS, RUN_AS),
        "volumeMounts": [{"name": CONFIG_VOLUME, "mountPath": CONFIG_DIR, "readOnly": True}],
    }


def _spread() -> list[dict[str, Any]]:
    """One replica per system node (hard), spread over zones (soft: the system node group
    may sit in fewer zones than replicas)."""
    return [
        {
            "maxSkew": 1,
            "topologyKey": key,
            "whenUnsatisfiable": when,
            "labelSelector": {"matchLabels": dict(SELECTOR_LABELS)},
        }
        for key, when in (
            ("kubernetes.io/hostname", "DoNotSchedule"),
            ("topology.kubernetes.io/zone", "ScheduleAnyway"),
        )
    ]


def deployment(
    *,
    image: str,
    config_text: str,
    node_selector: Mapping[str, str] | None = None,
    replicas: int = DEFAULT_REPLICAS,
    otlp_grpc: bool = False,
) -> dict[str, Any]:
    """The collector pods. The config's hash is a pod annotation, so a config change rolls
    them. No Kubernetes API token: the collector never calls the API, and the Pod Identity
    webhook mounts its own token volume whatever the automount setting."""
    if not isinstance(image, str) or ":" not in image.rsplit("/", 1)[-1]:
        raise fail("image", image, "an image reference with a tag or digest")
    if isinstance(replicas, bool) or not isinstance(replicas, int) or not 1 <= replicas <= 10:
        raise fail("replicas", replicas, "an integer from 1 to 10")
    checksum = hashlib.sha256(config_text.encode()).hexdigest()[:16]
    pod_spec: dict[str, Any] = {
        "serviceAccountName": SERVICE_ACCOUNT,
        "automountServiceAccountToken": False,
        "securityContext": {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}},
        "topologySpreadConstraints": _spread(),
        "containers": [_container(image, otlp_grpc)],
        "volumes": [{"name": CONFIG_VOLUME, "configMap": {"name": NAME}}],
    }
    if node_selector:
        pod_spec["nodeSelector"] = dict(node_selector)
    template = {
        "metadata": {
            "labels": {**PART_OF_LABEL, **SELECTOR_LABELS},
            "annotations": {"sdfleet.io/config-sha256": checksum},
        },
        "spec": pod_spec,
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _meta(NAME, NAMESPACE, {**PART_OF_LABEL, **SELECTOR_LABELS}),
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": dict(SELECTOR_LABELS)},
            # A new pod is ready before an old one goes: spans keep a receiver.
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1},
            },
            "template": template,
        },
    }


def service(otlp_grpc: bool = False) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _meta(NAME, NAMESPACE, PART_OF_LABEL),
        "spec": {
            "type": "ClusterIP",
            "selector": dict(SELECTOR_LABELS),
            "ports": [
                {"name": n, "port": p, "targetPort": n, "protocol": "TCP"}
                for n, p in _ports(otlp_grpc)
            ],
        },
    }


def pod_disruption_budget() -> dict[str, Any]:
    """Node drains keep one collector running."""
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": _meta(NAME, NAMESPACE, PART_OF_LABEL),
        "spec": {"minAvailable": 1, "selector": {"matchLabels": dict(SELECTOR_LABELS)}},
    }


def _tcp(*ports: int) -> list[dict[str, Any]]:
    return [{"protocol": "TCP", "port": p} for p in ports]


def network_policy(otlp_grpc: bool = False) -> dict[str, Any]:
    """Ingress: OTLP from runtime namespaces only (kubelet probes pass: the VPC CNI does not
    filter the node's own traffic). Egress: DNS to CoreDNS, HTTPS anywhere but IMDS (X-Ray's
    regional endpoint has no fixed addresses), port 80 to the Pod Identity agent."""
    dns = [{"protocol": proto, "port": 53} for proto in ("UDP", "TCP")]
    egress = [
        {
            "to": [
                {
                    "namespaceSelector": {
                        "matchLabels": {"kubernetes.io/metadata.name": "kube-system"}
                    },
                    "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}},
                }
            ],
            "ports": dns,
        },
        {
            "to": [
                {"ipBlock": {"cidr": "0.0.0.0/0", "except": [IMDS_IPV4]}},
                {"ipBlock": {"cidr": "::/0", "except": [IMDS_IPV6]}},
            ],
            "ports": _tcp(443),
        },
        {"to": [{"ipBlock": {"cidr": c}} for c in POD_IDENTITY_AGENT], "ports": _tcp(80)},
    ]
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": _meta(NAME, NAMESPACE, PART_OF_LABEL),
        "spec": {
            "podSelector": {"matchLabels": dict(SELECTOR_LABELS)},
            "policyTypes": ["Ingress", "Egress"],
            "ingress": [
                {
                    "from": [{"namespaceSelector": {"matchLabels": dict(RUNTIME_NAMESPACE_LABEL)}}],
                    "ports": _tcp(*(p for _, p in _ports(otlp_grpc))),
                }
            ],
            "egress": egress,
        },
    }


def collector_manifests(
    *,
    region: str,
    image: str,
    node_selector: Mapping[str, str] | None = None,
    replicas: int = DEFAULT_REPLICAS,
    otlp_grpc: bool = False,
) -> dict[str, dict[str, Any]]:
    """Every manifest of the collector, keyed by role, in apply order."""
    text = config_yaml(collector_config(region, otlp_grpc=otlp_grpc))
    return {
        "namespace": namespace(),
        "service_account": service_account(),
        "config_map": config_map(text),
        "network_policy": network_policy(otlp_grpc),
        "deployment": deployment(
            image=image,
            config_text=text,
            node_selector=node_selector,
            replicas=replicas,
            otlp_grpc=otlp_grpc,
        ),
        "service": service(otlp_grpc),
        "pod_disruption_budget": pod_disruption_budget(),
    }
