"""``sdfleet dlq list|redrive`` against moto: messages dead-lettered by SQS's own redrive policy,
listed with their task records and left in the queue, then moved back (moto has no
StartMessageMoveTask: a fake mover does the move; the real one is checked with a stubber)."""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber
from moto import mock_aws

from sdfleet import dlq_cli
from sdfleet.agent.task_state import TaskStore
from sdfleet.cli import main
from sdfleet.components.builders import fanout, task_table
from sdfleet.dlq import SqsMessageMover, task_id_of

REGION = "us-east-1"
TABLE = "sdfleet-tasks-dlq"


class World:
    def __init__(self) -> None:
        self.sqs = boto3.client("sqs", region_name=REGION)
        self.ddb = boto3.client("dynamodb", region_name=REGION)
        self.ddb.create_table(**task_table.create_table_request(TABLE))
        self.store = TaskStore(self.ddb, TABLE)
        self.dlq_url = self.sqs.create_queue(QueueName="sd15-dlq")["QueueUrl"]
        self.dlq_arn = self._arn(self.dlq_url)
        self.url = self.sqs.create_queue(
            QueueName="sd15", Attributes={"RedrivePolicy": fanout.redrive_policy(self.dlq_arn, 2)}
        )["QueueUrl"]
        self.arn = self._arn(self.url)

    def _arn(self, url: str) -> str:
        attrs = self.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])
        return str(attrs["Attributes"]["QueueArn"])

    def dead_letter(self, body: str) -> None:
        """Send to the runtime queue and let every receive fail until SQS moves it."""
        self.sqs.send_message(QueueUrl=self.url, MessageBody=body)
        for _ in range(3):
            self.sqs.receive_message(QueueUrl=self.url, VisibilityTimeout=0)

    def visible(self, url: str) -> int:
        attrs = self.sqs.get_queue_attributes(
            QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages"]
        )
        return int(attrs["Attributes"]["ApproximateNumberOfMessages"])


def envelope(task_id: str) -> str:
    task = {"metadata": {"id": task_id, "runtime": "sd15", "tasktype": "text-to-image"}}
    return json.dumps({"Type": "Notification", "Message": json.dumps(task)})


