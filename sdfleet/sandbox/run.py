"""``sdfleet sandbox``: start the whole data plane on loopback and run until Ctrl-C."""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import secrets
import shlex
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sdfleet.client_config import sandbox_file
from sdfleet.components.config import ConfigError
from sdfleet.components.config_model import StackConfig

READY_PREFIX = "sdfleet sandbox ready"
AGENT_START_TIMEOUT_S = 60.0
AGENT_STOP_TIMEOUT_S = 30.0


class UsageError(Exception):
    pass


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "sandbox",
        help="run the task API, queues and agents on this machine (no AWS, no GPU)",
        description="Start a moto server with the stack's topics, queues, DLQs, bucket and task "
        "table, the task API on loopback, and one queue agent per runtime, pointed at your own "
        "inference server (--runtime NAME=URL) or a built-in CPU preview server that returns "
        "placeholder images labelled 'SANDBOX PREVIEW'. Ctrl-C stops everything.",
    )
    p.add_argument("--stack", default="dev", help="stack whose runtimes to run (default dev)")
    p.add_argument("--port", type=int, default=8000, help="the API's port (default 8000)")
    p.add_argument(
        "--runtime",
        action="append",
        default=[],
        metavar="NAME=URL",
        help="serve runtime NAME with your server at URL (repeatable; others get a preview)",
    )
    p.add_argument("--state", type=Path, help="keep outputs in DIR/outputs between runs")
    p.add_argument("--project-dir", type=Path, help="folder with Pulumi.yaml (default: cwd)")


def parse_runtime_urls(values: list[str], config: StackConfig) -> dict[str, str]:
    known = {rt.name for rt in config.runtimes}
    urls: dict[str, str] = {}
    for value in values:
        name, sep, url = value.partition("=")
        if not sep or not url.startswith(("http://", "https://")):
            raise UsageError(f"--runtime {value!r}: expected NAME=http://HOST:PORT")
        if name not in known:
            raise UsageError(f"--runtime {value!r}: the stack has no runtime {name!r}")
        urls[name] = url
    return urls


def load_config(project_dir: Path | None, stack: str) -> StackConfig:
    from sdfleet.cli import find_project_dir, load_stack_config
    from sdfleet.components.config import parse_config, split_namespaced

    root = (project_dir or find_project_dir(Path.cwd())).resolve()
    return parse_config(split_namespaced(load_stack_config(root, stack)))


@dataclass
class Sandbox:
    """Everything started, in start order; :meth:`stop` undoes it in reverse."""

    stops: list[tuple[str, Any]] = field(default_factory=list)
    lines: list[str] = field(default_factory=list)

    def started(self, what: str, stop: Any) -> None:
        self.stops.append((what, stop))

    def stop(self) -> None:
        for what, stop in reversed(self.stops):
            try:
                stop()
            except Exception as exc:  # keep stopping the rest
                print(f"sdfleet sandbox: stopping {what} failed: {exc}", file=sys.stderr)
        self.stops.clear()


def _handler_environment(plane: Any, config: StackConfig, endpoint_env: dict[str, str]) -> None:
    """The task API Lambda's environment (``api_ingress``), in this process: the handler reads
    ``os.environ`` as in Lambda."""
    from sdfleet.components.builders.api import runtimes_env
    from sdfleet.components.pipeline_args import runtime_catalogue
    from sdfleet.components.task_api import handler as task_api
    from sdfleet.components.task_api.settings import LOOPBACK_ENV

    os.environ.update(endpoint_env)
    os.environ.update(
        INPUT_TOPIC_ARN=plane.input_topic_arn,
        OUTPUT_BUCKET=plane.bucket,
        RUNTIMES=runtimes_env(runtime_catalogue(config)),
        TASK_TABLE_NAME=plane.table_name,
        TASK_TTL_SECONDS=str(config.tasks.ttl_days * 86400),
    )
    os.environ["STATUS_URL_EXPIRY_SECONDS"] = str(config.api.status_url_expiry_seconds)
    # Only here, in the sandbox's own process: callbacks to this machine (api_ingress never
    # sets it, and the cloud's delivery function refuses loopback whatever the API accepted).
    os.environ[LOOPBACK_ENV] = "1"
    task_api.reset()


def _servers(box: Sandbox, config: StackConfig, urls: dict[str, str]) -> dict[str, str]:
    """The agent's ``API_BASE_URL`` per runtime: the user's server or a started preview."""
    from sdfleet.sandbox.preview import start_preview_server

    bases: dict[str, str] = {}
    for rt in config.runtimes:
        if rt.name in urls:
            bases[rt.name] = urls[rt.name]
            box.lines.append(f"  runtime {rt.name} ({rt.type}): your server at {urls[rt.name]}")
            continue
        server = start_preview_server(rt.type, rt.model_filename)
        box.started(f"the {rt.name} preview server", server.stop)
        base = server.url + ("/sdapi/v1/" if rt.type == "sdwebui" else "")
        bases[rt.name] = base
        box.lines.append(
            f"  runtime {rt.name} ({rt.type}): SANDBOX PREVIEW server at {server.url} "
            "(CPU placeholders labelled 'SANDBOX PREVIEW', not model output)"
        )
    return bases


