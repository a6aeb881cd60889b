"""The task Lambda's code bundle holds every contract module and imports on its own."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from components.builders import api as apib

ROOT = Path(__file__).resolve().parent.parent
HANDLER = ROOT / "components" / "task_api" / "handler.py"


def test_every_contract_module_is_bundled() -> None:
    files = apib.lambda_files(HANDLER, ROOT / "agent")
    assert files["task_api.py"] == HANDLER
    bundled = {name for name in files if name.startswith("agent/")}
    on_disk = {f"agent/{p.name}" for p in (ROOT / "agent").glob("contract*.py")}
    assert bundled == on_disk
    assert {"agent/contract.py", "agent/contract_limits.py", "agent/contract_comfy.py"} <= bundled
    # Nothing else of the agent (it needs httpx and more, which the Lambda does not have).
    assert not {"agent/worker.py", "agent/inputs.py"} & set(files)


def test_the_bundle_imports_in_isolation(tmp_path: Path) -> None:
    """Only the bundled files and the standard library: the contract must not reach for
    anything else (the handler's boto3 comes with the Lambda runtime)."""
    for name, source in apib.lambda_files(HANDLER, ROOT / "agent").items():
        target = tmp_path / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(source, target)
    (tmp_path / "agent" / "__init__.py").write_text("")
    code = (
        "import sys\n"
        f"sys.path[:] = [{str(tmp_path)!r}] + [p for p in sys.path if 'site-packages' not in p]\n"
        "import agent.contract as c\n"
        f"assert c.__file__.startswith({str(tmp_path)!r}), c.__file__\n"
        "r = c.RuntimeInfo('a', c.COMFYUI, limits=c.Limits(max_steps=5))\n"
        "t = c.parse_v1alpha2({'task': {'metadata': {'runtime': 'a', 'tasktype': 'pipeline'},"
        " 'content': {'1': {'class_type': 'X', 'inputs': {}}}}}, [r])\n"
        "assert t.content == {'prompt': {'1': {'class_type': 'X', 'inputs': {}}}}\n"
        "assert not [m for m in sys.modules if m.split('.')[0] in ('components', 'httpx')]\n"
    )
    result = subprocess.run(
        [sys.executable, "-I", "-c", code], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
