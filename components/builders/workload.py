"""Pure builders for a runtime's Kubernetes objects: Namespace, ServiceAccount, the model
PersistentVolume/PersistentVolumeClaim (Mountpoint for S3 CSI driver v2) and the Deployment.

Pod layout: the inference server runs as a native sidecar (an init container with
``restartPolicy: Always``) with a startup probe that passes only once its HTTP API answers; the
kubelet starts the queue agent (the main container) only after that, and on termination stops
the server only after the agent has exited, so the server outlives the agent's drain.
Replicas are omitted: KEDA owns the replica count.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from agent import settings as agent_settings
from components.builders import isolation
from components.builders import pod_extras as px
from components.builders.karpenter import GPU_RESOURCE, runtime_selector_labels
from components.patterns import DNS_LABEL as _DNS_LABEL
from components.patterns import QUANTITY as _QUANTITY

SDWEBUI = "sdwebui"
COMFYUI = "comfyui"
RUNTIME_TYPES = (SDWEBUI, COMFYUI)

SERVER_PORT = agent_settings.SERVER_PORT
AGENT_HEALTH_PORT: int = agent_settings.default("HEALTH_PORT")
# The agent image's non-root user (agent/Dockerfile should create it with this uid).
AGENT_UID = 10001
SERVER_CONTAINER = "inference-server"
AGENT_CONTAINER = "queue-agent"
MODELS_VOLUME = "models"
CSI_DRIVER = "s3.csi.aws.com"

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


def _fail(field_name: str, value: Any, allowed: str) -> ValueError:
    return ValueError(f"{field_name}: got {value!r}; allowed: {allowed}")


def _check_name(field_name: str, value: Any, max_len: int = 63) -> None:
    if not isinstance(value, str) or len(value) > max_len or not _DNS_LABEL.match(value):
        raise _fail(
            field_name, value, f"a lowercase DNS label (a-z, 0-9, '-'), at most {max_len} chars"
        )


def _check_type(runtime_type: str) -> None:
    if runtime_type not in RUNTIME_TYPES:
        raise _fail("runtime_type", runtime_type, " or ".join(RUNTIME_TYPES))


def _check_quantity(field_name: str, value: Any) -> None:
    if not isinstance(value, str) or not _QUANTITY.match(value):
        raise _fail(field_name, value, "a Kubernetes quantity string such as '500m' or '8Gi'")


def _check_int(field_name: str, value: Any, low: int, high: int | None = None) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise _fail(field_name, value, f"an integer >= {low}" + (f", <= {high}" if high else ""))
    if high is not None and value > high:
        raise _fail(field_name, value, f"an integer from {low} to {high}")


def _meta(
    name: str, namespace: str | None = None, labels: Mapping[str, str] | None = None
) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name}
    if namespace is not None:
        meta["namespace"] = namespace
    if labels:
        meta["labels"] = dict(labels)
    return meta


def default_api_base_url(runtime_type: str, port: int = SERVER_PORT) -> str:
    """The agent's URL for the server sidecar (one definition, in the agent's settings)."""
    _check_type(runtime_type)
    return agent_settings.default_api_base_url(runtime_type, port)


# ------------------------------------------------------------------------------------------
# Namespace, ServiceAccount


def namespace(name: str, labels: Mapping[str, str] | None = None) -> dict[str, Any]:
    _check_name("namespace", name)
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": _meta(name, labels=labels)}


def service_account(
    name: str, namespace: str, labels: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """The runtime's service account; its AWS role comes from a Pod Identity association (no
    annotation). Its pods turn the API token automount off and mount it into the agent only
    (:func:`runtime_deployment`); Pod Identity's own token is a separate projected volume that
    its webhook adds whatever the automount setting."""
    _check_name("service_account", name)
    return {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": _meta(name, namespace, labels),
    }


# ------------------------------------------------------------------------------------------
# Models: PersistentVolume + PersistentVolumeClaim


def model_mount_options(
    *,
    region: str,
    prefix: str | None = None,
    metadata_ttl: str = "indefinite",
    maximum_throughput_gbps: int | None = None,
) -> list[str]:
    """Mountpoint flags for a read-only model mount.

    ``region`` is always given: under IMDS hop limit 1 Mountpoint pods cannot discover it.
    ``allow-other`` lets a server running as any uid read the files. ``metadata-ttl
    indefinite`` suits a model bucket that only gains files (new files need a pod restart to be
    seen either way: the servers scan models at start); use a number of seconds otherwise.
    """
    if not isinstance(region, str) or not re.match(r"^[a-z]{2}(-[a-z]+)+-[0-9]+$", region):
        raise _fail("region", region, "an AWS region such as 'us-west-2'")
    options = ["read-only", "allow-other", f"region {region}"]
    if prefix:
        if prefix.startswith("/") or not prefix.endswith("/"):
            raise _fail("modelPrefix", prefix, "a key prefix ending with '/', e.g. 'sd15/'")
        options.append(f"prefix {prefix}")
    if metadata_ttl not in ("indefinite", "minimal") and not metadata_ttl.isdigit():
        raise _fail("metadataTtl", metadata_ttl, "'indefinite', 'minimal' or seconds")
    options.append(f"metadata-ttl {metadata_ttl}")
    if maximum_throughput_gbps is not None:
        _check_int("maximumThroughputGbps", maximum_throughput_gbps, 1, 400)
        options.append(f"maximum-throughput-gbps {maximum_throughput_gbps}")
    return options


def model_volume(
    *,
    name: str,
    volume_handle: str,
    bucket_name: str,
    region: str,
    claim_name: str,
    claim_namespace: str,
    prefix: str | None = None,
    cache_size_limit: str | None = None,
    metadata_ttl: str = "indefinite",
    maximum_throughput_gbps: int | None = None,
) -> dict[str, Any]:
    """A static, read-only PersistentVolume on the model bucket (cluster-scoped).

    ``volume_handle`` must be unique across all PVs in the cluster (duplicates leave pods in
    ContainerCreating): use one per runtime. ``cache_size_limit`` (e.g. "20Gi") turns on
    Mountpoint's data cache in an emptyDir on the node's data volume, so a pod restarted on the
    same node reads the weights locally.
    """
    _check_name("pv name", name, max_len=253)
    if not volume_handle or not isinstance(volume_handle, str):
        raise _fail("volume_handle", volume_handle, "a non-empty string unique in the cluster")
    if not isinstance(bucket_name, str) or not re.match(
        r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$", bucket_name
    ):
        raise _fail("bucket_name", bucket_name, "an S3 bucket name")
    attributes: dict[str, str] = {"bucketName": bucket_name}
    if cache_size_limit is not None:
        _check_quantity("cacheSizeLimit", cache_size_limit)
        attributes["cache"] = "emptyDir"
        attributes["cacheEmptyDirSizeLimit"] = cache_size_limit
    spec: dict[str, Any] = {
        # Required by Kubernetes, ignored by the driver.
        "capacity": {"storage": "1Ti"},
        "accessModes": ["ReadOnlyMany"],
        "persistentVolumeReclaimPolicy": "Retain",
        "storageClassName": "",
        "claimRef": {"namespace": claim_namespace, "name": claim_name},
        "mountOptions": model_mount_options(
            region=region,
            prefix=prefix,
            metadata_ttl=metadata_ttl,
            maximum_throughput_gbps=maximum_throughput_gbps,
        ),
        "csi": {
            "driver": CSI_DRIVER,
            "volumeHandle": volume_handle,
            "readOnly": True,
            "volumeAttributes": attributes,
        },
    }
    return {"apiVersion": "v1", "kind": "PersistentVolume", "metadata": _meta(name), "spec": spec}


def model_claim(*, name: str, namespace: str, volume_name: str) -> dict[str, Any]:
    """The PVC bound to :func:`model_volume` by name."""
    _check_name("pvc name", name, max_len=253)
    spec: dict[str, Any] = {
        "accessModes": ["ReadOnlyMany"],
        "storageClassName": "",
        "volumeName": volume_name,
        "resources": {"requests": {"storage": "1Ti"}},
    }
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": _meta(name, namespace),
        "spec": spec,
    }


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


@dataclass(frozen=True)
class AgentEnv:
    """The queue agent's environment, one field per variable. Names, defaults and the value
    format come from the agent's own settings table (``agent.settings``), so the pod's env and
    what the agent reads cannot drift apart."""

    sqs_queue_url: str
    sns_topic_arn: str
    s3_bucket: str
    runtime_type: str
    runtime_name: str
    aws_region: str
    job_timeout_seconds: int = int(agent_settings.default("JOB_TIMEOUT_SECONDS"))
    drain_seconds: int = int(agent_settings.default("DRAIN_SECONDS"))
    dynamic_sd_model: bool = agent_settings.default("DYNAMIC_SD_MODEL")
    model_filename: str | None = None
    api_base_url: str | None = None
    health_port: int = int(agent_settings.default("HEALTH_PORT"))
    # camelCase JSON of agent.contract.Limits (maxSteps, maxPixels, maxImages, maxInputs).
    task_limits: Mapping[str, int] | None = None
    input_s3_buckets: tuple[str, ...] = ()
    input_fetch_timeout_seconds: float = agent_settings.default("INPUT_FETCH_TIMEOUT_SECONDS")
    input_task_timeout_seconds: float = agent_settings.default("INPUT_TASK_TIMEOUT_SECONDS")
    input_max_total_bytes: int = agent_settings.default("INPUT_MAX_TOTAL_BYTES")
    pod_deletion_cost: bool = agent_settings.default("POD_DELETION_COST")
    extra: Mapping[str, str] = field(default_factory=dict)

    # The pod's own name and namespace, from the downward API.
    FIELD_REFS: ClassVar[dict[str, str]] = {
        "POD_NAME": "metadata.name",
        "POD_NAMESPACE": "metadata.namespace",
    }

    def validate(self) -> None:
        _check_type(self.runtime_type)
        for name in ("sqs_queue_url", "sns_topic_arn", "s3_bucket", "runtime_name", "aws_region"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value:
                raise _fail(f"agent_env.{name}", value, "a non-empty string")
        _check_int("agent_env.job_timeout_seconds", self.job_timeout_seconds, 1)
        _check_int("agent_env.drain_seconds", self.drain_seconds, 0)
        _check_int("agent_env.health_port", self.health_port, 1, 65535)
        _check_int("agent_env.input_max_total_bytes", self.input_max_total_bytes, 1)
        for name in ("input_fetch_timeout_seconds", "input_task_timeout_seconds"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or value < 0.1:
                raise _fail(f"agent_env.{name}", value, "a number of seconds >= 0.1")
        for bucket in self.input_s3_buckets:
            if not isinstance(bucket, str) or not bucket or "," in bucket:
                raise _fail("agent_env.input_s3_buckets", bucket, "bucket names without commas")
        if self.task_limits is not None and not isinstance(self.task_limits, Mapping):
            raise _fail("agent_env.task_limits", self.task_limits, "a mapping (Limits.to_json())")
        for key, value in self.extra.items():
            known = key in agent_settings.BY_NAME and key not in self.names()
            if not known or not isinstance(value, str):
                raise _fail(
                    f"agent_env.extra.{key}",
                    value,
                    "a string value for an agent setting not already set by a field "
                    "(see agent/settings.py)",
                )

    @staticmethod
    def names() -> tuple[str, ...]:
        """Every variable the fields set (``extra`` may set the other agent settings)."""
        return (
            "SQS_QUEUE_URL",
            "SNS_TOPIC_ARN",
            "S3_BUCKET",
            "RUNTIME_TYPE",
            "RUNTIME_NAME",
            "API_BASE_URL",
            "JOB_TIMEOUT_SECONDS",
            "DRAIN_SECONDS",
            "DYNAMIC_SD_MODEL",
            "MODEL_FILENAME",
            "AWS_REGION",
            "HEALTH_PORT",
            "TASK_LIMITS",
            "INPUT_S3_BUCKETS",
            "INPUT_FETCH_TIMEOUT_SECONDS",
            "INPUT_TASK_TIMEOUT_SECONDS",
            "INPUT_MAX_TOTAL_BYTES",
            "POD_DELETION_COST",
            *AgentEnv.FIELD_REFS,
        )

    def to_env(self, server_port: int = SERVER_PORT) -> list[dict[str, Any]]:
        """Kubernetes ``env`` entries (string values, or downward-API ``valueFrom``) in a
        stable order."""
        self.validate()
        fields: dict[str, Any] = {
            "SQS_QUEUE_URL": self.sqs_queue_url,
            "SNS_TOPIC_ARN": self.sns_topic_arn,
            "S3_BUCKET": self.s3_bucket,
            "RUNTIME_TYPE": self.runtime_type,
            "RUNTIME_NAME": self.runtime_name,
            "API_BASE_URL": self.api_base_url
            or agent_settings.default_api_base_url(self.runtime_type, server_port),
            "JOB_TIMEOUT_SECONDS": self.job_timeout_seconds,
            "DRAIN_SECONDS": self.drain_seconds,
            "DYNAMIC_SD_MODEL": self.dynamic_sd_model,
            "AWS_REGION": self.aws_region,
            "HEALTH_PORT": self.health_port,
            "MODEL_FILENAME": self.model_filename or None,
            "TASK_LIMITS": dict(self.task_limits) if self.task_limits is not None else None,
            "INPUT_S3_BUCKETS": tuple(self.input_s3_buckets) or None,
            "INPUT_FETCH_TIMEOUT_SECONDS": self.input_fetch_timeout_seconds,
            "INPUT_TASK_TIMEOUT_SECONDS": self.input_task_timeout_seconds,
            "INPUT_MAX_TOTAL_BYTES": self.input_max_total_bytes,
            "POD_DELETION_COST": self.pod_deletion_cost,
        }
        entries: list[dict[str, Any]] = [
            {"name": name, "value": agent_settings.to_env_value(name, value)}
            for name, value in fields.items()
            if value is not None
        ]
        entries += [
            {"name": name, "valueFrom": {"fieldRef": {"fieldPath": path}}}
            for name, path in self.FIELD_REFS.items()
        ]
        entries += [{"name": k, "value": v} for k, v in self.extra.items()]
        return entries


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
        raise _fail("image_pull_policy", image_pull_policy, ", ".join(px.IMAGE_PULL_POLICIES))


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

    ``scheduling`` is :func:`components.builders.karpenter.pod_scheduling` output, merged into
    the pod spec as-is. The startup budget is ``startup_period_seconds *
    startup_failure_threshold`` (15 minutes by default) for the server to load its model.
    ``termination_grace_period_seconds`` defaults to drain + 30 s capped at 120 s (the spot
    notice) and must leave at least 10 s after the agent's drain. ``pod_labels`` and
    ``pod_annotations`` are extra (never keys sdfleet sets, see pod_extras);
    ``image_pull_policy`` applies to the server container.
    """
    _check_pass_through(server_env, pod_labels, pod_annotations, image_pull_policy)
    _check_name("name", name)
    _check_name("namespace", namespace)
    _check_type(runtime_type)
    if agent_env.runtime_type != runtime_type or agent_env.runtime_name != runtime_name:
        raise _fail(
            "agent_env.runtime_type/runtime_name",
            (agent_env.runtime_type, agent_env.runtime_name),
            f"the deployment's ({runtime_type!r}, {runtime_name!r})",
        )
    for field_name, image in (("agent_image", agent_image), ("server_image", server_image)):
        if not isinstance(image, str) or not image or image.endswith(":latest"):
            raise _fail(field_name, image, "an image reference pinned by tag or digest")
    _check_int("server_port", server_port, 1, 65535)
    if server_port == agent_env.health_port:
        raise _fail("server_port", server_port, "a port other than the agent's health port")
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
        raise _fail(
            "termination_grace_period_seconds",
            grace,
            f"at least drain_seconds + {SHUTDOWN_MARGIN_SECONDS} = "
            f"{drain + SHUTDOWN_MARGIN_SECONDS} (set it explicitly, or lower drain_seconds)",
        )
    mount_path = model_mount_path or DEFAULT_MODEL_PATHS[runtime_type]
    if not mount_path.startswith("/"):
        raise _fail("model_mount_path", mount_path, "an absolute path")
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
