"""Each weakness planted into the dev stack's resources.json is reported by `sdfleet check`,
and nothing else is; the clean graph has no findings.

A case names the one (resource, rule) pair it must produce: a plant that also tripped another
rule, or a rule that missed it, fails the test.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path

import pytest

from sdfleet.cli import main
from sdfleet.invariants import findings
from sdfleet.mocking import Recorder
from sdfleet.policy import RULE_IDS, from_resources_json, run_rules
from sdfleet.render import jsonable
from tests.policy_plants import ACCEPTED, PLANTED, Entries


@pytest.fixture(scope="module")
def clean(dev_graph: Recorder) -> Entries:
    """What `sdfleet synth` writes to resources.json for the dev stack."""
    return [jsonable(r.to_json()) for r in dev_graph.resources]


def _check(
    data: Entries, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> tuple[int, list[str]]:
    path = tmp_path / "resources.json"
    path.write_text(json.dumps(data))
    code = main(["check", str(path)])
    return code, capsys.readouterr().out.splitlines()


def test_dev_stack_has_no_findings(
    dev_graph: Recorder, clean: Entries, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert findings(dev_graph) == []
    code, out = _check(clean, tmp_path, capsys)
    assert code == 0
    assert len(out) == 1 and out[0].startswith("sdfleet check: no findings (")


@pytest.mark.parametrize(("case", "rule", "plant"), PLANTED, ids=[c[0] for c in PLANTED])
def test_planted_weakness_is_reported(
    clean: Entries,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    case: str,
    rule: str,
    plant: Callable[[Entries], str],
) -> None:
    data = copy.deepcopy(clean)
    name = plant(data)
    code, out = _check(data, tmp_path, capsys)
    assert code == 1, out
    assert {tuple(line.split(": ", 2)[:2]) for line in out} == {(name, rule)}, out


def test_every_rule_has_a_planted_case() -> None:
    assert {rule for _, rule, _ in PLANTED} == set(RULE_IDS)
    assert len(PLANTED) >= 25


@pytest.mark.parametrize(("case", "plant"), ACCEPTED, ids=[c[0] for c in ACCEPTED])
def test_least_privilege_patterns_are_accepted(
    clean: Entries, case: str, plant: Callable[[Entries], str]
) -> None:
    data = copy.deepcopy(clean)
    plant(data)
    assert run_rules(from_resources_json(data)) == []


def test_every_rule_is_documented() -> None:
    doc = (Path(__file__).resolve().parent.parent / "docs" / "policy-checks.md").read_text()
    assert [rule for rule in RULE_IDS if f"| `{rule}` |" not in doc] == []
