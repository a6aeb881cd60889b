"""sdfleet snapshot check against moto, the cleanup ledger, the stack facts and --help.

Shares the moto fixture and fakes of tests/test_snapshot.py.
"""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path
from typing import Any

import pytest

from sdfleet.cli import main
from sdfleet.snapshot.ledger import CleanupLedger
from sdfleet.snapshot.stack import load_stack
from tests.test_snapshot import (
    AGENT,
    AMI_PARAMETER,
    CLUSTER,
    COMFY,
    REGION,
    ROOT,
    SDWEBUI,
    FakeShell,
    _use,
    aws,
)

__all__ = ["aws"]  # the fixture, used by name

# ------------------------------------------------------------------------------------------
# cleanup ledger


def test_ledger_undoes_newest_first_once_and_survives_a_failing_step() -> None:
    calls: list[str] = []
    logs: list[str] = []
    ledger = CleanupLedger(log=logs.append)
    ledger.add("group", lambda: calls.append("group"))

    def boom() -> None:
        calls.append("profile")
        raise RuntimeError("throttled")

    ledger.add("profile", boom)
    ledger.add("instance", lambda: calls.append("instance"))
    ledger.add("snapshot", lambda: calls.append("snapshot"))
    ledger.keep("snapshot")
    assert ledger.run() == ["profile: throttled"]
    assert calls == ["instance", "profile", "group"]
    assert ledger.run() == ["profile: throttled"]  # nothing runs twice
    assert calls == ["instance", "profile", "group"]


def test_ctrl_c_during_cleanup_does_not_stop_it() -> None:
    calls: list[str] = []
    logs: list[str] = []
    ledger = CleanupLedger(log=logs.append)
    ledger.add("first", lambda: calls.append("first"))

    def interrupted() -> None:
        os.kill(os.getpid(), signal.SIGINT)  # delivered before kill() returns
        calls.append("x")

    ledger.add("interrupted", interrupted)
    assert ledger.run() == []
    assert calls == ["x", "first"]
    assert any("cleanup in progress" in line for line in logs)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


# ------------------------------------------------------------------------------------------
# check


def _tagged_snapshot(session: Any, digests: list[str], built_on: str | None = None) -> str:
    ec2 = session.client("ec2")
    volume = ec2.create_volume(AvailabilityZone=f"{REGION}a", Size=100)["VolumeId"]
    tags = [{"Key": "sdfleet:stack", "Value": "dev"}] + [
        {"Key": f"sdfleet:digest:sha256:{d * 64}", "Value": "repo"} for d in digests
    ]
    if built_on:
        tags.append({"Key": "sdfleet:bottlerocket", "Value": built_on})
    return str(
        ec2.create_snapshot(
            VolumeId=volume, TagSpecifications=[{"ResourceType": "snapshot", "Tags": tags}]
        )["SnapshotId"]
    )


def _project(tmp_path: Path, snapshots: dict[str, str]) -> Path:
    (tmp_path / "Pulumi.yaml").write_text("name: t\nruntime: python\nstackConfigDir: stacks\n")
    (tmp_path / "stacks").mkdir()
    runtimes = [
        {"name": name, "type": "comfyui", "gpu": {"snapshotId": snap}}
        for name, snap in snapshots.items()
    ]
    config = {"config": {"aws:region": REGION, "sdfleet:runtimes": runtimes}}
    (tmp_path / "stacks" / "Pulumi.t.yaml").write_text(json.dumps(config))
    return tmp_path


def _check(project: Path, *extra: str) -> int:
    return main(["snapshot", "check", "--stack", "t", "--project-dir", str(project), *extra])


