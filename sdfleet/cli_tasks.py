"""``sdfleet submit|status|wait|get``: the task API from the command line (``sdfleet.client``).

Every command prints one JSON document on stdout (the API's answer, or what was saved) and
everything meant for people (progress, errors) on stderr. The API key comes from
``--api-key``, ``SDFLEET_API_KEY`` or the stack's outputs and is never printed.

Exit codes (``EXIT_*``): 0 done; 1 the task failed; 2 usage or configuration (no URL or key,
unreadable task file, pulumi CLI missing); 3 the API, the network or S3 answered an error;
4 the wait timed out, or (``get``) the task has not finished yet.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

from sdfleet.client import (
    ApiError,
    Backoff,
    Client,
    ClientError,
    ConfigError,
    TaskStatus,
    WaitTimeout,
    text_to_image,
)

EXIT_OK = 0
EXIT_TASK_FAILED = 1
EXIT_USAGE = 2
EXIT_API = 3
EXIT_TIMEOUT = 4

COMMANDS = ("submit", "status", "wait", "get")
# What sdfleet.cli dispatches here: these, the load test and the DLQ commands.
ALL_COMMANDS = (*COMMANDS, "load", "dlq")
DEFAULT_WAIT_S = 900.0

# Tests replace this to hand the commands a client with injected time.
ClientFactory = Callable[[argparse.Namespace], Client]


def client_from_args(args: argparse.Namespace) -> Client:
    return Client.from_config(
        args.api_url,
        args.api_key,
        stack=args.stack,
        sandbox=getattr(args, "sandbox", False),
        timeout=args.http_timeout,
    )


def connection_options() -> argparse.ArgumentParser:
    """The options every command that talks to the API takes (a parent parser)."""
    common = argparse.ArgumentParser(add_help=False)
    group = common.add_argument_group("API")
    group.add_argument("--stack", help="read apiUrl/apiKey from this stack (needs the pulumi CLI)")
    group.add_argument(
        "--sandbox", action="store_true", help="the running `sdfleet sandbox` (its URL and key)"
    )
    group.add_argument("--api-url", help="the API's stage URL (default: $SDFLEET_API_URL)")
    group.add_argument("--api-key", help="the API key (default: $SDFLEET_API_KEY); never printed")
    group.add_argument(
        "--http-timeout", type=float, default=30.0, help="seconds per HTTP request (default 30)"
    )
    return common


def _wait_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--timeout", type=float, default=DEFAULT_WAIT_S, help="seconds to wait (default 900)"
    )
    parser.add_argument(
        "--poll-interval", type=float, default=1.0, help="first poll interval in s (default 1)"
    )


def add_all(sub: Any) -> None:
    """Every client-side command on ``sdfleet``'s subparsers (``ALL_COMMANDS``)."""
    from sdfleet import dlq_cli, load

    add_parsers(sub)
    load.add_parser(sub, connection_options(), client_from_args)
    dlq_cli.add_parser(sub)


def add_parsers(sub: Any, factory: ClientFactory = client_from_args) -> None:
    common = connection_options()
    p = sub.add_parser("submit", parents=[common], help="submit a task (v1alpha2)")
    p.add_argument("--runtime", help="the runtime (required unless the task file names it)")
    p.add_argument("--prompt", help="text-to-image prompt (SD WebUI runtimes)")
    p.add_argument("--negative", help="negative prompt")
    for name in ("steps", "width", "height", "seed", "count"):
        p.add_argument(f"--{name}", type=int)
    p.add_argument("--file", type=Path, help="a task JSON file ({'task': ...} or its inside)")
    p.add_argument("--id", dest="task_id", help="the task id (default: the API picks one)")
    p.add_argument("--wait", action="store_true", help="wait until the task finishes")
    p.add_argument("--out", type=Path, help="download the outputs here (implies --wait)")
    _wait_options(p)
    p.set_defaults(func=lambda a: run(cmd_submit, a, factory))

    p = sub.add_parser("status", parents=[common], help="a task's status, as the API gives it")
    p.add_argument("id")
    p.set_defaults(func=lambda a: run(cmd_status, a, factory))

    p = sub.add_parser("wait", parents=[common], help="wait until a task completes or fails")
    p.add_argument("id")
    _wait_options(p)
    p.set_defaults(func=lambda a: run(cmd_wait, a, factory))

    p = sub.add_parser("get", parents=[common], help="download a completed task's outputs")
    p.add_argument("id")
    p.add_argument("--out", type=Path, required=True, help="folder for the outputs")
    p.set_defaults(func=lambda a: run(cmd_get, a, factory))


def run(
    command: Callable[[argparse.Namespace, Client], int],
    args: argparse.Namespace,
    factory: ClientFactory,
) -> int:
    """One command with the errors mapped to exit codes and reported on stderr."""
    name = f"sdfleet {args.command}"
    try:
        return command(args, factory(args))
    except (ConfigError, UsageError) as err:
        print(f"{name}: {err}", file=sys.stderr)
        return EXIT_USAGE
    except WaitTimeout as err:
        print(f"{name}: {err}", file=sys.stderr)
        return EXIT_TIMEOUT
    except ApiError as err:
        print(f"{name}: the API answered {err}", file=sys.stderr)
        return EXIT_API
    except ClientError as err:
        print(f"{name}: {err}", file=sys.stderr)
        return EXIT_API


