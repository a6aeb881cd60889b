"""Pure builders that fence a runtime's pods in: who may reach them (NetworkPolicy), what the
queue agent may do in the Kubernetes API (a Role for the pod-deletion-cost annotation), and
which container holds which credentials (see docs/pods-and-network.md). Also the agent's
one cluster-wide grant: reading Node objects (its node's capacity-type label).

Credentials per container
-------------------------
- AWS: EKS Pod Identity's admission webhook adds ``AWS_CONTAINER_CREDENTIALS_FULL_URI``,
  ``AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE`` and a mount of the projected
  ``eks-pod-identity-token`` volume to every container and init container (native sidecars
  included) except those named, comma-separated, in the pod annotation
  ``eks.amazonaws.com/skip-containers``. The inference server is named there.
- Kubernetes API: ``automountServiceAccountToken: false`` on the pod, and the same projection
  the kubelet would add (token, ``kube-root-ca.crt``, namespace) mounted into the agent only.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sdfleet.components.builders.errors import check_name

IMDS_IPV4 = "169.254.169.254/32"
IMDS_IPV6 = "fd00:ec2::254/128"
# EKS Pod Identity agent (credentials), kept reachable: it is outside the IMDS address.
POD_IDENTITY_AGENT_IPV4 = "169.254.170.23"
SERVICE_ACCOUNT_MOUNT = "/var/run/secrets/kubernetes.io/serviceaccount"
AGENT_API_VOLUME = "agent-kube-api"
# The kubelet refreshes a projected token at 80 % of its life; clients re-read the file.
API_TOKEN_SECONDS = 3600
# The trace collector's OTLP/HTTP port.
OTLP_HTTP_PORT = 4318
# On every runtime namespace sdfleet creates: the trace collector's ingress policy selects it.
RUNTIME_NAMESPACE_LABEL = {"sdfleet.io/runtime-namespace": "true"}
# The label every namespace carries with its own name (Kubernetes sets it, immutable).
NAMESPACE_NAME_LABEL = "kubernetes.io/metadata.name"


def agent_api_volume() -> dict[str, Any]:
    """What the kubelet mounts with automount on: a pod-bound token, the cluster CA and the
    namespace; here only for the container that mounts it."""
    return {
        "name": AGENT_API_VOLUME,
        "projected": {
            "defaultMode": 0o444,
            "sources": [
                {"serviceAccountToken": {"path": "token", "expirationSeconds": API_TOKEN_SECONDS}},
                {
                    "configMap": {
                        "name": "kube-root-ca.crt",
                        "items": [{"key": "ca.crt", "path": "ca.crt"}],
                    }
                },
                {
                    "downwardAPI": {
                        "items": [
                            {
                                "path": "namespace",
                                "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"},
                            }
                        ]
                    }
                },
            ],
        },
    }


def agent_api_mount() -> dict[str, Any]:
    return {"name": AGENT_API_VOLUME, "mountPath": SERVICE_ACCOUNT_MOUNT, "readOnly": True}


def telemetry_egress_rule(telemetry_namespace: str) -> dict[str, Any]:
    """Egress to the trace collector's namespace on OTLP/HTTP only."""
    return {
        "to": [{"namespaceSelector": {"matchLabels": {NAMESPACE_NAME_LABEL: telemetry_namespace}}}],
        "ports": [{"protocol": "TCP", "port": OTLP_HTTP_PORT}],
    }


def runtime_network_policy(
    *,
    name: str,
    namespace: str,
    pod_labels: Mapping[str, str],
    telemetry_namespace: str | None = None,
) -> dict[str, Any]:
    """No ingress at all to the runtime's pods (the agent reaches the server on 127.0.0.1,
    which policies do not filter; the VPC CNI lets the node's kubelet probes through); egress
    anywhere except the EC2 instance metadata service: AWS APIs (SQS, SNS, S3, DynamoDB,
    CloudWatch Logs) on 443 through the NAT or endpoints. With ``telemetry_namespace`` (tracing
    on) also an explicit rule to the trace collector's namespace on TCP 4318, so the trace path
    is written down and stays open if the general rule is ever narrowed."""
    if not pod_labels:
        raise ValueError("pod_labels: got {}; allowed: the runtime's selector labels")
    if telemetry_namespace is not None:
        check_name("telemetry_namespace", telemetry_namespace)
    policy: dict[str, Any] = {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "podSelector": {"matchLabels": dict(pod_labels)},
            "policyTypes": ["Ingress", "Egress"],
            "ingress": [],
            "egress": [
                {
                    "to": [
                        {"ipBlock": {"cidr": "0.0.0.0/0", "except": [IMDS_IPV4]}},
                        {"ipBlock": {"cidr": "::/0", "except": [IMDS_IPV6]}},
                        # Pod addresses (CoreDNS) whichever way the CNI treats ipBlocks.
                        {"namespaceSelector": {}},
                    ]
                }
            ],
        },
    }
    if telemetry_namespace is not None:
        policy["spec"]["egress"].append(telemetry_egress_rule(telemetry_namespace))
    return policy


def deletion_cost_role(*, name: str, namespace: str) -> dict[str, Any]:
    """``get`` and ``patch`` on pods in the runtime's namespace: the agent keeps its own pod's
    ``controller.kubernetes.io/pod-deletion-cost`` current. ``resourceNames`` cannot narrow it
    (pod names are generated), so it covers every pod in the namespace."""
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "Role",
        "metadata": {"name": name, "namespace": namespace},
        "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "patch"]}],
    }


def role_binding(
    *, name: str, namespace: str, role_name: str, service_accounts: Sequence[str]
) -> dict[str, Any]:
    if not service_accounts:
        raise ValueError("service_accounts: got []; allowed: at least one service account")
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": {"name": name, "namespace": namespace},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": role_name},
        "subjects": [
            {"kind": "ServiceAccount", "name": sa, "namespace": namespace}
            for sa in service_accounts
        ],
    }


def node_reader_cluster_role(*, name: str) -> dict[str, Any]:
    """``get`` on nodes: the agent reads its own node's ``karpenter.sh/capacity-type`` label
    (spot or on-demand) for its AgentUp metric. Nodes are cluster-scoped, so only a ClusterRole
    can grant it; ``resourceNames`` cannot narrow it (node names are not known in advance).
    No list or watch: the agent asks for one node by name."""
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRole",
        "metadata": {"name": name},
        "rules": [{"apiGroups": [""], "resources": ["nodes"], "verbs": ["get"]}],
    }


def cluster_role_binding(
    *, name: str, role_name: str, namespace: str, service_accounts: Sequence[str]
) -> dict[str, Any]:
    """Binds a ClusterRole to service accounts of one namespace."""
    if not service_accounts:
        raise ValueError("service_accounts: got []; allowed: at least one service account")
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRoleBinding",
        "metadata": {"name": name},
        "roleRef": {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": "ClusterRole",
            "name": role_name,
        },
        "subjects": [
            {"kind": "ServiceAccount", "name": sa, "namespace": namespace}
            for sa in service_accounts
        ],
    }
