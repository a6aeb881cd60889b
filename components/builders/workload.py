"""Pure builders for a runtime's Kubernetes objects: Namespace, ServiceAccount, the model
PersistentVolume/PersistentVolumeClaim (Mountpoint for S3 CSI driver v2) and the Deployment.

Pod layout: the inference server runs as a native sidecar (an init container with
``restartPolicy: Always``) with a startup probe that passes only once its HTTP API answers; the
kubelet starts the queue agent (the main container) only after that, and on termination stops
the server only after the agent has exited, so the server outlives the agent's drain.
Replicas are omitted: KEDA owns the replica count. The server's port, model mount, env,
probes, writable volumes and user come from the pod contract (server_contract.py), which
sdfleet's images (runtimes/) implement and an own image must honour.

Split by concern; import every name from here: workload_objects.py (Namespace,
ServiceAccount, model PV/PVC), workload_agent_env.py (AgentEnv), workload_containers.py (the
server and agent containers), workload_checks.py (the shared input checks); this module: the
runtime's defaults and the Deployment.
"""

from collections.abc import Mapping, Sequence
from typing import Any

from sdfleet.agent import settings as agent_settings
from sdfleet.components.builders import isolation
from sdfleet.components.builders import pod_extras as px
from sdfleet.components.builders import server_contract as sc
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
from sdfleet.components.builders.workload_containers import (
    AGENT_CONTAINER,
    DEFAULT_AGENT_RESOURCES,
    DEFAULT_SERVER_RESOURCES,
    MODELS_VOLUME,
    SERVER_CONTAINER,
    SERVER_PORT,
    STARTUP_PROBE_PATHS,
    Resources,
    _agent_container,
    _server_container,
    _server_env,
    server_volumes,
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

AGENT_HEALTH_PORT: int = agent_settings.default("HEALTH_PORT")
# The agent image's non-root user (agent/Dockerfile should create it with this uid).
AGENT_UID = 10001

# Where the model bucket is mounted and the arguments the pod passes, per the pod contract
# (both images read MODEL_DIR and SERVER_PORT from the env and need no arguments).
DEFAULT_MODEL_PATHS = {t: sc.contract_for(t).model_mount_path for t in RUNTIME_TYPES}
DEFAULT_SERVER_ARGS = {t: sc.contract_for(t).args for t in RUNTIME_TYPES}
# Spot instances get a 2-minute notice; Karpenter drains on the notice, so the pod's grace
# period should end before the instance does.
SPOT_NOTICE_SECONDS = 120
# Time the pod needs after the agent's drain: flush uploads, stop the server sidecar.
SHUTDOWN_MARGIN_SECONDS = 10
# Startup budget = STARTUP_PERIOD_SECONDS x threshold (15 minutes) for the server to load its model.
STARTUP_PERIOD_SECONDS = 10
STARTUP_FAILURE_THRESHOLD = 90


def default_api_base_url(runtime_type: str, port: int = SERVER_PORT) -> str:
    """The agent's URL for the server sidecar (one definition, in the agent's settings)."""
    _check_type(runtime_type)
    return agent_settings.default_api_base_url(runtime_type, port)


def _check_pass_through(
    server_env: Mapping[str, str] | None,
    pod_labels: Mapping[str, str] | None,
    pod_annotations: Mapping[str, str] | None,
    image_pull_policy: str | None,
    contract: sc.ServerContract,
) -> None:
    # The contract's variables come from the pod's own settings (port, mount path, model).
    reserved = frozenset(e.name for e in contract.env if e.pod_sets)

    def env_problem(name: Any, value: Any) -> str | None:
        return px.env_problem(name, value, reserved)

    for field_name, items, problem in (
        ("server_env", server_env, env_problem),
        ("pod_labels", pod_labels, px.label_problem),
        ("pod_annotations", pod_annotations, px.annotation_problem),
    ):
        found = px.map_problem(items or {}, problem)
        if found:
            raise ValueError(f"{field_name}: {found}")
    if image_pull_policy is not None and image_pull_policy not in px.IMAGE_PULL_POLICIES:
        raise fail("image_pull_policy", image_pull_policy, ", ".join(px.IMAGE_PULL_POLICIES))


def _check_command(command: Sequence[str] | None) -> None:
    if command is not None and (not command or not all(isinstance(c, str) and c for c in command)):
        raise ValueError(
            f"server_command: got {command!r}; allowed: a non-empty list of "
            "non-empty strings, or None for the image's entrypoint"
        )


def default_termination_grace_seconds(
    drain_seconds: int = int(agent_settings.default("DRAIN_SECONDS")),
) -> int:
    """Drain plus a 30 s margin, capped at the 2-minute spot notice."""
    return min(drain_seconds + 30, SPOT_NOTICE_SECONDS)


def _check_identity(
    name: str, namespace: str, runtime_name: str, runtime_type: str, agent_env: AgentEnv
) -> None:
    check_name("name", name)
    check_name("namespace", namespace)
    _check_type(runtime_type)
    if agent_env.runtime_type != runtime_type or agent_env.runtime_name != runtime_name:
        raise fail(
            "agent_env.runtime_type/runtime_name",
            (agent_env.runtime_type, agent_env.runtime_name),
            f"the deployment's ({runtime_type!r}, {runtime_name!r})",
        )


def _check_pod_numbers(
    startup_period_seconds: int, startup_failure_threshold: int, tmp_size_limit: str, uid: int
) -> None:
    _check_int("startup_period_seconds", startup_period_seconds, 1, 300)
    _check_int("startup_failure_threshold", startup_failure_threshold, 1, 10000)
    _check_quantity("tmp_size_limit", tmp_size_limit)
    _check_int("agent_uid", uid, 1, 2**31 - 1)


def _mount_path(model_mount_path: str | None, runtime_type: str) -> str:
    mount_path = model_mount_path or DEFAULT_MODEL_PATHS[runtime_type]
    if not mount_path.startswith("/"):
        raise fail("model_mount_path", mount_path, "an absolute path")
    return mount_path


def _check_images_and_ports(
    agent_image: str, server_image: str, server_port: int, agent_env: AgentEnv
) -> None:
    for field_name, image in (("agent_image", agent_image), ("server_image", server_image)):
        if not isinstance(image, str) or not image or image.endswith(":latest"):
            raise fail(field_name, image, "an image reference pinned by tag or digest")
    _check_int("server_port", server_port, 1, 65535)
    if server_port == agent_env.health_port:
        raise fail("server_port", server_port, "a port other than the agent's health port")


def _grace_seconds(drain: int, termination_grace_period_seconds: int | None) -> int:
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
    return grace


def _pod_spec(
    *,
    service_account_name: str,
    model_claim_name: str,
    grace: int,
    server: dict[str, Any],
    agent: dict[str, Any],
    tmp_size_limit: str,
    scheduling: Mapping[str, Any],
    contract: sc.ServerContract,
) -> dict[str, Any]:
    return {
        "serviceAccountName": service_account_name,
        # The server must not reach the API as the pod; the agent mounts its own token.
        "automountServiceAccountToken": False,
        "terminationGracePeriodSeconds": grace,
        # Both containers set their own user; these hold for any container added later.
        "securityContext": {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}},
        "initContainers": [server],
        "containers": [agent],
        "volumes": [
            {
                "name": MODELS_VOLUME,
                "persistentVolumeClaim": {"claimName": model_claim_name, "readOnly": True},
            },
            {"name": "tmp", "emptyDir": {"sizeLimit": tmp_size_limit}},
            *server_volumes(contract),
            isolation.agent_api_volume(),
        ],
        **{k: v for k, v in scheduling.items()},
    }