class UsageError(Exception):
    pass


def task_body(args: argparse.Namespace) -> dict[str, Any]:
    """The v1alpha2 body from a task file or the text-to-image options."""
    if args.file is not None:
        if args.prompt is not None:
            raise UsageError("--file and --prompt are exclusive")
        try:
            loaded = json.loads(args.file.read_text())
        except (OSError, ValueError) as err:
            raise UsageError(f"cannot read task file {args.file}: {err}") from None
        if not isinstance(loaded, dict):
            raise UsageError(f"{args.file}: a task file holds a JSON object")
        body = loaded if "task" in loaded else {"task": loaded}
        task = body.get("task")
        if not isinstance(task, dict):
            raise UsageError(f"{args.file}: 'task' must be an object")
        metadata = task.setdefault("metadata", {})
        if not isinstance(metadata, dict):
            raise UsageError(f"{args.file}: 'task.metadata' must be an object")
        if args.runtime:
            metadata["runtime"] = args.runtime
        if args.task_id:
            metadata["id"] = args.task_id
        return body
    if not args.runtime or args.prompt is None:
        raise UsageError("--runtime and --prompt are required without --file")
    return text_to_image(
        args.runtime,
        args.prompt,
        negative=args.negative,
        steps=args.steps,
        width=args.width,
        height=args.height,
        seed=args.seed,
        count=args.count,
        task_id=args.task_id,
    )


def emit(doc: Any, out: TextIO | None = None) -> None:
    print(json.dumps(doc, indent=2), file=out or sys.stdout)


def cmd_submit(args: argparse.Namespace, client: Client) -> int:
    body = task_body(args)
    sent = client.submit(body)
    print(f"submitted {sent.id} to {sent.runtime}", file=sys.stderr)
    if not (args.wait or args.out):
        emit(dict(sent.raw))
        return EXIT_OK
    return _wait_and_save(args, client, sent.id)


def cmd_status(args: argparse.Namespace, client: Client) -> int:
    status = client.get(args.id)
    emit(dict(status.raw))
    return EXIT_TASK_FAILED if status.state == "failed" else EXIT_OK


def cmd_wait(args: argparse.Namespace, client: Client) -> int:
    args.out = None
    return _wait_and_save(args, client, args.id)


def cmd_get(args: argparse.Namespace, client: Client) -> int:
    status = client.get(args.id)
    if status.state == "failed":
        return _failed(status)
    if status.state != "completed":
        print(
            f"sdfleet get: task {status.id} is {status.state}; try `sdfleet wait`", file=sys.stderr
        )
        return EXIT_TIMEOUT
    paths = client.download(status, args.out)
    emit({"id": status.id, "files": [str(p) for p in paths]})
    return EXIT_OK


def _wait_and_save(args: argparse.Namespace, client: Client, task_id: str) -> int:
    progress = Progress(task_id, sys.stderr)
    try:
        status = client.wait(
            task_id,
            deadline=args.timeout,
            backoff=Backoff(initial=args.poll_interval, cap=max(10.0, args.poll_interval)),
            on_progress=progress,
        )
    finally:
        progress.close()
    if status.state == "failed":
        emit(dict(status.raw))
        return _failed(status)
    if args.out is None:
        emit(dict(status.raw))
        return EXIT_OK
    paths = client.download(status, args.out)
    for path in paths:
        print(f"saved {path}", file=sys.stderr)
    emit({"id": status.id, "state": status.state, "files": [str(p) for p in paths]})
    return EXIT_OK


def _failed(status: TaskStatus) -> int:
    print(
        f"task {status.id} failed: {status.error_code or 'unknown'}: {status.error_message or ''}",
        file=sys.stderr,
    )
    return EXIT_TASK_FAILED


class Progress:
    """Progress on ``stream``: one rewritten line with a spinner on a terminal; elsewhere (a
    log, a pipe) one line per state change and no control characters."""

    FRAMES = "|/-\\"

    def __init__(self, task_id: str, stream: TextIO, clock: Callable[[], float] = time.monotonic):
        self.task_id = task_id
        self.stream = stream
        self.tty = stream.isatty()
        self.clock = clock
        self.started = clock()
        self.ticks = 0
        self.last: str | None = None

    def describe(self, status: TaskStatus) -> str:
        text = f"task {self.task_id}: {status.state or 'unknown'}"
        if status.attempts > 1:
            text += f" (attempt {status.attempts})"
        return text

    def __call__(self, status: TaskStatus) -> None:
        text = self.describe(status)
        if self.tty:
            frame = self.FRAMES[self.ticks % len(self.FRAMES)]
            self.ticks += 1
            elapsed = self.clock() - self.started
            self.stream.write(f"\r\x1b[2K{frame} {text}  {elapsed:.0f}s")
            self.stream.flush()
        elif text != self.last:
            self.stream.write(text + "\n")
            self.stream.flush()
        self.last = text

    def close(self) -> None:
        if self.tty and self.ticks:
            self.stream.write("\n")
            self.stream.flush()
