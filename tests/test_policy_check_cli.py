"""`sdfleet check PATH`: exit codes, output lines and clear errors for bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from sdfleet.cli import main
from sdfleet.policy import from_resources_json, run_rules

REPO_ROOT = Path(__file__).resolve().parent.parent
SSE = {"sqsManagedSseEnabled": True}


def _queue(name: str, **inputs: Any) -> dict[str, Any]:
    return {"type": "aws:sqs/queue:Queue", "name": name, "parent": None, "inputs": inputs}


def _write(tmp_path: Path, data: Any) -> Path:
    path = tmp_path / "resources.json"
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    return path


def test_synth_output_checks_clean(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "synth"
    assert main(["synth", "--stack", "dev", "--out", str(out), "--quiet"]) == 0
    capsys.readouterr()
    # The folder works as well as the file inside it.
    assert main(["check", str(out)]) == 0
    assert capsys.readouterr().out.startswith("sdfleet check: no findings (")
    assert main(["check", str(out / "resources.json")]) == 0


def test_findings_exit_1_one_line_each(tmp_path: Path) -> None:
    path = _write(tmp_path, [_queue("plain"), _queue("open", policy="{")])
    proc = subprocess.run(
        [sys.executable, "-m", "sdfleet.cli", "check", str(path)],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        check=False,
    )
    assert proc.returncode == 1, proc.stderr
    assert proc.stdout.splitlines() == [
        "plain: queue-encryption: not encrypted (no SSE-SQS or KMS key)",
        "open: policy-invalid: policy: not valid JSON (Expecting property name enclosed in "
        "double quotes at char 1); the rules cannot check it",
        "open: queue-encryption: not encrypted (no SSE-SQS or KMS key)",
        "plain: queue-dead-letter: no dead-letter queue (and not a DLQ or a tagged sink)",
        "open: queue-dead-letter: no dead-letter queue (and not a DLQ or a tagged sink)",
    ]
    assert "5 finding(s) in 2 resources" in proc.stderr


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('[{"type": "x"', "not valid JSON (Expecting ',' delimiter at line 1 column 14)"),
        ({"resources": []}, "expected a list of resources, got dict"),
        (["x"], "resources.json[0]: expected an object, got 'x'"),
        ([{"name": "a", "inputs": {}}], "resources.json[0]: needs string 'type' and 'name'"),
        ([{"type": "t", "name": "a", "inputs": []}], "and an object 'inputs'"),
    ],
)
def test_invalid_file_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: Any, message: str
) -> None:
    path = _write(tmp_path, content)
    assert main(["check", str(path)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith(f"sdfleet check: {path}")
    assert message in captured.err


def test_missing_file_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", str(tmp_path / "nope.json")]) == 2
    err = capsys.readouterr().err
    assert err == (
        f"sdfleet check: {tmp_path / 'nope.json'}: no such file "
        "(write one with `sdfleet synth --out DIR`)\n"
    )
    # An empty folder names the resources.json it looked for.
    assert main(["check", str(tmp_path)]) == 2
    assert str(tmp_path / "resources.json") in capsys.readouterr().err


def test_outputs_recomputed_in_the_files_region() -> None:
    """A DLQ is recognised by its ARN, which the mocks built in the stack's region."""
    dlq_arn = "arn:aws:sqs:eu-west-1:123456789012:dlq-mock"
    redrive = json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": 3})
    data = [_queue("main", redrivePolicy=redrive, **SSE), _queue("dlq", **SSE)]
    assert run_rules(from_resources_json(data)) == []
    data[0]["inputs"]["redrivePolicy"] = redrive.replace("dlq-mock", "other")
    [found] = run_rules(from_resources_json(data))
    assert (found.name, found.rule) == ("dlq", "queue-dead-letter")


def test_state_and_urn_in_the_file_are_used() -> None:
    urn = "urn:pulumi:dev::sdfleet::aws:sqs/queue:Queue::dlq"
    data = [
        _queue("main", redrivePolicy=json.dumps({"deadLetterTargetArn": "arn:x"}), **SSE),
        {**_queue("dlq", **SSE), "urn": urn, "state": {"arn": "arn:x"}},
        {**_queue("loose", **SSE), "urn": urn.replace("dlq", "loose"), "state": {}},
    ]
    [found] = run_rules(from_resources_json(data))
    assert found.line() == (
        "urn:pulumi:dev::sdfleet::aws:sqs/queue:Queue::loose: queue-dead-letter: "
        "no dead-letter queue (and not a DLQ or a tagged sink)"
    )
