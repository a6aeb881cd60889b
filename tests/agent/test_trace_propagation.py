"""One X-Ray trace per task, end to end: the task API Lambda (called as a function, with the
``_X_AMZN_TRACE_ID`` Lambda sets) publishes to a real SNS topic on moto, the runtime queue gets
it through the builders' subscription and filter policy, the real agent runs it against the fake
SD WebUI, and the completion notification goes out on the output topic. Spans are collected in
memory; each hop must carry the Lambda's trace id.

In AWS, SNS hands the trace to SQS as the ``AWSTraceHeader`` system attribute; moto does not,
so the first test proves the ``X-Amzn-Trace-Id`` message attribute route and the second the
``AWSTraceHeader`` one (set with SendMessage, as SNS does)."""

from __future__ import annotations

import io
import json
import secrets
import time
from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from sdfleet.agent import contract
from sdfleet.agent.messages import trace_header
from sdfleet.agent.metrics import Metrics
from sdfleet.agent.tracing import Tracing, new_provider
from sdfleet.components.builders import task_table
from sdfleet.components.task_api import handler as task_api
from sdfleet.components.task_api import settings as task_settings
from sdfleet.fakes.sdwebui import FakeSdWebUI
from tests.agent.harness import AgentThread, Fleet, client

pytestmark = pytest.mark.e2e

XRAY = "X-Amzn-Trace-Id"
LAMBDA_PARENT = "53995c3f42cd8ad8"
STAGES = {"receive", "input_fetch", "inference", "upload", "notify"}


def xray_header(parent: str = LAMBDA_PARENT, epoch: int | None = None) -> tuple[str, str]:
    """A Lambda-style header with a fresh trace id, and that id in X-Ray form."""
    stamp = format(epoch if epoch is not None else int(time.time()), "08x")
    trace_id = f"1-{stamp}-{secrets.token_hex(12)}"
    return f"Root={trace_id};Parent={parent};Sampled=1;Lineage=a87bd80c:0", trace_id


def otel_trace_id(xray_trace_id: str) -> int:
    return int(xray_trace_id[2:].replace("-", ""), 16)


class SpanSink:
    """An agent tracer whose spans are kept in memory (ids from the X-Ray id generator)."""

    def __init__(self) -> None:
        self.exporter = InMemorySpanExporter()
        self.tracing = Tracing.of(new_provider("test", SimpleSpanProcessor(self.exporter)))

    def spans(self) -> dict[str, ReadableSpan]:
        finished = self.exporter.get_finished_spans()
        by_name = {s.name: s for s in finished}
        assert len(by_name) == len(finished), [s.name for s in finished]  # one task, one of each
        return by_name


def header_capture(sns: Any, seen: list[str | None]) -> Any:
    """Record the X-Amzn-Trace-Id HTTP header of every Publish ``sns`` sends (last hook
    before the wire)."""

    def capture(request: Any, **_: Any) -> None:
        value = request.headers.get(XRAY)
        seen.append(value.decode() if isinstance(value, bytes) else value)

    sns.meta.events.register("before-send.sns.Publish", capture)
    return sns


@pytest.fixture
def lambda_env(fleet: Fleet, monkeypatch: pytest.MonkeyPatch) -> Iterator[Fleet]:
    """The task API's environment against the fleet (moto server; its table created)."""
    table = f"tasks-{fleet.suffix}"
    client("dynamodb", fleet.endpoint).create_table(**task_table.create_table_request(table))
    runtime = contract.RuntimeInfo(fleet.runtime_name, contract.SDWEBUI)
    monkeypatch.setenv("INPUT_TOPIC_ARN", fleet.input_topic)
    monkeypatch.setenv("OUTPUT_BUCKET", fleet.bucket)
    monkeypatch.setenv("RUNTIMES", json.dumps([runtime.to_json()]))
    monkeypatch.setenv("TASK_TABLE_NAME", table)
    task_api.reset()
    yield fleet
    task_api.reset()


def submit(task_id: str) -> dict[str, Any]:
    """POST /v1alpha2 through the real handler, as API Gateway invokes it."""
    body = {
        "task": {
            "metadata": {"id": task_id, "runtime": "sd15", "tasktype": "text-to-image"},
            "content": {"prompt": "a lighthouse", "steps": 4},
        }
    }
    return invoke("POST", "/v1alpha2", "/v1alpha2", body=json.dumps(body))


def status(task_id: str) -> dict[str, Any]:
    """GET /v1alpha2/tasks/{id} through the real handler, with the submitting key."""
    return invoke("GET", "/v1alpha2/tasks/{id}", f"/v1alpha2/tasks/{task_id}", id=task_id)


