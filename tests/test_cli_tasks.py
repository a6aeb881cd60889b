"""``sdfleet submit|status|wait|get`` driving a moto-backed stack (the real handler behind
``sdfleet.local_api``), with an agent thread completing tasks as the queue delivers them.
Exit codes, errors shown as the API gave them, and the key never in any output."""

from __future__ import annotations

import io
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from sdfleet.cli import main
from sdfleet.cli_tasks import Progress
from sdfleet.client import TaskStatus
from tests.test_client_support import API_KEY, PNG, Stack, moto_stack


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    with moto_stack() as built:
        yield built


@pytest.fixture
def env(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> Stack:
    monkeypatch.setenv("SDFLEET_API_URL", stack.url)
    monkeypatch.setenv("SDFLEET_API_KEY", API_KEY)
    return stack


class Agent(threading.Thread):
    """Takes sd15 tasks off the queue as they arrive and completes (or fails) them."""

    def __init__(self, stack: Stack, fail_prompt: str | None = None) -> None:
        super().__init__(daemon=True)
        self.stack = stack
        self.fail_prompt = fail_prompt
        self.stop = threading.Event()
        self.sqs = boto3.client("sqs")

    def run(self) -> None:
        url = self.stack.queues["sd15"]
        while not self.stop.is_set():
            got = self.sqs.receive_message(QueueUrl=url, WaitTimeSeconds=1).get("Messages", [])
            for message in got:
                task = json.loads(json.loads(message["Body"])["Message"])
                task_id = task["metadata"]["id"]
                if task["content"]["prompt"] == self.fail_prompt:
                    self.stack.fail(task_id, "inference_failed", "the server said no")
                else:
                    self.stack.complete(task_id)
                self.sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])


@pytest.fixture
def agent(env: Stack) -> Iterator[Agent]:
    running = Agent(env, fail_prompt="doomed")
    running.start()
    yield running
    running.stop.set()
    running.join()


def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    assert API_KEY not in out + err
    return code, out, err


