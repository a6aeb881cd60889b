"""The codebase stays easy to change: no module in agent/, components/ or sdfleet/ over 400
lines and no function over 80, unless the file says why with a ``# shape: <reason>`` comment
(in the module for its length, on the line above a ``def`` for that function)."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 80
MARK = "# shape:"


def _sources() -> list[Path]:
    files: list[Path] = []
    for top in ("agent", "components", "sdfleet", "policypack"):
        for path in sorted((ROOT / top).rglob("*.py")):
            rel = path.relative_to(ROOT)
            # sdfleet/agent and sdfleet/components are links to the folders above.
            if rel.parts[0] == "sdfleet" and rel.parts[1] in ("agent", "components"):
                continue
            if ".venv" in rel.parts or "__pycache__" in rel.parts:
                continue
            files.append(path)
    return files


def _reasoned(line: str) -> bool:
    text = line.strip()
    return text.startswith(MARK) and len(text) > len(MARK) + 10


def _problems(path: Path, root: Path = ROOT) -> list[str]:
    source = path.read_text()
    lines = source.splitlines()
    rel = path.relative_to(root)
    found: list[str] = []
    if len(lines) > MAX_MODULE_LINES and not any(_reasoned(line) for line in lines):
        found.append(f"{rel}: {len(lines)} lines (limit {MAX_MODULE_LINES})")
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        first = min([node.lineno, *(d.lineno for d in node.decorator_list)])
        length = (node.end_lineno or node.lineno) - node.lineno + 1
        above = lines[first - 2] if first >= 2 else ""
        if length > MAX_FUNCTION_LINES and not _reasoned(above):
            found.append(f"{rel}:{node.lineno}: {node.name} is {length} lines")
    return found


def test_sources_are_found() -> None:
    names = {p.relative_to(ROOT).as_posix() for p in _sources()}
    assert "agent/worker.py" in names
    assert "components/pipeline.py" in names
    assert "sdfleet/cli.py" in names


@pytest.mark.parametrize("path", _sources(), ids=lambda p: p.relative_to(ROOT).as_posix())
def test_module_and_function_sizes(path: Path) -> None:
    assert _problems(path) == []


def test_the_check_catches_a_long_function(tmp_path: Path) -> None:
    long_body = "\n".join(f"    x{i} = {i}" for i in range(MAX_FUNCTION_LINES + 1))
    probe = tmp_path / "probe.py"
    probe.write_text(f"def f() -> None:\n{long_body}\n")
    assert _problems(probe, tmp_path) == [f"probe.py:1: f is {MAX_FUNCTION_LINES + 2} lines"]
    probe.write_text(f"# shape: a generated table, kept whole\ndef f() -> None:\n{long_body}\n")
    assert _problems(probe, tmp_path) == []
    probe.write_text("\n".join("x = 1" for _ in range(MAX_MODULE_LINES + 1)))
    assert _problems(probe, tmp_path) == [f"probe.py: {MAX_MODULE_LINES + 1} lines (limit 400)"]
