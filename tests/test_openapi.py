"""The OpenAPI documents (docs/openapi/) describe the task API as implemented: they are valid
OpenAPI 3.0, every example request in them and in the prose docs passes both the documented
schema and the real handler (against moto, with the fixtures of ``tests/test_task_api``), the
documented error examples are what the handler answers, and the schemas' field sets, enums and
bounds are the contract's."""

from __future__ import annotations

import ast
import json
import re
import shlex
from dataclasses import fields
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from openapi_spec_validator import OpenAPIV30SpecValidator

import sdfleet.agent.contract_comfy
from sdfleet.agent import contract
from sdfleet.components.builders import api as apib
from sdfleet.components.task_api import handler as task_api
from tests.test_docs import parse_blocks
from tests.test_task_api import BY_NAME, Fanout, call, make_event

# The moto world (module-scoped) and the per-test fixture that sets the handler's environment.
from tests.test_task_api import fan as fan
from tests.test_task_api import world as world

ROOT = Path(__file__).resolve().parent.parent
OPENAPI = ROOT / "docs" / "openapi"
VERSIONS = ("v1alpha1", "v1alpha2")
SPECS: dict[str, dict[str, Any]] = {
    v: yaml.safe_load((OPENAPI / f"{v}.yaml").read_text()) for v in VERSIONS
}
REQUEST_SCHEMA = {"v1alpha1": "LegacyRequest", "v1alpha2": "TaskRequest"}
# Prose pages whose example requests must work as written.
PROSE = (ROOT / "docs" / "task-api.md", ROOT / "docs" / "api.md")


def _contract_files() -> list[Path]:
    """``agent/contract.py`` and the contract modules it imports, transitively (a module not
    yet imported by the contract is not part of what the API parses)."""
    found: list[Path] = []
    pending = [ROOT / "agent" / "contract.py"]
    while pending:
        path = pending.pop()
        if path in found:
            continue
        found.append(path)
        for node in ast.walk(ast.parse(path.read_text())):
            module = node.module if isinstance(node, ast.ImportFrom) else None
            if module and module.startswith("sdfleet.agent.contract"):
                pending.append(ROOT / "agent" / f"{module.rsplit('.', 1)[1]}.py")
    return sorted(found)


CONTRACT_FILES = _contract_files()


def operation(version: str) -> dict[str, Any]:
    return dict(SPECS[version]["paths"][f"/{version}"]["post"])


# --------------------------------------------------------------------------------------------
# OpenAPI 3.0 schemas as JSON Schema


def _plain(node: Any) -> Any:
    """OpenAPI 3.0's ``nullable`` as JSON Schema: ``anyOf: [null, the rest]``. Refs keep
    pointing at ``#/components/schemas/...`` of the converted document."""
    if isinstance(node, list):
        return [_plain(item) for item in node]
    if not isinstance(node, dict):
        return node
    out = {key: _plain(value) for key, value in node.items() if key != "nullable"}
    if node.get("nullable") is True:
        return {"anyOf": [{"type": "null"}, out]}
    return out


def validator(version: str, name: str) -> jsonschema.Draft202012Validator:
    schemas = _plain(SPECS[version]["components"]["schemas"])
    root = {"$ref": f"#/components/schemas/{name}", "components": {"schemas": schemas}}
    jsonschema.Draft202012Validator.check_schema(root)
    return jsonschema.Draft202012Validator(root)


def assert_valid(version: str, name: str, instance: Any) -> None:
    errors = [e.message for e in validator(version, name).iter_errors(instance)]
    assert not errors, f"{name}: {errors}"


def response_schema(version: str, status: int) -> str:
    """The component schema named by the operation's response for ``status``."""
    response = operation(version)["responses"][str(status)]
    if "$ref" in response:
        response = SPECS[version]["components"]["responses"][response["$ref"].rsplit("/", 1)[1]]
    ref = response["content"]["application/json"]["schema"]["$ref"]
    return str(ref.rsplit("/", 1)[1])


