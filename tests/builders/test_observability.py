"""Dashboard, alarms and saved queries against what the stack really emits: every widget and
alarm metric is in the catalogue with that dimension set, every query field exists in the log
schema or the agent's EMF documents, every alarm's runbook anchor exists."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from sdfleet.agent import metrics as agent_metrics
from sdfleet.components.builders import alarms as al
from sdfleet.components.builders import dashboard as db
from sdfleet.components.builders import log_queries as lq
from sdfleet.components.builders import metric_catalog as mc

DOCS = Path(__file__).resolve().parents[2] / "docs"
# The sample stack docs/observability.md's row tables are rendered from.
SAMPLE = db.DashboardInputs(
    title="sdfleet-dev",
    region="us-east-1",
    runtimes={
        rt: db.RuntimeNames(
            queue=f"sdfleet-dev-{rt}",
            dlq=f"sdfleet-dev-{rt}-dlq",
            namespace=f"sdfleet-{rt}",
            deployment=rt,
            metrics_log_group=f"/sdfleet/sdfleet-dev/{rt}/agent-metrics",
        )
        for rt in ("sd15", "flux")
    },
    unrouted_queue="sdfleet-dev-unrouted",
    function_name="sdfleet-dev-task-fn",
    api_name="sdfleet-dev-api",
    stage_name="v1",
    cluster_name="sdfleet-dev",
    container_insights=True,
    webhook_dlq="sdfleet-dev-webhook-dlq",
    webhook_function="sdfleet-dev-webhook",
)


def _body(**changes: Any) -> str:
    return db.dashboard_body(
        SAMPLE if not changes else db.DashboardInputs(**{**vars(SAMPLE), **changes})
    )


def _widgets(body: str) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = json.loads(body)["widgets"]
    return out


# ---------------------------------------------------------------------------------------------
# Catalogue and dashboard validation


def test_the_catalogue_is_the_agents_plus_aws_plus_gpu() -> None:
    catalog = mc.stack_catalog()
    for name, spec in agent_metrics.CATALOG.items():
        assert catalog[(mc.AGENT_NAMESPACE, name)] == {frozenset(s) for s in spec.dimension_sets}
    assert mc.known(catalog, "AWS/ApiGateway", "5XXError", ["Stage", "ApiName"])
    assert not mc.known(catalog, "AWS/ApiGateway", "5XXError", ["ApiName"])
    assert mc.known(
        catalog, "ContainerInsights", "pod_gpu_utilization", ["ClusterName", "Namespace", "PodName"]
    )
    assert mc.known(
        catalog,
        "ContainerInsights",
        "node_gpu_temperature",
        ["ClusterName", "InstanceId", "NodeName"],
    )
    assert not mc.known(
        catalog, "ContainerInsights", "node_gpu_temperature", ["ClusterName", "NodeName"]
    )
    assert ("ContainerInsights", "pod_gpu_utilization") not in mc.stack_catalog(
        container_insights=False
    )


@pytest.mark.parametrize("insights", [True, False])
def test_the_real_dashboard_reads_only_what_the_stack_emits(insights: bool) -> None:
    body = _body(container_insights=insights)
    assert mc.validate_dashboard(body, mc.stack_catalog(container_insights=insights)) == []


def test_validation_catches_planted_widgets() -> None:
    widgets = _widgets(_body())
    planted = {
        "type": "metric",
        "properties": {
            "title": "planted",
            "metrics": [
                # Unknown metric.
                [mc.AGENT_NAMESPACE, "TasksExploded", "Runtime", "sd15"],
                # Known metric, a dimension set it is never published under.
                [mc.AGENT_NAMESPACE, "TasksFailed", "ErrorCode", "timeout"],
                # Hidden behind metric math, wrong dimensions.
                [
                    "AWS/SQS",
                    "ApproximateAgeOfOldestMessage",
                    "QueueUrl",
                    "x",
                    {"id": "m1", "visible": False},
                ],
                [{"expression": "m1 * 2 + m9", "id": "e1"}],
                # SEARCH with a dimension schema the metric lacks, and one naming no metric.
                [
                    {
                        "expression": "SEARCH('{sdfleet/agent,ErrorCode} MetricName=\"TasksFailed\"', 'Sum', 60)",
                        "id": "s1",
                    }
                ],
                [{"expression": "SEARCH('{AWS/SQS,QueueName}', 'Sum', 60)", "id": "s2"}],
            ],
        },
    }
    problems = mc.validate_dashboard(
        json.dumps({"widgets": [*widgets, planted]}), mc.stack_catalog()
    )
    assert len(problems) == 6, problems
    joined = "\n".join(problems)
    for needle in (
        "TasksExploded",
        "TasksFailed ['ErrorCode']",
        "QueueUrl",
        "'m9'",
        "SEARCH sdfleet/agent TasksFailed",
        "names no MetricName",
    ):
        assert needle in joined
    # The same GPU widgets are invalid for a stack without Container Insights.
    assert mc.validate_dashboard(_body(), mc.stack_catalog(container_insights=False))


def test_dashboard_has_every_panel_the_issue_asks_for() -> None:
    titles = [w["properties"].get("title", "") for w in _widgets(_body())]
    for needle in (
        "Backlog",
        "Age of the oldest",
        "Agent pods per runtime",
        "GPU nodes per runtime",
        "GPU utilisation (%) per runtime",
        "GPU memory used (%) per node",
        "GPU temperature (°C) per runtime",
        "EndToEndMs p50 / p95 / p99",
        "Failed tasks by error code",
        "Dead-letter queues",
        "Task API",
        "Task Lambda",
        "Webhook failures",
        "GPU pod-hours",
        "GPU node-hours",
    ):
        assert any(needle in t for t in titles), needle
    for metric in db.LATENCY_METRICS:
        assert any(t.startswith(metric) for t in titles)


def test_without_container_insights_gpu_widgets_say_how_to_turn_it_on() -> None:
    widgets = _widgets(_body(container_insights=False))
    assert not any("pod_gpu" in json.dumps(w) or "node_gpu" in json.dumps(w) for w in widgets)
    texts = [w["properties"]["markdown"] for w in widgets if w["type"] == "text"]
    assert any("observability.containerInsights true" in t for t in texts)


def test_pods_and_cost_come_from_agent_heartbeats() -> None:
    widgets = {w["properties"].get("title"): w for w in _widgets(_body())}
    pods = widgets["Agent pods per runtime (spot / on-demand)"]["properties"]
    expressions = [r[0]["expression"] for r in pods["metrics"] if isinstance(r[0], dict)]
    assert "p0_0 / (PERIOD(p0_0) / 60)" in expressions
    assert pods["stat"] == "SampleCount"
    cost = widgets["GPU pod-hours per day by capacity type"]["properties"]
    assert cost["period"] == 86400
    assert [r[0]["label"] for r in cost["metrics"] if isinstance(r[0], dict)] == [
        f"{c} pod-hours" for c in lq.CAPACITY_TYPES
    ]
    nodes = widgets["GPU node-hours by capacity type (chosen range)"]["properties"]["query"]
    assert nodes.startswith("SOURCE '/sdfleet/sdfleet-dev/sd15/agent-metrics' | SOURCE")


def test_webhook_panel_only_with_its_names() -> None:
    titles = [
        w["properties"].get("title", "")
        for w in _widgets(_body(webhook_dlq=None, webhook_function=None))
    ]
    assert not any("Webhook" in t for t in titles)


def test_widgets_tile_the_grid() -> None:
    for w in _widgets(_body()):
        assert w["x"] + w["width"] <= 24 and w["width"] >= 6


def test_docs_show_the_sample_dashboard_rows() -> None:
    doc = (DOCS / "observability.md").read_text()
    assert db.dashboard_markdown(_body()) in doc


# ---------------------------------------------------------------------------------------------
# Alarms


def _all_alarms(insights: bool = True) -> list[al.AlarmSpec]:
    thresholds = al.AlarmThresholds()
    return [
        *al.platform_alarms(thresholds, spot_rule=True),
        *al.runtime_alarms("sd15", thresholds, container_insights=insights),
    ]


def test_alarm_names() -> None:
    assert [a.name for a in _all_alarms()] == [
        "unrouted-tasks",
        "task-api-5xx",
        "task-api-errors",
        "spot-interruptions",
        "sd15-backlog-no-ready-pods",
        "sd15-gpu-idle-with-backlog",
        "sd15-oldest-message-age",
        "sd15-dlq-not-empty",
    ]
    assert "sd15-gpu-idle-with-backlog" not in [a.name for a in _all_alarms(insights=False)]
    assert "spot-interruptions" not in [
        a.name for a in al.platform_alarms(al.AlarmThresholds(), spot_rule=False)
    ]


def test_every_alarm_metric_is_in_the_catalogue() -> None:
    catalog = mc.stack_catalog()
    for spec in _all_alarms():
        for ref in spec.metrics:
            assert mc.known(catalog, ref.namespace, ref.metric, ref.dimensions), (spec.name, ref)
        if spec.expression is None:
            assert len(spec.metrics) == 1
        else:
            ids = {ref.id for ref in spec.metrics}
            assert set(re.findall(r"\b[a-z]\w*\b", spec.expression)) == ids, spec.name


def test_metric_math_alarms_name_the_cause() -> None:
    by_name = {a.name: a for a in _all_alarms()}
    no_pods = by_name["sd15-backlog-no-ready-pods"]
    assert no_pods.expression == "IF(visible > 0 AND FILL(ready, 0) == 0, 1, 0)"
    assert [(m.metric, m.stat) for m in no_pods.metrics] == [
        ("ApproximateNumberOfMessagesVisible", "Maximum"),
        ("AgentReady", "SampleCount"),
    ]
    assert no_pods.evaluation_periods * no_pods.period == 600
    assert "capacity or image problem" in no_pods.description
    idle = by_name["sd15-gpu-idle-with-backlog"]
    assert idle.expression == "IF(visible > 0 AND gpu < 5, 1, 0)"
    assert idle.metrics[1].dimensions == {
        "ClusterName": "cluster",
        "Namespace": "namespace",
        "PodName": "deployment",
    }
    assert (
        idle.evaluation_periods == 15 and "agent or inference server is stuck" in idle.description
    )


def test_thresholds_come_from_config() -> None:
    thresholds = al.AlarmThresholds(
        oldest_message_seconds=120, gpu_idle_minutes=30, spot_interruptions_per_hour=9
    )
    specs = {
        a.name: a
        for a in [
            *al.runtime_alarms("x", thresholds, container_insights=True),
            *al.platform_alarms(thresholds, spot_rule=True),
        ]
    }
    assert specs["x-oldest-message-age"].threshold == 120
    assert specs["x-gpu-idle-with-backlog"].evaluation_periods == 30
    spot = specs["spot-interruptions"]
    assert (spot.threshold, spot.period, spot.metrics[0].stat) == (9, 3600, "Sum")


def _anchors(markdown: str) -> set[str]:
    """GitHub's heading anchors (as tests/test_docs.py computes them)."""
    headings = re.findall(r"^#{1,6}\s+(.*?)\s*$", markdown, re.M)
    return {re.sub(r"[^\w\- ]", "", h.replace("`", "").lower()).replace(" ", "-") for h in headings}


