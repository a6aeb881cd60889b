"""``sdfleet sandbox`` as a user runs it: a subprocess, tasks submitted with the CLI, the status
API, a hostile body, and Ctrl-C (SIGINT) leaving no process behind."""

from __future__ import annotations

import http.client
import http.server
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import standardwebhooks

from sdfleet.agent.webhooks_sign import WebhookSecret
from sdfleet.client import Backoff, Client, text_to_image
from sdfleet.fakes._common import free_port
from sdfleet.fakes.images import png_size, png_text
from sdfleet.sandbox.preview import PREVIEW_TEXT_KEY
from sdfleet.sandbox.run import READY_PREFIX
from tests.agent.test_e2e_comfyui import graph

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[1]
START_TIMEOUT_S = 90.0


@dataclass
class Running:
    proc: subprocess.Popen[str]
    url: str
    key: str
    started_in: float
    stderr: Path
    webhook_secret: str
    aws_endpoint: str

    def children(self) -> set[int]:
        """Pids whose parent is the sandbox (from /proc; psutil is not a dependency)."""
        found = set()
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            # "pid (comm) state ppid ...": comm may hold spaces, so split after the last ")".
            if int(stat.rpartition(")")[2].split()[1]) == self.proc.pid:
                found.add(int(entry.name))
        return found


def _read_lines(stream: Any, lines: queue.Queue[str | None]) -> None:
    for line in stream:
        lines.put(line)
    lines.put(None)


def _wait_ready(proc: subprocess.Popen[str], stderr: Path) -> dict[str, str]:
    """Read the sandbox's stdout until its ready block is complete; its "name: value" lines."""
    lines: queue.Queue[str | None] = queue.Queue()
    assert proc.stdout is not None
    threading.Thread(target=_read_lines, args=(proc.stdout, lines), daemon=True).start()
    seen: dict[str, str] = {}
    deadline = time.monotonic() + START_TIMEOUT_S
    while "try" not in seen:
        line = lines.get(timeout=max(0.1, deadline - time.monotonic()))
        if line is None:
            raise AssertionError(f"the sandbox exited:\n{stderr.read_text()[-3000:]}")
        if line.startswith(READY_PREFIX):
            seen["ready"] = line
        name, sep, value = line.strip().partition(": ")
        if sep and "ready" in seen:
            seen[name] = value
    return seen


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    state = tmp_path_factory.mktemp("state")
    stderr = state / "sandbox.log"
    began = time.monotonic()
    with stderr.open("w") as err:
        command = [sys.executable, "-m", "sdfleet.cli", "sandbox", "--port", str(free_port())]
        proc = subprocess.Popen(
            [*command, "--state", str(state)],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
            env={**os.environ, "SDFLEET_SANDBOX_FILE": str(state / "sandbox.json")},
        )
    try:
        ready = _wait_ready(proc, stderr)
        took = time.monotonic() - began
        secret = ready["webhook signing secret"]
        moto = ready["AWS (moto, in memory)"]
        yield Running(proc, ready["API URL"], ready["API key"], took, stderr, secret, moto)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


def cli(sandbox: Running, *args: str) -> dict[str, Any]:
    """``sdfleet <args> --api-url ... --api-key ...``; its JSON answer (exit code 0)."""
    command = [sys.executable, "-m", "sdfleet.cli", *args]
    command += ["--api-url", sandbox.url, "--api-key", sandbox.key]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return dict(json.loads(done.stdout))


def post(sandbox: Running, body: bytes, key: str | None = None) -> tuple[int, dict[str, Any]]:
    parts = urlsplit(sandbox.url)
    conn = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=30)
    conn.request("POST", "/v1alpha2", body=body, headers={"x-api-key": key or sandbox.key})
    answer = conn.getresponse()
    data = json.loads(answer.read())
    conn.close()
    return answer.status, data


def test_the_printed_key_cannot_read_as_an_option(sandbox: Running) -> None:
    assert sandbox.key.startswith("sbx_")


def test_starts_within_the_documented_time(sandbox: Running) -> None:
    print(f"\nsandbox ready in {sandbox.started_in:.2f} s (subprocess start to ready line)")
    assert sandbox.started_in < 30  # generous for loaded CI; docs/sandbox.md has the figure


def test_text_to_image_through_the_cli(sandbox: Running, tmp_path: Path) -> None:
    prompt = "a lighthouse at dusk"
    began = time.monotonic()
    args = ["submit", "--runtime", "sd15", "--prompt", prompt, "--width", "256", "--wait"]
    saved = cli(sandbox, *args, "--poll-interval", "0.1", "--out", str(tmp_path))
    print(f"\ntext-to-image: submit to downloaded in {time.monotonic() - began:.2f} s (CLI)")
    pngs = [Path(p) for p in saved["files"] if p.endswith(".png")]
    assert pngs, saved
    data = pngs[0].read_bytes()
    chunks = png_text(data)
    assert chunks[PREVIEW_TEXT_KEY].startswith("preview")
    assert chunks["parameters"].startswith(prompt)
    assert png_size(data)[0] == 256
    status = Client(sandbox.url, sandbox.key).get(saved["id"])
    assert status.state == "completed" and status.runtime == "sd15"
    assert status.outputs


