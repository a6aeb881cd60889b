"""``sdfleet dlq list|redrive``: dead-lettered tasks per runtime (see ``sdfleet.dlq``).

Queues come from the stack's outputs (``dlqArns``, ``queueArns``; the task table from
``taskTableName``) or from ``--dlq-arn RUNTIME=ARN`` /
``--queue-arn RUNTIME=ARN`` / ``--table NAME``. AWS credentials are the usual boto3 chain; the
region is the queues' own (from their ARNs). Exit codes as in ``sdfleet.cli_tasks``: 0, 2 for
usage or configuration, 3 when AWS answers an error.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Mapping
from typing import Any

from sdfleet.client_config import ConfigError, stack_outputs
from sdfleet.dlq import (
    DEFAULT_MAX_MESSAGES,
    MessageMover,
    SqsMessageMover,
    list_dead_letters,
    redrive,
    requeue_dead_lettered,
)

EXIT_OK, EXIT_USAGE, EXIT_AWS = 0, 2, 3
# The task table's stack output (SdPipeline's taskTableName).
TABLE_OUTPUT = "taskTableName"


class Aws:
    """The AWS clients the commands use; tests pass their own (moto, a fake mover)."""

    def __init__(self, region: str | None) -> None:
        import boto3

        self.sqs = boto3.client("sqs", region_name=region)
        self.dynamodb = boto3.client("dynamodb", region_name=region)

    def mover(self) -> MessageMover:
        return SqsMessageMover(self.sqs)


AwsFactory = Callable[[str | None], Any]


def add_parser(
    sub: Any, aws: AwsFactory = Aws, outputs: Callable[[str], Any] = stack_outputs
) -> None:
    p = sub.add_parser("dlq", help="dead-lettered tasks: list them, send them back")
    verbs = p.add_subparsers(dest="dlq_command", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--stack", help="read the queue ARNs from this stack (pulumi CLI)")
    common.add_argument("--runtime", action="append", help="only this runtime (repeatable)")
    common.add_argument("--dlq-arn", action="append", default=[], metavar="RUNTIME=ARN")
    common.add_argument("--json", action="store_true", help="print JSON")
    p_list = verbs.add_parser("list", parents=[common], help="list without consuming")
    p_list.add_argument("--table", help="the task table (default: the stack's)")
    p_list.add_argument("--max", type=int, default=DEFAULT_MAX_MESSAGES, help="per queue")
    p_redrive = verbs.add_parser("redrive", parents=[common], help="move back to the queue")
    p_redrive.add_argument("--queue-arn", action="append", default=[], metavar="RUNTIME=ARN")
    p_redrive.add_argument("--table", help="the task table (default: the stack's)")
    p.set_defaults(func=lambda a: run(a, aws, outputs))


def _pairs(values: list[str], flag: str) -> dict[str, str]:
    out = {}
    for value in values:
        name, sep, arn = value.partition("=")
        if not sep or not name or not arn.startswith("arn:"):
            raise ConfigError(f"{flag} takes RUNTIME=ARN, not {value!r}")
        out[name] = arn
    return out


def _mapping(outputs: Mapping[str, Any], name: str) -> dict[str, str]:
    value = outputs.get(name)
    return {str(k): str(v) for k, v in value.items()} if isinstance(value, dict) else {}


def targets(args: argparse.Namespace, outputs: Callable[[str], Any]) -> dict[str, Any]:
    """DLQ ARNs, queue ARNs and table name for the chosen runtimes."""
    found: Mapping[str, Any] = outputs(args.stack) if args.stack else {}
    dlqs = _mapping(found, "dlqArns") | _pairs(args.dlq_arn, "--dlq-arn")
    queues = _mapping(found, "queueArns") | _pairs(getattr(args, "queue_arn", []), "--queue-arn")
    table = getattr(args, "table", None) or found.get(TABLE_OUTPUT) or None
    if args.runtime:
        unknown = sorted(set(args.runtime) - set(dlqs))
        if unknown:
            raise ConfigError(f"no DLQ for runtime(s) {', '.join(unknown)}; known: {sorted(dlqs)}")
        dlqs = {r: dlqs[r] for r in args.runtime}
    if not dlqs:
        raise ConfigError("no DLQs: pass --stack (dlqArns output) or --dlq-arn RUNTIME=ARN")
    return {"dlqs": dlqs, "queues": queues, "table": table}


def _region(arn: str) -> str:
    return arn.split(":")[3]


def queue_url(sqs: Any, arn: str) -> str:
    parts = arn.split(":")
    return str(sqs.get_queue_url(QueueName=parts[5], QueueOwnerAWSAccountId=parts[4])["QueueUrl"])


def run(args: argparse.Namespace, aws_factory: AwsFactory, outputs: Callable[[str], Any]) -> int:
    from botocore.exceptions import BotoCoreError, ClientError

    name = f"sdfleet dlq {args.dlq_command}"
    try:
        found = targets(args, outputs)
        aws = aws_factory(_region(next(iter(found["dlqs"].values()))))
        if args.dlq_command == "list":
            return _list(args, aws, found)
        return _redrive(args, aws, found)
    except ConfigError as err:
        print(f"{name}: {err}", file=sys.stderr)
        return EXIT_USAGE
    except (ClientError, BotoCoreError) as err:
        print(f"{name}: AWS answered: {err}", file=sys.stderr)
        return EXIT_AWS


def _list(args: argparse.Namespace, aws: Any, found: dict[str, Any]) -> int:
    lookup = None
    if found["table"]:
        from sdfleet.agent.task_state import TaskStore

        lookup = TaskStore(aws.dynamodb, found["table"]).load
    urls = {runtime: queue_url(aws.sqs, arn) for runtime, arn in found["dlqs"].items()}
    letters = list_dead_letters(aws.sqs, urls, lookup=lookup, max_messages=args.max)
    if args.json:
        print(json.dumps([d.to_json() for d in letters], indent=2))
        return EXIT_OK
    if not letters:
        print(f"no dead-lettered messages in {', '.join(sorted(urls))}")
        return EXIT_OK
    head = ("runtime", "task id", "receives", "first receive", "state", "why")
    rows = [
        (
            d.runtime,
            d.task_id or "?",
            str(d.receive_count),
            "-" if d.first_receive_age_s is None else f"{d.first_receive_age_s:.0f}s ago",
            d.state or "-",
            d.reason or "-",
        )
        for d in letters
    ]
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head) - 1)]
    for row in [head, *rows]:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=False)) + "  " + row[-1])
    if not found["table"]:
        print("(no task table: pass --table for the reasons)", file=sys.stderr)
    return EXIT_OK


def _redrive(args: argparse.Namespace, aws: Any, found: dict[str, Any]) -> int:
    requeued = None
    if found["table"]:
        from sdfleet.agent.task_state import TaskStore

        store = TaskStore(aws.dynamodb, found["table"])
        urls = {runtime: queue_url(aws.sqs, arn) for runtime, arn in found["dlqs"].items()}
        # Before the move: an agent taking a moved message must find the task open.
        requeued = requeue_dead_lettered(aws.sqs, urls, store.requeue_dead_lettered)
    started = redrive(aws.mover(), found["dlqs"], found["queues"])
    if args.json:
        out: dict[str, Any] = {
            "moves": [vars(s) for s in started],
            # null without a task table: nothing was written.
            "requeued": None if requeued is None else list(requeued.requeued),
            "unchanged": None if requeued is None else list(requeued.unchanged),
        }
        print(json.dumps(out, indent=2))
        return EXIT_OK
    for s in started:
        target = s.destination_arn or "the queue each message came from"
        print(f"{s.runtime}: moving {s.source_arn} -> {target} (task {s.task_handle})")
    if requeued is None:
        print(
            "No task table (pass --table): the tasks run again under their ids, but their "
            "status stays failed (dead_lettered).",
            file=sys.stderr,
        )
    else:
        print(
            f"task table: {len(requeued.requeued)} task(s) back to queued; "
            f"{len(requeued.unchanged)} left as they were (not dead_lettered, or no record); "
            f"{requeued.unreadable} message(s) without a readable task id"
        )
    return EXIT_OK
