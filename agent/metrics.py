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
import math
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
    # Sent with AgentUp while the agent is ready (server up, not draining): ready pods.
    "AgentReady": MetricSpec("Count", ((RUNTIME,), (RUNTIME, "CapacityType"))),
}
UNITS = {name: spec.unit for name, spec in CATALOG.items()}
# Every agent emits AgentUp once per this interval (sdfleet.agent.node_info.AgentUpBeat).
AGENT_UP_SECONDS = 60


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


# -- what CloudWatch extracts (the EMF specification, checked) --------------------------------
MetricKey = tuple[str, str, frozenset[tuple[str, str]]]
MAX_DIMENSIONS_PER_SET = 30
MAX_METRICS_PER_DIRECTIVE = 100
MAX_VALUES_PER_METRIC = 100
STANDARD_UNITS = frozenset(
    ["Seconds", "Microseconds", "Milliseconds", "Percent", "Count", "Count/Second", "None"]
    + [
        f"{size}{per}"
        for size in ("Bytes", "Kilobytes", "Megabytes", "Gigabytes", "Terabytes",
                     "Bits", "Kilobits", "Megabits", "Gigabits", "Terabits")
        for per in ("", "/Second")
    ]
)  # fmt: skip


class EmfError(ValueError):
    """A document CloudWatch would not extract metrics from (as the EMF spec words it)."""


def _string(value: object, what: str, limit: int) -> str:
    if not isinstance(value, str) or not value.strip() or len(value) > limit:
        raise EmfError(f"{what} must be a non-blank string of at most {limit} characters")
    return value


def _number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _check_value(document: Mapping[str, object], name: str) -> None:
    value = document.get(name)
    if isinstance(value, list):
        if not value or len(value) > MAX_VALUES_PER_METRIC or not all(map(_number, value)):
            raise EmfError(f"metric {name!r}: a list of 1-{MAX_VALUES_PER_METRIC} numbers needed")
    elif not _number(value):
        raise EmfError(f"metric {name!r}: no numeric top-level member (got {value!r})")


def extract_metrics(document: Mapping[str, object] | str) -> set[MetricKey]:
    """What CloudWatch extracts from one EMF document (a dict or its JSON line): one
    ``(namespace, metric name, frozenset of (dimension, value))`` per metric and dimension set.
    Raises ``EmfError`` naming the first violation of the EMF specification."""
    if isinstance(document, str):
        try:
            document = json.loads(document)
        except ValueError as exc:
            raise EmfError(f"not JSON: {exc}") from None
    if not isinstance(document, Mapping):
        raise EmfError("the document must be a JSON object")
    meta = document.get("_aws")
    if not isinstance(meta, Mapping):
        raise EmfError("no _aws metadata object")
    stamp = meta.get("Timestamp")
    if not isinstance(stamp, int) or isinstance(stamp, bool) or stamp < 0:
        raise EmfError(f"_aws.Timestamp must be epoch milliseconds (an integer), got {stamp!r}")
    directives = meta.get("CloudWatchMetrics")
    if not isinstance(directives, list):
        raise EmfError("_aws.CloudWatchMetrics must be an array of metric directives")
    found: set[MetricKey] = set()
    for directive in directives:
        if not isinstance(directive, Mapping):
            raise EmfError("a metric directive must be an object")
        namespace = _string(directive.get("Namespace"), "Namespace", 1024)
        sets = directive.get("Dimensions")
        if not isinstance(sets, list) or not all(isinstance(s, list) for s in sets):
            raise EmfError(f"{namespace}: Dimensions must be an array of dimension sets (arrays)")
        resolved = []
        for keys in sets or [[]]:  # no dimension set: published without dimensions
            if len(keys) > MAX_DIMENSIONS_PER_SET:
                raise EmfError(f"a dimension set has {len(keys)} keys (at most 30)")
            items = frozenset(
                (_string(k, "a dimension key", 250),
                 _string(document.get(k), f"dimension {k!r}'s top-level value", 1024))
                for k in keys
            )  # fmt: skip
            resolved.append(items)
        metrics = directive.get("Metrics")
        if not isinstance(metrics, list) or len(metrics) > MAX_METRICS_PER_DIRECTIVE:
            raise EmfError(f"{namespace}: Metrics must be an array of at most 100 definitions")
        for definition in metrics:
            if not isinstance(definition, Mapping):
                raise EmfError("a metric definition must be an object")
            name = _string(definition.get("Name"), "a metric Name", 1024)
            unit = definition.get("Unit", "None")
            if unit not in STANDARD_UNITS:
                raise EmfError(f"metric {name!r}: {unit!r} is not a CloudWatch unit")
            if definition.get("StorageResolution", 60) not in (1, 60):
                raise EmfError(f"metric {name!r}: StorageResolution must be 1 or 60")
            _check_value(document, name)
            found.update((namespace, name, items) for items in resolved)
    return found
