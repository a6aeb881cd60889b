"""The task-event Lambdas' code bundle: their package, the agent modules they import and
sdfleet/dlq.py, importing on their own with the standard library and boto3 only."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from sdfleet.components.builders import task_events as teb

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "components" / "task_events"


def _files() -> dict[str, Path]:
    return teb.lambda_files(PACKAGE, ROOT / "agent", ROOT / "sdfleet")


def test_the_bundle_holds_the_package_the_agent_modules_and_the_dlq_peek() -> None:
    files = _files()
    assert {"sdfleet/components/task_events/sweeper.py", "sdfleet/components/task_events/webhook.py",
            "sdfleet/dlq.py", "sdfleet/agent/webhooks.py", "sdfleet/agent/netguard.py",
            "sdfleet/agent/contract.py", "sdfleet/agent/task_state.py"} <= set(files)  # fmt: skip
    assert files["sdfleet/dlq.py"] == ROOT / "sdfleet" / "dlq.py"
    # Nothing of the agent's worker (httpx and more, which the Lambda does not have).
    assert not {"sdfleet/agent/worker.py", "sdfleet/agent/inputs.py"} & set(files)


def test_both_handlers_import_from_the_bundle_alone(tmp_path: Path) -> None:
    for name, source in _files().items():
        target = tmp_path / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(source, target)
    for init in teb.LAMBDA_PACKAGE_INITS:
        (tmp_path / init).write_text("")
    code = (
        "import importlib, sys\n"
        f"sys.path.insert(0, {str(tmp_path)!r})\n"
        f"for path in ({teb.SWEEPER_HANDLER!r}, {teb.WEBHOOK_HANDLER!r}):\n"
        "    module, _, fn = path.rpartition('.')\n"
        "    m = importlib.import_module(module)\n"
        "    assert callable(getattr(m, fn))\n"
        f"    assert m.__file__.startswith({str(tmp_path)!r}), m.__file__\n"
        "bad = [m for m in sys.modules if m.split('.')[0] in\n"
        "       {'pulumi', 'httpx', 'yaml', 'pydantic', 'pulumi_aws'}]\n"
        "assert not bad, bad\n"
        "import sdfleet.dlq, sdfleet.agent.webhooks\n"
        f"assert sdfleet.dlq.__file__.startswith({str(tmp_path)!r})\n"
    )
    result = subprocess.run(
        [sys.executable, "-I", "-c", code], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
