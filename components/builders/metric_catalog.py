"""What a stack emits to CloudWatch: the agent's metric catalogue, the AWS service metrics the
alarms and dashboard rely on, and Container Insights' GPU metrics, each with the exact dimension
sets it is published under. ``validate_dashboard`` checks a dashboard body against it.

A CloudWatch metric is identified by namespace, name and the *set* of dimension names: a widget
asking for a dimension set the metric is never published under draws an empty graph, silently.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from typing import Any

from sdfleet.agent import metrics as agent_metrics

# (namespace, metric name) -> the dimension-name sets it is published under.
Catalog = Mapping[tuple[str, str], frozenset[frozenset[str]]]

AGENT_NAMESPACE = agent_metrics.NAMESPACE
CONTAINER_INSIGHTS = "ContainerInsights"


def _sets(*sets: Iterable[str]) -> frozenset[frozenset[str]]:
    return frozenset(frozenset(s) for s in sets)


# Published by SQS for every queue, by Lambda per function, by API Gateway (REST) per API and
# stage, by EventBridge per rule: the ones the alarms and the dashboard read.
AWS_METRICS: dict[tuple[str, str], frozenset[frozenset[str]]] = {
    **{
        ("AWS/SQS", m): _sets(["QueueName"])
        for m in (
            "ApproximateNumberOfMessagesVisible",
            "ApproximateNumberOfMessagesNotVisible",
            "ApproximateAgeOfOldestMessage",
        )
    },
    **{("AWS/Lambda", m): _sets(["FunctionName"]) for m in ("Errors", "Invocations", "Throttles")},
    **{
        ("AWS/ApiGateway", m): _sets(["ApiName", "Stage"])
        for m in ("4XXError", "5XXError", "Count", "Latency")
    },
    ("AWS/Events", "TriggeredRules"): _sets(["RuleName"]),
}

# Container Insights with enhanced observability on EKS (the amazon-cloudwatch-observability
# add-on's dcgm-exporter); dimension sets as the CloudWatch agent's own tests expect them.
GPU_SUFFIXES = (
    "utilization",
    "memory_utilization",
    "memory_total",
    "memory_used",
    "power_draw",
    "temperature",
)
POD_GPU_SETS = _sets(
    ["ClusterName"],
    ["ClusterName", "Namespace"],
    ["ClusterName", "Namespace", "Service"],
    ["ClusterName", "Namespace", "PodName"],
    ["ClusterName", "Namespace", "PodName", "FullPodName"],
    ["ClusterName", "Namespace", "PodName", "FullPodName", "GpuDevice"],
)
NODE_GPU_SETS = _sets(
    ["ClusterName"],
    ["ClusterName", "InstanceId", "NodeName"],
    ["ClusterName", "GpuDevice", "InstanceId", "InstanceType", "NodeName"],
)
GPU_METRICS: dict[tuple[str, str], frozenset[frozenset[str]]] = {
    **{(CONTAINER_INSIGHTS, f"pod_gpu_{s}"): POD_GPU_SETS for s in GPU_SUFFIXES},
    **{(CONTAINER_INSIGHTS, f"node_gpu_{s}"): NODE_GPU_SETS for s in GPU_SUFFIXES},
}


def agent_catalog() -> dict[tuple[str, str], frozenset[frozenset[str]]]:
    """The agent's own catalogue (sdfleet.agent.metrics.CATALOG), in this module's shape."""
    return {
        (AGENT_NAMESPACE, name): _sets(*spec.dimension_sets)
        for name, spec in agent_metrics.CATALOG.items()
    }


def stack_catalog(
    *, container_insights: bool = True
) -> dict[tuple[str, str], frozenset[frozenset[str]]]:
    """Everything a stack emits; the GPU metrics only with Container Insights on."""
    catalog: dict[tuple[str, str], frozenset[frozenset[str]]] = {**agent_catalog(), **AWS_METRICS}
    if container_insights:
        catalog.update(GPU_METRICS)
    return catalog


def known(catalog: Catalog, namespace: str, metric: str, dimensions: Iterable[str]) -> bool:
    return frozenset(dimensions) in catalog.get((namespace, metric), frozenset())


# SEARCH('{Namespace,Dim1,Dim2} MetricName="X" ...', 'Stat', period)
_SEARCH = re.compile(r"SEARCH\(\s*'\{([^}]*)\}([^']*)'")
_METRIC_NAME = re.compile(r'MetricName\s*=\s*"?([A-Za-z0-9_.\-]+)"?')
_IDENT = re.compile(r"\b([a-z][A-Za-z0-9_]*)\b")


def _check_search(expression: str, catalog: Catalog, where: str) -> list[str]:
    problems = []
    for schema, terms in _SEARCH.findall(expression):
        parts = [p.strip().strip('"') for p in schema.split(",")]
        namespace, dims = parts[0], parts[1:]
        names = _METRIC_NAME.findall(terms)
        if not names:
            problems.append(f"{where}: SEARCH over {namespace} names no MetricName")
        for name in names:
            if not known(catalog, namespace, name, dims):
                problems.append(f"{where}: SEARCH {namespace} {name} {sorted(dims)}")
    return problems


def _metric_row(row: list[Any], previous: list[Any] | None) -> tuple[str, str, list[str]]:
    """Namespace, metric and dimension names of a metric row; "." repeats the previous row."""
    cells = [c for c in row if not isinstance(c, dict)]
    if previous is not None:
        cells = [previous[i] if c == "." and i < len(previous) else c for i, c in enumerate(cells)]
    return cells[0], cells[1], [str(d) for d in cells[2::2]]


def _check_metric_widget(widget: dict[str, Any], catalog: Catalog, where: str) -> list[str]:
    problems: list[str] = []
    ids: set[str] = set()
    expressions: list[str] = []
    previous: list[Any] | None = None
    for row in widget.get("properties", {}).get("metrics", []):
        options = next((c for c in row if isinstance(c, dict)), {})
        if "id" in options:
            ids.add(options["id"])
        if "expression" in options:
            expressions.append(options["expression"])
            continue
        namespace, metric, dims = _metric_row(row, previous)
        previous = [c for c in row if not isinstance(c, dict)]
        if not known(catalog, namespace, metric, dims):
            problems.append(f"{where}: {namespace} {metric} {sorted(dims)}")
    for expression in expressions:
        problems += _check_search(expression, catalog, where)
        # Metric math names other rows by id (ids start lower-case; functions are upper-case).
        bare = _SEARCH.sub("", expression)
        bare = re.sub(r"'[^']*'|\"[^\"]*\"", "", bare)
        for ref in _IDENT.findall(bare):
            if ref not in ids:
                problems.append(f"{where}: expression refers to unknown id {ref!r}")
    return problems


def validate_dashboard(body: str, catalog: Catalog) -> list[str]:
    """Every metric a widget reads (plain rows, rows hidden behind metric math, SEARCH
    expressions) that the catalogue does not publish with that dimension set; [] = valid."""
    problems: list[str] = []
    for index, widget in enumerate(json.loads(body)["widgets"]):
        if widget.get("type") != "metric":
            continue
        where = f"widget {index} {widget['properties'].get('title', '')!r}"
        problems += _check_metric_widget(widget, catalog, where)
    return problems
