"""Alarm specifications: one per way a task can get stuck, each naming its likely cause, what to
check first and its section of docs/troubleshooting.md. Pure: the component maps each
dimension's *role* to the resource name it only knows at deploy time.

Roles: ``queue``, ``dlq``, ``runtime``, ``cluster``, ``namespace``, ``deployment`` (per runtime);
``unrouted``, ``function``, ``api``, ``stage``, ``spot_rule`` (per stack).
"""

from __future__ import annotations

from dataclasses import dataclass

from sdfleet.components.builders.metric_catalog import AGENT_NAMESPACE, CONTAINER_INSIGHTS

TROUBLESHOOTING = "docs/troubleshooting.md"
MAX_DESCRIPTION = 1024  # CloudWatch's limit on AlarmDescription
NOT_BREACHING = "notBreaching"
GT = "GreaterThanThreshold"
GE = "GreaterThanOrEqualToThreshold"


@dataclass(frozen=True)
class MetricRef:
    """One metric an alarm reads; ``dimensions`` maps dimension name -> role."""

    id: str
    namespace: str
    metric: str
    dimensions: dict[str, str]
    stat: str
    period: int = 60


@dataclass(frozen=True)
class AlarmThresholds:
    oldest_message_seconds: int = 900
    gpu_idle_minutes: int = 15
    spot_interruptions_per_hour: int = 5


@dataclass(frozen=True)
class AlarmSpec:
    """A single-metric alarm (one metric, no expression) or a metric-math alarm (the expression
    over the metrics' ids is what crosses the threshold)."""

    name: str
    anchor: str
    meaning: str
    first_check: str
    metrics: tuple[MetricRef, ...]
    threshold: float
    treat_missing_data: str
    expression: str | None = None
    comparison: str = GT
    evaluation_periods: int = 1

    @property
    def description(self) -> str:
        return (
            f"{self.meaning} First check: {self.first_check} "
            f"Runbook: {TROUBLESHOOTING}#{self.anchor}"
        )

    @property
    def period(self) -> int:
        return self.metrics[0].period


def _sqs(id_: str, metric: str, role: str, period: int = 60) -> MetricRef:
    return MetricRef(id_, "AWS/SQS", metric, {"QueueName": role}, "Maximum", period)


VISIBLE = "ApproximateNumberOfMessagesVisible"


def runtime_alarms(
    runtime: str, thresholds: AlarmThresholds, *, container_insights: bool
) -> list[AlarmSpec]:
    """The alarms of one runtime; the GPU-idle one needs Container Insights' GPU metrics."""
    visible = _sqs("visible", VISIBLE, "queue")
    ready = MetricRef("ready", AGENT_NAMESPACE, "AgentReady", {"Runtime": "runtime"}, "SampleCount")
    specs = [
        AlarmSpec(
            name=f"{runtime}-backlog-no-ready-pods",
            anchor="backlog-no-ready-pods",
            meaning=f"Tasks of runtime {runtime} have waited 10 minutes while no agent of it was "
            "ready: a capacity or image problem (no GPU node, or the pod never got ready).",
            first_check="kubectl get pods in the runtime's namespace, then "
            "kubectl describe nodeclaims (insufficient capacity, quota).",
            metrics=(visible, ready),
            # No AgentReady data means no ready agent: FILL makes that a 0, not a gap.
            expression="IF(visible > 0 AND FILL(ready, 0) == 0, 1, 0)",
            threshold=1,
            comparison=GE,
            evaluation_periods=10,
            # No data only when SQS reports nothing for the queue (idle queue): nothing waits.
            treat_missing_data=NOT_BREACHING,
        ),
        AlarmSpec(
            name=f"{runtime}-oldest-message-age",
            anchor="oldest-message-age",
            meaning=f"The oldest waiting task of runtime {runtime} is over "
            f"{thresholds.oldest_message_seconds} s old: too little capacity for the load, or "
            "agents that receive but never finish.",
            first_check="the dashboard's pods and backlog rows for this runtime, then "
            "kubectl logs of one agent pod.",
            metrics=(_sqs("age", "ApproximateAgeOfOldestMessage", "queue", 300),),
            threshold=thresholds.oldest_message_seconds,
            # SQS stops reporting an idle, empty queue: no data means no old task.
            treat_missing_data=NOT_BREACHING,
        ),
        AlarmSpec(
            name=f"{runtime}-dlq-not-empty",
            anchor="dlq-not-empty",
            meaning=f"Tasks of runtime {runtime} failed every delivery and wait in its "
            "dead-letter queue (the sweeper marks them failed).",
            first_check="sdfleet dlq list, then the saved query why-did-task-fail for one id.",
            metrics=(_sqs("dlq", VISIBLE, "dlq"),),
            threshold=0,
            # An empty DLQ nobody touches stops reporting: no data is the healthy state.
            treat_missing_data=NOT_BREACHING,
        ),
    ]
    if container_insights:
        gpu = MetricRef(
            "gpu",
            CONTAINER_INSIGHTS,
            "pod_gpu_utilization",
            {"ClusterName": "cluster", "Namespace": "namespace", "PodName": "deployment"},
            "Average",
        )
        specs.insert(
            1,
            AlarmSpec(
                name=f"{runtime}-gpu-idle-with-backlog",
                anchor="gpu-idle-with-backlog",
                meaning=f"Tasks of runtime {runtime} are waiting while its pods' GPUs are under "
                f"5% busy for {thresholds.gpu_idle_minutes} minutes: an agent or inference "
                "server is stuck.",
                first_check="kubectl logs of an agent pod (both containers) and the dashboard's "
                "task latency row.",
                metrics=(visible, gpu),
                expression="IF(visible > 0 AND gpu < 5, 1, 0)",
                threshold=1,
                comparison=GE,
                evaluation_periods=thresholds.gpu_idle_minutes,
                # No GPU data means no pod: the backlog-no-ready-pods alarm covers that case.
                treat_missing_data=NOT_BREACHING,
            ),
        )
    return specs


