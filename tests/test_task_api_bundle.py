"""The task Lambda's code bundle holds the handler package, every contract and task-store
module, and imports on its own."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from sdfleet.components.builders import api as apib

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "components" / "task_api"
HANDLER = PACKAGE / "handler.py"


def test_the_package_and_every_contract_and_store_module_are_bundled() -> None:
    files = apib.lambda_files(HANDLER, ROOT / "agent")
    shipped = {name for name in files if name.startswith("sdfleet/components/task_api/")}
    assert shipped == {f"sdfleet/components/task_api/{p.name}" for p in PACKAGE.glob("*.py")}
    assert {"handler.py", "submit.py", "status.py", "responses.py", "events.py"} <= {
        Path(n).name for n in shipped
    }
    bundled = {name for name in files if name.startswith("sdfleet/agent/")}
    on_disk = {
        f"sdfleet/agent/{p.name}"
        for pattern in apib.AGENT_GLOBS
        for p in (ROOT / "agent").glob(pattern)
    }
    assert bundled == on_disk
    assert {
        "sdfleet/agent/contract.py",
        "sdfleet/agent/contract_limits.py",
        "sdfleet/agent/task_state.py",
        "sdfleet/agent/task_state_record.py",
        "sdfleet/agent/task_state_retry.py",
        "sdfleet/agent/contract_callback.py",
        "sdfleet/agent/netguard.py",  # the callback host check's SSRF table
    } <= bundled
    # Nothing else of the agent (it needs httpx and more, which the Lambda does not have).
    assert not {"sdfleet/agent/worker.py", "sdfleet/agent/inputs.py"} & set(files)
    # The function's handler setting, task_api.handler, is the entry module's re-export.
    assert files["task_api.py"] == PACKAGE / "lambda_entry.py"
    assert apib.LAMBDA_HANDLER == "task_api.handler"


def _lay_out_bundle(root: Path) -> None:
    """The Lambda's code archive, unpacked under ``root``."""
    for name, source in apib.lambda_files(HANDLER, ROOT / "agent").items():
        target = root / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(source, target)
    for init in apib.LAMBDA_PACKAGE_INITS:
        (root / init).write_text("")


def _run(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-I", "-c", code], capture_output=True, text=True, timeout=60
    )


def test_the_contract_imports_in_isolation(tmp_path: Path) -> None:
    """Only the bundled files and the standard library: the contract must not reach for
    anything else."""
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
    result = _run(code)
    assert result.returncode == 0, result.stderr


def test_the_handler_imports_from_the_bundle(tmp_path: Path) -> None:
    """The Lambda's handler path resolves in the bundle; the package, the contract and the
    task store are the bundled files, and nothing but the standard library and boto3 (which
    the Lambda Python runtime ships) is needed: no Pulumi, no other sdfleet code."""
    _lay_out_bundle(tmp_path)
    module, _, function = apib.LAMBDA_HANDLER.rpartition(".")
    code = (
        "import importlib, sys\n"
        f"sys.path.insert(0, {str(tmp_path)!r})\n"
        f"handler = getattr(importlib.import_module({module!r}), {function!r})\n"
        "assert callable(handler)\n"
        "import sdfleet.agent.contract as c, sdfleet.agent.task_state as ts\n"
        "import sdfleet.components.task_api.status as st, task_api\n"
        "from sdfleet.components.task_api.handler import handler as real\n"
        "assert handler is real and task_api.handler is real\n"
        f"for m in (c, ts, st): assert m.__file__.startswith({str(tmp_path)!r}), m.__file__\n"
        "bad = [m for m in sys.modules if m.startswith(('pulumi', 'httpx', 'yaml', 'pydantic'))\n"
        "       or (m.startswith('sdfleet.') and not m.startswith(('sdfleet.agent.contract',\n"
        "           'sdfleet.agent.task_state', 'sdfleet.agent.netguard',\n"
        "           'sdfleet.components.task_api'))\n"
        "           and m not in ('sdfleet.agent', 'sdfleet.components'))]\n"
        "assert not bad, bad\n"
        "tp = [m.split('.')[0] for m in sys.modules if m.split('.')[0] in\n"
        "      {'boto3', 'botocore', 's3transfer', 'jmespath', 'dateutil', 'urllib3', 'six'}]\n"
        "assert 'boto3' in tp\n"
    )
    result = _run(code)
    assert result.returncode == 0, result.stderr


def test_a_request_runs_in_the_bundle(tmp_path: Path) -> None:
    """A request reaches the handler inside the bundle and gets an answer from its own code
    (an unknown path needs no AWS)."""
    _lay_out_bundle(tmp_path)
    module, _, function = apib.LAMBDA_HANDLER.rpartition(".")
    code = (
        "import importlib, json, sys\n"
        f"sys.path.insert(0, {str(tmp_path)!r})\n"
        f"handler = getattr(importlib.import_module({module!r}), {function!r})\n"
        "r = handler({'path': '/v1alpha2/tasks/a%20b', 'httpMethod': 'GET'}, None)\n"
        "assert r['statusCode'] == 500, r  # no environment: misconfigured, not a crash\n"
        "r = handler({'path': '/nope', 'httpMethod': 'GET'}, None)\n"
        "assert r['statusCode'] == 404 and json.loads(r['body'])['error']['code'] == 'not_found'\n"
    )
    result = _run(code)
    assert result.returncode == 0, result.stderr