def test_nullable_conversion() -> None:
    """The helper itself: null passes only where the document says nullable."""
    assert_valid("v1alpha2", "Metadata", {"runtime": "sd15", "tasktype": "pipeline", "id": None})
    assert list(validator("v1alpha2", "Metadata").iter_errors({"runtime": None, "tasktype": "x"}))


# --------------------------------------------------------------------------------------------
# The documents


@pytest.mark.parametrize("version", VERSIONS)
def test_document_is_valid_openapi_3_0(version: str) -> None:
    spec = SPECS[version]
    assert spec["openapi"].startswith("3.0.")  # API Gateway imports OpenAPI 3.0
    OpenAPIV30SpecValidator(spec).validate()


def test_documents_cover_exactly_the_served_routes() -> None:
    served = {f"/{path}" for path in apib.API_PATHS}
    assert served == {f"/{route}" for route in task_api.ROUTES}
    documented: set[str] = set()
    for version in VERSIONS:
        paths = SPECS[version]["paths"]
        assert list(paths) == [f"/{version}"]
        assert list(paths[f"/{version}"]) == ["post"]  # the only method API Gateway routes
        documented |= set(paths)
    assert documented == served


@pytest.mark.parametrize("version", VERSIONS)
def test_the_api_key_is_required(version: str) -> None:
    spec = SPECS[version]
    assert spec["security"] == [{"apiKey": []}]
    assert spec["components"]["securitySchemes"]["apiKey"] == {
        **spec["components"]["securitySchemes"]["apiKey"],
        "type": "apiKey",
        "in": "header",
        "name": "x-api-key",
    }
    assert {"403", "429"} <= set(operation(version)["responses"])


def test_shared_components_are_identical() -> None:
    """The two documents are imported separately, so they repeat the shared parts."""
    one, two = (SPECS[v]["components"] for v in VERSIONS)
    assert one["securitySchemes"] == two["securitySchemes"]
    assert one["responses"] == two["responses"]
    for name in ("NumericString", "ImageRef", "SdWebUiContent", "Error", "GatewayError"):
        assert one["schemas"][name] == two["schemas"][name], name
    assert SPECS["v1alpha1"]["servers"] == SPECS["v1alpha2"]["servers"]


# --------------------------------------------------------------------------------------------
# Example requests: the documents' and the prose docs'


def _spec_requests() -> list[tuple[str, str, Any]]:
    found = []
    for version in VERSIONS:
        body = operation(version)["requestBody"]["content"]["application/json"]
        for name, example in body["examples"].items():
            found.append((f"{version}.yaml:{name}", version, example["value"]))
    return found


def _version_of(body: Any) -> str | None:
    if isinstance(body, dict) and "task" in body:
        return "v1alpha2"
    if isinstance(body, dict) and "alwayson_scripts" in body:
        return "v1alpha1"
    return None


def _prose_requests() -> list[tuple[str, str, Any]]:
    """JSON blocks that are request bodies, and the bodies of ``curl -d`` in deploy blocks."""
    found = []
    for page in PROSE:
        for block in parse_blocks(page):
            if block.lang == "json":
                body = json.loads(block.text)
                version = _version_of(body)
                if version:
                    found.append((block.name, version, body))
            elif block.lang in ("sh", "bash"):
                commands = re.split(r"\n(?=\S)", block.text)
                for i, command in enumerate(commands):
                    found.extend(_curl_bodies(f"{block.name}:{i}", command))
    return found


def _curl_bodies(name: str, command: str) -> list[tuple[str, str, Any]]:
    if not command.startswith("curl"):
        return []
    words = shlex.split(command.replace("\\\n", " "), comments=True)
    route = next(re.search(r"/(v1alpha\d)\b", w) for w in words if "$API" in w)
    assert route is not None, command
    body = json.loads(words[words.index("-d") + 1])
    return [(f"{name}:curl", route.group(1), body)]


