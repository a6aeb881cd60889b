"""ComfyUI ``pipeline`` content: the two accepted shapes, graph validation and work limits.

Standard library only. Clients send either the reference's shape, where ``content`` *is* the
API-format workflow (``{"3": {"class_type": "KSampler", "inputs": {...}}, ...}``), or
``{"prompt": workflow, ...}`` (optionally with ``extra_data``). Both are normalised to the
second shape, the one queued and the one the agent reads; the agent posts ``content["prompt"]``
as ``prompt`` to ComfyUI's ``/prompt``.

A link is an input value ``[node_id, output_index]``: a two-item list whose first item is a
string. Its node must exist and its index must be a non-negative integer. Other lists are left
to ComfyUI. Error fields quote node ids: ``task.content.prompt["7"].inputs.model`` (or
``task.content["7"]...`` for a bare workflow, as the client sent it).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sdfleet.agent.contract_base import (
    MAX_NAME_CHARS,
    ContractError,
    check_string,
    child_path,
    node_path,
    short,
    type_name,
)
from sdfleet.agent.contract_limits import ComfyTotals, Limits, check_comfy_node

MAX_NODE_ID_CHARS = 128
_WRAPPED_KEYS = ("prompt", "extra_data")
_SHARED_FOLDERS = ("[output]", "[temp]")

_SHAPES = (
    "a ComfyUI pipeline needs an API-format workflow: either the workflow itself "
    '(node id -> {"class_type", "inputs"}) or {"prompt": workflow}'
)


def _looks_like_node(value: Any) -> bool:
    return isinstance(value, dict) and ("class_type" in value or "inputs" in value)


def is_bare_workflow(content: Mapping[str, Any]) -> bool:
    """The reference's shape: no ``prompt`` key with a workflow in it, and node-like values.
    A workflow may itself have a node called "prompt": ``prompt`` is that node only when its
    ``class_type`` is a string (a workflow's value under "class_type" or "inputs" would be a
    node object, since node ids are free strings)."""
    if "prompt" in content:
        prompt = content["prompt"]
        return isinstance(prompt, dict) and isinstance(prompt.get("class_type"), str)
    return any(_looks_like_node(value) for value in content.values())


def normalise_comfy_content(content: dict[str, Any], path: str, limits: Limits) -> dict[str, Any]:
    """Validate either shape and return ``{"prompt": workflow, ...}``."""
    if is_bare_workflow(content):
        validate_workflow(content, path, limits)
        return {"prompt": content}
    prompt_path = f"{path}.prompt"
    if "prompt" not in content or content["prompt"] is None:
        raise ContractError("missing_field", _SHAPES, prompt_path)
    # The agent posts only these to ComfyUI: anything else would be dropped unseen.
    for key in content:
        if key not in _WRAPPED_KEYS:
            raise ContractError(
                "unknown_field",
                f"is not passed to ComfyUI; the wrapped shape takes {', '.join(_WRAPPED_KEYS)}",
                child_path(path, str(key)),
            )
    extra = content.get("extra_data")
    if extra is not None and not isinstance(extra, dict):
        raise ContractError(
            "invalid_type", f"must be an object, got {type_name(extra)}", f"{path}.extra_data"
        )
    validate_workflow(content["prompt"], prompt_path, limits)
    return dict(content)


def validate_workflow(workflow: Any, path: str, limits: Limits) -> None:
    if not isinstance(workflow, dict) or not workflow:
        raise ContractError(
            "invalid_type",
            f"must be a non-empty object of node id -> node, got {type_name(workflow)}",
            path,
        )
    totals = ComfyTotals()
    links: dict[str, list[tuple[str, str]]] = {}
    for node_id, node in workflow.items():
        where = node_path(path, str(node_id))
        if (
            not isinstance(node_id, str)
            or not node_id
            or len(node_id) > MAX_NODE_ID_CHARS
            or not node_id.isprintable()
        ):
            raise ContractError(
                "invalid_node_id",
                f"a node id must be 1-{MAX_NODE_ID_CHARS} printable characters",
                where,
            )
        if not isinstance(node, dict):
            raise ContractError(
                "invalid_type", f"a node must be an object, got {type_name(node)}", where
            )
        class_type = node.get("class_type")
        if not isinstance(class_type, str) or not class_type:
            raise ContractError(
                "missing_field", "a node needs a class_type string", f"{where}.class_type"
            )
        check_string(class_type, f"{where}.class_type", MAX_NAME_CHARS)
        inputs = node.get("inputs")
        if not isinstance(inputs, dict):
            raise ContractError(
                "invalid_type" if "inputs" in node else "missing_field",
                f"a node needs an inputs object, got {type_name(inputs)}",
                f"{where}.inputs",
            )
        _check_load_image(class_type, inputs, f"{where}.inputs")
        for name, value in inputs.items():
            input_path = child_path(f"{where}.inputs", name)
            target = _check_link(workflow, value, input_path)
            if target is not None:
                links.setdefault(node_id, []).append((target, input_path))
        check_comfy_node(class_type, inputs, f"{where}.inputs", limits, totals)
    _check_acyclic(links)


def _check_load_image(class_type: str, inputs: Mapping[str, Any], path: str) -> None:
    """ComfyUI reads an image named ``<file> [output]`` or ``[temp]`` from those folders,
    where earlier tasks (other clients') left their images under sequential names."""
    image = inputs.get("image")
    if not (class_type.startswith("LoadImage") and isinstance(image, str)):
        return
    if image.rstrip().endswith(_SHARED_FOLDERS):
        raise ContractError(
            "not_allowed",
            "must not name a file in the server's output or temp folder (other tasks' "
            "images); send the image as a URL",
            f"{path}.image",
        )


def _check_link(workflow: Mapping[str, Any], value: Any, path: str) -> str | None:
    """The node a link input points at (None for any other value)."""
    if not (isinstance(value, list) and len(value) == 2 and isinstance(value[0], str)):
        return None
    target, index = value
    if target not in workflow:
        raise ContractError(
            "invalid_link", f"links to node {short(target)}, which is not in the workflow", path
        )
    if isinstance(index, bool) or not isinstance(index, int) or index < 0:
        raise ContractError(
            "invalid_link",
            f"a link is [node_id, output_index] with a non-negative integer index, "
            f"got {short(index)}",
            path,
        )
    return str(target)


def _check_acyclic(links: Mapping[str, list[tuple[str, str]]]) -> None:
    """A workflow runs each node after its inputs: a cycle can never run. Depth-first with an
    explicit stack, so a long chain cannot reach the recursion limit."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    for start in links:
        if start in state:
            continue
        state[start] = 1
        stack = [(start, iter(links.get(start, ())))]
        while stack:
            node, pending = stack[-1]
            for target, path in pending:
                seen = state.get(target)
                if seen == 1:
                    raise ContractError(
                        "invalid_link",
                        f"links to node {short(target)}, which depends on this one: "
                        "the workflow has a cycle",
                        path,
                    )
                if seen is None:
                    state[target] = 1
                    stack.append((target, iter(links.get(target, ()))))
                    break
            else:
                state[node] = 2
                stack.pop()
