"""Shared fixtures for the builder tests."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

# `tests.k8s_validation` lives next to this package; make it importable however pytest was
# started (the editable install only maps the library packages).
_REPO_ROOT = str(Path(__file__).resolve().parents[2])
if _REPO_ROOT not in sys.path:
    sys.path.insert(0, _REPO_ROOT)

from tests import k8s_validation  # noqa: E402

K8S_VERSION = "1.33"


@pytest.fixture
def crd_dir() -> Path:
    """The vendored CRD schema directory (``schemas/crds``); never skipped."""
    return k8s_validation.schemas_dir()
