"""The sdfleet Pulumi component package's provider host (``PulumiPlugin.yaml``'s ``main``).

Other Pulumi projects add the package with ``pulumi package add <this repository>`` and use
the components from any language; Pulumi runs this module, which serves the eight components
and the schema its analyzer reads from their type annotations and docstrings. Importing the
module does not start the host: :func:`main` does.
"""

import sys
from pathlib import Path

import pulumi

# Run as a script (``python sdfleet/provider.py``) this folder, not the repository root, is
# first on sys.path: put the root there so ``import sdfleet`` finds this checkout.
if __name__ == "__main__":  # pragma: no cover - exercised only by the Pulumi CLI
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sdfleet.components.api_ingress import ApiIngress
from sdfleet.components.event_fanout import EventFanout
from sdfleet.components.gpu_node_pool import GpuNodePool
from sdfleet.components.model_store import ModelStore
from sdfleet.components.observability import Observability
from sdfleet.components.pipeline import SdPipeline
from sdfleet.components.sd_runtime import SdRuntime
from sdfleet.components.task_events_component import TaskEvents
from sdfleet.components.trace_collector import TraceCollector

PACKAGE_NAME = "sdfleet"
# The six design-card components, the pipeline that composes them, and the parts it adds
# (task events, the trace collector) for stacks that compose the pieces themselves.
COMPONENTS: list[type[pulumi.ComponentResource]] = [
    ApiIngress,
    EventFanout,
    GpuNodePool,
    SdRuntime,
    ModelStore,
    Observability,
    SdPipeline,
    TaskEvents,
    TraceCollector,
]


def main() -> None:
    """Serve the components to the Pulumi engine (the engine passes its address in argv)."""
    from pulumi.provider.experimental import component_provider_host

    component_provider_host(components=COMPONENTS, name=PACKAGE_NAME)


if __name__ == "__main__":  # pragma: no cover - exercised only by the Pulumi CLI
    main()