def test_descriptions_fit_and_link_an_existing_runbook_anchor() -> None:
    runbook = (DOCS / "troubleshooting.md").read_text()
    for spec in _all_alarms():
        description = spec.description
        assert len(description) <= al.MAX_DESCRIPTION
        assert "First check:" in description
        assert description.endswith(f"docs/troubleshooting.md#{spec.anchor}")
        assert spec.anchor in _anchors(runbook), spec.anchor
        assert spec.treat_missing_data in ("notBreaching", "breaching", "ignore", "missing")
    from sdfleet.components.builders.task_events import WEBHOOK_DLQ_ALARM_DESCRIPTION

    anchor = WEBHOOK_DLQ_ALARM_DESCRIPTION.rsplit("#", 1)[1]
    assert anchor in _anchors(runbook)


# ---------------------------------------------------------------------------------------------
# Logs Insights queries

COMMANDS = {"fields", "filter", "stats", "sort", "limit", "parse", "display"}
FUNCTIONS = {"coalesce", "ispresent", "concat", "bin", "count_distinct", "sum", "earliest"}
KEYWORDS = {"as", "by", "and", "or", "not", "asc", "desc"}


def _known_fields() -> set[str]:
    emf = set(agent_metrics.CATALOG) | set(lq.EMF_DIMENSIONS) | set(lq.EMF_PROPERTIES)
    return set(lq.LOG_FIELDS) | {f"log_processed.{f}" for f in lq.LOG_FIELDS} | emf


