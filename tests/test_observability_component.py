"""Observability under Pulumi's mocks: metric-math alarms with the right queries, single-metric
alarms, the dashboard body (valid against the catalogue), the saved queries and the topic."""

from __future__ import annotations

import json
from typing import Any

import pulumi
import pytest

from sdfleet.components.builders import log_queries as lq
from sdfleet.components.builders import metric_catalog as mc
from sdfleet.components.observability import Observability, ObservabilityArgs, ObservedRuntime
from sdfleet.mocking import Recorded, Recorder, run_program

RUNTIMES = ("sd15", "flux")
ALARM = "aws:cloudwatch/metricAlarm:MetricAlarm"


def _args(**kw: Any) -> ObservabilityArgs:
    return ObservabilityArgs(
        runtimes={
            rt: ObservedRuntime(
                queue_name=f"q-{rt}",
                dlq_name=f"dlq-{rt}",
                namespace=f"ns-{rt}",
                deployment_name=rt,
                metrics_log_group_name=f"/sdfleet/sdfleet-dev/{rt}/agent-metrics",
            )
            for rt in RUNTIMES
        },
        unrouted_queue_name="unrouted",
        function_name="task-fn",
        function_log_group_name="/aws/lambda/task-fn",
        api_name="api",
        stage_name="v1",
        cluster_name="c1",
        **kw,
    )


@pytest.fixture(scope="module")
def graph() -> Recorder:
    def program() -> None:
        obs = Observability(
            "obs",
            _args(
                spot_interruption_rule_name="spot-rule",
                webhook_dlq_name="wh-dlq",
                webhook_function_name="wh-fn",
                extra_log_group_names=["/aws/lambda/sweeper"],
                gpu_idle_alarm_minutes=20,
                alarm_email="ops@example.com",
            ),
        )
        pulumi.export("alarms", obs.alarm_names)
        pulumi.export("queries", obs.query_definition_names)
        Observability("bare", _args(container_insights=False))

    return run_program(program)


def _alarms(graph: Recorder, prefix: str) -> dict[str, Recorded]:
    return {
        a.name.removeprefix(prefix): a for a in graph.of_type(ALARM) if a.name.startswith(prefix)
    }


def _queries(alarm: Recorded) -> dict[str, dict[str, Any]]:
    return {q["id"]: q for q in alarm.inputs["metricQueries"]}


def test_every_alarm_exists_and_notifies_the_topic(graph: Recorder) -> None:
    alarms = _alarms(graph, "obs-")
    expected = {"unrouted-tasks", "task-api-5xx", "task-api-errors", "spot-interruptions"}
    for rt in RUNTIMES:
        expected |= {
            f"{rt}-{n}"
            for n in ("backlog-no-ready-pods", "gpu-idle-with-backlog", "oldest-message-age")
        }
        expected.add(f"{rt}-dlq-not-empty")
    assert set(alarms) == expected
    topic = graph.one("aws:sns/topic:Topic", "obs-alarms").state["arn"]
    for alarm in alarms.values():
        assert alarm.inputs["alarmActions"] == alarm.inputs["okActions"] == [topic]
        assert alarm.inputs["treatMissingData"] == "notBreaching"
        assert "docs/troubleshooting.md#" in alarm.inputs["alarmDescription"]
    sub = graph.one("aws:sns/topicSubscription:TopicSubscription", "obs-alarm-email")
    assert sub.inputs["endpoint"] == "ops@example.com"


def test_no_ready_pods_is_metric_math_over_queue_and_heartbeats(graph: Recorder) -> None:
    alarm = _alarms(graph, "obs-")["sd15-backlog-no-ready-pods"]
    assert "metricName" not in alarm.inputs and "namespace" not in alarm.inputs
    queries = _queries(alarm)
    assert queries["cause"]["expression"] == "IF(visible > 0 AND FILL(ready, 0) == 0, 1, 0)"
    assert queries["cause"]["returnData"] is True
    visible = queries["visible"]["metric"]
    assert (visible["namespace"], visible["metricName"], visible["dimensions"]) == (
        "AWS/SQS",
        "ApproximateNumberOfMessagesVisible",
        {"QueueName": "q-sd15"},
    )
    ready = queries["ready"]["metric"]
    assert (ready["namespace"], ready["metricName"], ready["stat"]) == (
        mc.AGENT_NAMESPACE,
        "AgentReady",
        "SampleCount",
    )
    assert ready["dimensions"] == {"Runtime": "sd15"}
    assert queries["ready"]["returnData"] is False
    assert (alarm.inputs["evaluationPeriods"], alarm.inputs["datapointsToAlarm"]) == (10, 10)
    assert (alarm.inputs["threshold"], alarm.inputs["comparisonOperator"]) == (
        1,
        "GreaterThanOrEqualToThreshold",
    )