REQUESTS = _spec_requests() + _prose_requests()


def test_the_prose_examples_are_found() -> None:
    """Guards the extraction: task-api.md has a JSON body and two curl bodies, api.md two
    JSON bodies; every document has at least three examples."""
    names = [name for name, _, _ in REQUESTS]
    assert sum(n.startswith("docs/task-api.md") for n in names) == 3
    assert sum(n.startswith("docs/api.md") for n in names) == 2
    for version in VERSIONS:
        assert sum(n.startswith(f"{version}.yaml") for n in names) >= 3


def _content_schema(runtime: str, content: Any) -> str:
    """The content schema of the runtime's type (TaskContent is an anyOf of all three)."""
    if BY_NAME[runtime].type == contract.SDWEBUI:
        return "SdWebUiContent"
    return "ComfyWorkflow" if contract.is_bare_workflow(content) else "ComfyWrapped"


@pytest.mark.parametrize(
    ("version", "body"),
    [pytest.param(v, b, id=name) for name, v, b in REQUESTS],
)
def test_example_request_is_valid_and_accepted(fan: Fanout, version: str, body: Any) -> None:
    assert_valid(version, REQUEST_SCHEMA[version], body)
    if version == "v1alpha2":
        runtime = body["task"]["metadata"]["runtime"]
        content = body["task"]["content"]
        assert_valid(version, _content_schema(runtime, content), content)
    status, answer = call(make_event(body, path=f"/{version}"))
    assert status == 200, answer
    assert_valid(version, response_schema(version, 200), answer)
    task_id = answer["id"] if version == "v1alpha2" else answer["id_task"]
    queued = {name: fan.drain(url) for name, url in fan.queues.items()}
    [(runtime_name, [message])] = [(n, m) for n, m in queued.items() if m]
    published = json.loads(json.loads(message["Body"])["Message"])
    assert published["metadata"]["id"] == task_id
    assert published["metadata"]["runtime"] == runtime_name


@pytest.mark.parametrize("version", VERSIONS)
def test_the_documented_answer_is_the_handlers(fan: Fanout, version: str) -> None:
    ok = operation(version)["responses"]["200"]["content"]["application/json"]["examples"]
    requests = operation(version)["requestBody"]["content"]["application/json"]["examples"]
    for example in ok.values():
        request = requests[example["x-sdfleet-request-example"]]["value"]
        assert call(make_event(request, path=f"/{version}")) == (200, example["value"])


# --------------------------------------------------------------------------------------------
# Errors


def _error_examples() -> list[tuple[str, str, int, dict[str, Any]]]:
    found = []
    for version in VERSIONS:
        for status, response in operation(version)["responses"].items():
            if "$ref" in response:
                name = response["$ref"].rsplit("/", 1)[1]
                response = SPECS[version]["components"]["responses"][name]
            for name, example in response["content"]["application/json"]["examples"].items():
                found.append((f"{version}:{status}:{name}", version, int(status), example))
    return found


@pytest.mark.parametrize(
    ("version", "status", "example"),
    [pytest.param(v, s, e, id=name) for name, v, s, e in _error_examples()],
)
def test_every_response_example_fits_its_schema(
    version: str, status: int, example: dict[str, Any]
) -> None:
    assert_valid(version, response_schema(version, status), example["value"])


@pytest.mark.parametrize(
    ("version", "example"),
    [
        pytest.param(v, e, id=name)
        for name, v, s, e in _error_examples()
        if "x-sdfleet-request" in e or "x-sdfleet-raw-request" in e
    ],
)
def test_documented_error_is_what_the_handler_answers(
    fan: Fanout, version: str, example: dict[str, Any]
) -> None:
    if "x-sdfleet-raw-request" in example:
        event = make_event(example["x-sdfleet-raw-request"], path=f"/{version}", raw=True)
    else:
        event = make_event(example["x-sdfleet-request"], path=f"/{version}")
    assert call(event) == (400, example["value"])
    fan.assert_nothing_published()


