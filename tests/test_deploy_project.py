"""What `pulumi up` reads besides the program: requirements.txt (the pip toolchain installs it,
never pyproject.toml) and the `sdfleet:` config declarations in Pulumi.yaml."""

from __future__ import annotations

import copy
import dataclasses
import tomllib
import typing
from pathlib import Path
from typing import Any

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from sdfleet.components.config import StackConfig, parse_config, split_namespaced
from tests.conftest import REPO_ROOT, load_stack

PROJECT = yaml.safe_load((REPO_ROOT / "Pulumi.yaml").read_text())
# Pulumi's project schema types config as string, integer, boolean or array (of those).
PULUMI_TYPES = {str: "string", int: "integer", bool: "boolean"}
DECLARATION_KEYS = {"type", "items", "description", "default", "secret"}


def _requirements(path: Path) -> list[Requirement]:
    lines = (line.split("#", 1)[0].strip() for line in path.read_text().splitlines())
    return [Requirement(line) for line in lines if line]


def _runtime_dependencies() -> dict[str, Requirement]:
    pyproject = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())
    reqs = [Requirement(d) for d in pyproject["project"]["dependencies"]]
    return {canonicalize_name(r.name): r for r in reqs}


# ---------------------------------------------------------------------------------------------
# requirements.txt


def test_pip_toolchain_with_a_virtualenv_is_what_reads_requirements() -> None:
    assert PROJECT["runtime"] == {
        "name": "python",
        "options": {"toolchain": "pip", "virtualenv": ".venv"},
    }
    assert (REPO_ROOT / "requirements.txt").is_file()


def test_requirements_pin_exactly_the_runtime_dependencies_within_their_ranges() -> None:
    wanted = _runtime_dependencies()
    pinned = _requirements(REPO_ROOT / "requirements.txt")
    names = [canonicalize_name(r.name) for r in pinned]
    assert len(names) == len(set(names)), "a package is listed twice"
    assert sorted(names) == sorted(wanted), "requirements.txt and pyproject.toml differ"
    for req in pinned:
        (spec,) = req.specifier  # exactly one clause: ==version
        assert spec.operator == "==", f"{req} is not pinned"
        allowed = wanted[canonicalize_name(req.name)].specifier
        assert allowed.contains(spec.version), f"{req} is outside pyproject's {allowed}"
        assert not req.extras and req.marker is None and req.url is None, req


def test_requirements_check_catches_a_pin_outside_the_range(tmp_path: Path) -> None:
    """The check above is not vacuous: a pin pyproject does not allow is seen."""
    bad = tmp_path / "requirements.txt"
    bad.write_text("pulumi==4.0.0\n")
    (req,) = _requirements(bad)
    (spec,) = req.specifier
    assert not _runtime_dependencies()["pulumi"].specifier.contains(spec.version)


# ---------------------------------------------------------------------------------------------
# Pulumi.yaml config declarations


def _top_level_fields() -> dict[str, dataclasses.Field[Any]]:
    return {f.metadata["key"]: f for f in dataclasses.fields(StackConfig)}


def _expected_type(tp: Any) -> dict[str, Any]:
    """The declaration Pulumi can check for a model type; objects and floats get none."""
    if tp in PULUMI_TYPES:
        return {"type": PULUMI_TYPES[tp]}
    if typing.get_origin(tp) is list and typing.get_args(tp)[0] in PULUMI_TYPES:
        return {"type": "array", "items": {"type": PULUMI_TYPES[typing.get_args(tp)[0]]}}
    return {}


def _expected_default(f: dataclasses.Field[Any]) -> tuple[bool, Any]:
    if f.default is not dataclasses.MISSING:
        return True, f.default
    if f.default_factory is not dataclasses.MISSING:  # an object: the program's defaults
        return True, {}
    return False, None  # required: each stack must set it


def test_every_config_key_is_declared_and_nothing_else() -> None:
    declared = {k.removeprefix("sdfleet:") for k in PROJECT["config"]}
    assert all(k.startswith("sdfleet:") for k in PROJECT["config"])
    assert declared == set(_top_level_fields())


@pytest.mark.parametrize("key", sorted(_top_level_fields()))
def test_declaration_matches_the_model(key: str) -> None:
    decl = PROJECT["config"][f"sdfleet:{key}"]
    field = _top_level_fields()[key]
    assert set(decl) <= DECLARATION_KEYS, sorted(decl)
    assert isinstance(decl.get("description"), str) and decl["description"].strip()
    tp = typing.get_type_hints(StackConfig)[field.name]
    assert {k: decl[k] for k in ("type", "items") if k in decl} == _expected_type(tp)
    has_default, default = _expected_default(field)
    assert ("default" in decl) is has_default
    if has_default:
        assert decl["default"] == default
    assert "secret" not in decl  # no sdfleet setting is a secret


def test_project_defaults_change_nothing() -> None:
    """Pulumi fills each declared default into a stack that does not set the key; the program
    must read the same configuration either way."""
    defaults = {k: d["default"] for k, d in PROJECT["config"].items() if "default" in d}
    for stack in ("dev", "prod"):
        raw = load_stack(stack)
        filled = {**defaults, **copy.deepcopy(raw)}
        assert parse_config(split_namespaced(filled)) == parse_config(split_namespaced(raw))
    # A stack setting only the required key gets the model's defaults.
    runtimes = load_stack("dev")["sdfleet:runtimes"]
    minimal = parse_config({"runtimes": runtimes})
    assert parse_config({**split_namespaced(defaults), "runtimes": runtimes}) == minimal


def test_required_keys_have_no_default() -> None:
    required = {k for k, d in PROJECT["config"].items() if "default" not in d}
    assert required == {"sdfleet:runtimes"}
