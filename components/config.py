"""The validated stack configuration (namespace ``sdfleet:``), one import for its users.

Pure Python: no Pulumi import, so it is tested without mocks and reused by the offline synth.
The model lives in :mod:`sdfleet.components.config_model` (per-runtime objects in
:mod:`sdfleet.components.config_runtime`), field checks in
:mod:`sdfleet.components.config_checks`, and :func:`parse_config` in :mod:`sdfleet.components.config_parse`.
"""

from __future__ import annotations

from sdfleet.components.config_checks import NAMESPACE, ConfigError, cfg
from sdfleet.components.config_model import (
    AgentImageConfig,
    ApiConfig,
    ClusterConfig,
    InputsConfig,
    ModelsConfig,
    NetworkConfig,
    ObservabilityConfig,
    OutputsConfig,
    QueuesConfig,
    QuotaConfig,
    StackConfig,
    SystemNodesConfig,
    ThrottleConfig,
)
from sdfleet.components.config_parse import parse_config, split_namespaced
from sdfleet.components.config_runtime import (
    AgentPassThroughConfig,
    GpuPoolConfig,
    LimitsConfig,
    NodeRequirementConfig,
    NodeTaintConfig,
    ResourcesConfig,
    RuntimeConfig,
    ScalingConfig,
    ServerPassThroughConfig,
)

__all__ = [
    "NAMESPACE",
    "AgentImageConfig",
    "AgentPassThroughConfig",
    "ApiConfig",
    "ClusterConfig",
    "ConfigError",
    "GpuPoolConfig",
    "InputsConfig",
    "LimitsConfig",
    "ModelsConfig",
    "NetworkConfig",
    "NodeRequirementConfig",
    "NodeTaintConfig",
    "ObservabilityConfig",
    "OutputsConfig",
    "QueuesConfig",
    "QuotaConfig",
    "ResourcesConfig",
    "RuntimeConfig",
    "ScalingConfig",
    "ServerPassThroughConfig",
    "StackConfig",
    "SystemNodesConfig",
    "ThrottleConfig",
    "cfg",
    "parse_config",
    "split_namespaced",
]
