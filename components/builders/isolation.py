"""Pure builders that fence a runtime's pods in: who may reach them (NetworkPolicy), what the
queue agent may do in the Kubernetes API (a Role for the pod-deletion-cost annotation), and
which container holds which credentials (see docs/pods-and-network.md).

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

IMDS_IPV4 = "169.254.169.254/32"
IMDS_IPV6 = "fd00:ec2::254/128"
# EKS Pod Identity agent (credentials), kept reachable: it is outside the IMDS address.
POD_IDENTITY_AGENT_IPV4 = "169.254.170.23"
SERVICE_ACCOUNT_MOUNT = "/var/run/secrets/kubernetes.io/serviceaccount"
AGENT_API_VOLUME = "agent-kube-api"
# The kubelet refreshes a projected token at 80 % of its life; clients re-read the file.
API_TOKEN_SECONDS = 3600


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


def runtime_network_policy(
    *, name: str, namespace: str, pod_labels: Mapping[str, str]
) -> dict[str, Any]:
    """No ingress at all to the runtime's pods (the agent reaches the server on 127.0.0.1,
    which policies do not filter; the VPC CNI lets the node's kubelet probes through); egress
    anywhere except the EC2 instance metadata service."""
    if not pod_labels:
        raise ValueError("pod_labels: got {}; allowed: the runtime's selector labels")
    return {
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
