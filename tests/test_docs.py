"""The docs can be followed: links resolve, and every command block runs offline or is marked.

Convention (documented in docs/README.md, "How the docs are tested"): a fenced block's info
string is its language and optional marks. ``sh``/``bash`` blocks run offline; ``sh deploy``
blocks need an AWS account or a deployed stack and are not run; ``python`` blocks run under
Pulumi's mocks; ``python fragment`` blocks are only parsed; ``json``/``yaml`` blocks are parsed.
"""

from __future__ import annotations

import ast
import json
import re
import shlex
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from sdfleet.cli import main as sdfleet_main
from sdfleet.mocking import run_program

ROOT = Path(__file__).resolve().parent.parent
DOC_FILES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

SHELL = {"sh", "bash", "shell"}
DATA: dict[str, Callable[[str], object]] = {"json": json.loads, "yaml": yaml.safe_load}
UNCHECKED = {"text", "mermaid", ""}
MARKS = {"deploy", "fragment"}

_FENCE = re.compile(r"^(\s*)```(.*)$")
_LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
_HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")


@dataclass(frozen=True)
class Block:
    path: Path
    line: int
    lang: str
    marks: frozenset[str]
    text: str

    @property
    def name(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"


def parse_blocks(path: Path) -> list[Block]:
    found: list[Block] = []
    lines = path.read_text().split("\n")
    i = 0
    while i < len(lines):
        m = _FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        indent, words = len(m.group(1)), m.group(2).split()
        body: list[str] = []
        j = i + 1
        while j < len(lines) and not lines[j].strip().startswith("```"):
            body.append(lines[j][indent:])
            j += 1
        lang = words[0] if words else ""
        found.append(Block(path, i + 1, lang, frozenset(words[1:]), "\n".join(body)))
        i = j + 1
    return found


def prose(path: Path) -> str:
    """The file without fenced blocks and inline code, where links and headings live."""
    out, fenced = [], False
    for line in path.read_text().split("\n"):
        if line.strip().startswith("```"):
            fenced = not fenced
            continue
        if not fenced:
            out.append(re.sub(r"`[^`]*`", "", line))
    return "\n".join(out)


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading).replace("`", "").lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    seen: dict[str, int] = {}
    result = set()
    fenced = False
    for line in path.read_text().split("\n"):
        if line.strip().startswith("```"):
            fenced = not fenced
        m = None if fenced else _HEADING.match(line)
        if m:
            base = slug(m.group(2))
            n = seen.get(base, 0)
            seen[base] = n + 1
            result.add(base if n == 0 else f"{base}-{n}")
    return result


def broken_links(path: Path) -> list[str]:
    problems = []
    for target in _LINK.findall(prose(path)):
        if re.match(r"^[a-z]+:", target):
            continue  # http(s), mailto: not checked offline
        file_part, _, anchor = target.partition("#")
        dest = (path.parent / file_part).resolve() if file_part else path
        if not dest.exists():
            problems.append(f"{target}: {dest} does not exist")
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
            problems.append(f"{target}: no heading #{anchor} in {dest.name}")
    return problems


# ---------------------------------------------------------------------------------------------
# Shell commands the tests know how to run offline


def commands(text: str) -> list[list[str]]:
    joined = re.sub(r"\\\n", " ", text)
    return [argv for line in joined.split("\n") if (argv := shlex.split(line, comments=True))]


def _is_python(word: str) -> bool:
    return Path(word).name in {"python", "python3"}


def runnable(argv: list[str]) -> bool:
    head = Path(argv[0]).name
    if head == "make":
        return len(argv) >= 2
    if head == "sdfleet":
        return len(argv) >= 2 and argv[1] in {"synth", "check"}
    if head == "pytest":
        return True
    return _is_python(argv[0]) and len(argv) >= 3 and argv[1] == "-m"


