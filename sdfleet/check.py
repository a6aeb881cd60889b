"""``sdfleet check PATH``: the security rules over a ``resources.json`` from ``sdfleet synth``."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from sdfleet.policy import RULE_IDS, ResourcesFileError, from_resources_json, run_rules


def _fail(message: str) -> int:
    print(f"sdfleet check: {message}", file=sys.stderr)
    return 2


def run_check(path: Path) -> int:
    """Print one ``<name>: <rule id>: <message>`` line per finding; exit 1 if any, 0 if none,
    2 when the file cannot be read as a synth ``resources.json``."""
    target = path / "resources.json" if path.is_dir() else path
    try:
        text = target.read_text(encoding="utf-8")
    except FileNotFoundError:
        return _fail(f"{target}: no such file (write one with `sdfleet synth --out DIR`)")
    except (OSError, UnicodeDecodeError) as err:
        return _fail(f"{target}: cannot be read ({err})")
    try:
        resources = from_resources_json(json.loads(text), str(target))
    except json.JSONDecodeError as err:
        return _fail(
            f"{target}: not valid JSON ({err.msg} at line {err.lineno} column {err.colno})"
        )
    except ResourcesFileError as err:
        return _fail(f"{err} (expected the resources.json `sdfleet synth` writes)")
    found = run_rules(resources)
    for item in found:
        print(item.line())
    if found:
        print(
            f"sdfleet check: {len(found)} finding(s) in {len(resources)} resources ({target})",
            file=sys.stderr,
        )
        return 1
    print(f"sdfleet check: no findings ({len(resources)} resources, {len(RULE_IDS)} rules)")
    return 0
