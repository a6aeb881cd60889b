"""Pure builders for API Gateway settings."""

from __future__ import annotations

import json
from pathlib import Path

from sdfleet.agent.contract import RuntimeInfo

API_PATHS = ("v1alpha2", "v1alpha1")
# The contract is split into stdlib-only modules, all named like this.
CONTRACT_GLOB = "contract*.py"
# The handler imports sdfleet.agent.contract; the Lambda gets empty package markers, not the
# real sdfleet/__init__.py, so nothing but the contract modules is shipped.
LAMBDA_AGENT_DIR = "sdfleet/agent"
LAMBDA_PACKAGE_INITS = ("sdfleet/__init__.py", "sdfleet/agent/__init__.py")


def lambda_files(handler_file: Path, agent_dir: Path) -> dict[str, Path]:
    """Archive path -> source file of the task Lambda: the handler as ``task_api.py`` and every
    contract module (``agent/contract*.py``, imported as ``sdfleet.agent.contract``), which
    import only each other and the standard library. The package markers
    (``LAMBDA_PACKAGE_INITS``) are added empty by the component."""
    files = {"task_api.py": handler_file}
    for module in sorted(agent_dir.glob(CONTRACT_GLOB)):
        files[f"{LAMBDA_AGENT_DIR}/{module.name}"] = module
    return files


def access_log_format() -> str:
    """One JSON object per request. Neither the API key (only its id) nor the body."""
    fields = {
        "requestId": "$context.requestId",
        "extendedRequestId": "$context.extendedRequestId",
        "ip": "$context.identity.sourceIp",
        "requestTime": "$context.requestTime",
        "httpMethod": "$context.httpMethod",
        "resourcePath": "$context.resourcePath",
        "status": "$context.status",
        "protocol": "$context.protocol",
        "responseLength": "$context.responseLength",
        "integrationLatency": "$context.integrationLatency",
        "responseLatency": "$context.responseLatency",
        "apiKeyId": "$context.identity.apiKeyId",
        "xrayTraceId": "$context.xrayTraceId",
        "errorMessage": "$context.error.message",
    }
    return json.dumps(fields, separators=(",", ":"))


def gateway_error_template() -> str:
    """API Gateway's own 4xx/5xx (missing key, throttling) in the task API's error shape."""
    return (
        '{"error":{"code":"$context.error.responseType",'
        '"message":$context.error.messageString,"field":null}}'
    )


def runtimes_env(runtimes: list[RuntimeInfo]) -> str:
    """The Lambda's ``RUNTIMES`` variable: the catalogue it validates tasks against."""
    return json.dumps([r.to_json() for r in runtimes], separators=(",", ":"))