def test_submit_wait_out_downloads_the_png(
    agent: Agent, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code, out, err = cli(
        capsys, "submit", "--runtime", "sd15", "--prompt", "a lighthouse", "--steps", "4",
        "--out", str(tmp_path), "--poll-interval", "0.05", "--timeout", "60",
    )  # fmt: skip
    assert code == 0, err
    doc = json.loads(out)
    (saved,) = doc["files"]
    assert Path(saved).read_bytes() == PNG + b"\x00"
    assert Path(saved).parent == tmp_path and doc["state"] == "completed"
    assert f"submitted {doc['id']} to sd15" in err and "saved" in err
    assert "completed" in err  # the progress lines (stderr is not a terminal here)


def test_a_failed_task_exits_1(agent: Agent, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = cli(
        capsys, "submit", "--runtime", "sd15", "--prompt", "doomed", "--wait", "--poll-interval", "0.05"
    )  # fmt: skip
    assert code == 1
    doc = json.loads(out)
    assert doc["state"] == "failed" and doc["error"]["code"] == "inference_failed"
    assert "failed: inference_failed: the server said no" in err
    assert cli(capsys, "status", doc["id"])[0] == 1
    assert cli(capsys, "get", doc["id"], "--out", "unused")[0] == 1


def test_status_wait_and_get(
    env: Stack, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code, out, _ = cli(capsys, "submit", "--runtime", "sd15", "--prompt", "later", "--id", "cli-1")
    assert code == 0 and json.loads(out)["id"] == "cli-1"
    code, out, _ = cli(capsys, "status", "cli-1")
    assert code == 0 and json.loads(out)["state"] == "queued"
    assert cli(capsys, "get", "cli-1", "--out", str(tmp_path))[0] == 4  # not finished yet
    code, _, err = cli(capsys, "wait", "cli-1", "--timeout", "0.2", "--poll-interval", "0.05")
    assert code == 4 and "still queued" in err

    env.receive("sd15")
    env.complete("cli-1", images=2)
    code, out, _ = cli(capsys, "wait", "cli-1", "--timeout", "5")
    assert code == 0 and json.loads(out)["state"] == "completed"
    code, out, _ = cli(capsys, "get", "cli-1", "--out", str(tmp_path))
    files = json.loads(out)["files"]
    assert code == 0 and [Path(f).read_bytes() for f in files] == [PNG + b"\x00", PNG + b"\x01"]


def test_api_errors_are_shown_as_given_and_exit_3(
    env: Stack, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code, out, err = cli(capsys, "submit", "--runtime", "nope", "--prompt", "x")
    assert (code, out) == (3, "")
    body = err.split("the API answered HTTP 400: ", 1)[1].strip()
    assert json.loads(body)["error"]["code"] == "unknown_runtime"
    code, _, err = cli(capsys, "status", "no-such-task")
    assert code == 3 and '"not_found"' in err
    code, _, err = cli(capsys, "status", "x", "--api-key", "wrong-key")
    assert code == 3 and "INVALID_API_KEY" in err


def test_a_task_file_with_overrides(
    env: Stack, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    task = tmp_path / "task.json"
    task.write_text(
        json.dumps(
            {
                "metadata": {"runtime": "flux", "tasktype": "text-to-image"},
                "content": {"prompt": "p"},
            }
        )
    )
    code, out, _ = cli(capsys, "submit", "--file", str(task), "--runtime", "sd15", "--id", "f-1")
    assert code == 0 and json.loads(out)["id"] == "f-1"
    (sent,) = env.receive("sd15")
    assert sent["metadata"]["runtime"] == "sd15" and sent["content"] == {"prompt": "p"}


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["submit", "--prompt", "x"], "--runtime and --prompt are required"),
        (["submit", "--file", "/no/such/file.json"], "cannot read task file"),
        (["submit", "--file", "/dev/null", "--prompt", "x"], "exclusive"),
    ],
)
def test_usage_errors_exit_2(
    env: Stack, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    code, _, err = cli(capsys, *argv)
    assert code == 2 and message in err


def test_configuration_errors_exit_2(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("SDFLEET_API_URL", raising=False)
    monkeypatch.delenv("SDFLEET_API_KEY", raising=False)
    code, _, err = cli(capsys, "status", "x")
    assert code == 2 and "no API URL" in err and "SDFLEET_API_URL" in err
    code, _, err = cli(capsys, "status", "x", "--api-url", "http://127.0.0.1:9")
    assert code == 2 and "no API key" in err
    monkeypatch.setenv("PATH", str(tmp_path))  # no pulumi here
    code, _, err = cli(capsys, "status", "x", "--stack", "dev")
    assert code == 2 and "needs the pulumi CLI, which is not on PATH" in err


def test_an_unreachable_api_exits_3(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = cli(
        capsys, "status", "x", "--api-url", "http://127.0.0.1:9", "--api-key", API_KEY
    )
    assert code == 3 and "127.0.0.1:9" in err


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def _status(state: str, attempts: int = 1) -> TaskStatus:
    return TaskStatus.from_json({"id": "t", "state": state, "attempts": attempts})


def test_progress_on_a_terminal_and_in_a_log() -> None:
    log = io.StringIO()
    progress = Progress("t", log)
    for state in ("queued", "queued", "running", "running"):
        progress(_status(state))
    progress(_status("running", attempts=2))
    progress.close()
    assert log.getvalue() == "task t: queued\ntask t: running\ntask t: running (attempt 2)\n"

    tty = Terminal()
    ticks = iter([0.0, 3.0, 7.0])
    spinner: Any = Progress("t", tty, clock=lambda: next(ticks))
    spinner(_status("queued"))
    spinner(_status("running"))
    spinner.close()
    assert tty.getvalue() == "\r\x1b[2K| task t: queued  3s\r\x1b[2K/ task t: running  7s\n"
