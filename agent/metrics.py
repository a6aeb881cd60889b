"""The agent's CloudWatch metrics, as Embedded Metric Format (EMF) documents.

``CATALOG`` is the one list of what the agent publishes: each metric's unit and the dimension
sets it is published under. The dashboard and alarms (components/builders) read it, and a test
checks every widget against what ``Metrics.emit`` really writes.

Each document is one JSON line. Where it goes is the sink's business: a ``TextIO`` (stdout by
default; the sandbox and tests) or a ``sink`` callable (the CloudWatch Logs shipper), whose log
group CloudWatch extracts the metrics from.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TextIO

NAMESPACE = "sdfleet/agent"
RUNTIME = "Runtime"


@dataclass(frozen=True)
class MetricSpec:
    unit: str
    # Every set includes Runtime; extra dimensions (ErrorCode, CapacityType) come from the
    # ``dimensions`` argument of ``emit`` and a set is published only when all its values are known.
    dimension_sets: tuple[tuple[str, ...], ...] = ((RUNTIME,),)


MS = "Milliseconds"
CATALOG: dict[str, MetricSpec] = {
    "TasksCompleted": MetricSpec("Count"),
    "TasksFailed": MetricSpec("Count", ((RUNTIME,), (RUNTIME, "ErrorCode"))),
    "QueueWaitMs": MetricSpec(MS),
    "InputFetchMs": MetricSpec(MS),
    "InferenceMs": MetricSpec(MS),
    "UploadMs": MetricSpec(MS),
    "EndToEndMs": MetricSpec(MS),
    "GpuIdleGapMs": MetricSpec(MS),
    # One per agent per heartbeat interval: SampleCount over a period / (period / interval) is
    # the number of live agents (pods); by CapacityType it splits spot from on-demand.
    "AgentUp": MetricSpec("Count", ((RUNTIME,), (RUNTIME, "CapacityType"))),
}
UNITS = {name: spec.unit for name, spec in CATALOG.items()}


def emf_document(
    runtime: str,
    values: Mapping[str, float],
    dimensions: Mapping[str, str] | None = None,
    properties: Mapping[str, object] | None = None,
    timestamp_ms: int | None = None,
) -> dict[str, object]:
    """One EMF document. Metrics sharing dimension sets share a directive, so a metric is never
    published under a dimension set the catalogue does not name."""
    known = {RUNTIME: runtime, **(dimensions or {})}
    groups: dict[tuple[tuple[str, ...], ...], list[str]] = {}
    for name in values:
        spec = CATALOG.get(name)
        if spec is None:
            raise ValueError(f"metric {name!r} is not in the agent's metric catalogue")
        sets = tuple(s for s in spec.dimension_sets if all(known.get(d) for d in s))
        groups.setdefault(sets, []).append(name)
    directives = [
        {
            "Namespace": NAMESPACE,
            "Dimensions": [list(s) for s in sets],
            "Metrics": [{"Name": n, "Unit": CATALOG[n].unit} for n in names],
        }
        for sets, names in groups.items()
    ]
    return {
        "_aws": {
            "Timestamp": timestamp_ms if timestamp_ms is not None else int(time.time() * 1000),
            "CloudWatchMetrics": directives,
        },
        **(properties or {}),
        **{k: v for k, v in known.items() if v},
        **dict(values),
    }


class Metrics:
    def __init__(
        self,
        runtime: str,
        stream: TextIO | None = None,
        enabled: bool = True,
        sink: Callable[[str], None] | None = None,
    ) -> None:
        self.runtime = runtime
        self.stream = stream
        self.sink = sink
        self.enabled = enabled
        self._lock = threading.Lock()

    def emit(
        self,
        values: Mapping[str, float],
        *,
        dimensions: Mapping[str, str] | None = None,
        **properties: object,
    ) -> None:
        """Publish ``values`` (names from ``CATALOG``); ``dimensions`` adds dimension values
        (e.g. ``{"ErrorCode": "server_error"}``); ``properties`` are searchable log fields."""
        if not self.enabled or not values:
            return
        document = emf_document(self.runtime, values, dimensions, properties)
        line = json.dumps(document, default=str, separators=(",", ":"))
        if self.sink is not None:
            self.sink(line)
            return
        with self._lock:
            stream = self.stream or sys.stdout
            stream.write(line + "\n")
            stream.flush()
