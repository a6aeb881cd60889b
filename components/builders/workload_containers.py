"""The runtime pod's two containers: the inference server (a native sidecar) and the queue
agent, with their probes, resources and security contexts. Split from workload.py (import
the public names from there)."""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sdfleet.agent import settings as agent_settings
from sdfleet.components.builders import isolation
from sdfleet.components.builders import server_contract as sc
from sdfleet.components.builders.karpenter import GPU_RESOURCE
from sdfleet.components.builders.workload_agent_env import AgentEnv
from sdfleet.components.builders.workload_checks import RUNTIME_TYPES, _check_quantity

# The agent's default server URL and the server images' contract use the same port
# (tests/test_runtime_images.py keeps them equal).
SERVER_PORT = agent_settings.SERVER_PORT
SERVER_CONTAINER = "inference-server"
AGENT_CONTAINER = "queue-agent"
MODELS_VOLUME = "models"
# Startup/liveness probe paths: 200 only once the API routes are served (server_contract).
STARTUP_PROBE_PATHS = {t: sc.contract_for(t).readiness_path for t in RUNTIME_TYPES}


@dataclass(frozen=True)
class Resources:
    """CPU/memory requests; memory limit defaults to the request (a GPU pod that swaps or gets
    overcommitted is worse than one that is OOM-killed and rescheduled)."""

    cpu: str
    memory: str
    cpu_limit: str | None = None
    memory_limit: str | None = None

    def to_manifest(self, field_name: str, gpus: int = 0) -> dict[str, Any]:
        _check_quantity(f"{field_name}.cpu", self.cpu)
        _check_quantity(f"{field_name}.memory", self.memory)
        requests: dict[str, str] = {"cpu": self.cpu, "memory": self.memory}
        limits: dict[str, str] = {"memory": self.memory_limit or self.memory}
        if self.memory_limit is not None:
            _check_quantity(f"{field_name}.memoryLimit", self.memory_limit)
        if self.cpu_limit is not None:
            _check_quantity(f"{field_name}.cpuLimit", self.cpu_limit)
            limits["cpu"] = self.cpu_limit
        if gpus:
            requests[GPU_RESOURCE] = str(gpus)
            limits[GPU_RESOURCE] = str(gpus)
        return {"requests": requests, "limits": limits}


DEFAULT_SERVER_RESOURCES = Resources(cpu="3", memory="14Gi")
DEFAULT_AGENT_RESOURCES = Resources(cpu="250m", memory="256Mi", memory_limit="512Mi")


def _http_probe(
    path: str, port: int, period: int, failures: int, timeout: int = 5
) -> dict[str, Any]:
    return {
        "httpGet": {"path": path, "port": port},
        "periodSeconds": period,
        "failureThreshold": failures,
        "timeoutSeconds": timeout,
    }


def hardened_security_context(uid: int, gid: int) -> dict[str, Any]:
    """What both containers run with: a numeric non-root user (with a named USER in the image
    the kubelet cannot verify runAsNonRoot), read-only root, no capabilities, no privilege
    escalation, the runtime's default seccomp profile. The GPU needs none of these: the device
    plugin hands the container its /dev/nvidia* nodes (docs/pods-and-network.md)."""
    return {
        "runAsUser": uid,
        "runAsGroup": gid,
        "runAsNonRoot": True,
        "readOnlyRootFilesystem": True,
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def server_volumes(contract: sc.ServerContract) -> list[dict[str, Any]]:
    """The emptyDirs behind the contract's writable paths (the root filesystem is read-only)."""
    return [
        {"name": w.volume, "emptyDir": {"sizeLimit": w.size_limit}} for w in contract.writable_paths
    ]


def _server_env(
    contract: sc.ServerContract,
    port: int,
    model_mount_path: str,
    model_filename: str | None,
    server_env: Mapping[str, str] | None,
) -> dict[str, str]:
    """The contract's env with this pod's port and mount path, then the user's extras."""
    env = contract.pod_env(model_filename)
    env["SERVER_PORT"] = str(port)
    env["MODEL_DIR"] = model_mount_path
    return {**env, **dict(server_env or {})}


def _server_mounts(contract: sc.ServerContract, model_mount_path: str) -> list[dict[str, Any]]:
    mounts: list[dict[str, Any]] = [
        {"name": MODELS_VOLUME, "mountPath": model_mount_path, "readOnly": True}
    ]
    mounts += [{"name": w.volume, "mountPath": w.path} for w in contract.writable_paths]
    return mounts


def _server_container(
    *,
    contract: sc.ServerContract,
    image: str,
    args: Sequence[str],
    env: Mapping[str, str],
    port: int,
    resources: Resources,
    model_mount_path: str,
    startup_period_seconds: int,
    startup_failure_threshold: int,
    image_pull_policy: str | None = None,
    command: Sequence[str] | None = None,
) -> dict[str, Any]:
    """The server per the pod contract (server_contract): its port, probes, model mount,
    writable emptyDirs and user. ``command`` None runs the image's ENTRYPOINT, which is
    ``contract.command`` in sdfleet's images and stays an own image's own entrypoint."""
    container: dict[str, Any] = {
        "name": SERVER_CONTAINER,
        "image": image,
        # Native sidecar: started before the agent, stopped after it.
        "restartPolicy": "Always",
        "ports": [{"name": "http", "containerPort": port, "protocol": "TCP"}],
        "startupProbe": _http_probe(
            contract.readiness_path, port, startup_period_seconds, startup_failure_threshold
        ),
        # Both routes answer during a generation; restart only a server silent for ~2 minutes,
        # so a busy GPU is not mistaken for a hung one.
        "livenessProbe": _http_probe(contract.readiness_path, port, 30, 4, timeout=10),
        "resources": resources.to_manifest("serverResources", gpus=1),
        "volumeMounts": _server_mounts(contract, model_mount_path),
        "securityContext": hardened_security_context(contract.uid, contract.gid),
    }
    if args:
        container["args"] = list(args)
    if env:
        container["env"] = [{"name": k, "value": v} for k, v in env.items()]
    if image_pull_policy is not None:
        container["imagePullPolicy"] = image_pull_policy
    if command is not None:
        container["command"] = list(command)
    return container


def _agent_container(
    *, image: str, env: AgentEnv, server_port: int, resources: Resources, uid: int
) -> dict[str, Any]:
    port = env.health_port
    return {
        "name": AGENT_CONTAINER,
        "image": image,
        "env": env.to_env(server_port),
        "ports": [{"name": "health", "containerPort": port, "protocol": "TCP"}],
        "livenessProbe": _http_probe("/healthz", port, 15, 4),
        "readinessProbe": _http_probe("/readyz", port, 5, 3),
        "resources": resources.to_manifest("agentResources"),
        # Read-only root: temporary files (downloads, encoded images) go to /tmp. Only the
        # agent gets a Kubernetes API token (see isolation).
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}, isolation.agent_api_mount()],
        "securityContext": hardened_security_context(uid, uid),
    }
