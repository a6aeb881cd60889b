"""The per-stack CloudWatch dashboard body. Pure: takes resource names, returns JSON. Every
metric it reads is checked against metric_catalog (tests/builders/test_observability.py).

Rows, top to bottom: backlog; pods and nodes; GPU per runtime; GPU per node; task latency;
failures and dead letters; API, Lambda and webhooks; cost drivers. docs/observability.md
describes each panel (``dashboard_markdown`` renders the row tables there).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from sdfleet.agent.metrics import AGENT_UP_SECONDS
from sdfleet.components.builders import log_queries as lq
from sdfleet.components.builders.metric_catalog import AGENT_NAMESPACE, CONTAINER_INSIGHTS

HEIGHT = 6
PERIOD = 60
LATENCY_METRICS = ("EndToEndMs", "InferenceMs", "QueueWaitMs", "UploadMs")
PERCENTILES = ("p50", "p95", "p99")
GPU_PANELS = (
    ("utilization", "GPU utilisation (%)"),
    ("memory_utilization", "GPU memory used (%)"),
    ("temperature", "GPU temperature (°C)"),
)
CONTAINER_INSIGHTS_OFF = (
    "### GPU metrics are off\n"
    "GPU utilisation, memory and temperature come from Container Insights (the "
    "`amazon-cloudwatch-observability` add-on's dcgm-exporter). Turn it on with "
    "`pulumi config set --path sdfleet:observability.containerInsights true` and `pulumi up`."
)


@dataclass(frozen=True)
class RuntimeNames:
    """What the dashboard needs of one runtime."""

    queue: str
    dlq: str
    namespace: str
    deployment: str
    metrics_log_group: str


@dataclass(frozen=True)
class DashboardInputs:
    title: str
    region: str
    runtimes: dict[str, RuntimeNames]
    unrouted_queue: str
    function_name: str
    api_name: str
    stage_name: str
    cluster_name: str
    container_insights: bool
    webhook_dlq: str | None = None
    webhook_function: str | None = None


Row = list[dict[str, Any]]


def _metric(
    title: str, d: DashboardInputs, metrics: list[list[Any]], **props: Any
) -> dict[str, Any]:
    properties = {
        "title": title,
        "region": d.region,
        "metrics": metrics,
        "view": "timeSeries",
        "stat": "Maximum",
        "period": PERIOD,
        **props,
    }
    return {"type": "metric", "properties": properties}


def _log(
    title: str, d: DashboardInputs, groups: list[str], query: str, view: str
) -> dict[str, Any]:
    properties = {
        "title": title,
        "region": d.region,
        "query": lq.log_widget_query(groups, query),
        "view": view,
    }
    return {"type": "log", "properties": properties}


def _text(markdown: str) -> dict[str, Any]:
    return {"type": "text", "properties": {"markdown": markdown}}


def _sqs(metric: str, queue: str, label: str, **opts: Any) -> list[Any]:
    return ["AWS/SQS", metric, "QueueName", queue, {"label": label, **opts}]


def backlog_row(d: DashboardInputs) -> Row:
    waiting = [
        _sqs("ApproximateNumberOfMessagesVisible", r.queue, rt) for rt, r in d.runtimes.items()
    ]
    age = [_sqs("ApproximateAgeOfOldestMessage", r.queue, rt) for rt, r in d.runtimes.items()]
    return [
        _metric("Backlog: waiting tasks per runtime", d, waiting),
        _metric("Age of the oldest waiting task (s)", d, age),
    ]


def capacity_row(d: DashboardInputs) -> Row:
    """Pods from AgentUp (one sample per agent per minute; ready ones from AgentReady), nodes
    from AgentUp's NodeName."""
    rows: list[list[Any]] = []
    for i, rt in enumerate(d.runtimes):
        for j, capacity in enumerate(lq.CAPACITY_TYPES):
            pid = f"p{i}_{j}"
            dims = ["Runtime", rt, "CapacityType", capacity]
            rows.append([AGENT_NAMESPACE, "AgentUp", *dims, {"id": pid, "visible": False}])
            # Samples per period / samples per agent per period = agents.
            expression = f"{pid} / (PERIOD({pid}) / {AGENT_UP_SECONDS})"
            rows.append([{"expression": expression, "label": f"{rt} {capacity}", "id": f"e{pid}"}])
        rid = f"r{i}"
        rows.append([AGENT_NAMESPACE, "AgentReady", "Runtime", rt, {"id": rid, "visible": False}])
        expression = f"{rid} / (PERIOD({rid}) / {AGENT_UP_SECONDS})"
        rows.append([{"expression": expression, "label": f"{rt} ready", "id": f"e{rid}"}])
    groups = [r.metrics_log_group for r in d.runtimes.values()]
    return [
        _metric("Agent pods per runtime (spot / on-demand)", d, rows, stat="SampleCount"),
        _log("GPU nodes per runtime (spot / on-demand)", d, groups, lq.NODES_BY_POOL, "timeSeries"),
    ]