def test_submit_wait_get_and_the_state_folder(sandbox: Running, tmp_path: Path) -> None:
    sent = cli(sandbox, "submit", "--runtime", "sd15", "--prompt", "a red fox")
    assert cli(sandbox, "wait", sent["id"], "--poll-interval", "0.1")["state"] == "completed"
    assert cli(sandbox, "status", sent["id"])["state"] == "completed"
    # `--sandbox` finds the running sandbox's URL and key in its connection file (0600).
    connection = Path(sandbox.stderr).parent / "sandbox.json"
    assert connection.stat().st_mode & 0o777 == 0o600
    done = subprocess.run(
        [sys.executable, "-m", "sdfleet.cli", "status", sent["id"], "--sandbox"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "SDFLEET_SANDBOX_FILE": str(connection)},
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["state"] == "completed"
    assert sandbox.key not in done.stdout + done.stderr
    saved = cli(sandbox, "get", sent["id"], "--out", str(tmp_path))
    png = next(Path(p) for p in saved["files"] if p.endswith(".png"))
    assert PREVIEW_TEXT_KEY in png_text(png.read_bytes())
    state = Path(sandbox.stderr).parent / "outputs"
    deadline = time.monotonic() + 10
    # The mirror copies on its own schedule (every 0.5 s): wait for the file to appear.
    while not list(state.rglob(f"*{saved['id']}*/*.png")) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert list(state.rglob(f"*{saved['id']}*/*.png"))


def test_a_comfyui_pipeline_through_the_cli(sandbox: Running, tmp_path: Path) -> None:
    workflow = graph(seed=7)
    workflow["6"]["inputs"]["text"] = "a watercolour harbour"
    workflow["5"]["inputs"].update(width=256, height=256)
    task_file = tmp_path / "task.json"
    meta = {"runtime": "flux", "tasktype": "pipeline"}
    task_file.write_text(json.dumps({"task": {"metadata": meta, "content": workflow}}))
    out = tmp_path / "out"
    args = ["submit", "--file", str(task_file), "--wait", "--poll-interval", "0.1"]
    saved = cli(sandbox, *args, "--out", str(out))
    assert saved["state"] == "completed"
    png = next(Path(p) for p in saved["files"] if p.endswith(".png"))
    chunks = png_text(png.read_bytes())
    assert chunks[PREVIEW_TEXT_KEY].startswith("preview")
    assert json.loads(chunks["prompt"])["6"]["inputs"]["text"] == "a watercolour harbour"


def test_a_task_completes_quickly_through_the_client(sandbox: Running) -> None:
    client = Client(sandbox.url, sandbox.key)
    began = time.monotonic()
    sent = client.submit(text_to_image("sd15", "a quick one"))
    status = client.wait(sent.id, deadline=60, backoff=Backoff(initial=0.05, cap=0.1))
    took = time.monotonic() - began
    print(f"\none task end to end (client, 50 ms polls): {took:.2f} s")
    assert status.state == "completed"
    assert took < 10  # generous for loaded CI; docs/sandbox.md has the figure


def test_agent_metrics_reach_the_runtimes_log_group_as_emf(sandbox: Running) -> None:
    import boto3

    from sdfleet.agent.metrics import extract_metrics
    from sdfleet.fakes.fleet import FAKE_CREDENTIALS, REGION

    sent = Client(sandbox.url, sandbox.key).submit(text_to_image("sd15", "counted"))
    logs = boto3.client(
        "logs",
        endpoint_url=sandbox.aws_endpoint,
        region_name=REGION,
        aws_access_key_id=FAKE_CREDENTIALS["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=FAKE_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
    )
    group = "/sdfleet/sdfleet-sandbox/sd15/agent-metrics"
    deadline = time.monotonic() + 60
    documents: list[dict[str, Any]] = []
    while not any(d.get("task_id") == sent.id for d in documents):
        assert time.monotonic() < deadline, f"no metrics for {sent.id} in {group}"
        # The shipper flushes every 2 s in the sandbox; nothing to wait on but the log group.
        time.sleep(0.2)
        events = logs.filter_log_events(logGroupName=group)["events"]
        documents = [json.loads(e["message"]) for e in events]
    [done] = [d for d in documents if d.get("task_id") == sent.id]
    names = {name for _, name, _ in extract_metrics(done)}
    assert {"TasksCompleted", "InferenceMs", "EndToEndMs"} <= names
    assert any("AgentUp" in d for d in documents)


class _Hooks(http.server.ThreadingHTTPServer):
    """A webhook receiver on loopback: keeps each POST and sets ``arrived``."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _HookHandler)
        self.received: list[tuple[str, dict[str, str], bytes]] = []
        self.arrived = threading.Event()


class _HookHandler(http.server.BaseHTTPRequestHandler):
    server: _Hooks

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("content-length", "0")))
        headers = {k.lower(): v for k, v in self.headers.items()}
        self.server.received.append((self.path, headers, body))
        self.send_response(204)
        self.end_headers()
        self.server.arrived.set()

    def log_message(self, format: str, *args: Any) -> None:
        pass


def test_a_webhook_delivery_is_signed_with_the_printed_secret(
    sandbox: Running, tmp_path: Path
) -> None:
    hooks = _Hooks()
    threading.Thread(target=hooks.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{hooks.server_address[1]}/hooks/sdfleet?token=t1"
        meta = {"runtime": "sd15", "tasktype": "text-to-image", "callback": {"url": url}}
        task = {"metadata": meta, "content": {"prompt": "a signed hook", "width": 256}}
        task_file = tmp_path / "task.json"
        task_file.write_text(json.dumps({"task": task}))
        sent = cli(sandbox, "submit", "--file", str(task_file))
        assert hooks.arrived.wait(60), sandbox.stderr.read_text()[-3000:]
    finally:
        hooks.shutdown()
        hooks.server_close()
    (path, headers, body), *more = hooks.received
    assert more == []  # completed only (the default events); nothing for "queued"
    assert path == "/hooks/sdfleet?token=t1"
    payload = standardwebhooks.Webhook(sandbox.webhook_secret).verify(body, headers)
    assert isinstance(payload, dict)
    assert (payload["id"], payload["status"]) == (sent["id"], "completed")
    assert payload["callback"]["url"] == url
    other = WebhookSecret.generate().encoded()
    with pytest.raises(standardwebhooks.WebhookVerificationError):
        standardwebhooks.Webhook(other).verify(body, headers)


@pytest.mark.parametrize(
    ("url", "code"),
    [
        ("https://10.0.0.7:8443/hook", "forbidden_address"),
        ("http://10.0.0.7:8080/hook", "insecure_callback_url"),
        ("http://127.0.0.2:8080/hook", "insecure_callback_url"),
    ],
)
def test_callbacks_off_this_machine_are_refused_as_in_the_cloud(
    sandbox: Running, url: str, code: str
) -> None:
    meta = {"runtime": "sd15", "tasktype": "text-to-image", "callback": {"url": url}}
    task = {"metadata": meta, "content": {"prompt": "x"}}
    status, answer = post(sandbox, json.dumps({"task": task}).encode())
    assert (status, answer["error"]["code"]) == (400, code)


@pytest.mark.parametrize(
    "body",
    [
        b"\xff\xfe{not json",
        b'{"task": {"metadata": {"runtime": "sd15"}, "content": {"steps": 10000}}}',
        b'{"task": {"metadata": {"runtime": "nope"}, "content": {"prompt": "x"}}}',
        b'{"task": {"metadata": {"runtime": "sd15"}, "content": {"prompt": "x"}}, "x": '
        + b"[" * 5000
        + b"]" * 5000
        + b"}",
    ],
)
def test_hostile_bodies_get_a_4xx(sandbox: Running, body: bytes) -> None:
    status, answer = post(sandbox, body)
    assert 400 <= status < 500, answer
    assert set(answer["error"]) >= {"code", "message"}


def test_a_wrong_key_is_the_gateways_403(sandbox: Running) -> None:
    status, answer = post(sandbox, b"{}", key="wrong")
    assert (status, answer["error"]["code"]) == (403, "INVALID_API_KEY")


def _agent_of(sandbox: Running, runtime: str) -> int:
    for pid in sandbox.children():
        environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        if f"RUNTIME_NAME={runtime}".encode() in environ:
            return pid
    raise AssertionError(f"no {runtime} agent among {sandbox.children()}")


def test_a_killed_agent_is_restarted_and_tasks_still_complete(sandbox: Running) -> None:
    killed = _agent_of(sandbox, "sd15")
    os.kill(killed, signal.SIGKILL)
    client = Client(sandbox.url, sandbox.key)
    sent = client.submit(text_to_image("sd15", "after a crash"))
    # The dead agent's last long poll may still take the message inside moto: it then comes
    # back once its visibility timeout (60 s in the dev stack) ends, and no task is lost.
    status = client.wait(sent.id, deadline=150, backoff=Backoff(initial=0.1, cap=0.5))
    assert status.state == "completed"
    assert _agent_of(sandbox, "sd15") != killed
    assert "the sd15 agent exited (-9); restarting it" in sandbox.stderr.read_text()


def test_sigint_stops_everything(sandbox: Running) -> None:
    children = sandbox.children()
    assert len(children) >= 2  # one agent per runtime of the dev stack
    sandbox.proc.send_signal(signal.SIGINT)
    assert sandbox.proc.wait(60) == 0
    left = [pid for pid in children if Path(f"/proc/{pid}").exists()]
    assert left == [], f"left running: {left}"
    log = sandbox.stderr.read_text()
    assert "sdfleet sandbox: stopped" in log
    # Each agent got one stop signal and drained (a second one skips the drain).
    assert "second stop signal" not in log
    assert log.count('"msg":"agent stopped"') >= len(children)
    assert not (Path(sandbox.stderr).parent / "sandbox.json").exists()  # the key is gone too
