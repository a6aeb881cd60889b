"""Strict JSON for request bodies and queue messages (standard library only).

Import these through :mod:`sdfleet.agent.contract`.
"""

from __future__ import annotations

import json
from typing import Any

from sdfleet.agent.contract_base import MAX_ECHO_CHARS, ContractError

# API Gateway -> Lambda synchronous payload limit.
MAX_BODY_BYTES = 6 * 1024 * 1024
# Real requests nest a few levels (ComfyUI node inputs, ControlNet units); the cap keeps
# hostile bodies away from the recursion limit of json.loads/json.dumps.
MAX_JSON_DEPTH = 64
# A queued message nests the content one level deeper than a v1alpha1 body, and a raw queue
# message may wrap the task in {"task": ...}: every body the API accepts stays readable.
MAX_QUEUE_DEPTH = MAX_JSON_DEPTH + 2


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _finite_float(text: str) -> float:
    value = float(text)
    if value in (float("inf"), float("-inf")):
        raise ValueError(f"number out of range: {text[:MAX_ECHO_CHARS]}")
    return value


def _json_depth_ok(value: Any, limit: int) -> bool:
    """Iterative, so checking a hostile document cannot itself hit the recursion limit."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        if depth > limit:
            return False
        stack.extend((child, depth + 1) for child in children if isinstance(child, (dict, list)))
    return True


def loads_strict(raw: str | bytes, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """``json.loads`` limited to standard JSON: no NaN/Infinity constants, no number that
    overflows a float, at most ``max_depth`` levels. Duplicate keys: the last one wins (as in
    ``json.loads``); the task is re-serialised before publishing, so every later reader sees
    the same value. Raises ``ValueError``."""
    try:
        value = json.loads(raw, parse_constant=_reject_constant, parse_float=_finite_float)
    except RecursionError as exc:
        raise ValueError(f"nested deeper than {max_depth} levels") from exc
    if not _json_depth_ok(value, max_depth):
        raise ValueError(f"nested deeper than {max_depth} levels")
    return value


def parse_json_body(raw: str | bytes | None) -> Any:
    if raw is None or (isinstance(raw, (str, bytes)) and not raw.strip()):
        raise ContractError("invalid_json", "the request body is empty", None)
    size = len(raw.encode("utf-8", "surrogatepass")) if isinstance(raw, str) else len(raw)
    if size > MAX_BODY_BYTES:
        raise ContractError(
            "payload_too_large",
            f"the body is {size} bytes; at most {MAX_BODY_BYTES} are accepted",
            None,
            status=413,
        )
    try:
        return loads_strict(raw)
    except ValueError as exc:  # includes UnicodeDecodeError
        raise ContractError("invalid_json", f"the body is not valid JSON: {exc}", None) from exc
