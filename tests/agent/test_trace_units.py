"""The trace plumbing piece by piece: X-Ray ids and headers, where a received message keeps its
header, the SNS Publish header hooks (agent and task API), and a held task's log fields."""

from __future__ import annotations

import json
import time
from typing import Any

import boto3
import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from sdfleet.agent.contract_log import xray_trace_id_from_int
from sdfleet.agent.held import Held
from sdfleet.agent.messages import trace_header
from sdfleet.agent.tracing import (
    Tracing,
    XRayIdGenerator,
    header_trace_id,
    install_header_hook,
    new_provider,
    span_header,
)
from sdfleet.components.task_api import submit

HEADER = "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1"
TRACE_ID = "1-5759e988-bd862e3fe1be46a994272793"
FAKE_AWS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}


def _held(header: str | None = HEADER) -> Held:
    return Held("m1", "r1", "{}", 1, time.monotonic(), None, header)


def _tracing() -> tuple[Tracing, InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    return Tracing.of(new_provider("t", SimpleSpanProcessor(exporter))), exporter


def test_xray_trace_ids_start_with_the_epoch_second() -> None:
    now = int(time.time())
    ids = {XRayIdGenerator().generate_trace_id() for _ in range(50)}
    assert len(ids) == 50
    for value in ids:
        assert now - 1 <= value >> 96 <= now + 1
    assert xray_trace_id_from_int(0x5759E988BD862E3FE1BE46A994272793) == TRACE_ID


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (HEADER, TRACE_ID),
        (f"Sampled=1;Root={TRACE_ID.upper()}", TRACE_ID),
        ("Root=1-5759e988-bd86;Parent=53995c3f42cd8ad8", None),
        ("garbage", None),
        (None, None),
    ],
)
def test_the_root_of_a_header(header: str | None, expected: str | None) -> None:
    assert header_trace_id(header) == expected


def test_span_header_names_the_span_or_falls_back_to_a_valid_header() -> None:
    tracing, _ = _tracing()
    span = tracing.start_task_span(HEADER, {})
    own = f"Root={TRACE_ID};Parent={span.get_span_context().span_id:016x};Sampled=1"
    assert span_header(span, HEADER) == own
    # Tracing off: the no-op span carries the incoming context, so the header passes through.
    passed = Tracing.setup(None, "x").start_task_span(HEADER, {})
    assert span_header(passed, HEADER) == HEADER
    assert span_header(trace.INVALID_SPAN, HEADER) == HEADER
    assert span_header(None, "not a header") is None
    assert span_header(None, None) is None


def test_held_log_fields_and_trace_attribute() -> None:
    held = _held()
    assert held.log_fields("from-poison") == {"task_id": "from-poison", "trace_id": TRACE_ID}
    assert held.trace_attribute() == {
        "X-Amzn-Trace-Id": {"DataType": "String", "StringValue": HEADER}
    }
    assert _held(None).log_fields() == {"task_id": None, "trace_id": None}
    assert _held(None).trace_attribute() == {}


def test_a_stage_that_raises_is_an_error_and_the_task_ends_once() -> None:
    from sdfleet.agent.errors import TaskError

    tracing, exporter = _tracing()
    held = _held()
    held.start_trace(tracing, {"sdfleet.runtime": "sd15"})
    with pytest.raises(TaskError), held.in_stage("input_fetch", "input_download_failed"):
        raise TaskError("input_too_large", "too big")
    with pytest.raises(RuntimeError), held.in_stage("upload", "output_failed"):
        raise RuntimeError("boom")
    held.begin_stage("notify")
    held.end_task("failed", "input_too_large", "too big")
    held.end_task("released")  # already ended: no second end, status kept
    spans = {s.name: s for s in exporter.get_finished_spans()}
    assert len(exporter.get_finished_spans()) == 4
    fetch, upload = spans["input_fetch"], spans["upload"]
    assert fetch.status.status_code is StatusCode.ERROR
    assert fetch.attributes is not None and fetch.attributes["sdfleet.error_code"] == (
        "input_too_large"
    )
    assert upload.attributes is not None and upload.attributes["sdfleet.error_code"] == (
        "output_failed"
    )
    root = spans["sdfleet.task"]
    assert root.attributes is not None and root.attributes["sdfleet.status"] == "failed"
    assert root.status.status_code is StatusCode.ERROR


def _envelope(attributes: dict[str, Any], message: Any) -> str:
    return json.dumps(
        {"Type": "Notification", "Message": json.dumps(message), "MessageAttributes": attributes}
    )


def test_where_a_received_message_keeps_its_header() -> None:
    other = HEADER.replace("53995c3f42cd8ad8", "1111111111111111")
    xray = {"X-Amzn-Trace-Id": {"DataType": "String", "StringValue": other}}
    in_envelope = {"X-Amzn-Trace-Id": {"Type": "String", "Value": HEADER}}
    assert trace_header({"Attributes": {"AWSTraceHeader": HEADER}, "MessageAttributes": xray}) == (
        HEADER
    )
    assert trace_header({"Attributes": {"AWSTraceHeader": HEADER}}) == HEADER
    assert trace_header({"MessageAttributes": xray, "Body": "{}"}) == other
    assert trace_header({"Body": _envelope(in_envelope, {"a": 1})}) == HEADER
    # A task that quotes the attribute in its own content is not an envelope attribute.
    assert trace_header({"Body": _envelope({}, {"X-Amzn-Trace-Id": HEADER})}) is None
    assert trace_header({"Body": json.dumps({"X-Amzn-Trace-Id": HEADER})}) is None
    assert trace_header({"Body": '{"X-Amzn-Trace-Id": oops'}) is None
    assert trace_header({}) is None