def test_prose_error_examples_fit_the_schema() -> None:
    errors = [
        json.loads(block.text)
        for page in PROSE
        for block in parse_blocks(page)
        if block.lang == "json" and "error" in json.loads(block.text)
    ]
    assert errors
    for error in errors:
        assert_valid("v1alpha2", "BadRequest", error)


HANDLER_ERRORS: list[tuple[str, str, int]] = [
    # (version, raw body, status)
    ("v1alpha2", "[1, 2]", 400),
    ("v1alpha2", json.dumps({"task": {"metadata": {"runtime": "flux"}, "content": {}}}), 400),
    ("v1alpha2", json.dumps({"task": {}, "extra": 1}), 400),
    (
        "v1alpha2",
        json.dumps(
            {
                "task": {
                    "metadata": {"runtime": "sd15", "tasktype": "text-to-image"},
                    "content_ref": "s3://b/k.request.json",
                }
            }
        ),
        400,
    ),
    (
        "v1alpha2",
        json.dumps(
            {
                "task": {
                    "metadata": {"runtime": "sd15", "tasktype": "text-to-image", "id": "a b"},
                    "content": {"prompt": "p"},
                }
            }
        ),
        400,
    ),
    ("v1alpha1", json.dumps({"prompt": "p"}), 400),
    ("v1alpha1", json.dumps({"alwayson_scripts": {"sd_model_checkpoint": "x" * 300}}), 400),
    ("v1alpha2", "x" * (contract.MAX_BODY_BYTES + 1), 413),
]


@pytest.mark.parametrize(("version", "raw", "status"), HANDLER_ERRORS)
def test_handler_errors_fit_the_documented_schema(
    fan: Fanout, version: str, raw: str, status: int
) -> None:
    got, answer = call(make_event(raw, path=f"/{version}", raw=True))
    assert got == status, answer
    assert_valid(version, response_schema(version, status), answer)
    fan.assert_nothing_published()


@pytest.mark.parametrize(
    ("code", "message"),
    [("INVALID_API_KEY", "Forbidden"), ("THROTTLED", "Too Many Requests")],
)
def test_gateway_errors_fit_the_documented_schema(code: str, message: str) -> None:
    """API Gateway's own 4xx/5xx use the template the component installs; render it as the
    gateway does (``messageString`` is a quoted JSON string)."""
    rendered = (
        apib.gateway_error_template()
        .replace("$context.error.responseType", code)
        .replace("$context.error.messageString", json.dumps(message))
    )
    for version in VERSIONS:
        assert_valid(version, "GatewayError", json.loads(rendered))


def _raised_codes() -> dict[str, int]:
    """Every error code written as a literal in the contract and the handler, with its
    status (the contract's default 400 unless a status is passed)."""
    codes: dict[str, int] = {}
    for path in [*CONTRACT_FILES, ROOT / "components" / "task_api" / "handler.py"]:
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.Call):
                continue
            name = getattr(node.func, "attr", getattr(node.func, "id", ""))
            args = [a.value if isinstance(a, ast.Constant) else None for a in node.args]
            status = {k.arg: getattr(k.value, "value", None) for k in node.keywords}.get("status")
            if name == "ContractError" and isinstance(args[0] if args else None, str):
                codes[str(args[0])] = int(status or 400)
            elif name == "_error" and len(args) > 1 and isinstance(args[1], str):
                codes[str(args[1])] = int(str(args[0]))
    return codes


