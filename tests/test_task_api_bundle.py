"""The task Lambda's code bundle holds every contract module and imports on its own."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from sdfleet.components.builders import api as apib

ROOT = Path(__file__).resolve().parent.parent
HANDLER = ROOT / "components" / "task_api" / "handler.py"


def test_every_contract_module_is_bundled() -> None:
    files = apib.lambda_files(HANDLER, ROOT / "agent")
    assert files["task_api.py"] == HANDLER
    bundled = {name for name in files if name.startswith("sdfleet/agent/")}
    on_disk = {f"sdfleet/agent/{p.name}" for p in (ROOT / "agent").glob("contract*.py")}
    assert bundled == on_disk
    assert {
        "sdfleet/agent/contract.py",
        "sdfleet/agent/contract_limits.py",
        "sdfleet/agent/contract_comfy.py",
    } <= bundled
    # Nothing else of the agent (it needs httpx and more, which the Lambda does not have).
    assert not {"sdfleet/agent/worker.py", "sdfleet/agent/inputs.py"} & set(files)


def _lay_out_bundle(root: Path) -> None:
    """The Lambda's code archive, unpacked under ``root``."""
    for name, source in apib.lambda_files(HANDLER, ROOT / "agent").items():
        target = root / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(source, target)
    for init in apib.LAMBDA_PACKAGE_INITS:
        (root / init).write_text("")


def test_the_bundle_imports_in_isolation(tmp_path: Path) -> None:
    """Only the bundled files and the standard library: the contract must not reach for
    anything else (the handler's boto3 comes with the Lambda runtime)."""
    _lay_out_bundle(tmp_path)
    code = (
        "import sys\n"
        f"sys.path[:] = [{str(tmp_path)!r}] + [p for p in sys.path if 'site-packages' not in p]\n"
        "import sdfleet.agent.contract as c\n"
        f"assert c.__file__.startswith({str(tmp_path)!r}), c.__file__\n"
        "r = c.RuntimeInfo('a', c.COMFYUI, limits=c.Limits(max_steps=5))\n"
        "t = c.parse_v1alpha2({'task': {'metadata': {'runtime': 'a', 'tasktype': 'pipeline'},"
        " 'content': {'1': {'class_type': 'X', 'inputs': {}}}}}, [r])\n"
        "assert t.content == {'prompt': {'1': {'class_type': 'X', 'inputs': {}}}}\n"
        "assert not [m for m in sys.modules if m.startswith(('sdfleet.components', 'httpx'))]\n"
    )
    result = subprocess.run(
        [sys.executable, "-I", "-c", code], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr


def test_the_handler_imports_from_the_bundle(tmp_path: Path) -> None:
    """The Lambda's handler path ``task_api.handler`` resolves in the bundle, its
    ``sdfleet.agent.contract`` import is the bundled one, and no other sdfleet code is needed
    (boto3 stands in for the Lambda runtime's own copy)."""
    _lay_out_bundle(tmp_path)
    code = (
        "import sys\n"
        f"sys.path.insert(0, {str(tmp_path)!r})\n"
        "import task_api, sdfleet.agent.contract as c\n"
        "assert callable(task_api.handler)\n"
        f"assert c.__file__.startswith({str(tmp_path)!r}), c.__file__\n"
        "assert not [m for m in sys.modules if m.startswith(('sdfleet.components', 'pulumi'))]\n"
    )
    result = subprocess.run(
        [sys.executable, "-I", "-c", code], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