def _pipeline(query: str) -> list[tuple[str, str]]:
    commands = []
    for part in query.split("|"):
        command, _, rest = part.strip().partition(" ")
        commands.append((command, rest))
    return commands


def _referenced(query: str) -> tuple[set[str], set[str]]:
    """Fields a query reads (before any alias defines them) and the aliases it defines."""
    read: set[str] = set()
    aliases: set[str] = set()
    for command, rest in _pipeline(query):
        assert command in COMMANDS, command
        rest = re.sub(r'"[^"]*"', "", rest)
        aliases |= set(re.findall(r"\bas\s+([A-Za-z_][\w.]*)", rest))
        rest = re.sub(r"\bas\s+[A-Za-z_][\w.]*", "", rest)
        for name in re.findall(r"(?<![\w.@])@?[A-Za-z_][\w.]*", rest):
            if name in FUNCTIONS or name in KEYWORDS or name.startswith("@") or name in aliases:
                continue
            read.add(name)
    return read, aliases


ALL_QUERIES = [*(q.query for q in lq.SAVED_QUERIES), lq.NODES_BY_POOL, lq.NODE_HOURS]


@pytest.mark.parametrize("query", ALL_QUERIES)
def test_queries_are_pipelines_over_known_fields(query: str) -> None:
    commands = [c for c, _ in _pipeline(query)]
    # A query starts by selecting or filtering and sorts/limits only at the end.
    assert commands[0] in {"fields", "filter"}
    assert all(c in COMMANDS for c in commands)
    assert query.count("(") == query.count(")")
    read, _ = _referenced(query)
    assert read <= _known_fields(), read - _known_fields()


