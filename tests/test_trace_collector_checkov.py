"""checkov's Kubernetes checks over the trace collector's manifests, run the way
tests/test_checkov.py runs them over the dev stack: no .checkov.yaml, so every failure is
reported. The collector needs no skipped check at all."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from sdfleet.components import versions
from sdfleet.components.builders import trace_collector as tcb
from tests.test_checkov import CHECKOV_VERSION, _checkov


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    out: Path = tmp_path_factory.mktemp("collector")
    manifests = tcb.collector_manifests(
        region="us-west-2",
        image=versions.ADOT_COLLECTOR_IMAGE,
        node_selector={"sdfleet.io/pool": "system"},
        otlp_grpc=True,
    )
    for key, manifest in manifests.items():
        (out / f"{key}.yaml").write_text(yaml.safe_dump(manifest))
    result = subprocess.run(
        [_checkov(), "-d", str(out), "--framework", "kubernetes", "-o", "json", "--skip-download"],
        cwd=out,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode in (0, 1), result.stderr
    data = json.loads(result.stdout)
    found: dict[str, Any] = data[0] if isinstance(data, list) else data
    return found


def test_checkov_reads_every_collector_manifest(report: dict[str, Any]) -> None:
    assert report["summary"]["checkov_version"] == CHECKOV_VERSION
    assert report["summary"]["parsing_errors"] == 0
    checked = {c["resource"].split(".")[0] for c in report["results"]["passed_checks"]}
    assert {"Deployment", "Service", "ServiceAccount", "ConfigMap"} <= checked


def test_no_check_fails(report: dict[str, Any]) -> None:
    failed = sorted((c["check_id"], c["resource"]) for c in report["results"]["failed_checks"])
    assert failed == []


def test_the_deployment_passes_the_hardening_checks(report: dict[str, Any]) -> None:
    passed = {
        c["check_id"]
        for c in report["results"]["passed_checks"]
        if c["resource"].startswith("Deployment.")
    }
    # Capabilities, NET_RAW, read-only root, security context, privilege escalation, probes,
    # limits, high UID, seccomp, SA token, digest.
    hardening = {"CKV_K8S_22", "CKV_K8S_28", "CKV_K8S_29", "CKV_K8S_37", "CKV_K8S_20"}
    more = {"CKV_K8S_8", "CKV_K8S_9", "CKV_K8S_11", "CKV_K8S_13", "CKV_K8S_40", "CKV_K8S_31"}
    assert hardening | more | {"CKV_K8S_38", "CKV_K8S_43"} <= passed