def test_check_passes_when_the_snapshot_holds_every_digest(
    aws: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    _use(monkeypatch, aws["session"], FakeShell())
    snap = _tagged_snapshot(aws["session"], ["a", "b", "c"])
    project = _project(tmp_path, {"sd15": snap, "other": snap})
    assert _check(project, "--image", f"agent={AGENT}", "--image", f"sd15={SDWEBUI}") == 0
    assert f"OK   {snap} (sd15, other)" in capsys.readouterr().out


def test_check_fails_naming_the_missing_image(
    aws: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    _use(monkeypatch, aws["session"], FakeShell())
    old = _tagged_snapshot(aws["session"], ["a"])  # built before the runtime image changed
    fine = _tagged_snapshot(aws["session"], ["a", "c"])
    project = _project(tmp_path, {"sd15": old, "flux": fine})
    outputs = tmp_path / "out.json"
    outputs.write_text(
        json.dumps({"agentImage": AGENT, "runtimeImages": {"sd15": SDWEBUI, "flux": COMFY}})
    )
    assert _check(project, "--outputs", str(outputs)) == 1
    out = capsys.readouterr().out
    assert f"FAIL {old} (sd15): images missing" in out
    assert f"missing sd15: {SDWEBUI}" in out
    assert f"OK   {fine} (flux)" in out
    assert "sdfleet snapshot build --stack t" in out


def test_check_flags_a_snapshot_without_sdfleet_tags_and_an_explicit_id(
    aws: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    _use(monkeypatch, aws["session"], FakeShell())
    bare = _tagged_snapshot(aws["session"], [])
    full = _tagged_snapshot(aws["session"], ["a"])
    project = _project(tmp_path, {"sd15": bare})
    assert _check(project, "--image", AGENT) == 1
    assert "carries no sdfleet:digest:* tags" in capsys.readouterr().out
    assert _check(project, "--image", AGENT, "--snapshot-id", full) == 0


# ------------------------------------------------------------------------------------------
# the stack and --help


def test_the_stack_pins_the_ami_parameter_and_config_paths() -> None:
    stack = load_stack(ROOT, "dev")
    assert stack.ami_parameter == AMI_PARAMETER
    assert stack.cluster_name == CLUSTER
    assert [rt.config_path for rt in stack.runtimes] == [
        "sdfleet:runtimes[0].gpu.snapshotId",
        "sdfleet:runtimes[1].gpu.snapshotId",
    ]


@pytest.mark.parametrize(
    ("tool", "phrases"),
    [
        (
            "build",
            [
                "aws-k8s-<k8s>-nvidia/x86_64/<version>/image_id",
                "apiclient exec admin sheltie ctr",
                "Ctrl-C or SIGTERM",
                "per GB-month",
                "https://aws.amazon.com/ebs/pricing/",
                "sdfleet:digest:<digest>",
                "--instance-type",
                "--volume-size",
            ],
        ),
        ("check", ["Exit code 0", "runtimes[i].gpu.snapshotId", "--snapshot-id", "costs nothing"]),
    ],
)
def test_help_describes_the_tool(
    tool: str, phrases: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["snapshot", tool, "--help"])
    assert exit_.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    for phrase in phrases:
        assert phrase in text


def test_check_notes_a_snapshot_built_on_another_bottlerocket_without_failing(
    aws: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    _use(monkeypatch, aws["session"], FakeShell())
    same = _tagged_snapshot(aws["session"], ["a"], "aws-k8s-1.33-nvidia/v1.63.0")
    older = _tagged_snapshot(aws["session"], ["a"], "aws-k8s-1.33-nvidia/v1.60.0")
    project = _project(tmp_path, {"sd15": same, "flux": older})
    assert _check(project, "--image", AGENT) == 0
    out = capsys.readouterr().out
    assert f"NOTE {older} (flux): built on aws-k8s-1.33-nvidia/v1.60.0, the nodes run" in out
    assert f"NOTE {same}" not in out


def test_check_without_credentials_is_a_usage_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The real boto3 clients with every credential source switched off: nothing is sent."""
    for key in list(os.environ):
        if key.startswith("AWS_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    project = _project(tmp_path, {"sd15": "snap-0123456789abcdef0"})
    assert _check(project, "--image", AGENT) == 2
    assert "Unable to locate credentials" in capsys.readouterr().err
