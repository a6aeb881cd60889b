"""What ``sdfleet synth`` shows of a stack's telemetry, and what it refuses.

From the recorded resource graph: the trace collector's configuration, the roles and topics
that may write to X-Ray, the OTLP endpoint and metrics log group in each agent's env, the
metric path (log groups and the pods' grant), the dashboard (validated against what the
stack emits), the alarms and the saved queries. A dashboard widget reading a metric nothing
publishes, or an agent exporting spans with no collector, fails the synth.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import yaml

from sdfleet.components.builders import metric_catalog
from sdfleet.mocking import Recorded

AGENT_ENV = ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_SERVICE_NAME", "METRICS_LOG_GROUP")


def _of(resources: list[Recorded], type_: str) -> Iterator[Recorded]:
    return (r for r in resources if r.type == type_)


def _statements(document: Any) -> list[dict[str, Any]]:
    if isinstance(document, str):
        try:
            document = json.loads(document)
        except ValueError:
            return []
    if not isinstance(document, dict):
        return []
    found = document.get("Statement", [])
    return [found] if isinstance(found, dict) else [s for s in found if isinstance(s, dict)]


def _actions(st: dict[str, Any]) -> list[str]:
    actions = st.get("Action", [])
    return [actions] if isinstance(actions, str) else list(actions)


def collector_lines(resources: list[Recorded]) -> list[str]:
    lines = []
    for cm in _of(resources, "kubernetes:core/v1:ConfigMap"):
        for key, text in (cm.inputs.get("data") or {}).items():
            if not isinstance(text, str) or "exporters:" not in text:
                continue
            config = yaml.safe_load(text)
            traces = config.get("service", {}).get("pipelines", {}).get("traces", {})
            lines.append(f"collector config {cm.name}/{key}:")
            for part in ("receivers", "processors", "exporters"):
                lines.append(f"  traces {part}: {', '.join(traces.get(part, []))}")
            xray = config.get("exporters", {}).get("awsxray", {})
            if xray:
                indexed = ", ".join(xray.get("indexed_attributes", []))
                lines.append(f"  awsxray region {xray.get('region')}; indexed: {indexed}")
    return lines


def xray_lines(resources: list[Recorded]) -> list[str]:
    lines = []
    for type_ in ("aws:iam/rolePolicy:RolePolicy", "aws:iam/policy:Policy"):
        for rec in _of(resources, type_):
            for st in _statements(rec.inputs.get("policy")):
                xray = sorted(a for a in _actions(st) if a.startswith("xray:"))
                if xray and st.get("Effect") == "Allow":
                    lines.append(f"{rec.name}: {', '.join(xray)} on {st.get('Resource')}")
    for rec in _of(resources, "aws:xray/resourcePolicy:ResourcePolicy"):
        for st in _statements(rec.inputs.get("policyDocument")):
            who = st.get("Principal")
            lines.append(f"X-Ray resource policy {rec.name}: {', '.join(_actions(st))} for {who}")
    for rec in _of(resources, "aws:xray/samplingRule:SamplingRule"):
        i = rec.inputs
        lines.append(
            f"X-Ray sampling rule {i.get('ruleName')}: {i.get('serviceName')} "
            f"({i.get('serviceType')}): {float(i.get('fixedRate', 0)):.0%} of requests after "
            f"{int(i.get('reservoirSize', 0))} a second"
        )
    for rec in _of(resources, "aws:sns/topic:Topic"):
        if rec.inputs.get("tracingConfig"):
            lines.append(f"SNS topic {rec.name}: tracing {rec.inputs['tracingConfig']}")
    for rec in _of(resources, "aws:lambda/function:Function"):
        mode = (rec.inputs.get("tracingConfig") or {}).get("mode")
        if mode:
            lines.append(f"Lambda {rec.name}: tracing {mode}")
    return lines


def _env(container: dict[str, Any]) -> dict[str, str]:
    values = {}
    for entry in container.get("env") or []:
        if "value" in entry:
            values[entry["name"]] = str(entry["value"])
        elif entry.get("valueFrom"):
            values[entry["name"]] = "(from " + ",".join(entry["valueFrom"]) + ")"
    return values


def agent_env_lines(resources: list[Recorded]) -> tuple[list[str], list[str]]:
    lines: list[str] = []
    endpoints: list[str] = []
    for dep in _of(resources, "kubernetes:apps/v1:Deployment"):
        pod = dep.inputs.get("spec", {}).get("template", {}).get("spec", {})
        for container in pod.get("containers", []):
            env = _env(container)
            if "METRICS_LOG_GROUP" not in env:
                continue
            lines.append(f"{dep.name}/{container.get('name')}:")
            lines += [f"  {k}={env[k]}" for k in AGENT_ENV if k in env]
            if "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT" in env:
                endpoints.append(env["OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"])
    return lines, endpoints


def metric_path_lines(resources: list[Recorded]) -> list[str]:
    lines = []
    for rec in _of(resources, "aws:cloudwatch/logGroup:LogGroup"):
        name = str(rec.inputs.get("name", ""))
        if name.endswith("/agent-metrics"):
            days = rec.inputs.get("retentionInDays")
            kept = f"{int(days)} days" if isinstance(days, (int, float)) else "no expiry"
            lines.append(f"EMF log group {name} (retention {kept})")
    for rec in _of(resources, "aws:iam/rolePolicy:RolePolicy"):
        for st in _statements(rec.inputs.get("policy")):
            if "logs:PutLogEvents" in _actions(st) and st.get("Sid") == "WriteAgentMetrics":
                lines.append(f"{rec.name}: {', '.join(_actions(st))} on {st.get('Resource')}")
    return lines


def dashboard_lines(
    resources: list[Recorded], container_insights: bool
) -> tuple[list[str], list[str]]:
    lines: list[str] = []
    problems: list[str] = []
    catalog = metric_catalog.stack_catalog(container_insights=container_insights)
    for rec in _of(resources, "aws:cloudwatch/dashboard:Dashboard"):
        body = rec.inputs.get("dashboardBody")
        if not isinstance(body, str):
            problems.append(f"dashboard {rec.name}: its body is not known at synth time")
            continue
        widgets = json.loads(body)["widgets"]
        titles = [w.get("properties", {}).get("title") or w["type"] for w in widgets]
        lines.append(f"dashboard {rec.name}: {len(widgets)} widgets")
        lines += [f"  {t}" for t in titles]
        problems += [
            f"dashboard {rec.name}: {p}" for p in metric_catalog.validate_dashboard(body, catalog)
        ]
    return lines, problems


def alarm_lines(resources: list[Recorded]) -> list[str]:
    lines = []
    for rec in _of(resources, "aws:cloudwatch/metricAlarm:MetricAlarm"):
        first = str(rec.inputs.get("alarmDescription", "")).split(". ")[0]
        lines.append(f"{rec.name}: {first}")
    for rec in _of(resources, "aws:cloudwatch/queryDefinition:QueryDefinition"):
        lines.append(f"saved query {rec.inputs.get('name')}")
    return lines


def telemetry_report(
    resources: list[Recorded], container_insights: bool
) -> tuple[list[str], list[str]]:
    """(lines to print, problems that fail the synth)."""
    collector = collector_lines(resources)
    env, endpoints = agent_env_lines(resources)
    dashboard, problems = dashboard_lines(resources, container_insights)
    if endpoints and not collector:
        problems.append("agents export spans but the stack has no trace collector")
    sections = [
        ("Trace collector", collector),
        ("X-Ray permissions and tracing", xray_lines(resources)),
        ("Agent telemetry env", env),
        ("Metric path (EMF)", metric_path_lines(resources)),
        ("Dashboard", dashboard),
        ("Alarms and saved queries", alarm_lines(resources)),
    ]
    lines: list[str] = []
    for title, body in sections:
        lines.append(f"{title}:")
        lines += [f"  {line}" for line in body] or ["  (none)"]
    return lines, problems
