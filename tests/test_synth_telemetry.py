"""`sdfleet synth` shows the stack's telemetry and refuses a dashboard nothing feeds."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from sdfleet.cli import main
from sdfleet.mocking import Recorder
from sdfleet.synth_telemetry import telemetry_report

COLLECTOR_URL = "http://otel-collector.sdfleet-telemetry.svc.cluster.local:4318/v1/traces"


def _report(graph: Recorder, container_insights: bool = True) -> tuple[str, list[str]]:
    lines, problems = telemetry_report(list(graph.resources), container_insights)
    return "\n".join(lines), problems


def test_dev_stack_shows_every_telemetry_piece(dev_graph: Recorder) -> None:
    text, problems = _report(dev_graph)
    assert problems == []
    assert "traces exporters: awsxray" in text
    assert "indexed: sdfleet.task_id, sdfleet.runtime" in text
    # The collector and the traced Lambdas may put segments; SNS may, by resource policy.
    assert "sdfleet-traces-put-traces: xray:PutTelemetryRecords, xray:PutTraceSegments on *" in text
    assert "Lambda sdfleet-task-events-webhook: tracing Active" in text
    assert "for {'Service': 'sns.amazonaws.com'}" in text
    assert "SNS topic sdfleet-events-input: tracing Active" in text
    assert "sdfleet-api-api-mock/v1 (AWS::ApiGateway::Stage): 100% of requests after 1 a" in text
    for runtime in ("sd15", "flux"):
        assert f"OTEL_SERVICE_NAME=sdfleet-agent-{runtime}" in text
        assert f"METRICS_LOG_GROUP=/sdfleet/sdfleet-dev/{runtime}/agent-metrics" in text
        assert f"{runtime}-gpu-idle-with-backlog" in text
        assert f"log-group:/sdfleet/sdfleet-dev/{runtime}/agent-metrics:*" in text
    assert text.count(f"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT={COLLECTOR_URL}") == 2
    assert "saved query sdfleet/dev/why-did-task-fail" in text


def test_a_widget_on_a_metric_nothing_emits_fails(dev_graph: Recorder) -> None:
    graph = dev_graph.clone()
    dash = next(r for r in graph.resources if r.type == "aws:cloudwatch/dashboard:Dashboard")
    body = json.loads(dash.inputs["dashboardBody"])
    row = ["sdfleet/agent", "TasksExploded", "Runtime", "sd15"]
    body["widgets"].append({"type": "metric", "properties": {"title": "bad", "metrics": [row]}})
    graph.resources[graph.resources.index(dash)] = replace(
        dash, inputs={**dash.inputs, "dashboardBody": json.dumps(body)}
    )
    _, problems = _report(graph)
    assert len(problems) == 1 and "TasksExploded" in problems[0]


def test_gpu_widgets_without_container_insights_fail(dev_graph: Recorder) -> None:
    # The dev stack has Container Insights on; its GPU panels read metrics only the add-on emits.
    _, problems = _report(dev_graph, container_insights=False)
    assert problems and all("gpu" in p.lower() for p in problems)


def test_agents_exporting_spans_need_a_collector(dev_graph: Recorder) -> None:
    graph = dev_graph.clone()
    graph.resources = [r for r in graph.resources if r.type != "kubernetes:core/v1:ConfigMap"]
    _, problems = _report(graph)
    assert "agents export spans but the stack has no trace collector" in problems


def test_synth_prints_the_telemetry_section(tmp_path: Path, repo_root: Path, capsys) -> None:
    out = tmp_path / "synth"
    argv = ["synth", "--stack", "dev", "--out", str(out), "--project-dir", str(repo_root)]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "Telemetry:" in printed and "Metric path (EMF):" in printed
    assert json.loads((out / "summary.json").read_text())["telemetry_problems"] == []


def test_tracing_and_container_insights_off(
    synth: Callable[..., Recorder], dev_config: dict[str, Any]
) -> None:
    dev_config["sdfleet:observability"] = {"tracing": False, "containerInsights": False}
    graph = synth(dev_config)
    text, problems = _report(graph, container_insights=False)
    assert problems == []
    assert "(none)" in text.split("Trace collector:")[1].split("\n")[1]
    assert "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT" not in text
    assert "METRICS_LOG_GROUP=/sdfleet/sdfleet-test/sd15/agent-metrics" in text
    assert "SNS topic" not in text  # no active tracing on the topics
    assert "gpu-idle-with-backlog" not in text
    types = {r.type for r in graph.resources}
    assert "aws:xray/resourcePolicy:ResourcePolicy" not in types
    assert "aws:xray/samplingRule:SamplingRule" in types  # the API always traces
    groups = [str(r.inputs.get("name")) for r in graph.of_type("aws:cloudwatch/logGroup:LogGroup")]
    assert not any(g.startswith("/aws/containerinsights/") for g in groups)


def test_sns_active_tracing_can_be_left_to_other_stacks(
    synth: Callable[..., Recorder], dev_config: dict[str, Any]
) -> None:
    # An account has at most five X-Ray resource policies per Region.
    dev_config["sdfleet:observability"] = {"snsActiveTracing": False}
    graph = synth(dev_config)
    types = {r.type for r in graph.resources}
    assert "aws:xray/resourcePolicy:ResourcePolicy" not in types
    assert all(not t.inputs.get("tracingConfig") for t in graph.of_type("aws:sns/topic:Topic"))
    text, problems = _report(graph)
    assert problems == [] and "traces exporters: awsxray" in text  # agents still trace