def test_log_fields_are_the_log_schemas() -> None:
    from sdfleet.agent import contract_log as cl

    schema = {cl.TS, cl.LEVEL, cl.LOGGER, cl.MSG, cl.SERVICE, *cl.OPTIONAL_TYPED}
    assert set(lq.LOG_FIELDS) <= schema


def test_the_field_check_is_not_vacuous() -> None:
    read, _ = _referenced("fields taskid, log_processed.trace_id | filter EndToEndMs > 1")
    assert read - _known_fields() == {"taskid"}


def test_saved_queries_name_and_sources() -> None:
    by_name = {q.name: q for q in lq.SAVED_QUERIES}
    assert set(by_name) == {
        "why-did-task-fail",
        "slowest-tasks-today",
        "failures-by-code",
        "task-trace-id",
    }
    assert lq.query_name("dev", by_name["task-trace-id"]) == "sdfleet/dev/task-trace-id"
    assert lq.TASK_ID_PLACEHOLDER in by_name["why-did-task-fail"].query
    assert "coalesce(log_processed.task_id, task_id)" in by_name["task-trace-id"].query
    assert by_name["slowest-tasks-today"].query.endswith("limit 50")
    assert lq.application_log_group("c1") == "/aws/containerinsights/c1/application"
    doc = (DOCS / "observability.md").read_text()
    for name in by_name:
        assert f"`{name}`" in doc