def gpu_rows(d: DashboardInputs) -> list[Row]:
    if not d.container_insights:
        return [[_text(CONTAINER_INSIGHTS_OFF)]]
    per_runtime: Row = []
    per_node: Row = []
    for suffix, title in GPU_PANELS:
        rows = [
            [
                CONTAINER_INSIGHTS,
                f"pod_gpu_{suffix}",
                "ClusterName",
                d.cluster_name,
                "Namespace",
                r.namespace,
                "PodName",
                r.deployment,
                {"label": rt},
            ]
            for rt, r in d.runtimes.items()
        ]
        per_runtime.append(_metric(f"{title} per runtime", d, rows, stat="Average"))
        search = (
            f"SEARCH('{{{CONTAINER_INSIGHTS},ClusterName,InstanceId,NodeName}} "
            f'MetricName="node_gpu_{suffix}" ClusterName="{d.cluster_name}"\', '
            f"'Average', {PERIOD})"
        )
        node_rows = [[{"expression": search, "label": "", "id": "n"}]]
        per_node.append(_metric(f"{title} per node", d, node_rows, stat="Average"))
    return [per_runtime, per_node]


def latency_row(d: DashboardInputs) -> Row:
    row: Row = []
    for metric in LATENCY_METRICS:
        rows = [
            [AGENT_NAMESPACE, metric, "Runtime", rt, {"stat": p, "label": f"{rt} {p}"}]
            for rt in d.runtimes
            for p in PERCENTILES
        ]
        row.append(_metric(f"{metric} p50 / p95 / p99", d, rows, period=300))
    return row


def failures_row(d: DashboardInputs) -> Row:
    search = (
        f"SEARCH('{{{AGENT_NAMESPACE},ErrorCode,Runtime}} MetricName=\"TasksFailed\"', 'Sum', 300)"
    )
    dead = [
        _sqs("ApproximateNumberOfMessagesVisible", r.dlq, f"{rt} DLQ")
        for rt, r in d.runtimes.items()
    ]
    dead.append(_sqs("ApproximateNumberOfMessagesVisible", d.unrouted_queue, "unrouted"))
    return [
        _metric("Failed tasks by error code", d, [[{"expression": search, "id": "f"}]], stat="Sum"),
        _metric("Dead-letter queues and unrouted tasks", d, dead),
    ]


def api_row(d: DashboardInputs) -> Row:
    api = ["ApiName", d.api_name, "Stage", d.stage_name]
    fn = ["FunctionName", d.function_name]
    row = [
        _metric(
            "Task API: requests, 4xx, 5xx",
            d,
            [
                ["AWS/ApiGateway", "Count", *api, {"label": "requests"}],
                ["AWS/ApiGateway", "4XXError", *api, {"label": "4xx"}],
                ["AWS/ApiGateway", "5XXError", *api, {"label": "5xx"}],
                ["AWS/ApiGateway", "Latency", *api, {"stat": "p95", "yAxis": "right"}],
            ],
            stat="Sum",
        ),
        _metric(
            "Task Lambda: errors and throttles",
            d,
            [["AWS/Lambda", m, *fn, {"label": m}] for m in ("Invocations", "Errors", "Throttles")],
            stat="Sum",
        ),
    ]
    webhook: list[list[Any]] = []
    if d.webhook_dlq:
        webhook.append(_sqs("ApproximateNumberOfMessagesVisible", d.webhook_dlq, "webhook DLQ"))
    if d.webhook_function:
        webhook.append(
            ["AWS/Lambda", "Errors", "FunctionName", d.webhook_function, {"stat": "Sum"}]
        )
    if webhook:
        row.append(_metric("Webhook failures: DLQ depth, delivery errors", d, webhook))
    return row