@pytest.fixture
def world(monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(name, "testing")
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    with mock_aws():
        built = World()
        built.store.create("dead-1", "sd15", "key-id")
        built.store.mark_running("dead-1", "sd15")
        built.store.mark_failed("dead-1", "sd15", "dead_lettered", "the agent died 3 times")
        built.dead_letter(envelope("dead-1"))
        built.dead_letter(envelope("no-record"))
        built.dead_letter("not a task")
        yield built


def test_list_shows_ids_counts_and_reasons_and_consumes_nothing(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    assert world.visible(world.dlq_url) == 3
    argv = ["dlq", "list", "--dlq-arn", f"sd15={world.dlq_arn}", "--table", TABLE, "--json"]
    assert main(argv) == 0
    letters = {d["task_id"]: d for d in json.loads(capsys.readouterr().out)}
    assert set(letters) == {"dead-1", "no-record", None}
    dead = letters["dead-1"]
    assert (dead["runtime"], dead["state"], dead["attempts"]) == ("sd15", "failed", 1)
    assert dead["reason"] == "dead_lettered: the agent died 3 times"
    assert dead["receive_count"] >= 3 and dead["first_receive_age_s"] >= 0
    assert letters["no-record"]["reason"] == "no task record (expired, or never created)"
    assert letters[None]["reason"] == "the body is not a readable task"
    assert world.visible(world.dlq_url) == 3  # all of them visible again, none deleted

    assert main(argv[:-1]) == 0  # the table form
    out = capsys.readouterr().out.splitlines()
    assert out[0].split()[:3] == ["runtime", "task", "id"]
    assert any("dead-1" in line and "dead_lettered" in line for line in out)


def _parser(outputs: dict[str, Any], mover: Any = None) -> argparse.ArgumentParser:
    class Aws(dlq_cli.Aws):
        def mover(self) -> Any:
            return mover or super().mover()

    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command")
    dlq_cli.add_parser(sub, aws=Aws, outputs=lambda stack: outputs)
    return parser


class FakeMover:
    """What StartMessageMoveTask does, done by hand: every message to the destination."""

    def __init__(self, sqs: Any) -> None:
        self.sqs = sqs
        self.started: list[tuple[str, str | None]] = []

    def start(self, source_arn: str, destination_arn: str | None) -> str:
        self.started.append((source_arn, destination_arn))
        assert destination_arn is not None
        source = self.sqs.get_queue_url(QueueName=source_arn.rsplit(":", 1)[1])["QueueUrl"]
        target = self.sqs.get_queue_url(QueueName=destination_arn.rsplit(":", 1)[1])["QueueUrl"]
        while got := self.sqs.receive_message(QueueUrl=source, MaxNumberOfMessages=10).get(
            "Messages", []
        ):
            for m in got:
                self.sqs.send_message(QueueUrl=target, MessageBody=m["Body"])
                self.sqs.delete_message(QueueUrl=source, ReceiptHandle=m["ReceiptHandle"])
        return "handle-1"

    def tasks(self, source_arn: str) -> list[dict[str, Any]]:
        return []


def test_redrive_from_the_stack_outputs_moves_them_back(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    outputs = {"dlqArns": {"sd15": world.dlq_arn}, "queueArns": {"sd15": world.arn}}
    mover = FakeMover(world.sqs)
    args = _parser(outputs, mover).parse_args(["dlq", "redrive", "--stack", "dev", "--json"])
    assert args.func(args) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["moves"] == [
        {
            "runtime": "sd15",
            "source_arn": world.dlq_arn,
            "destination_arn": world.arn,
            "task_handle": "handle-1",
        }
    ]
    assert (out["requeued"], out["unchanged"]) == (None, None)  # no table named: no writes
    assert world.visible(world.dlq_url) == 0
    got = world.sqs.receive_message(QueueUrl=world.url, MaxNumberOfMessages=10)["Messages"]
    assert {task_id_of(m["Body"]) for m in got} == {"dead-1", "no-record", None}
    record = world.store.load("dead-1")
    assert record is not None and record.state == "failed"


def test_redrive_with_the_table_puts_dead_lettered_tasks_back_to_queued(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    world.store.create("poison-1", "sd15", "key-id")
    world.store.mark_failed("poison-1", "sd15", "invalid_task", "not a task")
    world.dead_letter(envelope("poison-1"))
    outputs = {
        "dlqArns": {"sd15": world.dlq_arn},
        "queueArns": {"sd15": world.arn},
        "taskTableName": TABLE,
    }
    args = _parser(outputs, FakeMover(world.sqs)).parse_args(
        ["dlq", "redrive", "--stack", "dev", "--json"]
    )
    assert args.func(args) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["requeued"] == ["dead-1"]
    assert sorted(out["unchanged"]) == ["no-record", "poison-1"]
    record = world.store.load("dead-1")
    assert record is not None
    assert (record.state, record.error_code, record.finished_at) == ("queued", None, None)
    assert record.attempts == 1 and record.redriven_at is not None
    poison = world.store.load("poison-1")
    assert poison is not None and (poison.state, poison.error_code) == ("failed", "invalid_task")
    # An agent taking the moved message moves it forward again.
    assert world.store.mark_running("dead-1", "sd15").applied
    assert world.visible(world.dlq_url) == 0 and world.visible(world.url) == 4

    again = _parser({}, FakeMover(world.sqs)).parse_args(
        ["dlq", "redrive", "--dlq-arn", f"sd15={world.dlq_arn}", "--queue-arn",
         f"sd15={world.arn}", "--table", TABLE]
    )  # fmt: skip
    assert again.func(again) == 0  # the DLQ is empty now: nothing to put back
    assert "0 task(s) back to queued" in capsys.readouterr().out


def test_list_reads_the_table_name_from_the_stack(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    outputs = {"dlqArns": {"sd15": world.dlq_arn}, "taskTableName": TABLE}
    args = _parser(outputs).parse_args(["dlq", "list", "--stack", "dev", "--json"])
    assert args.func(args) == 0
    reasons = {d["task_id"]: d["reason"] for d in json.loads(capsys.readouterr().out)}
    assert reasons["dead-1"] == "dead_lettered: the agent died 3 times"


def test_the_real_mover_sends_start_message_move_task() -> None:
    sqs = boto3.client("sqs", region_name=REGION)
    mover = SqsMessageMover(sqs)
    with Stubber(sqs) as stub:
        stub.add_response(
            "start_message_move_task",
            {"TaskHandle": "h-1"},
            {
                "SourceArn": "arn:aws:sqs:us-east-1:1:dlq",
                "DestinationArn": "arn:aws:sqs:us-east-1:1:q",
            },
        )
        stub.add_response(
            "start_message_move_task",
            {"TaskHandle": "h-2"},
            {"SourceArn": "arn:aws:sqs:us-east-1:1:dlq"},
        )
        assert mover.start("arn:aws:sqs:us-east-1:1:dlq", "arn:aws:sqs:us-east-1:1:q") == "h-1"
        assert mover.start("arn:aws:sqs:us-east-1:1:dlq", None) == "h-2"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["dlq", "list"], "no DLQs: pass --stack"),
        (["dlq", "list", "--dlq-arn", "sd15"], "--dlq-arn takes RUNTIME=ARN"),
        (["dlq", "list", "--stack", "dev", "--runtime", "flux"], "no DLQ for runtime(s) flux"),
    ],
)
def test_configuration_errors_exit_2(
    capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    args = _parser({"dlqArns": {"sd15": "arn:aws:sqs:us-east-1:1:sd15-dlq"}}).parse_args(argv)
    assert args.func(args) == 2
    assert message in capsys.readouterr().err


def test_aws_errors_exit_3(world: World, capsys: pytest.CaptureFixture[str]) -> None:
    missing = "arn:aws:sqs:us-east-1:123456789012:no-such-dlq"
    assert main(["dlq", "list", "--dlq-arn", f"sd15={missing}"]) == 3
    assert "AWS answered" in capsys.readouterr().err
