"""The OpenAPI documents (docs/openapi/) describe the task API as implemented: they are valid
OpenAPI 3.0, every example request in them and in the prose docs passes both the documented
schema and the real handler (against moto, with the fixtures of ``tests/test_task_api``), the
documented error examples are what the handler answers. The schemas' field sets, enums and
bounds against the contract: ``tests/test_openapi_contract.py``."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from openapi_spec_validator import OpenAPIV30SpecValidator

from sdfleet.agent import contract
from sdfleet.agent.task_state import TaskStore
from sdfleet.components.builders import api as apib
from sdfleet.components.task_api import events
from sdfleet.components.task_api import handler as task_api
from tests.test_docs import parse_blocks
from tests.test_task_api import BUCKET, BY_NAME, TABLE, Fanout, call, make_event

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


def operation(version: str) -> dict[str, Any]:
    return dict(SPECS[version]["paths"][f"/{version}"]["post"])


def status_operation() -> dict[str, Any]:
    return dict(SPECS["v1alpha2"]["paths"][events.STATUS_RESOURCE]["get"])


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
        assert list(paths[f"/{version}"]) == ["post"]  # the only method API Gateway routes
        documented |= set(paths)
    status = f"/{apib.STATUS_VERSION}/{'/'.join(apib.STATUS_PATH_PARTS)}"
    assert status == events.STATUS_RESOURCE
    assert list(SPECS["v1alpha2"]["paths"]) == ["/v1alpha2", status]
    assert list(SPECS["v1alpha2"]["paths"][status]) == ["get"]
    assert documented == served | {status}


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
    if version == "v1alpha2":
        assert {"403", "404", "429", "503"} <= set(status_operation()["responses"])


def test_shared_components_are_identical() -> None:
    """The two documents are imported separately, so they repeat the shared parts."""
    one, two = (SPECS[v]["components"] for v in VERSIONS)
    assert one["securitySchemes"] == two["securitySchemes"]
    assert one["responses"] == two["responses"]
    for name in (
        "NumericString",
        "ImageRef",
        "SdWebUiContent",
        "Error",
        "GatewayError",
        "TaskConflict",
    ):
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


# --------------------------------------------------------------------------------------------
# The status route and the 409 on a reused id


def _component_response(version: str, response: dict[str, Any]) -> dict[str, Any]:
    if "$ref" in response:
        return dict(SPECS[version]["components"]["responses"][response["$ref"].rsplit("/", 1)[1]])
    return response


def _status_examples() -> list[tuple[str, int, dict[str, Any]]]:
    found = []
    for status, response in status_operation()["responses"].items():
        content = _component_response("v1alpha2", response)["content"]["application/json"]
        for name, example in content["examples"].items():
            found.append((f"{status}:{name}", int(status), example))
    return found


def _schema_of(response: dict[str, Any]) -> str:
    ref = _component_response("v1alpha2", response)["content"]["application/json"]["schema"]
    return str(ref["$ref"].rsplit("/", 1)[1])


@pytest.mark.parametrize(
    ("status", "example"), [pytest.param(s, e, id=n) for n, s, e in _status_examples()]
)
def test_every_status_route_example_fits_its_schema(status: int, example: dict[str, Any]) -> None:
    schema = _schema_of(status_operation()["responses"][str(status)])
    assert_valid("v1alpha2", schema, example["value"])


def _get(task_id: str) -> tuple[int, dict[str, Any]]:
    event = make_event(None, path=f"/v1alpha2/tasks/{task_id}", method="GET")
    event.update(resource=events.STATUS_RESOURCE, pathParameters={"id": task_id}, body=None)
    response = task_api.handler(event, None)
    return response["statusCode"], json.loads(response["body"])


def test_the_status_answers_fit_the_documented_schema(fan: Fanout) -> None:
    """The handler's real answers for a queued, a running, a failed and a completed task."""
    requests = operation("v1alpha2")["requestBody"]["content"]["application/json"]["examples"]
    body = requests["textToImage"]["value"]
    assert call(make_event(body))[0] == 200
    task_id = body["task"]["metadata"]["id"]
    store = TaskStore(fan.dynamodb, TABLE)
    answers = [_get(task_id)]
    store.mark_running(task_id, "sd15")
    answers.append(_get(task_id))
    key = f"demo/lighthouses/{task_id}/{task_id}-1.png"
    store.mark_completed(task_id, "sd15", [key], output_bucket=BUCKET)
    answers.append(_get(task_id))
    store.mark_failed("other-1", "sd15", "inference_failed", "boom")  # no owner: a 404
    answers.append(_get("other-1"))
    assert [a[0] for a in answers] == [200, 200, 200, 404]
    assert [a[1].get("state") for a in answers[:3]] == ["queued", "running", "completed"]
    for _, answer in answers[:3]:
        assert_valid("v1alpha2", "TaskStatus", answer)
    assert answers[2][1]["outputs"][0]["key"] == key
    assert_valid("v1alpha2", "Error", answers[3][1])


def test_the_documented_status_errors_are_the_handlers(fan: Fanout) -> None:
    responses = status_operation()["responses"]
    [bad] = responses["400"]["content"]["application/json"]["examples"].values()
    assert _get(bad["x-sdfleet-status-id"]) == (400, bad["value"])
    [missing] = _component_response("v1alpha2", responses["404"])["content"]["application/json"][
        "examples"
    ].values()
    assert _get("never-sent") == (404, missing["value"])


def test_the_documented_409_is_the_handlers(fan: Fanout) -> None:
    requests = operation("v1alpha2")["requestBody"]["content"]["application/json"]["examples"]
    body = requests["textToImage"]["value"]
    conflict = _component_response("v1alpha2", operation("v1alpha2")["responses"]["409"])
    documented = conflict["content"]["application/json"]["examples"]["taskExists"]["value"]
    assert call(make_event(body))[0] == 200
    assert call(make_event(body)) == (409, documented)
    assert_valid("v1alpha2", "TaskConflict", documented)
