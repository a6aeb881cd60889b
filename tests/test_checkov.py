"""checkov's Kubernetes checks over the dev stack's synthesized manifests.

`sdfleet synth` writes every Kubernetes manifest a deploy applies; checkov (PyPI) runs once
over all of them. Every failure must be a check that .checkov.yaml skips with a reason, and
docs/pods-and-network.md explains each of those. checkov pins its own dependencies (boto3,
packaging) against this project's, so it lives in a virtualenv of its own: ``$CHECKOV``, else
``.venv/checkov/bin/checkov``, else ``checkov`` on PATH (see the module's ``INSTALL``).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
CONFIG = ROOT / ".checkov.yaml"
DOC = ROOT / "docs" / "pods-and-network.md"
CHECKOV_VERSION = "3.3.30"
INSTALL = (
    f"python3 -m venv .venv/checkov && .venv/checkov/bin/pip install checkov=={CHECKOV_VERSION}"
)


def _checkov() -> str:
    found = (
        os.environ.get("CHECKOV")
        or next((str(p) for p in [ROOT / ".venv/checkov/bin/checkov"] if p.exists()), None)
        or shutil.which("checkov")
    )
    if not found:
        pytest.fail(f"checkov {CHECKOV_VERSION} is not installed; install it with: {INSTALL}")
    return found


def _justified() -> dict[str, str]:
    """The skipped checks with the reason written beside each in .checkov.yaml."""
    reasons = dict(re.findall(r"^\s*-\s*(CKV_K8S_\d+)\s+#\s*(\S.*)$", CONFIG.read_text(), re.M))
    assert sorted(reasons) == sorted(yaml.safe_load(CONFIG.read_text())["skip-check"])
    return reasons


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    out = tmp_path_factory.mktemp("synth")
    subprocess.run(
        [
            *(sys.executable, "-m", "sdfleet.cli", "synth", "--stack", "dev"),
            *("--out", str(out), "--project-dir", str(ROOT), "--quiet"),
        ],
        cwd=ROOT,
        check=True,
        timeout=300,
    )
    manifests = out / "manifests"
    # Without .checkov.yaml (cwd elsewhere, no --config-file): every failure is reported and
    # compared with the justified ones below.
    result = subprocess.run(
        [
            *(_checkov(), "-d", str(manifests), "--framework", "kubernetes"),
            *("-o", "json", "--skip-download"),
        ],
        cwd=out,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode in (0, 1), result.stderr  # 1: some check failed
    data = json.loads(result.stdout)
    report: dict[str, Any] = data[0] if isinstance(data, list) else data
    report["manifest_files"] = len(list(manifests.glob("*.yaml")))
    return report


def test_checkov_is_the_pinned_version(report: dict[str, Any]) -> None:
    assert report["summary"]["checkov_version"] == CHECKOV_VERSION


def test_checkov_reads_every_manifest(report: dict[str, Any]) -> None:
    summary = report["summary"]
    assert summary["parsing_errors"] == 0
    assert report["manifest_files"] > 20
    assert summary["resource_count"] >= report["manifest_files"]
    checked = {c["resource"].split(".")[0] for c in report["results"]["passed_checks"]}
    assert {"Deployment", "Role", "RoleBinding", "ServiceAccount"} <= checked


def test_every_failure_is_justified(report: dict[str, Any]) -> None:
    failed = {(c["check_id"], c["resource"]) for c in report["results"]["failed_checks"]}
    unexplained = sorted(f for f in failed if f[0] not in _justified())
    assert unexplained == [], (
        "checkov failures that neither the manifests fix nor .checkov.yaml justifies "
        f"(fix them, or add the check with its reason there and in {DOC.name}): {unexplained}"
    )


def test_the_server_container_passes_the_hardening_checks(report: dict[str, Any]) -> None:
    """The checks the server used to fail (capabilities, NET_RAW, read-only root, security
    context) pass on every Deployment: the two runtimes' and the trace collector's."""
    hardening = {"CKV_K8S_22", "CKV_K8S_28", "CKV_K8S_29", "CKV_K8S_37", "CKV_K8S_20"}
    passed = {
        (c["check_id"], c["resource"])
        for c in report["results"]["passed_checks"]
        if c["resource"].startswith("Deployment.")
    }
    deployments = {r for _, r in passed}
    assert len(deployments) == 3  # the dev stack's two runtimes and the trace collector
    assert "Deployment.sdfleet-telemetry.otel-collector" in deployments
    for deployment in deployments:
        assert {(check, deployment) for check in hardening} <= passed


def test_every_justification_is_documented() -> None:
    doc = DOC.read_text()
    section = doc.split("## What checkov reports", 1)[1].split("\n## ", 1)[0]
    for check in _justified():
        assert check in section, f"{check} is skipped in .checkov.yaml but not explained"
