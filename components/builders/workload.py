"""Pure builders for a runtime's Kubernetes objects: Namespace, ServiceAccount, the model
PersistentVolume/PersistentVolumeClaim (Mountpoint for S3 CSI driver v2) and the Deployment.

Pod layout: the inference server runs as a native sidecar (an init container with
``restartPolicy: Always``) with a startup probe that passes only once its HTTP API answers; the
kubelet starts the queue agent (the main container) only after that, and on termination stops
the server only after the agent has exited, so the server outlives the agent's drain.
Replicas are omitted: KEDA owns the replica count.

Split by concern; import every name from here: workload_objects.py (Namespace,
ServiceAccount, model PV/PVC), workload_agent_env.py (AgentEnv), workload_checks.py (the
shared input checks); this module: the runtime's names and defaults, and the Deployment.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sdfleet.agent import settings as agent_settings
from sdfleet.components.builders import isolation
from sdfleet.components.builders import pod_extras as px
from sdfleet.components.builders.errors import check_name, fail
from sdfleet.components.builders.karpenter import GPU_RESOURCE, runtime_selector_labels
from sdfleet.components.builders.workload_agent_env import AgentEnv
from sdfleet.components.builders.workload_checks import (
    COMFYUI,
    RUNTIME_TYPES,
    SDWEBUI,
    _check_int,
    _check_quantity,
    _check_type,
    _meta,
)
from sdfleet.components.builders.workload_objects import (
    CSI_DRIVER,
    model_claim,
    model_mount_options,
    model_volume,
    namespace,
    service_account,
)

__all__ = [
    "AGENT_CONTAINER",
    "AGENT_HEALTH_PORT",
    "AGENT_UID",
    "COMFYUI",
    "CSI_DRIVER",
    "DEFAULT_AGENT_RESOURCES",
    "DEFAULT_MODEL_PATHS",
    "DEFAULT_SERVER_ARGS",
    "DEFAULT_SERVER_RESOURCES",
    "GPU_RESOURCE",
    "MODELS_VOLUME",
    "RUNTIME_TYPES",
    "SDWEBUI",
    "SERVER_CONTAINER",
    "SERVER_PORT",
    "SHUTDOWN_MARGIN_SECONDS",
    "SPOT_NOTICE_SECONDS",
    "STARTUP_PROBE_PATHS",
    "AgentEnv",
    "Resources",
    "default_api_base_url",
    "default_termination_grace_seconds",
    "model_claim",
    "model_mount_options",
    "model_volume",
    "namespace",
    "runtime_deployment",
    "runtime_selector_labels",
    "service_account",
]

SERVER_PORT = agent_settings.SERVER_PORT
AGENT_HEALTH_PORT: int = agent_settings.default("HEALTH_PORT")
# The agent image's non-root user (agent/Dockerfile should create it with this uid).
AGENT_UID = 10001
SERVER_CONTAINER = "inference-server"
AGENT_CONTAINER = "queue-agent"
MODELS_VOLUME = "models"

# Where each server looks for models (override per runtime for images laid out differently).
DEFAULT_MODEL_PATHS = {
    SDWEBUI: "/stable-diffusion-webui/models",
    COMFYUI: "/ComfyUI/models",
}
# Startup probe paths: 200 only once the API routes are served (SD WebUI attaches /sdapi after
# the UI starts listening, so "/" is not enough).
STARTUP_PROBE_PATHS = {
    SDWEBUI: "/sdapi/v1/options",
    COMFYUI: "/system_stats",
}
# Arguments that make the documented default images serve their API on SERVER_PORT. Images that
# start the server themselves can be given ``server_args=()`` / their own.
DEFAULT_SERVER_ARGS: dict[str, tuple[str, ...]] = {
    SDWEBUI: ("--api", "--nowebui", "--listen", "--port", str(SERVER_PORT)),
    COMFYUI: ("--listen", "0.0.0.0", "--port", str(SERVER_PORT)),
}
# Spot instances get a 2-minute notice; Karpenter drains on the notice, so the pod's grace
# period should end before the instance does.
SPOT_NOTICE_SECONDS = 120
# Time the pod needs after the agent's drain: flush uploads, stop the server sidecar.
SHUTDOWN_MARGIN_SECONDS = 10


def default_api_base_url(runtime_type: str, port: int = SERVER_PORT) -> str:
    """The agent's URL for the server sidecar (one definition, in the agent's settings)."""
    _check_type(runtime_type)
    return agent_settings.default_api_base_url(runtime_type, port)


# ------------------------------------------------------------------------------------------
# Deployment


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


def _check_pass_through(
    server_env: Mapping[str, str] | None,
    pod_labels: Mapping[str, str] | None,
    pod_annotations: Mapping[str, str] | None,
    image_pull_policy: str | None,
) -> None:
    for field_name, items, problem in (
        ("server_env", server_env, px.env_problem),
        ("pod_labels", pod_labels, px.label_problem),
        ("pod_annotations", pod_annotations, px.annotation_problem),
    ):
        found = px.map_problem(items or {}, problem)
        if found:
            raise ValueError(f"{field_name}: {found}")
    if image_pull_policy is not None and image_pull_policy not in px.IMAGE_PULL_POLICIES:
        raise fail("image_pull_policy", image_pull_policy, ", ".join(px.IMAGE_PULL_POLICIES))


def default_termination_grace_seconds(
    drain_seconds: int = int(agent_settings.default("DRAIN_SECONDS")),
) -> int:
    """Drain plus a 30 s margin, capped at the 2-minute spot notice."""
    return min(drain_seconds + 30, SPOT_NOTICE_SECONDS)


def _http_probe(
    path: str, port: int, period: int, failures: int, timeout: int = 5
) -> dict[str, Any]:
    return {
        "httpGet": {"path": path, "port": port},
        "periodSeconds": period,
        "failureThreshold": failures,
        "timeoutSeconds": timeout,
    }


def _server_container(
    *,
    runtime_type: str,
    image: str,
    args: Sequence[str],
    env: Mapping[str, str],
    port: int,
    resources: Resources,
    model_mount_path: str,
    startup_period_seconds: int,
    startup_failure_threshold: int,
    image_pull_policy: str | None = None,
) -> dict[str, Any]:
    container: dict[str, Any] = {
        "name": SERVER_CONTAINER,
        "image": image,
        # Native sidecar: started before the agent, stopped after it.
        "restartPolicy": "Always",
        "ports": [{"name": "http", "containerPort": port, "protocol": "TCP"}],
        "startupProbe": _http_probe(
            STARTUP_PROBE_PATHS[runtime_type],
            port,
            startup_period_seconds,
            startup_failure_threshold,
        ),
        # Both routes answer during a generation; restart only a server silent for ~2 minutes,
        # so a busy GPU is not mistaken for a hung one.
        "livenessProbe": _http_probe(STARTUP_PROBE_PATHS[runtime_type], port, 30, 4, timeout=10),
        "resources": resources.to_manifest("serverResources", gpus=1),
        "volumeMounts": [{"name": MODELS_VOLUME, "mountPath": model_mount_path, "readOnly": True}],
        # GPU servers write caches under their install dir and often run as root; only the
        # privilege escalation bit is safe to take away from arbitrary images.
        "securityContext": {"allowPrivilegeEscalation": False},
    }
    if args:
        container["args"] = list(args)
    if env:
        container["env"] = [{"name": k, "value": v} for k, v in env.items()]
    if image_pull_policy is not None:
        container["imagePullPolicy"] = image_pull_policy
    return container


def _agent_container(
    *, image: str, env: AgentEnv, server_port: int, resources: Resources, uid: int
) -> dict[str, Any]:
    port = env.health_port
    security: dict[str, Any] = {
        # A numeric uid: with a named USER in the image the kubelet cannot verify runAsNonRoot.
        "runAsUser": uid,
        "runAsGroup": uid,
        "runAsNonRoot": True,
        "readOnlyRootFilesystem": True,
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }
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
        "securityContext": security,
    }


def runtime_deployment(
    *,
    name: str,
    namespace: str,
    runtime_name: str,
    runtime_type: str,
    agent_image: str,
    server_image: str,
    agent_env: AgentEnv,
    service_account_name: str,
    model_claim_name: str,
    scheduling: Mapping[str, Any],
    server_resources: Resources = DEFAULT_SERVER_RESOURCES,
    agent_resources: Resources = DEFAULT_AGENT_RESOURCES,
    server_port: int = SERVER_PORT,
    server_args: Sequence[str] | None = None,
    server_env: Mapping[str, str] | None = None,
    model_mount_path: str | None = None,
    startup_period_seconds: int = 10,
    startup_failure_threshold: int = 90,
    termination_grace_period_seconds: int | None = None,
    tmp_size_limit: str = "2Gi",
    agent_uid: int = AGENT_UID,
    labels: Mapping[str, str] | None = None,
    pod_labels: Mapping[str, str] | None = None,
    pod_annotations: Mapping[str, str] | None = None,
    image_pull_policy: str | None = None,
) -> dict[str, Any]:
    """The runtime's Deployment (no ``replicas``: KEDA owns it).

    ``scheduling`` is :func:`sdfleet.components.builders.karpenter.pod_scheduling` output, merged into
    the pod spec as-is. The startup budget is ``startup_period_seconds *
    startup_failure_threshold`` (15 minutes by default) for the server to load its model.
    ``termination_grace_period_seconds`` defaults to drain + 30 s capped at 120 s (the spot
    notice) and must leave at least 10 s after the agent's drain. ``pod_labels`` and
    ``pod_annotations`` are extra (never keys sdfleet sets, see pod_extras);
    ``image_pull_policy`` applies to the server container.
    """
    _check_pass_through(server_env, pod_labels, pod_annotations, image_pull_policy)
    check_name("name", name)
    check_name("namespace", namespace)
    _check_type(runtime_type)
    if agent_env.runtime_type != runtime_type or agent_env.runtime_name != runtime_name:
        raise fail(
            "agent_env.runtime_type/runtime_name",
            (agent_env.runtime_type, agent_env.runtime_name),
            f"the deployment's ({runtime_type!r}, {runtime_name!r})",
        )
    for field_name, image in (("agent_image", agent_image), ("server_image", server_image)):
        if not isinstance(image, str) or not image or image.endswith(":latest"):
            raise fail(field_name, image, "an image reference pinned by tag or digest")
    _check_int("server_port", server_port, 1, 65535)
    if server_port == agent_env.health_port:
        raise fail("server_port", server_port, "a port other than the agent's health port")
    _check_int("startup_period_seconds", startup_period_seconds, 1, 300)
    _check_int("startup_failure_threshold", startup_failure_threshold, 1, 10000)
    _check_quantity("tmp_size_limit", tmp_size_limit)
    _check_int("agent_uid", agent_uid, 1, 2**31 - 1)
    drain = agent_env.drain_seconds
    grace = (
        default_termination_grace_seconds(drain)
        if termination_grace_period_seconds is None
        else termination_grace_period_seconds
    )
    _check_int("termination_grace_period_seconds", grace, 1)
    if grace < drain + SHUTDOWN_MARGIN_SECONDS:
        raise fail(
            "termination_grace_period_seconds",
            grace,
            f"at least drain_seconds + {SHUTDOWN_MARGIN_SECONDS} = "
            f"{drain + SHUTDOWN_MARGIN_SECONDS} (set it explicitly, or lower drain_seconds)",
        )
    mount_path = model_mount_path or DEFAULT_MODEL_PATHS[runtime_type]
    if not mount_path.startswith("/"):
        raise fail("model_mount_path", mount_path, "an absolute path")
    selector = runtime_selector_labels(runtime_name)
    all_pod_labels = {
        **dict(pod_labels or {}),
        **dict(labels or {}),
        **selector,
        "app.kubernetes.io/name": name,
    }
    server = _server_container(
        runtime_type=runtime_type,
        image=server_image,
        args=DEFAULT_SERVER_ARGS[runtime_type] if server_args is None else server_args,
        env=dict(server_env or {}),
        port=server_port,
        resources=server_resources,
        model_mount_path=mount_path,
        startup_period_seconds=startup_period_seconds,
        startup_failure_threshold=startup_failure_threshold,
        image_pull_policy=image_pull_policy,
    )
    agent = _agent_container(
        image=agent_image,
        env=agent_env,
        server_port=server_port,
        resources=agent_resources,
        uid=agent_uid,
    )
    pod_spec: dict[str, Any] = {
        "serviceAccountName": service_account_name,
        # The server must not reach the API as the pod; the agent mounts its own token.
        "automountServiceAccountToken": False,
        "terminationGracePeriodSeconds": grace,
        "initContainers": [server],
        "containers": [agent],
        "volumes": [
            {
                "name": MODELS_VOLUME,
                "persistentVolumeClaim": {"claimName": model_claim_name, "readOnly": True},
            },
            {"name": "tmp", "emptyDir": {"sizeLimit": tmp_size_limit}},
            isolation.agent_api_volume(),
        ],
        **{k: v for k, v in scheduling.items()},
    }
    template = {
        "metadata": {
            "labels": all_pod_labels,
            "annotations": {
                **dict(pod_annotations or {}),
                # Karpenter must not consolidate a node under a pod mid-task; scale-in is KEDA's.
                px.DO_NOT_DISRUPT: "true",
                # Pod Identity credentials go to every container not named here.
                px.SKIP_CONTAINERS: SERVER_CONTAINER,
            },
        },
        "spec": pod_spec,
    }
    spec: dict[str, Any] = {
        "selector": {"matchLabels": {**selector, "app.kubernetes.io/name": name}},
        # A new pod needs a new GPU node; never take capacity away before it is ready.
        "strategy": {
            "type": "RollingUpdate",
            "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": 0},
        },
        "template": template,
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _meta(name, namespace, {**dict(labels or {}), **selector}),
        "spec": spec,
    }
