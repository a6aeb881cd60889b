"""The error type and small helpers shared by the contract modules (standard library only).

Import these through :mod:`sdfleet.agent.contract`; this module exists so the content checks
(``contract_content``, ``contract_comfy``, ``contract_limits``) can raise the same error
without importing the contract itself.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

# Bad values are echoed in error messages, cut to this many characters.
MAX_ECHO_CHARS = 80
# Runtime names, task types, checkpoint and VAE names, ComfyUI class types.
MAX_NAME_CHARS = 256
# An input image URL (http, https or s3); base64 images are bounded by the body size only.
MAX_URL_CHARS = 2048

_PLAIN_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*\Z")


class ContractError(ValueError):
    """A task that breaks the contract. ``field`` is the JSON path of the offending value."""

    def __init__(self, code: str, message: str, field: str | None, status: int = 400) -> None:
        super().__init__(f"{field or 'body'}: {message}")
        self.code = code
        self.message = message
        self.field = field
        self.status = status

    def to_body(self) -> dict[str, Any]:
        return {"error": {"code": self.code, "message": self.message, "field": self.field}}


def short(value: Any) -> str:
    """``repr`` of a client-supplied value, cut so a hostile value cannot flood a response."""
    text = repr(value)
    if len(text) > MAX_ECHO_CHARS:
        return text[: MAX_ECHO_CHARS - 3] + "..."
    return text


def type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


def require_object(value: Any, path: str) -> dict[str, Any]:
    if value is None:
        raise ContractError("missing_field", "is required and must be an object", path)
    if not isinstance(value, dict):
        raise ContractError("invalid_type", f"must be an object, got {type_name(value)}", path)
    return value


def child_path(path: str, key: str) -> str:
    """``path.key`` for a plain key, ``path["key"]`` for a client-chosen one (a node id)."""
    if _PLAIN_KEY.match(key):
        return f"{path}.{key}"
    return f"{path}[{json.dumps(key)}]"


def node_path(path: str, node_id: str) -> str:
    """ComfyUI node ids are always written ``["id"]``, even when they look like names."""
    return f"{path}[{json.dumps(node_id)}]"


def check_string(value: Any, path: str, max_chars: int, *, required: bool = False) -> str | None:
    """A string of at most ``max_chars`` characters (or None when optional)."""
    if value is None and not required:
        return None
    if not isinstance(value, str):
        raise ContractError("invalid_type", f"must be a string, got {type_name(value)}", path)
    if len(value) > max_chars:
        raise ContractError(
            "too_long", f"is {len(value)} characters; at most {max_chars} are allowed", path
        )
    return value


def optional_string(obj: Mapping[str, Any], key: str, path: str, max_chars: int) -> str | None:
    return check_string(obj.get(key), f"{path}.{key}", max_chars)
