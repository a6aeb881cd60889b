"""``sdfleet`` command line: offline synthesis and policy checks of a stack (``synth``,
``check``), tasks against a deployed stack (``submit``, ``status``, ``wait``, ``get``, ``load``,
``dlq``), the GPU nodes' image-cache snapshots (``snapshot``) and the data plane on this machine
(``sandbox``)."""

from __future__ import annotations

import argparse
import json
import runpy
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from sdfleet.cli_tasks import ALL_COMMANDS as TASK_COMMANDS
from sdfleet.cli_tasks import add_all as add_task_parsers
from sdfleet.components.config import ConfigError, parse_config, split_namespaced
from sdfleet.render import jsonable, kubernetes_manifest
from sdfleet.sandbox.run import add_parser as add_sandbox_parser
from sdfleet.snapshot.cli import add_parser as add_snapshot_parser


def find_project_dir(start: Path) -> Path:
    for candidate in (start, *start.parents):
        if (candidate / "Pulumi.yaml").is_file():
            return candidate
    raise FileNotFoundError(f"no Pulumi.yaml in {start} or its parents")


def load_stack_config(project_dir: Path, stack: str) -> dict[str, Any]:
    project = yaml.safe_load((project_dir / "Pulumi.yaml").read_text())
    config_dir = project_dir / project.get("stackConfigDir", ".")
    path = config_dir / f"Pulumi.{stack}.yaml"
    if not path.is_file():
        raise FileNotFoundError(f"stack file {path} does not exist")
    data = yaml.safe_load(path.read_text()) or {}
    config = data.get("config") or {}
    if not isinstance(config, dict):
        raise ValueError(f"{path}: 'config' must be a mapping")
    return config


def _tree_lines(records: list[Any]) -> list[str]:
    children: dict[str | None, list[Any]] = {}
    for rec in records:
        children.setdefault(rec.parent, []).append(rec)
    lines: list[str] = []

    def walk(parent: str | None, depth: int) -> None:
        for rec in children.get(parent, []):
            lines.append(f"{'  ' * depth}{rec.type}  {rec.name}")
            walk(rec.name, depth + 1)

    walk(None, 0)
    return lines


def _write_manifests(recorder: Any, manifest_dir: Path) -> int:
    """Each Kubernetes resource's manifest as YAML; stale files from an earlier run go first."""
    if manifest_dir.exists():
        for old in manifest_dir.glob("*.yaml"):
            old.unlink()
    manifests = 0
    for rec in recorder.resources:
        manifest = kubernetes_manifest(rec.type, jsonable(rec.inputs))
        if manifest is None:
            continue
        manifest_dir.mkdir(exist_ok=True)
        kind = manifest["kind"].lower()
        (manifest_dir / f"{kind}-{rec.name}.yaml").write_text(
            yaml.safe_dump(manifest, sort_keys=False)
        )
        manifests += 1
    return manifests


def _print_summary(
    stack: str,
    recorder: Any,
    counts: dict[str, int],
    out_dir: Path,
    manifest_dir: Path,
    manifests: int,
) -> None:
    from sdfleet.mocking import PLACEHOLDER_NOTE

    print(f"sdfleet synth: stack {stack!r} under Pulumi's mock runtime")
    print(PLACEHOLDER_NOTE)
    print()
    print("Resource tree:")
    for line in _tree_lines(recorder.resources):
        print(f"  {line}")
    print()
    print("Counts by type:")
    width = max(len(t) for t in counts)
    for type_, count in counts.items():
        print(f"  {type_:<{width}}  {count}")
    print(f"  {'total':<{width}}  {len(recorder.resources)}")
    print()
    print(
        f"Wrote {out_dir / 'resources.json'}"
        + (f" and {manifests} manifests in {manifest_dir}" if manifests else "")
    )


def synth(project_dir: Path, stack: str, out_dir: Path, *, quiet: bool = False) -> int:
    from sdfleet.mocking import PLACEHOLDER_NOTE, config_from_stack_file, run_program

    raw_config = load_stack_config(project_dir, stack)
    try:
        validated = parse_config(split_namespaced(raw_config))
    except ConfigError as err:
        print(f"sdfleet synth: stack {stack!r} has an invalid configuration:", file=sys.stderr)
        for line in err.errors:
            print(f"  {line}", file=sys.stderr)
        return 2

    main_file = project_dir / "__main__.py"
    sys.path.insert(0, str(project_dir))
    try:
        recorder = run_program(
            lambda: runpy.run_path(str(main_file), run_name="__main__"),
            config_from_stack_file(raw_config),
            stack=stack,
        )
    finally:
        sys.path.remove(str(project_dir))

    out_dir.mkdir(parents=True, exist_ok=True)
    resources = [jsonable(r.to_json()) for r in recorder.resources]
    (out_dir / "resources.json").write_text(json.dumps(resources, indent=2, sort_keys=True))

    manifest_dir = out_dir / "manifests"
    manifests = _write_manifests(recorder, manifest_dir)

    from sdfleet.invariants import check_all
    from sdfleet.synth_telemetry import telemetry_report

    violations = check_all(recorder)
    telemetry, telemetry_problems = telemetry_report(
        recorder.resources, validated.observability.container_insights
    )
    counts = recorder.counts_by_type()
    summary = {
        "stack": stack,
        "resources": len(recorder.resources),
        "counts": counts,
        "manifests": manifests,
        "security_violations": violations,
        "telemetry_problems": telemetry_problems,
        "note": PLACEHOLDER_NOTE,
    }
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=2))
    if not quiet:
        _print_summary(stack, recorder, counts, out_dir, manifest_dir, manifests)
        print()
        print("Telemetry:")
        for line in telemetry:
            print(f"  {line}")
        print()
    if telemetry_problems:
        print("Telemetry problems:", file=sys.stderr)
        for line in telemetry_problems:
            print(f"  {line}", file=sys.stderr)
        return 1
    if violations:
        print("Security invariants violated:", file=sys.stderr)
        for line in violations:
            print(f"  {line}", file=sys.stderr)
        return 1
    if not quiet:
        print("Security invariants: all hold.")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="sdfleet", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p_synth = sub.add_parser("synth", help="run the program under mocks and write what it creates")
    p_synth.add_argument("--stack", default="dev", help="stack name (stacks/Pulumi.<stack>.yaml)")
    p_synth.add_argument("--out", type=Path, help="output folder (default build/synth/<stack>)")
    p_synth.add_argument("--project-dir", type=Path, help="folder with Pulumi.yaml (default: cwd)")
    p_synth.add_argument("--quiet", action="store_true", help="print nothing on success")
    p_check = sub.add_parser(
        "check", help="run the security rules over a resources.json written by synth"
    )
    p_check.add_argument("path", type=Path, help="resources.json (or the synth output folder)")
    add_snapshot_parser(sub)
    add_task_parsers(sub)
    add_sandbox_parser(sub)
    args = parser.parse_args(argv)
    if args.command == "sandbox":
        from sdfleet.sandbox.run import main as sandbox_main

        return sandbox_main(args)
    if args.command in TASK_COMMANDS:
        return int(args.func(args))
    if args.command == "snapshot":
        return int(args.func(args))

    if args.command == "check":
        from sdfleet.check import run_check

        return run_check(args.path)

    try:
        project_dir = (args.project_dir or find_project_dir(Path.cwd())).resolve()
        out = args.out or project_dir / "build" / "synth" / args.stack
        return synth(project_dir, args.stack, out, quiet=args.quiet)
    except (FileNotFoundError, ValueError, yaml.YAMLError) as err:
        print(f"sdfleet {args.command}: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