def _sns_capturing(sent: list[dict[str, Any]]) -> Any:
    """A real botocore SNS client whose requests stop before the wire."""
    client = boto3.session.Session(
        aws_access_key_id="k", aws_secret_access_key="s", region_name="us-east-1"
    ).client("sns")

    def stop(request: Any, **_: Any) -> Any:
        sent.append(dict(request.headers))
        raise RuntimeError("captured")

    client.meta.events.register("before-send.sns.Publish", stop)
    return client


def _publish(client: Any, attributes: dict[str, Any]) -> None:
    with pytest.raises(RuntimeError, match="captured"):
        client.publish(TopicArn="arn:aws:sns:us-east-1:1:t", Message="m", **attributes)


def test_the_agent_hook_sends_the_attribute_as_the_header(monkeypatch: Any) -> None:
    monkeypatch.delenv("AWS_LAMBDA_FUNCTION_NAME", raising=False)
    sent: list[dict[str, Any]] = []
    client = _sns_capturing(sent)
    install_header_hook(client)
    install_header_hook(client)  # idempotent
    install_header_hook(object())  # a test double: nothing to hook
    attribute = {"X-Amzn-Trace-Id": {"DataType": "String", "StringValue": HEADER}}
    _publish(client, {"MessageAttributes": attribute})
    _publish(client, {})
    assert sent[0]["X-Amzn-Trace-Id"] == HEADER.encode()
    assert "X-Amzn-Trace-Id" not in sent[1]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (HEADER, HEADER),
        (f"{HEADER};Lineage=a87bd80c:0", f"{HEADER};Lineage=a87bd80c:0"),
        ("", None),
        ("Root=1-5759e988-bd86", None),
        (HEADER + ";bad value", None),
        (HEADER + ";x=" + "a" * 600, None),
    ],
)
def test_the_task_api_trace_header(
    value: str, expected: str | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("_X_AMZN_TRACE_ID", value)
    assert submit.trace_header() == expected


def test_the_task_api_hook_sends_the_invocation_header(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AWS_LAMBDA_FUNCTION_NAME", raising=False)  # botocore's own needs it
    sent: list[dict[str, Any]] = []
    client = _sns_capturing(sent)
    submit.send_trace_header(client)
    monkeypatch.setenv("_X_AMZN_TRACE_ID", HEADER)
    _publish(client, {})
    monkeypatch.delenv("_X_AMZN_TRACE_ID")
    _publish(client, {})
    assert sent[0]["X-Amzn-Trace-Id"] == HEADER.encode()
    assert "X-Amzn-Trace-Id" not in sent[1]


def test_the_trace_attribute_leaves_routing_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    """The runtime filter and the unrouted queue's filter look at ``runtime`` only."""
    from moto import mock_aws

    from sdfleet.components.builders import fanout

    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    for name, value in FAKE_AWS.items():
        monkeypatch.setenv(name, value)
    with mock_aws():
        sns, sqs = boto3.client("sns"), boto3.client("sqs")
        topic = sns.create_topic(Name="in")["TopicArn"]
        queues = {}
        for name, policy in [
            ("sd15", fanout.runtime_filter_policy_json("sd15")),
            ("unrouted", fanout.unrouted_filter_policy_json(["sd15"])),
        ]:
            url = sqs.create_queue(QueueName=name)["QueueUrl"]
            arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])
            sns.subscribe(
                TopicArn=topic,
                Protocol="sqs",
                Endpoint=arn["Attributes"]["QueueArn"],
                Attributes={
                    "FilterPolicy": policy,
                    "FilterPolicyScope": fanout.FILTER_POLICY_SCOPE,
                    "RawMessageDelivery": str(fanout.RAW_MESSAGE_DELIVERY).lower(),
                },
            )
            queues[name] = url
        trace: dict[str, Any] = {"X-Amzn-Trace-Id": {"DataType": "String", "StringValue": HEADER}}
        for runtime in ("sd15", "sd99"):
            sns.publish(
                TopicArn=topic,
                Message=runtime,
                MessageAttributes={
                    "runtime": {"DataType": "String", "StringValue": runtime},
                    "tasktype": {"DataType": "String", "StringValue": "text-to-image"},
                    **trace,
                },
            )
        sns.publish(TopicArn=topic, Message="none", MessageAttributes=trace)
        got = {
            name: sorted(
                json.loads(m["Body"])["Message"]
                for m in sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10)["Messages"]
            )
            for name, url in queues.items()
        }
    assert got == {"sd15": ["sd15"], "unrouted": ["none", "sd99"]}