def _webhooks(box: Sandbox, plane: Any, config: StackConfig) -> None:
    """The webhook queue and the delivery handler on a thread, with a secret for this run."""
    from sdfleet.sandbox.webhooks import WebhookThread, build_webhooks, webhook_function

    hooks = build_webhooks(plane)
    function = webhook_function(plane, hooks, config.tasks.ttl_days * 86400)
    thread = WebhookThread(function, hooks.queue_url, plane.endpoint).start()
    box.started("the webhook deliveries", thread.stop)
    box.lines.append(
        "  webhooks: signed (Standard Webhooks) to metadata.callback URLs on this machine only "
        "(http or https to 127.0.0.1, [::1] or localhost, port >= 1024)"
    )
    box.lines.append(f"  webhook signing secret: {hooks.secret.encoded()}")


def start(args: argparse.Namespace, box: Sandbox) -> tuple[str, str]:
    """Start everything; returns (API URL, API key)."""
    from sdfleet.fakes.fleet import MotoServer
    from sdfleet.local_api import LocalApi
    from sdfleet.sandbox.agents import AgentProcess, start_agent, stop_all
    from sdfleet.sandbox.plane import build_plane

    config = load_config(args.project_dir, args.stack)
    urls = parse_runtime_urls(args.runtime, config)
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto's request lines
    moto = MotoServer().start()
    box.started("the moto server", moto.stop)
    plane = build_plane(moto.endpoint, config)
    box.lines.append(f"  AWS (moto, in memory): {moto.endpoint}")
    groups = ", ".join(plane.metrics_log_groups.values())
    box.lines.append(f"  agent metrics (EMF, as in the cloud): log groups {groups}")
    _handler_environment(plane, config, moto.env())
    bases = _servers(box, config, urls)
    agents: list[AgentProcess] = []
    box.started("the agents", lambda: stop_all(agents, AGENT_STOP_TIMEOUT_S))
    for rt in config.runtimes:
        agents.append(start_agent(config, rt, plane, bases[rt.name]))
    from sdfleet.sandbox.sweeper import SweeperThread, sweeper_for

    sweeper = SweeperThread(sweeper_for(plane, config.tasks.ttl_days * 86400)).start()
    box.started("the DLQ sweeper", sweeper.stop)
    _webhooks(box, plane, config)
    # A prefix: a key starting with "-" would read as an option in the printed command.
    key = "sbx_" + secrets.token_urlsafe(24)
    api = LocalApi({key: "sandbox"}, port=args.port).start()
    box.started("the task API", api.stop)
    if args.state is not None:
        from sdfleet.sandbox.outputs import OutputMirror

        mirror = OutputMirror(moto.endpoint, plane.bucket, args.state / "outputs").start()
        box.started("the output mirror", mirror.stop)
        box.lines.append(f"  outputs: copied to {mirror.folder} as tasks complete")
    else:
        box.lines.append("  outputs: in the sandbox's S3 (--out on submit, or sdfleet get)")
    deadline = time.monotonic() + AGENT_START_TIMEOUT_S
    for agent in agents:
        agent.wait_ready(deadline)
    example = next((rt.name for rt in config.runtimes if rt.type == "sdwebui"), None)
    if example is not None:
        command = [
            "sdfleet", "submit", "--api-url", api.url, "--api-key", key, "--runtime", example,
            "--prompt", "a lighthouse at dusk", "--wait", "--out", "sandbox-out",
        ]  # fmt: skip
        box.lines.append(f"  try: {shlex.join(command)}")
    return api.url, key


def _announce(url: str, key: str) -> Any:
    """Write the connection file `sdfleet submit --sandbox` reads (0600: it holds the key);
    the returned stop removes it if it is still this sandbox's."""
    path = sandbox_file()
    path.parent.mkdir(parents=True, exist_ok=True)
    body = json.dumps({"api_url": url, "api_key": key, "pid": os.getpid()})
    temp = path.with_name(f".{path.name}.{os.getpid()}")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(body)
    os.replace(temp, path)

    def remove() -> None:
        with contextlib.suppress(FileNotFoundError, ValueError, KeyError):
            if json.loads(path.read_text())["pid"] == os.getpid():
                path.unlink()

    return remove


def main(args: argparse.Namespace) -> int:
    began = time.monotonic()
    stop = threading.Event()

    def on_signal(signum: int, _frame: Any) -> None:
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    box = Sandbox()
    try:
        url, key = start(args, box)
    except UsageError as err:
        box.stop()
        print(f"sdfleet sandbox: {err}", file=sys.stderr)
        return 2
    except ConfigError as err:
        box.stop()
        print(
            f"sdfleet sandbox: stack {args.stack!r} has an invalid configuration:", file=sys.stderr
        )
        for line in err.errors:
            print(f"  {line}", file=sys.stderr)
        return 2
    except FileNotFoundError as err:
        box.stop()
        print(f"sdfleet sandbox: {err}", file=sys.stderr)
        return 2
    except Exception as err:
        box.stop()
        print(f"sdfleet sandbox: could not start: {err}", file=sys.stderr)
        return 1
    try:
        if not stop.is_set():  # a Ctrl-C during the start: stop without announcing
            took = time.monotonic() - began
            print(f"{READY_PREFIX} in {took:.1f} s (stack {args.stack}); Ctrl-C stops it")
            print(f"  API URL: {url}")
            print(f"  API key: {key}")
            print("\n".join(box.lines), flush=True)
            box.started("connection file", _announce(url, key))
        with contextlib.suppress(KeyboardInterrupt):
            # A timed wait: the main thread wakes regularly, so the signal handler always runs.
            while not stop.wait(0.5):
                pass
        print("sdfleet sandbox: stopping (agents drain first)", file=sys.stderr, flush=True)
    finally:
        box.stop()
    print("sdfleet sandbox: stopped", file=sys.stderr, flush=True)
    return 0