def invoke(
    method: str, resource: str, path: str, body: str | None = None, **params: str
) -> dict[str, Any]:
    """The real task API handler, invoked as API Gateway's REST proxy does (key ``k1``)."""
    event = {
        "resource": resource,
        "path": path,
        "httpMethod": method,
        "pathParameters": params or None,
        "headers": {"content-type": "application/json"} if body is not None else {},
        "requestContext": {"stage": "v1", "requestId": "r-1", "identity": {"apiKeyId": "k1"}},
        "body": body,
        "isBase64Encoded": False,
    }

    class Context:
        aws_request_id = "req-trace"

    response = task_api.handler(event, Context())
    assert response["statusCode"] == 200, response
    return dict(json.loads(response["body"]))


def peek(fleet: Fleet) -> dict[str, Any]:
    """The queued message, left visible for the agent."""
    got = fleet.sqs.receive_message(
        QueueUrl=fleet.queue_url,
        MessageAttributeNames=["All"],
        MessageSystemAttributeNames=["AWSTraceHeader"],
        VisibilityTimeout=0,
        WaitTimeSeconds=1,
    )
    [message] = got["Messages"]
    return dict(message)


def assert_one_task_trace(spans: dict[str, ReadableSpan], trace_id: str, parent: str) -> None:
    """Every span in ``trace_id``; the task span a CONSUMER child of ``parent``; every stage
    its child."""
    assert set(spans) == {"sdfleet.task", *STAGES}
    root = spans["sdfleet.task"]
    for span in spans.values():
        assert span.context is not None
        assert span.context.trace_id == otel_trace_id(trace_id), span.name
    assert root.kind is SpanKind.CONSUMER
    assert root.parent is not None and format(root.parent.span_id, "016x") == parent
    assert root.parent.is_remote
    assert root.context is not None
    for name in STAGES:
        stage_parent = spans[name].parent
        assert stage_parent is not None and stage_parent.span_id == root.context.span_id, name
        assert spans[name].status.status_code is StatusCode.UNSET, name


def test_the_lambda_trace_runs_through_sns_sqs_the_agent_and_the_notification(
    lambda_env: Fleet, monkeypatch: pytest.MonkeyPatch
) -> None:
    fleet = lambda_env
    header, trace_id = xray_header()
    monkeypatch.setenv("_X_AMZN_TRACE_ID", header)
    lambda_sent: list[str | None] = []
    header_capture(task_settings.sns(task_settings.load()), lambda_sent)
    submit("traced-1")

    # Lambda -> SNS: the HTTP header and the message attribute (the filter still routes it).
    assert lambda_sent == [header]
    message = peek(fleet)
    envelope = json.loads(message["Body"])  # raw delivery is off: attributes in the envelope
    assert envelope["MessageAttributes"][XRAY] == {"Type": "String", "Value": header}
    assert envelope["MessageAttributes"]["runtime"]["Value"] == "sd15"
    assert trace_header(message) == header

    # SQS -> agent -> output topic.
    sink = SpanSink()
    agent_sent: list[str | None] = []
    emf = io.StringIO()
    with FakeSdWebUI(inference_seconds=0.01) as srv:
        runner = AgentThread(
            fleet, srv.url, sink.tracing, wrap_sns=lambda sns: header_capture(sns, agent_sent)
        )
        runner.agent.completion.metrics = Metrics("sd15", stream=emf)
        with runner:
            [note] = fleet.notifications(1, timeout=20)
    # The agent has stopped: its uploader finished the task, so every span has ended.
    spans = sink.spans()
    assert_one_task_trace(spans, trace_id, LAMBDA_PARENT)
    root = spans["sdfleet.task"]
    assert root.attributes is not None
    assert root.attributes["sdfleet.task_id"] == "traced-1"
    assert root.attributes["sdfleet.runtime"] == "sd15"
    assert root.attributes["sdfleet.status"] == "completed"

    # The notification names the task span, as attribute and HTTP header.
    assert root.context is not None
    task_header = f"Root={trace_id};Parent={root.context.span_id:016x};Sampled=1"
    assert note["status"] == "completed" and note["id"] == "traced-1"
    assert note["_attributes"][XRAY] == task_header
    assert agent_sent == [task_header]

    [doc] = [json.loads(line) for line in emf.getvalue().splitlines()]
    assert doc["task_id"] == "traced-1" and doc["trace_id"] == trace_id and "id" not in doc
    assert doc["TasksCompleted"] == 1
    assert {"QueueWaitMs", "InputFetchMs", "InferenceMs", "UploadMs", "EndToEndMs"} <= set(doc)
    assert doc["EndToEndMs"] >= doc["InferenceMs"] >= 10

    # The status API names the trace: a client goes from task id to trace in one call.
    assert status("traced-1")["trace_id"] == trace_id


def test_an_unsampled_request_records_no_trace_id(
    lambda_env: Fleet, monkeypatch: pytest.MonkeyPatch
) -> None:
    header, _ = xray_header()
    monkeypatch.setenv("_X_AMZN_TRACE_ID", header.replace("Sampled=1", "Sampled=0"))
    submit("untraced-1")
    assert status("untraced-1")["trace_id"] is None  # X-Ray will not have it


