"""One JSON log schema for the agent and the Lambdas (docs/logging.md): real lines of every
service validate against ``LOG_RECORD_SCHEMA``, task lines carry ``task_id``, ``runtime`` and
``trace_id``, secrets never reach a line, and free fields never overwrite the reserved keys."""

from __future__ import annotations

import io
import json
import logging
import re
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator
from opentelemetry.sdk.trace import TracerProvider

from sdfleet.agent import contract_log as cl
from sdfleet.agent.logging_setup import json_handler, setup_logging
from sdfleet.agent.webhooks import SqsQueues
from sdfleet.components.task_api import handler as task_api
from sdfleet.components.task_events import sweeper as sweeper_lambda
from sdfleet.components.task_events.webhook import SecretCache, WebhookFunction
from sdfleet.fakes.fleet import Fleet, MotoServer
from sdfleet.fakes.sdwebui import FakeSdWebUI
from tests.agent.harness import AgentThread
from tests.test_task_api import (
    API_KEY,
    API_KEY_ID,
    PROMPT,
    T2I,
    FakeContext,
    Fanout,
    fan,
    fanout_world,
    make_event,
    v2,
)
from tests.test_task_events_lambdas import Stack, stack, task

__all__ = ["fan", "stack"]  # fixtures used here, defined by the task API/events tests

VALIDATOR = Draft202012Validator(cl.LOG_RECORD_SCHEMA)
TRACE_ID = "1-67891233-abcdef012345678912345678"
TRACE_HEADER = f"Root={TRACE_ID};Parent=53995c3f42cd8ad8;Sampled=1"
SECRET = "s3cr3t-value-never-logged"


def valid_lines(text: str) -> list[dict[str, Any]]:
    """Every line of ``text`` as a schema-valid record (fails naming the first violation)."""
    lines = [json.loads(line) for line in text.splitlines()]
    assert lines, "no log line"
    for line in lines:
        errors = sorted(VALIDATOR.iter_errors(line), key=str)
        assert not errors, f"{errors[0].message} in {line}"
    return lines


