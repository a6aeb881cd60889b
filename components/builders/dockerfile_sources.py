"""Which context files a Dockerfile can read, when that is certain from its text.

A Dockerfile whose ``COPY``/``ADD`` instructions name single files (``COPY launch.sh /opt/``)
builds an image that depends on those files only: a stray file next to them (``__pycache__``,
an editor's backup) changes nothing in it, so it must not change the content tag either. Any
instruction that can read more (a directory, a wildcard, a variable, a bind mount of the
context, a heredoc, ``--parents``/``--exclude``) or that this module does not parse makes the
answer "unknown" (None), and the caller hashes the whole context: hashing too much is safe.

Pure: no Pulumi import.
"""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

# An `# escape=` parser directive changes how continuation lines are read.
_ESCAPE_DIRECTIVE = re.compile(r"^#\s*escape\s*=", re.IGNORECASE | re.MULTILINE)
_VARIABLE_OR_GLOB = re.compile(r"[$*?\[\\]")
# RUN --mount types that never read the build context.
_MOUNTS_WITHOUT_CONTEXT = frozenset({"cache", "tmpfs", "secret", "ssh"})
_REMOTE = ("http://", "https://", "git@")


def instructions(text: str) -> list[tuple[str, str]]:
    """``(KEYWORD, arguments)`` per instruction: continuation lines joined, comments and
    blank lines dropped."""
    out: list[tuple[str, str]] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        whole = (pending + line).strip()
        pending = ""
        keyword, _, rest = whole.partition(" ")
        out.append((keyword.upper(), rest.strip()))
    if pending.strip():
        keyword, _, rest = pending.strip().partition(" ")
        out.append((keyword.upper(), rest.strip()))
    return out


def _arguments(rest: str) -> list[str] | None:
    if rest.startswith("["):
        try:
            words = json.loads(rest)
        except ValueError:
            return None
        ok = isinstance(words, list) and all(isinstance(w, str) for w in words)
        return words if ok else None
    try:
        return shlex.split(rest)
    except ValueError:
        return None


def _copy_sources(rest: str) -> list[str] | None:
    """The context paths one COPY/ADD reads ([] for one reading another stage or image)."""
    if "<<" in rest:
        return None  # heredoc
    flags = []
    while rest.startswith("--"):
        flag, _, rest = rest.partition(" ")
        flags.append(flag)
        rest = rest.lstrip()
    if any(f.startswith("--from=") for f in flags):
        return []
    if any(f.startswith(("--parents", "--exclude")) for f in flags):
        return None
    words = _arguments(rest)
    if words is None or len(words) < 2:
        return None
    return [w for w in words[:-1] if not w.startswith(_REMOTE)]


def _run_reads_context(rest: str) -> bool:
    for word in rest.split():
        if not word.startswith("--mount="):
            if not word.startswith("--"):
                break
            continue
        options = dict(opt.partition("=")[::2] for opt in word.removeprefix("--mount=").split(","))
        if "from" not in options and options.get("type", "bind") not in _MOUNTS_WITHOUT_CONTEXT:
            return True
    return False


def copied_files(context_dir: str | Path) -> list[str] | None:
    """The context files (POSIX, relative) the Dockerfile in ``context_dir`` reads, or None
    when it may read others or its text is not understood."""
    root = Path(context_dir)
    text = (root / "Dockerfile").read_text()
    if _ESCAPE_DIRECTIVE.search(text):
        return None
    files: set[str] = set()
    for keyword, rest in instructions(text):
        if keyword == "RUN" and _run_reads_context(rest):
            return None
        if keyword not in ("COPY", "ADD"):
            continue
        sources = _copy_sources(rest)
        if sources is None:
            return None
        for source in sources:
            rel = source.lstrip("/").removeprefix("./")
            path = root / rel
            if _VARIABLE_OR_GLOB.search(rel) or not rel or not path.is_file():
                return None
            if path.is_symlink() or ".." in Path(rel).parts:
                return None
            files.add(Path(rel).as_posix())
    return sorted(files)