def test_gpu_idle_reads_the_runtimes_pods(graph: Recorder) -> None:
    alarm = _alarms(graph, "obs-")["flux-gpu-idle-with-backlog"]
    gpu = _queries(alarm)["gpu"]["metric"]
    assert (gpu["namespace"], gpu["metricName"], gpu["stat"]) == (
        "ContainerInsights",
        "pod_gpu_utilization",
        "Average",
    )
    assert gpu["dimensions"] == {"ClusterName": "c1", "Namespace": "ns-flux", "PodName": "flux"}
    assert alarm.inputs["evaluationPeriods"] == 20


def test_single_metric_alarms(graph: Recorder) -> None:
    alarms = _alarms(graph, "obs-")
    spot = alarms["spot-interruptions"].inputs
    assert (spot["namespace"], spot["metricName"], spot["dimensions"]) == (
        "AWS/Events",
        "TriggeredRules",
        {"RuleName": "spot-rule"},
    )
    assert (spot["period"], spot["statistic"], spot["threshold"]) == (3600, "Sum", 5)
    age = alarms["sd15-oldest-message-age"].inputs
    assert (age["threshold"], age["dimensions"]) == (900, {"QueueName": "q-sd15"})
    api = alarms["task-api-5xx"].inputs
    assert api["dimensions"] == {"ApiName": "api", "Stage": "v1"}
    assert "metricQueries" not in api


def test_the_dashboard_reads_only_what_the_stack_emits(graph: Recorder) -> None:
    dashboard = graph.one("aws:cloudwatch/dashboard:Dashboard", "obs-dashboard")
    assert dashboard.inputs["dashboardName"] == "sdfleet-dev"
    body = dashboard.inputs["dashboardBody"]
    assert mc.validate_dashboard(body, mc.stack_catalog()) == []
    text = json.dumps(json.loads(body))
    for name in ("q-sd15", "dlq-flux", "unrouted", "task-fn", "wh-dlq", "wh-fn", "ns-flux"):
        assert f'"{name}"' in text
    assert "SOURCE '/sdfleet/sdfleet-dev/sd15/agent-metrics'" in text


def test_without_container_insights(graph: Recorder) -> None:
    alarms = _alarms(graph, "bare-")
    assert not any("gpu-idle" in n for n in alarms)
    assert "spot-interruptions" not in alarms
    body = graph.one("aws:cloudwatch/dashboard:Dashboard", "bare-dashboard").inputs["dashboardBody"]
    assert mc.validate_dashboard(body, mc.stack_catalog(container_insights=False)) == []
    queries = {
        q.inputs["name"]: q.inputs
        for q in graph.of_type("aws:cloudwatch/queryDefinition:QueryDefinition")
        if q.name.startswith("bare-")
    }
    assert queries["sdfleet/dev/why-did-task-fail"]["logGroupNames"] == ["/aws/lambda/task-fn"]


def test_saved_queries(graph: Recorder) -> None:
    queries = {
        q.inputs["name"]: q.inputs
        for q in graph.of_type("aws:cloudwatch/queryDefinition:QueryDefinition")
        if q.name.startswith("obs-")
    }
    assert set(queries) == {f"sdfleet/dev/{q.name}" for q in lq.SAVED_QUERIES}
    why = queries["sdfleet/dev/why-did-task-fail"]
    assert why["logGroupNames"] == [
        "/aws/lambda/task-fn",
        "/aws/lambda/sweeper",
        "/aws/containerinsights/c1/application",
    ]
    assert why["queryString"] == lq.WHY_DID_TASK_FAIL
    slow = queries["sdfleet/dev/slowest-tasks-today"]
    assert slow["logGroupNames"] == [f"/sdfleet/sdfleet-dev/{rt}/agent-metrics" for rt in RUNTIMES]


def test_karpenter_exposes_the_spot_interruption_rule() -> None:
    """Observability's spot alarm counts this rule's TriggeredRules."""
    import pulumi_aws as aws
    import pulumi_kubernetes as k8s

    from sdfleet.components.karpenter import Karpenter, KarpenterArgs

    def program() -> None:
        provider = k8s.Provider("cluster", kubeconfig="{}")
        karpenter = Karpenter(
            "kp", KarpenterArgs(cluster_name="c1"), pulumi.ResourceOptions(provider=provider)
        )
        pulumi.export("rule", karpenter.spot_interruption_rule_name)
        aws.cloudwatch.MetricAlarm(
            "probe",
            namespace="AWS/Events",
            metric_name="TriggeredRules",
            dimensions={"RuleName": karpenter.spot_interruption_rule_name},
            statistic="Sum",
            period=3600,
            evaluation_periods=1,
            threshold=5,
            comparison_operator="GreaterThanThreshold",
        )

    graph = run_program(program)
    rule = graph.one("aws:cloudwatch/eventRule:EventRule", "kp-SpotInterruptionRule")
    assert json.loads(rule.inputs["eventPattern"])["detail-type"] == [
        "EC2 Spot Instance Interruption Warning"
    ]
    probe = graph.one(ALARM, "probe")
    assert probe.inputs["dimensions"] == {"RuleName": rule.state["name"]}