def cost_row(d: DashboardInputs) -> Row:
    """Pod-hours: AgentUp samples per day x seconds per sample / 3600."""
    rows: list[list[Any]] = []
    for j, capacity in enumerate(lq.CAPACITY_TYPES):
        ids = []
        for i, rt in enumerate(d.runtimes):
            hid = f"h{i}_{j}"
            ids.append(hid)
            dims = ["Runtime", rt, "CapacityType", capacity]
            rows.append([AGENT_NAMESPACE, "AgentUp", *dims, {"id": hid, "visible": False}])
        expression = f"SUM([{', '.join(ids)}]) * {AGENT_UP_SECONDS} / 3600"
        rows.append([{"expression": expression, "label": f"{capacity} pod-hours", "id": f"c{j}"}])
    groups = [r.metrics_log_group for r in d.runtimes.values()]
    return [
        _metric(
            "GPU pod-hours per day by capacity type",
            d,
            rows,
            stat="SampleCount",
            period=86400,
            # One point per day, spot and on-demand stacked: the day's total on top.
            stacked=True,
        ),
        _log("GPU node-hours by capacity type (chosen range)", d, groups, lq.NODE_HOURS, "bar"),
    ]


def rows(d: DashboardInputs) -> list[Row]:
    header = [_text(f"# {d.title}\nPanels and alarms: docs/observability.md")]
    return [
        header,
        backlog_row(d),
        capacity_row(d),
        *gpu_rows(d),
        latency_row(d),
        failures_row(d),
        api_row(d),
        cost_row(d),
    ]


def dashboard_body(d: DashboardInputs) -> str:
    """Lay the rows out on CloudWatch's 24-column grid, widgets of a row sharing it evenly."""
    widgets: list[dict[str, Any]] = []
    y = 0
    for row in rows(d):
        width = 24 // len(row)
        height = 2 if row[0]["type"] == "text" and len(row) == 1 else HEIGHT
        for i, widget in enumerate(row):
            widgets.append({**widget, "x": i * width, "y": y, "width": width, "height": height})
        y += height
    return json.dumps({"widgets": widgets})


def _reads(widget: dict[str, Any]) -> str:
    props = widget["properties"]
    if widget["type"] == "text":
        return "—"
    if widget["type"] == "log":
        return "Logs Insights over the agent-metrics log groups"
    names: list[str] = []
    for row in props["metrics"]:
        if isinstance(row[0], dict):
            expr = row[0]["expression"]
            if expr.startswith("SEARCH"):
                names.append("SEARCH " + expr.split("'")[1])
            continue
        cells = [c for c in row if not isinstance(c, dict)]
        name = f"{cells[0]} {cells[1]} [{', '.join(cells[2::2])}]"
        if name not in names:
            names.append(name)
    return "; ".join(f"`{n}`" for n in names)


def dashboard_markdown(body: str) -> str:
    """One table per row of widgets: title, kind, what it reads."""
    by_row: dict[int, list[dict[str, Any]]] = {}
    for widget in json.loads(body)["widgets"]:
        by_row.setdefault(widget["y"], []).append(widget)
    out: list[str] = []
    for n, (_, widgets) in enumerate(sorted(by_row.items()), start=1):
        out += [f"**Row {n}**", "", "| Widget | Kind | Reads |", "| --- | --- | --- |"]
        for w in sorted(widgets, key=lambda w: w["x"]):
            title = (
                w["properties"].get("title") or w["properties"].get("markdown", "").split("\n")[0]
            )
            out.append(f"| {title.lstrip('# ')} | {w['type']} | {_reads(w)} |")
        out.append("")
    return "\n".join(out)
