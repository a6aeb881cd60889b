"""sdfleet: asynchronous Stable Diffusion inference on AWS EKS, as Pulumi components.

The distribution installs this one top-level package: the repository's ``components/`` and
``agent/`` folders are ``sdfleet.components`` and ``sdfleet.agent``. The components below are
imported on first use (PEP 562), so ``import sdfleet.agent`` works in the agent image and
``sdfleet.agent.contract`` in the task Lambda, neither of which has Pulumi installed.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sdfleet.components.api_ingress import ApiIngress, ApiIngressArgs
    from sdfleet.components.event_fanout import EventFanout, EventFanoutArgs
    from sdfleet.components.gpu_node_pool import GpuNodePool, GpuNodePoolArgs
    from sdfleet.components.model_store import ModelStore, ModelStoreArgs
    from sdfleet.components.observability import Observability, ObservabilityArgs
    from sdfleet.components.pipeline import SdPipeline, SdPipelineArgs
    from sdfleet.components.sd_runtime import SdRuntime, SdRuntimeArgs
    from sdfleet.components.task_events_component import TaskEvents, TaskEventsArgs
    from sdfleet.components.trace_collector import TraceCollector, TraceCollectorArgs

# Public name -> the module that defines it.
_EXPORTS = {
    "ApiIngress": "sdfleet.components.api_ingress",
    "ApiIngressArgs": "sdfleet.components.api_ingress",
    "EventFanout": "sdfleet.components.event_fanout",
    "EventFanoutArgs": "sdfleet.components.event_fanout",
    "GpuNodePool": "sdfleet.components.gpu_node_pool",
    "GpuNodePoolArgs": "sdfleet.components.gpu_node_pool",
    "ModelStore": "sdfleet.components.model_store",
    "ModelStoreArgs": "sdfleet.components.model_store",
    "Observability": "sdfleet.components.observability",
    "ObservabilityArgs": "sdfleet.components.observability",
    "SdPipeline": "sdfleet.components.pipeline",
    "SdPipelineArgs": "sdfleet.components.pipeline",
    "SdRuntime": "sdfleet.components.sd_runtime",
    "SdRuntimeArgs": "sdfleet.components.sd_runtime",
    "TaskEvents": "sdfleet.components.task_events_component",
    "TaskEventsArgs": "sdfleet.components.task_events_component",
    "TraceCollector": "sdfleet.components.trace_collector",
    "TraceCollectorArgs": "sdfleet.components.trace_collector",
}

__all__ = [
    "ApiIngress",
    "ApiIngressArgs",
    "EventFanout",
    "EventFanoutArgs",
    "GpuNodePool",
    "GpuNodePoolArgs",
    "ModelStore",
    "ModelStoreArgs",
    "Observability",
    "ObservabilityArgs",
    "SdPipeline",
    "SdPipelineArgs",
    "SdRuntime",
    "SdRuntimeArgs",
    "TaskEvents",
    "TaskEventsArgs",
    "TraceCollector",
    "TraceCollectorArgs",
]


if not TYPE_CHECKING:  # type checkers see the imports above, and no catch-all attribute

    def __getattr__(name: str) -> Any:
        module = _EXPORTS.get(name)
        if module is None:
            raise AttributeError(f"module 'sdfleet' has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        globals()[name] = value  # later lookups skip this function
        return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