def test_every_400_code_is_documented() -> None:
    """A new error code fails here until the documents list it. ``invalid_content_ref`` is
    agent-side only (clients cannot send ``content_ref``)."""
    raised = {code for code, status in _raised_codes().items() if status == 400}
    raised -= {"invalid_content_ref"}
    documented: set[str] = set()
    for version in VERSIONS:
        bad = SPECS[version]["components"]["schemas"]["BadRequest"]["allOf"][1]
        documented |= set(bad["properties"]["error"]["properties"]["code"]["enum"])
    assert documented == raised


def test_other_statuses_are_documented() -> None:
    """404/405 are not: API Gateway answers an unknown path or method itself (403)."""
    statuses = set(_raised_codes().values()) - {400, 404, 405}
    for version in VERSIONS:
        assert {str(s) for s in statuses} <= set(operation(version)["responses"])


# --------------------------------------------------------------------------------------------
# The schemas' fields, enums and bounds are the contract's


def _props(version: str, name: str) -> set[str]:
    return set(SPECS[version]["components"]["schemas"][name]["properties"])


def _refused(body: Any, parse: Any = contract.parse_v1alpha2) -> str | None:
    try:
        parse(body, list(BY_NAME.values()))
    except contract.ContractError as exc:
        return f"{exc.code} {exc.field}"
    return None


def test_v1alpha2_fields_are_the_contracts() -> None:
    meta = {"runtime": "sd15", "tasktype": "text-to-image"}
    assert _props("v1alpha2", "TaskRequest") == {"task"}
    assert _refused({"task": {"metadata": meta, "content": {}}, "x": 1}) == "unknown_field x"
    # content_ref is a Task field only the API sets: refused from clients, not documented.
    assert _props("v1alpha2", "Task") == {f.name for f in fields(contract.Task)} - {
        "api_version",
        "content_ref",
    }
    assert _refused({"task": {"metadata": meta, "content_ref": "s3://b/k"}}) == (
        "unknown_field task.content_ref"
    )
    assert _props("v1alpha2", "Metadata") == {f.name for f in fields(contract.TaskMetadata)}
    assert _refused({"task": {"metadata": {**meta, "x": 1}, "content": {}}}) == (
        "unknown_field task.metadata.x"
    )
    comfy = {"runtime": "flux", "tasktype": "pipeline"}
    wrapped = {"prompt": {"1": {"class_type": "A", "inputs": {}}}, "x": 1}
    assert _refused({"task": {"metadata": comfy, "content": wrapped}}) == (
        "unknown_field task.content.x"
    )
    assert _props("v1alpha2", "ComfyWrapped") == set(sdfleet.agent.contract_comfy._WRAPPED_KEYS)


def test_v1alpha1_routing_fields_are_the_contracts() -> None:
    assert _props("v1alpha1", "LegacyScripts") == set(contract.LEGACY_ALWAYSON_KEYS)


def _literals(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    return {
        node.value
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant)
        and isinstance(node.value, str)
        and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", node.value)
    }


def _all_props(schema: Any) -> set[str]:
    found: set[str] = set()
    if isinstance(schema, dict):
        found |= set(schema.get("properties", {}))
        for value in schema.values():
            found |= _all_props(value)
    elif isinstance(schema, list):
        for item in schema:
            found |= _all_props(item)
    return found


# Identifier-like literals of the sdwebui checks that are not request fields.
NOT_FIELDS = {"Limits", "LoadImage", "comfyui", "sdwebui", "on", "t", "true", "x", "y", "yes"}
# A ControlNet script's unit list (args) and its image keys, in alwayson_scripts' description.
CONTROLNET_KEYS = {"controlnet", "args", "input_image", "mask_image"}
# Documented for the server's sake, not checked by the contract.
SERVER_ONLY = {"name"}