def test_aws_trace_header_is_the_parent_first(fleet: Fleet) -> None:
    """What SNS delivers in AWS: the system attribute wins over the message attribute."""
    header, trace_id = xray_header(parent="7c5ce7e3a1f0b2d4")
    other, _ = xray_header(parent="1111111111111111", epoch=int(time.time()) - 5)
    task = fleet.task(task_id="aws-traced")
    fleet.sqs.send_message(
        QueueUrl=fleet.queue_url,
        MessageBody=json.dumps(task.to_message()),
        MessageAttributes={XRAY: {"DataType": "String", "StringValue": other}},
        MessageSystemAttributes={"AWSTraceHeader": {"DataType": "String", "StringValue": header}},
    )
    sink = SpanSink()
    with FakeSdWebUI(inference_seconds=0.01) as srv, AgentThread(fleet, srv.url, sink.tracing):
        [note] = fleet.notifications(1, timeout=20)
    assert note["status"] == "completed"
    spans = sink.spans()
    assert_one_task_trace(spans, trace_id, "7c5ce7e3a1f0b2d4")
    assert note["_attributes"][XRAY].startswith(f"Root={trace_id};")


def test_without_a_header_the_agent_starts_an_xray_valid_trace(fleet: Fleet) -> None:
    before = int(time.time())
    fleet.publish(fleet.task(task_id="untraced"))
    sink = SpanSink()
    with FakeSdWebUI(inference_seconds=0.01) as srv, AgentThread(fleet, srv.url, sink.tracing):
        [note] = fleet.notifications(1, timeout=20)
    root = sink.spans()["sdfleet.task"]
    assert root.parent is None and root.context is not None
    epoch = root.context.trace_id >> 96  # X-Ray: the first 8 hex digits are epoch seconds
    assert before - 1 <= epoch <= time.time() + 1 and epoch >= time.time() - 60
    trace_id = f"1-{root.context.trace_id:032x}"
    trace_id = f"{trace_id[:10]}-{trace_id[10:]}"
    assert note["_attributes"][XRAY].startswith(f"Root={trace_id};Parent=")


def test_a_failed_task_and_a_poison_message_are_errors_on_their_spans(fleet: Fleet) -> None:
    header, trace_id = xray_header()
    bad_input = fleet.task(
        {"prompt": "x", "init_images": ["ftp://example.com/cat.png"]},
        task_id="bad-input",
        tasktype="image-to-image",
    )
    fleet.sqs.send_message(
        QueueUrl=fleet.queue_url,
        MessageBody=json.dumps(bad_input.to_message()),
        MessageSystemAttributes={"AWSTraceHeader": {"DataType": "String", "StringValue": header}},
    )
    sink = SpanSink()
    emf = io.StringIO()
    with FakeSdWebUI(inference_seconds=0.01) as srv:
        runner = AgentThread(fleet, srv.url, sink.tracing)
        runner.agent.completion.metrics = Metrics("sd15", stream=emf)
        with runner:
            [note] = fleet.notifications(1, timeout=20, status="failed")
            fleet.publish_raw_json({"metadata": {"id": "poison-1", "runtime": "sd15"}})
            fleet.notifications(2, timeout=20, status="failed")
    code = note["error"]["code"]
    assert code == "input_forbidden", note
    by_trace: dict[int, dict[str, ReadableSpan]] = {}
    for span in sink.exporter.get_finished_spans():
        assert span.context is not None
        by_trace.setdefault(span.context.trace_id, {})[span.name] = span
    task = by_trace[otel_trace_id(trace_id)]
    assert set(task) == {"sdfleet.task", "receive", "input_fetch", "upload", "notify"}
    for name in ("sdfleet.task", "input_fetch"):
        attributes = task[name].attributes or {}
        assert task[name].status.status_code is StatusCode.ERROR, name
        assert attributes["sdfleet.error_code"] == code, name
    # The poison message comes back (no visibility penalty here): a new trace each time,
    # unless it came while the agent was stopping (released untouched).
    poisons = [
        t
        for key, t in by_trace.items()
        if key != otel_trace_id(trace_id)
        and (t["sdfleet.task"].attributes or {}).get("sdfleet.status") != "released"
    ]
    assert poisons
    for poison in poisons:
        assert set(poison) == {"sdfleet.task", "receive"}
        for span in poison.values():
            assert span.status.status_code is StatusCode.ERROR
            assert span.attributes is not None
            assert span.attributes["sdfleet.error_code"] == "invalid_task"
    docs = [json.loads(line) for line in emf.getvalue().splitlines()]
    failures = [(d["task_id"], d) for d in docs if d.get("TasksFailed")]
    assert [task_id for task_id, _ in failures] == ["bad-input", "poison-1"]  # counted once
    bad, poisoned = failures[0][1], failures[1][1]
    assert bad["ErrorCode"] == code and bad["trace_id"] == trace_id
    assert "InferenceMs" not in bad  # it never ran
    assert poisoned["ErrorCode"] == "invalid_task"
    assert poisoned["_aws"]["CloudWatchMetrics"][0]["Dimensions"] == [
        ["Runtime"],
        ["Runtime", "ErrorCode"],
    ]
