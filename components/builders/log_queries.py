"""Logs Insights queries: the saved ones (QueryDefinition) and those behind the dashboard's log
widgets. Pure strings; tests parse every pipeline and check each field it names against the log
schema (agent/contract_log.py) and the agent's EMF documents.

Two shapes of the same record: Lambda lines are top-level JSON (``task_id``); agent lines reach
Container Insights' application log group through Fluent Bit, which merges the JSON under
``log_processed`` (``log_processed.task_id``). ``coalesce`` reads whichever is there.
"""

from __future__ import annotations

from dataclasses import dataclass

from sdfleet.agent import metrics as agent_metrics

# The log record fields the queries read (agent/contract_log.py names them; a test compares).
LOG_FIELDS = (
    "ts",
    "level",
    "logger",
    "msg",
    "service",
    "runtime",
    "task_id",
    "trace_id",
    "error_code",
    "event",
)
# Besides metric values and dimensions, the agent's EMF documents carry these properties:
# task_id and trace_id on task metrics, NodeName and InstanceType on AgentUp.
EMF_PROPERTIES = ("task_id", "trace_id", "NodeName", "InstanceType")
EMF_DIMENSIONS = tuple(
    sorted({d for spec in agent_metrics.CATALOG.values() for s in spec.dimension_sets for d in s})
)
TASK_ID_PLACEHOLDER = "REPLACE-WITH-TASK-ID"
CAPACITY_TYPES = ("spot", "on-demand", "unknown")


@dataclass(frozen=True)
class SavedQuery:
    """One saved query: its short name (under ``sdfleet/<stack>/``), which log groups it
    reads (``agent-metrics``, ``application``, ``lambdas``) and the query text."""

    name: str
    sources: tuple[str, ...]
    query: str
    purpose: str


def _pipe(*commands: str) -> str:
    return "\n| ".join(commands)


# One task's story: the API's accept, the agent's receive .. notify, the DLQ sweeper's final word.
WHY_DID_TASK_FAIL = _pipe(
    "fields @timestamp, @log, coalesce(log_processed.task_id, task_id) as tid, "
    "coalesce(log_processed.level, level) as lvl, "
    "coalesce(log_processed.service, service) as svc, "
    "coalesce(log_processed.msg, msg) as message, "
    "coalesce(log_processed.error_code, error_code) as code, "
    "coalesce(log_processed.trace_id, trace_id) as trace",
    f'filter tid = "{TASK_ID_PLACEHOLDER}"',
    "sort @timestamp asc",
    "limit 200",
)
SLOWEST_TASKS_TODAY = _pipe(
    "fields @timestamp, task_id, Runtime, EndToEndMs, InferenceMs, QueueWaitMs, UploadMs",
    "filter ispresent(EndToEndMs)",
    "sort EndToEndMs desc",
    "limit 50",
)
FAILURES_BY_CODE = _pipe(
    "filter ispresent(TasksFailed)",
    "stats sum(TasksFailed) as failures by Runtime, ErrorCode",
    "sort failures desc",
)
TASK_TRACE_ID = _pipe(
    "fields @timestamp, coalesce(log_processed.task_id, task_id) as tid, "
    "coalesce(log_processed.trace_id, trace_id) as trace",
    f'filter tid = "{TASK_ID_PLACEHOLDER}" and ispresent(trace)',
    "stats earliest(@timestamp) as first_seen by trace",
    "sort first_seen asc",
)
# Dashboard: distinct GPU nodes per runtime and capacity type (AgentUp carries NodeName).
NODES_BY_POOL = _pipe(
    "filter ispresent(AgentUp) and ispresent(NodeName)",
    'fields concat(Runtime, " ", CapacityType) as pool',
    "stats count_distinct(NodeName) as nodes by bin(5m), pool",
)
# Dashboard: node-hours = distinct nodes seen each minute, summed over the range, / 60.
NODE_HOURS = _pipe(
    "filter ispresent(AgentUp) and ispresent(NodeName)",
    "stats count_distinct(NodeName) as nodes by bin(1m), CapacityType",
    "stats sum(nodes) / 60 as node_hours by CapacityType",
)

SAVED_QUERIES = (
    SavedQuery(
        "why-did-task-fail",
        ("lambdas", "application"),
        WHY_DID_TASK_FAIL,
        f"every log line of one task (replace {TASK_ID_PLACEHOLDER}), oldest first",
    ),
    SavedQuery(
        "slowest-tasks-today",
        ("agent-metrics",),
        SLOWEST_TASKS_TODAY,
        "the 50 slowest tasks of the chosen range with their stage timings",
    ),
    SavedQuery(
        "failures-by-code",
        ("agent-metrics",),
        FAILURES_BY_CODE,
        "failed tasks per runtime and error code",
    ),
    SavedQuery(
        "task-trace-id",
        ("lambdas", "application"),
        TASK_TRACE_ID,
        f"the X-Ray trace id of one task (replace {TASK_ID_PLACEHOLDER})",
    ),
)


def query_name(stack: str, query: SavedQuery) -> str:
    """The saved query's name; slashes make folders in the console."""
    return f"sdfleet/{stack}/{query.name}"


def application_log_group(cluster_name: str) -> str:
    """Container Insights' Fluent Bit destination for container stdout."""
    return f"/aws/containerinsights/{cluster_name}/application"


def log_widget_query(log_groups: list[str], query: str) -> str:
    """A dashboard log widget's query: SOURCE lines name the log groups."""
    return " | ".join([*(f"SOURCE '{g}'" for g in log_groups), query.replace("\n", " ")])