def platform_alarms(thresholds: AlarmThresholds, *, spot_rule: bool) -> list[AlarmSpec]:
    """The stack-wide alarms; the spot one when the interruption rule's name is known."""
    specs = [
        AlarmSpec(
            name="unrouted-tasks",
            anchor="unrouted-tasks",
            meaning="Tasks named a runtime this stack does not have; they are kept in the "
            "unrouted queue.",
            first_check="the runtime named by the waiting messages (peek the unrouted queue, "
            "see the runbook) against the stack's runtimes.",
            metrics=(_sqs("unrouted", VISIBLE, "unrouted"),),
            threshold=0,
            # Empty and untouched stops reporting: no data is healthy.
            treat_missing_data=NOT_BREACHING,
        ),
        AlarmSpec(
            name="task-api-5xx",
            anchor="task-api-5xx",
            meaning="The task API answered 5xx: the gateway or the task Lambda failed.",
            first_check="the task-api-errors alarm and the Lambda's log group.",
            metrics=(
                MetricRef(
                    "e5xx",
                    "AWS/ApiGateway",
                    "5XXError",
                    {"ApiName": "api", "Stage": "stage"},
                    "Sum",
                ),
            ),
            threshold=0,
            # No requests, no data: nothing failed.
            treat_missing_data=NOT_BREACHING,
        ),
        AlarmSpec(
            name="task-api-errors",
            anchor="task-api-errors",
            meaning="The task Lambda raised errors (bad input never does: it answers 4xx).",
            first_check="the saved query why-did-task-fail or the Lambda's log group "
            "(level ERROR).",
            metrics=(
                MetricRef("errors", "AWS/Lambda", "Errors", {"FunctionName": "function"}, "Sum"),
            ),
            threshold=0,
            # No invocations, no data: nothing failed.
            treat_missing_data=NOT_BREACHING,
        ),
    ]
    if spot_rule:
        specs.append(
            AlarmSpec(
                name="spot-interruptions",
                anchor="spot-interruptions",
                meaning="More than "
                f"{thresholds.spot_interruptions_per_hour} spot interruption warnings in an "
                "hour: the spot pools are being reclaimed and tasks are retried.",
                first_check="kubectl describe nodeclaims and the instance types in use; widen "
                "the instance types or lower spotRatio.",
                metrics=(
                    MetricRef(
                        "spot",
                        "AWS/Events",
                        "TriggeredRules",
                        {"RuleName": "spot_rule"},
                        "Sum",
                        3600,
                    ),
                ),
                threshold=thresholds.spot_interruptions_per_hour,
                # EventBridge reports only when the rule fires: no data means no interruption.
                treat_missing_data=NOT_BREACHING,
            )
        )
    return specs
