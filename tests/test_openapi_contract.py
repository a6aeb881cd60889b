"""The OpenAPI documents (docs/openapi/) against the contract: every 400 code is documented,
and the schemas' field sets, enums and bounds are the contract's (``agent/contract*.py``). A
contract change fails here until the documents follow it."""

from __future__ import annotations

import ast
import json
import re
from dataclasses import fields
from pathlib import Path
from typing import Any

import pytest

import sdfleet.agent.contract_comfy
from sdfleet.agent import contract
from sdfleet.components.task_api import responses as task_responses
from tests.test_openapi import ROOT, SPECS, VERSIONS, operation
from tests.test_task_api import BY_NAME


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


def _raised_codes() -> dict[str, int]:
    """Every error code written as a literal in the contract and the handler package, with its
    status (the contract's default 400 unless a status is passed; 503 from ``unavailable``)."""
    codes: dict[str, int] = {}
    handler_files = sorted((ROOT / "components" / "task_api").glob("*.py"))
    for path in [*CONTRACT_FILES, *handler_files]:
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.Call):
                continue
            name = getattr(node.func, "attr", getattr(node.func, "id", ""))
            args = [a.value if isinstance(a, ast.Constant) else None for a in node.args]
            status = {k.arg: getattr(k.value, "value", None) for k in node.keywords}.get("status")
            if name == "ContractError" and isinstance(args[0] if args else None, str):
                codes[str(args[0])] = int(status or 400)
            elif name == "error" and len(args) > 1 and isinstance(args[1], str):
                codes[str(args[1])] = int(str(args[0]))
            elif name == "unavailable" and args and isinstance(args[0], str):
                codes[str(args[0])] = 503
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


def _refused(body: Any) -> str | None:
    try:
        contract.parse_v1alpha2(body, list(BY_NAME.values()))
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
    assert field_cut["maxLength"] == task_responses.MAX_FIELD_CHARS


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
