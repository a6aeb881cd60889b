"""Pure builders for API Gateway settings."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from sdfleet.agent.contract import RuntimeInfo
from sdfleet.components.builders.errors import fail

API_PATHS = ("v1alpha2", "v1alpha1")
# The status route: GET /v1alpha2/tasks/{id} (resources v1alpha2 -> tasks -> {id}).
STATUS_VERSION = "v1alpha2"
STATUS_PATH_PARTS = ("tasks", "{id}")
STATUS_PATH_PARAMETER = "method.request.path.id"
# What the Lambda imports besides its own package: the contract and the task store, which
# import only each other, the standard library and boto3/botocore (in the Lambda runtime).
# contract_callback checks callback hosts with the agent's SSRF table (netguard, stdlib only).
AGENT_GLOBS = ("contract*.py", "task_state*.py", "netguard.py")
CONTRACT_GLOB = AGENT_GLOBS[0]
LAMBDA_AGENT_DIR = "sdfleet/agent"
LAMBDA_PACKAGE_DIR = "sdfleet/components/task_api"
# Empty package markers, not the real ``__init__`` files (sdfleet.components imports Pulumi):
# nothing but the handler package and those agent modules is shipped.
LAMBDA_PACKAGE_INITS = (
    "sdfleet/__init__.py",
    "sdfleet/agent/__init__.py",
    "sdfleet/components/__init__.py",
)
# The top-level module ``task_api`` re-exports the package's handler, so the function's
# handler setting is the same as when the handler was one file.
LAMBDA_HANDLER = "task_api.handler"
LAMBDA_ENTRY = "lambda_entry.py"


# X-Ray's default rule (priority 10000) records 1 request a second and 5 % of the rest; the
# stack's own rule for its stage comes first.
SAMPLING_RULE_PRIORITY = 1000


def sampling_rule(rule_name: str, rate: float) -> dict[str, Any]:
    """The X-Ray sampling rule of the task API's stage, but its ``service_name`` (API Gateway
    names the service ``<api name>/<stage>``; the API's name is known at deploy time): ``rate``
    of its requests, after one a second, are traced, and the Lambda, SNS and the agents follow
    the API's decision."""
    if not 0 <= rate <= 1:
        raise fail("trace_sample_rate", rate, "a share from 0 to 1")
    if not 1 <= len(rule_name) <= 32:
        raise fail("sampling rule name", rule_name, "1-32 characters")
    return {
        "rule_name": rule_name,
        "priority": SAMPLING_RULE_PRIORITY,
        "reservoir_size": 1,
        "fixed_rate": rate,
        "service_type": "AWS::ApiGateway::Stage",
        "host": "*",
        "http_method": "*",
        "url_path": "*",
        "resource_arn": "*",
        "version": 1,
    }


def lambda_files(handler_file: Path, agent_dir: Path) -> dict[str, Path]:
    """Archive path -> source file of the task Lambda: the entry module as ``task_api.py``,
    every module of the handler's package (``components/task_api/*.py``, imported as
    ``sdfleet.components.task_api``) and the agent modules it imports (``AGENT_GLOBS``). The
    package markers (``LAMBDA_PACKAGE_INITS``) are added empty by the component."""
    package_dir = handler_file.parent
    files = {"task_api.py": package_dir / LAMBDA_ENTRY}
    for module in sorted(package_dir.glob("*.py")):
        files[f"{LAMBDA_PACKAGE_DIR}/{module.name}"] = module
    for pattern in AGENT_GLOBS:
        for module in sorted(agent_dir.glob(pattern)):
            files[f"{LAMBDA_AGENT_DIR}/{module.name}"] = module
    return files


def routes_fingerprint() -> str:
    """The deployment's trigger: it changes, and the stage is redeployed, when the route set
    does."""
    status = f"GET /{STATUS_VERSION}/{'/'.join(STATUS_PATH_PARTS)}"
    return hashlib.sha256(json.dumps([*API_PATHS, status]).encode()).hexdigest()


def status_source_arn(execution_arn: str) -> str:
    """Who may invoke the Lambda for the status route: this API's GET on it, any stage."""
    return f"{execution_arn}/*/GET/{STATUS_VERSION}/{'/'.join(STATUS_PATH_PARTS[:1])}/*"


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