@pytest.fixture
def root_logging() -> Iterator[logging.Logger]:
    """The root logger, its handlers and level restored after the test (setup_logging
    replaces them)."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield root
    for handler in list(root.handlers):
        root.removeHandler(handler)
    for handler in handlers:
        root.addHandler(handler)
    root.setLevel(level)


def record(fields: dict[str, Any], text: str = "task done") -> logging.LogRecord:
    entry = logging.LogRecord("agent.worker", logging.INFO, __file__, 1, text, (), None)
    entry.fields = fields
    return entry


# -- the schema ------------------------------------------------------------------------------


def test_the_schema_is_a_json_schema_and_refuses_what_it_should() -> None:
    Draft202012Validator.check_schema(cl.LOG_RECORD_SCHEMA)
    good: dict[str, Any] = {"ts": "2026-12-02T01:02:03.456Z", "level": "INFO", "logger": "x"}
    good |= {
        "msg": "m",
        "service": "agent",
        "task_id": "t-1",
        "trace_id": TRACE_ID,
        "anything": [1],
    }
    assert VALIDATOR.is_valid(good)
    for bad in (
        {k: v for k, v in good.items() if k != "service"},
        {**good, "ts": "2026-12-02T01:02:03Z"},  # no milliseconds
        {**good, "ts": "2026-12-02T01:02:03.456+00:00"},  # not Z
        {**good, "service": "something-else"},
        {**good, "trace_id": "1-67891233-abc"},
        {**good, "task_id": None},
        {**good, "latency_ms": -1},
        {**good, "Authorization": "Bearer x"},  # a secret-named key is only ever redacted
        {**good, "x-api-key": "k"},
    ):
        assert not VALIDATOR.is_valid(bad), bad
    assert VALIDATOR.is_valid({**good, "X-Api-Key": cl.REDACTED, "secret_arn": "arn:..."})


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (TRACE_HEADER, TRACE_ID),
        (f"Self=1-00000000-000000000000000000000000;Root={TRACE_ID}", TRACE_ID),
        (TRACE_ID, TRACE_ID),
        ("Root=1-xyz;Parent=1", None),
        ("", None),
    ],
)
def test_xray_trace_id_of_a_header(header: str, expected: str | None) -> None:
    assert cl.xray_trace_id(header) == expected


def test_xray_trace_id_from_the_lambda_environment_and_from_an_otel_id() -> None:
    assert cl.xray_trace_id(None, {cl.LAMBDA_TRACE_ENV: TRACE_HEADER}) == TRACE_ID
    assert cl.xray_trace_id(None, {}) is None
    assert cl.xray_trace_id_from_int(int(TRACE_ID[2:].replace("-", ""), 16)) == TRACE_ID
    assert cl.xray_trace_id_from_int(0) is None


def test_the_documented_example_lines_are_valid() -> None:
    doc = (Path(__file__).resolve().parent.parent / "docs" / "logging.md").read_text()
    examples = re.findall(r"^```json\n(.*?)\n```$", doc, flags=re.MULTILINE | re.DOTALL)
    lines = valid_lines("\n".join(examples))
    assert {line["service"] for line in lines} == set(cl.SERVICES)


# -- the formatter --------------------------------------------------------------------------


def test_agent_lines_through_setup_logging_carry_the_task_runtime_and_trace(
    root_logging: logging.Logger,
) -> None:
    stream = io.StringIO()
    setup_logging("INFO", stream, runtime="sd15")
    log = logging.getLogger("agent.worker")
    tracer = TracerProvider().get_tracer("test")
    log.info("idle")  # outside any task: no trace id
    with tracer.start_as_current_span("sdfleet.task") as span:
        log.info("task %s", "received", extra={"fields": {"event": "task_state", "task_id": "t1"}})
        try:
            raise ValueError("boom")
        except ValueError:
            log.exception("failed", extra={"fields": {"task_id": "t1", "error_code": "x"}})
    idle, received, failed = valid_lines(stream.getvalue())
    span_id = cl.xray_trace_id_from_int(span.get_span_context().trace_id)
    assert (idle["service"], idle["runtime"], idle["logger"]) == ("agent", "sd15", "agent.worker")
    assert "trace_id" not in idle and "task_id" not in idle
    assert received["msg"] == "task received" and received["event"] == "task_state"
    assert (received["task_id"], received["runtime"], received["trace_id"]) == (
        "t1",
        "sd15",
        span_id,
    )
    assert failed["level"] == "ERROR" and "ValueError: boom" in failed["exc"]
    assert failed["trace_id"] == span_id


def test_free_fields_never_overwrite_the_reserved_keys() -> None:
    formatter = cl.JsonFormatter("agent", "sd15")
    reserved = {"ts": "x", "level": "DEBUG", "logger": "y", "msg": "z", "service": "task-api"}
    line = json.loads(formatter.format(record({**reserved, "runtime": "sd21", "id": "t1"}, "kept")))
    assert (line["level"], line["logger"], line["msg"], line["service"]) == (
        "INFO",
        "agent.worker",
        "kept",
        "agent",
    )
    assert line["ts"].endswith("Z") and line["ts"] != "x"
    assert {k: line[f"field_{k}"] for k in reserved} == reserved  # kept, under another name
    # The agent serves one runtime: a differing free ``runtime`` is kept aside too.
    assert (line["runtime"], line["field_runtime"], line["id"]) == ("sd15", "sd21", "t1")
    assert VALIDATOR.is_valid(line)
    # Without a runtime of its own (a Lambda), the line takes the field's.
    same = json.loads(formatter.format(record({"runtime": "sd15"})))
    assert same["runtime"] == "sd15" and "field_runtime" not in same
    lambda_line = json.loads(cl.JsonFormatter("dlq-sweeper").format(record({"runtime": "sd21"})))
    assert lambda_line["runtime"] == "sd21"


def test_unknown_typed_fields_are_left_out_not_null() -> None:
    line = json.loads(
        cl.JsonFormatter().format(record({"task_id": None, "trace_id": None, "n": None}))
    )
    assert "task_id" not in line and "trace_id" not in line and line["n"] is None
    assert VALIDATOR.is_valid(line)


def test_secrets_are_redacted_at_any_depth() -> None:
    fields = {
        "Authorization": f"Bearer {SECRET}",
        "x-api-key": SECRET,
        "headers": {"X-Api-Key": SECRET, "Cookie": SECRET, "content-type": "application/json"},
        "attempts": [{"password": SECRET}, {"webhook_secret": SECRET}],
        "aws_session_token": SECRET,
        "secret_arn": "arn:aws:secretsmanager:us-east-1:1:secret:x",
        "tokens": 7,
    }
    text = cl.JsonFormatter().format(record(fields))
    assert SECRET not in text
    line = json.loads(text)
    assert line["Authorization"] == line["x-api-key"] == line["aws_session_token"] == "[redacted]"
    assert line["headers"] == {
        "X-Api-Key": "[redacted]",
        "Cookie": "[redacted]",
        "content-type": "application/json",
    }
    assert line["attempts"] == [{"password": "[redacted]"}, {"webhook_secret": "[redacted]"}]
    assert line["secret_arn"].startswith("arn:") and line["tokens"] == 7
    assert VALIDATOR.is_valid(line)


# -- the Lambdas ----------------------------------------------------------------------------


@pytest.fixture
def world() -> Iterator[Fanout]:
    """The task API's moto world for one test (its own module keeps one for the module): the
    TaskEvents tests here start a moto of their own."""
    with fanout_world() as built:
        yield built


def test_task_api_lines_are_pure_json_with_task_runtime_and_trace(
    fan: Fanout, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv(cl.LAMBDA_TRACE_ENV, TRACE_HEADER)
    body = v2("sd15", "text-to-image", {**T2I, "prompt": PROMPT}, id="schema-1")
    with in_lambda(cl.SERVICE_TASK_API):
        assert task_api.handler(make_event(body), FakeContext())["statusCode"] == 200
        assert task_api.handler(make_event(v2("nope", "text-to-image", T2I)), FakeContext())
    out = capsys.readouterr().out
    ok, refused = valid_lines(out)
    assert (ok["service"], ok["msg"], ok["status"]) == ("task-api", "task_request", 200)
    assert (ok["task_id"], ok["runtime"], ok["trace_id"]) == ("schema-1", "sd15", TRACE_ID)
    assert ok["request_id"] == FakeContext.aws_request_id and ok["latency_ms"] >= 0
    assert (refused["status"], refused["error_code"]) == (400, "unknown_runtime")
    assert refused["trace_id"] == TRACE_ID
    for leaked in (API_KEY, API_KEY_ID, PROMPT):
        assert leaked not in out


@contextmanager
def in_lambda(service: str) -> Iterator[None]:
    """Our loggers as a Lambda sets them up at import (``AWS_LAMBDA_FUNCTION_NAME`` set),
    undone after."""
    configured = cl.lambda_logging(service, environ={cl.LAMBDA_FUNCTION_ENV: "fn"})
    assert [lg.name for lg in configured] == list(cl.LAMBDA_LOGGERS)
    try:
        yield
    finally:
        for logger in configured:
            for handler in [h for h in logger.handlers if isinstance(h, cl.StdoutHandler)]:
                logger.removeHandler(handler)
            logger.propagate = True
            logger.setLevel(logging.NOTSET)


def test_outside_a_lambda_the_host_logging_decides(
    fan: Fanout, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    """The sandbox runs the task API in its own process: nothing is printed on its stdout."""
    assert cl.lambda_logging(cl.SERVICE_TASK_API, environ={}) == []
    assert logging.getLogger("agent").propagate is True
    with caplog.at_level(logging.INFO, logger="sdfleet.task_api"):
        task_api.handler(make_event(v2("nope", "text-to-image", T2I)), FakeContext())
    assert capsys.readouterr().out == ""
    [entry] = [r for r in caplog.records if r.name == "sdfleet.task_api"]
    assert getattr(entry, "fields")["error_code"] == "unknown_runtime"  # noqa: B009


def test_dlq_sweeper_lines(
    stack: Stack, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv(cl.LAMBDA_TRACE_ENV, TRACE_HEADER)
    doomed = task("doomed-1")
    doomed["metadata"]["callback"] = {"url": "http://insecure.example.com/hook"}
    stack.store.create("doomed-1", "sd15", "key-1")
    stack.kill_agent_every_time(doomed)
    monkeypatch.setattr(sweeper_lambda, "_sweeper", stack.sweeper())
    with in_lambda(cl.SERVICE_DLQ_SWEEPER):
        sweeper_lambda.handler({}, None)
    dropped, sweep = valid_lines(capsys.readouterr().out)
    assert (dropped["event"], dropped["task_id"], dropped["level"]) == (
        "callback_dropped",
        "doomed-1",
        "WARNING",
    )
    assert (sweep["service"], sweep["event"], sweep["failed"]) == (
        "dlq-sweeper",
        "dlq_sweep",
        ["doomed-1"],
    )
    assert sweep["trace_id"] == TRACE_ID


def test_webhook_delivery_lines(
    stack: Stack, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv(cl.LAMBDA_TRACE_ENV, TRACE_HEADER)
    queues = SqsQueues(stack.sqs, stack.hook_url, stack.hook_dlq_url)
    function = WebhookFunction(SecretCache(stack.secrets, stack.secret_arn), queues, stack.store)
    note: dict[str, Any] = {"id": "hook-1", "runtime": "sd15", "status": "failed"}
    note["callback"] = {"url": "http://insecure.example.com/hook", "events": ["failed"]}
    envelope = {"Type": "Notification", "MessageId": str(uuid.uuid4()), "Message": json.dumps(note)}
    event = {"Records": [{"messageId": "r-1", "body": json.dumps(envelope)}]}
    broken = WebhookFunction(SecretCache(stack.secrets, "no-such-secret"), queues)
    with in_lambda(cl.SERVICE_WEBHOOK_DELIVERY):
        function.handle(event)
        assert broken.handle(event) == {"batchItemFailures": [{"itemIdentifier": "r-1"}]}
    refused, unreadable = valid_lines(capsys.readouterr().out)
    assert (refused["service"], refused["event"], refused["task_id"]) == (
        "webhook-delivery",
        "webhook_refused",
        "hook-1",
    )
    assert refused["trace_id"] == TRACE_ID
    assert (unreadable["event"], unreadable["level"]) == ("webhook_secret_unreadable", "ERROR")
    assert stack.secret.encoded() not in json.dumps([refused, unreadable])


# -- an agent run ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def moto_server() -> Iterator[MotoServer]:
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    server = MotoServer().start()
    yield server
    server.stop()


def test_an_agent_run_logs_schema_lines_for_its_task(
    moto_server: MotoServer, monkeypatch: pytest.MonkeyPatch, root_logging: logging.Logger
) -> None:
    for key, value in moto_server.env().items():
        monkeypatch.setenv(key, value)
    fleet = Fleet(moto_server.endpoint)
    stream = io.StringIO()
    root_logging.addHandler(json_handler(stream, runtime=fleet.runtime_name))
    root_logging.setLevel(logging.INFO)
    task_under_test = fleet.task({"prompt": "a cat"})
    with FakeSdWebUI(inference_seconds=0.02) as srv, AgentThread(fleet, srv.url):
        attributes = task_under_test.message_attributes()
        attributes["X-Amzn-Trace-Id"] = {"DataType": "String", "StringValue": TRACE_HEADER}
        fleet.sns.publish(
            TopicArn=fleet.input_topic,
            Message=json.dumps(task_under_test.to_message()),
            MessageAttributes=attributes,
        )
        [note] = fleet.notifications(1, timeout=30)
    assert note["status"] == "completed"
    lines = valid_lines(stream.getvalue())
    assert {line["service"] for line in lines} == {"agent"}
    assert {line["runtime"] for line in lines} == {"sd15"}
    tid = task_under_test.metadata.id
    about = [line for line in lines if line.get("task_id") == tid]
    states = [line["state"] for line in about if line.get("event") == "task_state"]
    assert states[0] == "received" and states[-1] == "completed"
    assert {line.get("trace_id") for line in about} == {TRACE_ID}
