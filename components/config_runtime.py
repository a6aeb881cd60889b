"""The per-runtime part of the stack configuration model (``sdfleet:runtimes[]``): the runtime,
its GPU pool, resources, scaling, task limits, and what passes through to its pods (server and
agent settings, labels, node requirements and taints). Same conventions as config_model."""

# ruff: noqa: RUF009  (cfg(...) field specifiers are dataclass defaults by design)

from dataclasses import dataclass
from typing import Any

from sdfleet.agent import settings as agent_settings
from sdfleet.agent.contract import MAX_SIDE, Limits
from sdfleet.components.builders import pod_extras as px
from sdfleet.components.builders.enums import ImagePullMode
from sdfleet.components.builders.workload import AgentEnv
from sdfleet.components.config_checks import (
    RUNTIME_NAME_MAX,
    args_check,
    cfg,
    dns_label,
    in_range,
    instance_types_check,
    matches,
    one_of,
    pinned_image,
)
from sdfleet.components.patterns import DURATION, QUANTITY, SNAPSHOT_ID

# Task limit defaults are the contract's (the API and the agent enforce the same object).
_LIMITS = Limits()


def _map_check(problem: Any) -> Any:
    return lambda v: None if (p := px.map_problem(v, problem)) is None else f"has {p}"


def _agent_env_problem(name: Any, value: Any) -> str | None:
    """An agent setting (agent/settings.py) that no config key already sets, with a value the
    agent accepts."""
    allowed = sorted(
        n
        for n in set(agent_settings.BY_NAME) - set(AgentEnv.names())
        # AWS settings come from the stack; sandbox-only switches never reach a deployed pod.
        if not n.startswith((*px.RESERVED_ENV_PREFIXES, "SDFLEET_SANDBOX_"))
    )
    if name not in allowed:
        return f"name {name!r}: one of the agent's other settings: {', '.join(allowed)}"
    if not isinstance(value, str):
        return f"{name}: a string value"
    try:
        agent_settings.parse({name: value}, name)
    except ValueError as exc:
        return f"{name}={value!r}: {exc}"
    return None


@dataclass(frozen=True)
class GpuPoolConfig:
    instance_types: list[str] = cfg(
        "instanceTypes",
        factory=lambda: ["g6.2xlarge", "g5.2xlarge"],
        check=instance_types_check(" such as g6.2xlarge"),
        doc="EC2 instance types Karpenter may launch for this runtime",
    )
    max_gpus: int = cfg("maxGpus", 8, in_range(1, 1000), doc="limit on the pool's total GPUs")
    data_volume_size_gib: int = cfg("dataVolumeSizeGiB", 100, in_range(20, 16384))
    snapshot_id: str | None = cfg(
        "snapshotId", None, matches(SNAPSHOT_ID, "an EBS snapshot id (snap-...)")
    )
    consolidate_after: str = cfg(
        "consolidateAfter", "5m", matches(DURATION, "a duration such as 30s, 5m or 1h")
    )
    expire_after: str = cfg("expireAfter", "168h", matches(DURATION, "a duration such as 168h"))
    spot_fallback: bool = cfg("spotFallback", True)
    instance_store_policy: str | None = cfg("instanceStorePolicy", None, one_of("RAID0"))
    image_pull_mode: str = cfg(
        "imagePullMode",
        ImagePullMode.DEFAULT,
        one_of(*ImagePullMode),
        doc="how GPU nodes pull images missing from the data volume: default (Bottlerocket's), "
        "parallel (containerd parallel downloads + chunked layer fetch) or soci (SOCI parallel "
        "pull/unpack; not with snapshotId); see docs/image-cache.md",
    )


@dataclass(frozen=True)
class ResourcesConfig:
    cpu: str = cfg("cpu", "4", matches(QUANTITY, "a Kubernetes quantity such as 4 or 3500m"))
    memory: str = cfg("memory", "24Gi", matches(QUANTITY, "a Kubernetes quantity such as 24Gi"))


@dataclass(frozen=True)
class ScalingConfig:
    min_replicas: int = cfg(
        "minReplicas", 0, in_range(0, 1000), doc="warm pool kept running (KEDA minReplicaCount)"
    )
    max_replicas: int = cfg("maxReplicas", 4, in_range(1, 1000))
    queue_length: int = cfg(
        "queueLength", 2, in_range(1, 1000), doc="target messages per pod (visible + in flight)"
    )
    activation_queue_length: int = cfg("activationQueueLength", 0, in_range(0, 1000))
    polling_interval: int = cfg("pollingInterval", 15, in_range(5, 3600))
    cooldown_period: int = cfg("cooldownPeriod", 300, in_range(0, 86400))
    scale_down_pods: int = cfg("scaleDownPods", 1, in_range(1, 1000))
    scale_down_period_seconds: int = cfg("scaleDownPeriodSeconds", 60, in_range(1, 1800))


