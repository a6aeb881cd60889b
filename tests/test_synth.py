"""`sdfleet synth`: the offline main job."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import yaml

from sdfleet.cli import main
from sdfleet.render import kubernetes_manifest


def test_synth_dev_writes_resources_and_summary(tmp_path: Path, repo_root: Path, capsys) -> None:
    out = tmp_path / "synth"
    assert (
        main(["synth", "--stack", "dev", "--out", str(out), "--project-dir", str(repo_root)]) == 0
    )
    printed = capsys.readouterr().out
    assert "Placeholder values stand in for cloud-assigned IDs" in printed
    assert "Resource tree:" in printed and "Counts by type:" in printed
    assert "sdfleet:index:EventFanout  sdfleet-events" in printed
    assert "Security invariants: all hold." in printed
    resources = json.loads((out / "resources.json").read_text())
    assert all(set(r) == {"type", "name", "parent", "inputs"} for r in resources)
    by_name = {r["name"]: r for r in resources}
    assert by_name["sdfleet-events"]["parent"] == "sdfleet"
    assert by_name["sdfleet-events-sd15-queue"]["type"] == "aws:sqs/queue:Queue"
    code = by_name["sdfleet-api-task-fn"]["inputs"]["code"]
    assert code["archive"] == "AssetArchive"
    summary = json.loads((out / "summary.json").read_text())
    assert summary["resources"] == len(resources)
    assert summary["security_violations"] == []


def test_synth_rejects_invalid_stack_with_all_errors(tmp_path: Path, repo_root: Path) -> None:
    project = tmp_path / "proj"
    (project / "stacks").mkdir(parents=True)
    (project / "Pulumi.yaml").write_text((repo_root / "Pulumi.yaml").read_text())
    (project / "__main__.py").write_text((repo_root / "__main__.py").read_text())
    bad = {
        "config": {
            "sdfleet:spotRatio": 1.5,
            "sdfleet:runtimes": [{"name": "a", "type": "comfy"}, {"name": "b", "type": "sdwebui"}],
        }
    }
    (project / "stacks" / "Pulumi.bad.yaml").write_text(yaml.safe_dump(bad))
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "sdfleet.cli",
            "synth",
            "--stack",
            "bad",
            "--project-dir",
            str(project),
            "--out",
            str(tmp_path / "out"),
        ],
        capture_output=True,
        text=True,
        cwd=repo_root,
        timeout=120,
    )
    assert result.returncode == 2
    assert "sdfleet:runtimes[0].type: 'comfy' is not one of sdwebui, comfyui" in result.stderr
    assert "sdfleet:runtimes[1].modelFilename: is required" in result.stderr
    assert "sdfleet:spotRatio: 1.5 must be between 0 and 1" in result.stderr
    assert not (tmp_path / "out").exists()


def test_synth_missing_stack_is_a_clear_error(repo_root: Path, capsys) -> None:
    assert main(["synth", "--stack", "nope", "--project-dir", str(repo_root)]) == 2
    assert "Pulumi.nope.yaml does not exist" in capsys.readouterr().err


def test_kubernetes_manifest_api_versions() -> None:
    assert kubernetes_manifest("kubernetes:core/v1:Namespace", {"metadata": {"name": "x"}}) == {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": "x"},
    }
    nodepool = kubernetes_manifest("kubernetes:karpenter.sh/v1:NodePool", {"spec": {}})
    assert nodepool is not None and nodepool["apiVersion"] == "karpenter.sh/v1"
    assert kubernetes_manifest("aws:sqs/queue:Queue", {}) is None
    assert kubernetes_manifest("kubernetes:helm.sh/v3:Release", {}) is None