def _pod_template(
    name: str,
    labels: Mapping[str, str] | None,
    selector: Mapping[str, str],
    pod_labels: Mapping[str, str] | None,
    pod_annotations: Mapping[str, str] | None,
    pod_spec: dict[str, Any],
) -> dict[str, Any]:
    return {
        "metadata": {
            "labels": {
                **dict(pod_labels or {}),
                **dict(labels or {}),
                **selector,
                "app.kubernetes.io/name": name,
            },
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


def _deployment(
    name: str,
    namespace: str,
    labels: Mapping[str, str],
    annotations: Mapping[str, str] | None,
    selector: Mapping[str, str],
    template: dict[str, Any],
) -> dict[str, Any]:
    metadata = _meta(name, namespace, {**labels, **selector})
    if annotations:
        metadata["annotations"] = dict(annotations)
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": metadata,
        "spec": {
            "selector": {"matchLabels": {**selector, "app.kubernetes.io/name": name}},
            # A new pod needs a new GPU node; never take capacity away before it is ready.
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": 0},
            },
            "template": template,
        },
    }


# shape: 30 of its lines are the keyword list (every pod setting); the body is ~40 lines.
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
    server_command: Sequence[str] | None = None,
    server_env: Mapping[str, str] | None = None,
    model_mount_path: str | None = None,
    model_filename: str | None = None,
    startup_period_seconds: int = STARTUP_PERIOD_SECONDS,
    startup_failure_threshold: int = STARTUP_FAILURE_THRESHOLD,
    termination_grace_period_seconds: int | None = None,
    tmp_size_limit: str = "2Gi",
    agent_uid: int = AGENT_UID,
    labels: Mapping[str, str] | None = None,
    annotations: Mapping[str, str] | None = None,
    pod_labels: Mapping[str, str] | None = None,
    pod_annotations: Mapping[str, str] | None = None,
    image_pull_policy: str | None = None,
) -> dict[str, Any]:
    """The runtime's Deployment (no ``replicas``: KEDA owns it).

    ``scheduling`` is :func:`sdfleet.components.builders.karpenter.pod_scheduling` output,
    merged into the pod spec as-is. The startup budget is ``startup_period_seconds *
    startup_failure_threshold`` (15 minutes by default) for the server to load its model.
    ``termination_grace_period_seconds`` defaults to drain + 30 s capped at 120 s (the spot
    notice) and must leave at least 10 s after the agent's drain. ``server_command`` replaces
    the server image's entrypoint (None keeps it: ``contract.command`` in sdfleet's images).
    ``model_filename`` is the checkpoint an SD WebUI server loads at start (None for a
    dynamic-model runtime); ``server_env`` may not set the contract's variables, which follow
    ``server_port``, the model mount path and ``model_filename``. ``annotations`` go on the Deployment
    itself; ``pod_labels`` and ``pod_annotations`` are extra (never keys sdfleet sets, see
    pod_extras); ``image_pull_policy`` applies to the server container.
    """
    _check_type(runtime_type)
    contract = sc.contract_for(runtime_type)
    _check_pass_through(server_env, pod_labels, pod_annotations, image_pull_policy, contract)
    _check_command(server_command)
    _check_identity(name, namespace, runtime_name, runtime_type, agent_env)
    _check_images_and_ports(agent_image, server_image, server_port, agent_env)
    _check_pod_numbers(startup_period_seconds, startup_failure_threshold, tmp_size_limit, agent_uid)
    grace = _grace_seconds(agent_env.drain_seconds, termination_grace_period_seconds)
    mount_path = _mount_path(model_mount_path, runtime_type)
    selector = runtime_selector_labels(runtime_name)
    server = _server_container(
        contract=contract,
        image=server_image,
        args=contract.args if server_args is None else server_args,
        env=_server_env(contract, server_port, mount_path, model_filename, server_env),
        port=server_port,
        resources=server_resources,
        model_mount_path=mount_path,
        startup_period_seconds=startup_period_seconds,
        startup_failure_threshold=startup_failure_threshold,
        image_pull_policy=image_pull_policy,
        command=server_command,
    )
    agent = _agent_container(
        image=agent_image,
        env=agent_env,
        server_port=server_port,
        resources=agent_resources,
        uid=agent_uid,
    )
    pod_spec = _pod_spec(
        service_account_name=service_account_name,
        model_claim_name=model_claim_name,
        grace=grace,
        server=server,
        agent=agent,
        tmp_size_limit=tmp_size_limit,
        scheduling=scheduling,
        contract=contract,
    )
    template = _pod_template(name, labels, selector, pod_labels, pod_annotations, pod_spec)
    return _deployment(name, namespace, dict(labels or {}), annotations, selector, template)