@dataclass(frozen=True)
class LimitsConfig:
    max_steps: int = cfg(
        "maxSteps", _LIMITS.max_steps, in_range(1, 10000), doc="sampling steps per task"
    )
    max_pixels: int = cfg(
        "maxPixels",
        _LIMITS.max_pixels,
        in_range(64 * 64, MAX_SIDE * MAX_SIDE),
        doc="width x height of one image",
    )
    max_images: int = cfg(
        "maxImages", _LIMITS.max_images, in_range(1, 1000), doc="images per task (batch x n_iter)"
    )
    max_inputs: int = cfg(
        "maxInputs", _LIMITS.max_inputs, in_range(1, 1000), doc="input images/URLs per task"
    )

    def to_contract(self) -> Limits:
        return Limits(
            max_steps=self.max_steps,
            max_pixels=self.max_pixels,
            max_images=self.max_images,
            max_inputs=self.max_inputs,
        )


@dataclass(frozen=True)
class ServerPassThroughConfig:
    extra_args: list[str] = cfg(
        "extraArgs", factory=list, check=args_check, doc="appended to the server's arguments"
    )
    extra_env: dict[str, str] = cfg(
        "extraEnv",
        factory=dict,
        check=_map_check(px.env_problem),
        doc="server environment; no AWS_* (the server gets no AWS access)",
    )


@dataclass(frozen=True)
class AgentPassThroughConfig:
    extra_env: dict[str, str] = cfg(
        "extraEnv",
        factory=dict,
        check=_map_check(_agent_env_problem),
        doc="other agent settings, e.g. EXP_CALLBACK_WHEN_RUNNING (see agent/settings.py)",
    )


@dataclass(frozen=True)
class NodeRequirementConfig:
    key: str = cfg("key")
    operator: str = cfg("operator", check=one_of(*px.REQUIREMENT_OPERATORS))
    values: list[str] = cfg("values", factory=list)

    def problem(self) -> str | None:
        return px.requirement_problem(self.key, self.operator, self.values)


@dataclass(frozen=True)
class NodeTaintConfig:
    key: str = cfg("key")
    effect: str = cfg("effect", check=one_of(*px.TAINT_EFFECTS))
    value: str | None = cfg("value", None)

    def problem(self) -> str | None:
        return px.taint_problem(self.key, self.value, self.effect)


@dataclass(frozen=True)
class RuntimeConfig:
    name: str = cfg("name", check=dns_label(RUNTIME_NAME_MAX))
    type: str = cfg("type", check=one_of("sdwebui", "comfyui"))
    namespace: str | None = cfg("namespace", None, dns_label())
    model_filename: str | None = cfg(
        "modelFilename", None, lambda v: None if v.strip() else "must not be empty"
    )
    dynamic_model: bool = cfg("dynamicModel", False)
    job_timeout_seconds: int = cfg("jobTimeoutSeconds", 600, in_range(10, 36000))
    spot_ratio: float | None = cfg("spotRatio", None, in_range(0, 1))
    image: str | None = cfg(
        "image",
        None,
        pinned_image,
        doc="the server image (pinned); unset: pulumi up builds runtimes/<type>/ and uses it",
    )
    model_path: str | None = cfg(
        "modelPath", None, lambda v: None if v.startswith("/") else "must be an absolute path"
    )
    model_prefix: str | None = cfg("modelPrefix", None)
    drain_seconds: int = cfg("drainSeconds", 90, in_range(0, 3600))
    termination_grace_period_seconds: int | None = cfg(
        "terminationGracePeriodSeconds",
        None,
        in_range(1, 7200),
        doc="pod grace period; default drain + 30 s, at most the 2-minute spot notice",
    )
    gpu: GpuPoolConfig = cfg("gpu", factory=GpuPoolConfig)
    resources: ResourcesConfig = cfg("resources", factory=ResourcesConfig)
    scaling: ScalingConfig = cfg("scaling", factory=ScalingConfig)
    limits: LimitsConfig = cfg("limits", factory=LimitsConfig)
    server: ServerPassThroughConfig = cfg("server", factory=ServerPassThroughConfig)
    agent: AgentPassThroughConfig = cfg("agent", factory=AgentPassThroughConfig)
    pod_labels: dict[str, str] = cfg("podLabels", factory=dict, check=_map_check(px.label_problem))
    pod_annotations: dict[str, str] = cfg(
        "podAnnotations", factory=dict, check=_map_check(px.annotation_problem)
    )
    node_requirements: list[NodeRequirementConfig] = cfg(
        "nodeRequirements",
        factory=list,
        doc="extra Karpenter requirements on the runtime's NodePools",
    )
    node_taints: list[NodeTaintConfig] = cfg(
        "nodeTaints", factory=list, doc="extra taints on the GPU nodes; the pods tolerate them"
    )
    image_pull_policy: str | None = cfg(
        "imagePullPolicy", None, one_of(*px.IMAGE_PULL_POLICIES), doc="the server container's"
    )

    @property
    def k8s_namespace(self) -> str:
        return self.namespace or self.name