class OfflineShell:
    """Runs a block's commands; sdfleet in-process, every output under ``tmp``."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp

    def _local(self, path: str) -> str:
        return str(self.tmp / path.lstrip("/"))

    def run(self, argv: list[str]) -> None:
        head = Path(argv[0]).name
        if head == "make":
            self._make(argv[1], dict(a.split("=", 1) for a in argv[2:] if "=" in a))
        elif head == "sdfleet":
            self._sdfleet(argv[1:])
        elif head == "pytest":
            self._pytest(argv[1:])
        elif argv[2] == "pytest":
            self._pytest(argv[3:])
        else:
            self._module_help(argv[2])

    def _make(self, target: str, variables: dict[str, str]) -> None:
        # The recipe exists and is what the docs say; `make test` itself is not re-run here.
        dry = subprocess.run(
            ["make", "-n", target, *(f"{k}={v}" for k, v in variables.items())],
            cwd=ROOT,
            capture_output=True,
            text=True,
        )
        assert dry.returncode == 0, f"make -n {target}: {dry.stderr}"
        if target == "synth":
            self._sdfleet(["synth", "--stack", variables.get("STACK", "dev")])

    def _sdfleet(self, args: list[str]) -> None:
        if args[0] == "synth":
            args = list(args)
            if "--out" in args:
                at = args.index("--out") + 1
                args[at] = self._local(args[at])
            else:
                stack = args[args.index("--stack") + 1] if "--stack" in args else "dev"
                args += ["--out", self._local(f"build/synth/{stack}")]
            if "--project-dir" not in args:
                args += ["--project-dir", str(ROOT)]
            if "--quiet" not in args:
                args.append("--quiet")
        else:
            args = [args[0], self._local(args[1])]
        assert sdfleet_main(args) == 0, f"sdfleet {' '.join(args)} failed"

    def _pytest(self, args: list[str]) -> None:
        cmd = [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider"]
        done = subprocess.run([*cmd, *args], cwd=ROOT, capture_output=True, text=True)
        assert done.returncode == 0, f"pytest {' '.join(args)}: {done.stdout[-2000:]}"

    def _module_help(self, module: str) -> None:
        done = subprocess.run(
            [sys.executable, "-m", module, "--help"], cwd=ROOT, capture_output=True, text=True
        )
        assert done.returncode == 0, f"python -m {module} --help: {done.stderr[-2000:]}"


# ---------------------------------------------------------------------------------------------
# The tests

ALL_BLOCKS = [b for path in DOC_FILES for b in parse_blocks(path)]
OFFLINE_SHELL = [b for b in ALL_BLOCKS if b.lang in SHELL and "deploy" not in b.marks]
PYTHON = [b for b in ALL_BLOCKS if b.lang == "python"]
DATA_BLOCKS = [b for b in ALL_BLOCKS if b.lang in DATA]


def _ids(blocks: list[Block]) -> list[str]:
    return [b.name for b in blocks]


@pytest.mark.parametrize("path", DOC_FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(path: Path) -> None:
    assert broken_links(path) == []


def test_every_block_is_runnable_or_marked() -> None:
    problems = []
    for block in ALL_BLOCKS:
        if block.lang not in SHELL | set(DATA) | UNCHECKED | {"python"}:
            problems.append(f"{block.name}: unknown language {block.lang!r}")
        if not block.marks <= MARKS:
            problems.append(f"{block.name}: unknown marks {sorted(block.marks - MARKS)}")
        if block in OFFLINE_SHELL:
            for argv in commands(block.text):
                if not runnable(argv):
                    problems.append(f"{block.name}: `{shlex.join(argv)}` needs `sh deploy`")
    assert problems == []


def test_the_checks_catch_what_they_should(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    (tmp_path / "other.md").write_text("# Other\n\n## The pod's AWS permissions\n")
    page.write_text(
        "# Page\n[ok](other.md#the-pods-aws-permissions) [gone](missing.md) "
        "[bad](other.md#nope) [self](#page) `[code](missing.md)`\n\n```sh\npulumi up\n```\n"
    )
    assert broken_links(page) == [
        f"missing.md: {tmp_path / 'missing.md'} does not exist",
        "other.md#nope: no heading #nope in other.md",
    ]
    (block,) = parse_blocks(page)
    assert [runnable(argv) for argv in commands(block.text)] == [False]
    assert runnable(["make", "synth", "STACK=dev"]) and runnable(
        [".venv/bin/sdfleet", "check", "x"]
    )
    assert slug("`pulumi up` fails: (really)") == "pulumi-up-fails-really"


def test_the_offline_shell_reports_failures(tmp_path: Path) -> None:
    shell = OfflineShell(tmp_path)
    with pytest.raises(AssertionError, match="make -n no-such-target"):
        shell.run(["make", "no-such-target"])
    with pytest.raises(AssertionError, match="sdfleet synth --stack no-such-stack"):
        shell.run(["sdfleet", "synth", "--stack", "no-such-stack"])
    with pytest.raises(AssertionError, match="python -m no_such_module"):
        shell.run(["python", "-m", "no_such_module"])


@pytest.mark.parametrize("block", OFFLINE_SHELL, ids=_ids(OFFLINE_SHELL))
def test_offline_shell_block_runs(block: Block, tmp_path: Path) -> None:
    shell = OfflineShell(tmp_path)
    for argv in commands(block.text):
        shell.run(argv)


@pytest.mark.parametrize("block", PYTHON, ids=_ids(PYTHON))
def test_python_block(block: Block) -> None:
    if "fragment" in block.marks:
        ast.parse(block.text, block.name)
        return
    code = compile(block.text, block.name, "exec")
    recorder = run_program(lambda: exec(code, {"__name__": "docs_block"}), {})
    assert recorder.resources, f"{block.name} ran but created nothing"


@pytest.mark.parametrize("block", DATA_BLOCKS, ids=_ids(DATA_BLOCKS))
def test_data_block_parses(block: Block) -> None:
    DATA[block.lang](block.text)