def test_sdwebui_fields_are_the_ones_the_contract_checks() -> None:
    """Every identifier the sdwebui checks read is documented, and nothing else is: a new
    checked field fails here until SdWebUiContent documents it."""
    schema = SPECS["v1alpha2"]["components"]["schemas"]["SdWebUiContent"]
    limit_keys = set(contract.Limits().to_json()) | {f.name for f in fields(contract.Limits)}
    read = _literals(ROOT / "agent" / "contract_content.py")
    read |= _literals(ROOT / "agent" / "contract_limits.py")
    read -= NOT_FIELDS | limit_keys | set(_raised_codes())
    scripts_text = schema["properties"]["alwayson_scripts"]["description"]
    assert all(f"`{key}`" in scripts_text for key in CONTROLNET_KEYS - {"args"})
    assert _all_props(schema) - SERVER_ONLY == read - CONTROLNET_KEYS


def test_enums_and_bounds_are_the_contracts() -> None:
    schemas2 = SPECS["v1alpha2"]["components"]["schemas"]
    schemas1 = SPECS["v1alpha1"]["components"]["schemas"]
    meta, scripts = schemas2["Metadata"]["properties"], schemas1["LegacyScripts"]["properties"]
    all_types = {t for types in contract.TASKTYPES.values() for t in types}
    assert set(meta["tasktype"]["enum"]) == all_types
    assert scripts["task"]["enum"] == list(contract.TASKTYPES[contract.SDWEBUI])
    id_pattern = contract.ID_PATTERN.pattern.replace(r"\Z", "$")
    for field in (meta["id"], scripts["id_task"], schemas2["Queued"]["properties"]["id"]):
        assert field["pattern"] == id_pattern
    for field in (meta["prefix"], scripts["save_dir"]):
        assert field["maxLength"] == contract.MAX_PREFIX_CHARS
    for field in (meta["context"], scripts["uid"]):
        assert field["x-max-json-bytes"] == contract.MAX_CONTEXT_BYTES
    names = [
        scripts["sd_model_checkpoint"],
        scripts["sd_vae"],
        schemas2["ComfyNode"]["properties"]["class_type"],
        *schemas2["SdWebUiContent"]["properties"]["override_settings"]["properties"].values(),
    ]
    assert {field["maxLength"] for field in names} == {contract.MAX_NAME_CHARS}
    urls = scripts["image_link"]["anyOf"][1]["items"]
    assert urls["maxLength"] == contract.MAX_URL_CHARS
    field_cut = schemas2["Error"]["properties"]["error"]["properties"]["field"]
    assert field_cut["maxLength"] == task_api._MAX_FIELD_CHARS


def _limited(schema: Any) -> list[dict[str, Any]]:
    """Every schema node that carries a bound from a runtime limit."""
    found: list[dict[str, Any]] = []
    if isinstance(schema, dict):
        if "x-sdfleet-limit" in schema:
            found.append(schema)
        for value in schema.values():
            found.extend(_limited(value))
    elif isinstance(schema, list):
        for item in schema:
            found.extend(_limited(item))
    return found


@pytest.mark.parametrize("version", VERSIONS)
def test_limit_bounds_are_the_default_limits(version: str) -> None:
    defaults = contract.Limits().to_json()
    limited = _limited(SPECS[version]["components"]["schemas"])
    assert {node["x-sdfleet-limit"] for node in limited} >= {"maxSteps", "maxImages", "maxInputs"}
    for node in limited:
        bound = node.get("maximum", node.get("maxItems"))
        if "anyOf" in node:  # image_link: the list form carries the bound
            bound = node["anyOf"][1]["maxItems"]
        assert bound == defaults[node["x-sdfleet-limit"]], node
    # The pixel limit is a product; the per-side bound is the contract's fixed MAX_SIDE.
    sides = json.dumps(SPECS[version]["components"]["schemas"]["SdWebUiContent"])
    assert str(defaults["maxPixels"]) in sides
    side_bounds = {int(m) for m in re.findall(r'"maximum": (\d+)', sides)} - {
        defaults[k] for k in ("maxSteps", "maxImages")
    }
    assert side_bounds == {contract.MAX_SIDE}
