"""Shared fixtures: the recording mock runtime that every Pulumi test builds on.

``synth(config)`` runs the real program (``__main__.py``) under Pulumi's mock runtime with a
stack configuration (the ``config:`` mapping of a stack file) and returns a
:class:`sdfleet.mocking.Recorder` holding every registered resource with its inputs (camelCase,
as the engine would see them), its parent and its mocked outputs.
"""

from __future__ import annotations

import copy
import runpy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from sdfleet.mocking import Recorder, config_from_stack_file, run_program

REPO_ROOT = Path(__file__).resolve().parent.parent
MAIN = REPO_ROOT / "__main__.py"

SynthFn = Callable[..., Recorder]


def load_stack(name: str = "dev") -> dict[str, Any]:
    data = yaml.safe_load((REPO_ROOT / "stacks" / f"Pulumi.{name}.yaml").read_text())
    return dict(data["config"])


def synth_config(
    config: dict[str, Any], stack: str = "test", recorder: Recorder | None = None
) -> Recorder:
    return run_program(
        lambda: runpy.run_path(str(MAIN), run_name="__main__"),
        config_from_stack_file(config),
        stack=stack,
        recorder=recorder,
    )


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT


@pytest.fixture
def dev_config() -> dict[str, Any]:
    """A fresh, mutable copy of the dev stack's config mapping."""
    return copy.deepcopy(load_stack("dev"))


@pytest.fixture(scope="session")
def synth() -> SynthFn:
    return synth_config


@pytest.fixture(scope="session")
def dev_graph() -> Recorder:
    """The dev stack's resource graph, synthesized once per session."""
    return synth_config(load_stack("dev"), stack="dev")


@pytest.fixture(autouse=True)
def _no_real_aws(monkeypatch: pytest.MonkeyPatch) -> None:
    """No test may reach AWS: fake credentials and a fixed region unless a test sets its own."""
    for key in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_REGION", "us-east-1")
