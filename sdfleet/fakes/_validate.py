"""A small pydantic-v1-style validator: coercion rules and FastAPI 422 error items."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

_TRUE = {"1", "on", "t", "true", "y", "yes"}
_FALSE = {"0", "off", "f", "false", "n", "no"}


@dataclass(frozen=True)
class F:
    """A request field: ``kind`` is str|int|float|bool|list|list[str]|dict|items.
    A field whose default is None accepts null (pydantic v1 makes it Optional)."""

    name: str
    kind: str
    default: Any = None
    ge: float | None = None
    le: float | None = None
    choices: tuple[Any, ...] | None = None


def _err(loc: list[Any], msg: str, typ: str, ctx: dict[str, Any] | None = None) -> dict[str, Any]:
    item: dict[str, Any] = {"loc": loc, "msg": msg, "type": typ}
    if ctx is not None:
        item["ctx"] = ctx
    return item


def _coerce(kind: str, value: Any, loc: list[Any], errors: list[dict[str, Any]]) -> Any:
    if kind == "str":
        if isinstance(value, str):
            return value
        if isinstance(value, int | float):
            return str(value)
        errors.append(_err(loc, "str type expected", "type_error.str"))
    elif kind == "int":
        if isinstance(value, int):
            return int(value)
        if isinstance(value, float):
            return int(value)
        if isinstance(value, str):
            try:
                return int(value.strip())
            except ValueError:
                pass
        errors.append(_err(loc, "value is not a valid integer", "type_error.integer"))
    elif kind == "float":
        if isinstance(value, int | float):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value.strip())
            except ValueError:
                pass
        errors.append(_err(loc, "value is not a valid float", "type_error.float"))
    elif kind == "bool":
        if isinstance(value, bool):
            return value
        if isinstance(value, int) and value in (0, 1):
            return bool(value)
        if isinstance(value, str) and value.lower() in _TRUE | _FALSE:
            return value.lower() in _TRUE
        errors.append(_err(loc, "value could not be parsed to a boolean", "type_error.bool"))
    elif kind in ("list", "list[str]", "items"):
        if not isinstance(value, list | tuple):
            errors.append(_err(loc, "value is not a valid list", "type_error.list"))
            return None
        if kind == "list":
            return list(value)
        out = []
        for i, item in enumerate(value):
            if kind == "list[str]":
                out.append(_coerce("str", item, [*loc, i], errors))
            else:  # extra-batch-images imageList: [{data: str, name: str}]
                if not isinstance(item, dict):
                    errors.append(_err([*loc, i], "value is not a valid dict", "type_error.dict"))
                    continue
                entry = {}
                for key in ("data", "name"):
                    if key not in item:
                        errors.append(_err([*loc, i, key], "field required", "value_error.missing"))
                    else:
                        entry[key] = _coerce("str", item[key], [*loc, i, key], errors)
                out.append(entry)
        return out
    elif kind == "dict":
        if isinstance(value, dict):
            return dict(value)
        errors.append(_err(loc, "value is not a valid dict", "type_error.dict"))
    else:  # pragma: no cover - programming error in a field table
        raise ValueError(f"unknown field kind {kind!r}")
    return None


def validate_body(fields: list[F], body: Any) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Fill defaults and coerce; returns (values, 422 error items). Unknown keys are ignored."""
    errors: list[dict[str, Any]] = []
    if not isinstance(body, dict):
        return {}, [_err(["body"], "value is not a valid dict", "type_error.dict")]
    out: dict[str, Any] = {}
    for f in fields:
        loc: list[Any] = ["body", f.name]
        if f.name not in body:
            out[f.name] = copy.deepcopy(f.default)
            continue
        value = body[f.name]
        if value is None:
            if f.default is None:
                out[f.name] = None
            else:
                errors.append(
                    _err(loc, "none is not an allowed value", "type_error.none.not_allowed")
                )
            continue
        value = _coerce(f.kind, value, loc, errors)
        if value is None:
            continue
        if f.choices is not None and value not in f.choices:
            permitted = ", ".join(repr(c) for c in f.choices)
            errors.append(
                _err(
                    loc,
                    f"unexpected value; permitted: {permitted}",
                    "value_error.const",
                    {"given": value, "permitted": list(f.choices)},
                )
            )
        if f.ge is not None and isinstance(value, int | float) and value < f.ge:
            errors.append(
                _err(
                    loc,
                    f"ensure this value is greater than or equal to {f.ge:g}",
                    "value_error.number.not_ge",
                    {"limit_value": f.ge},
                )
            )
        if f.le is not None and isinstance(value, int | float) and value > f.le:
            errors.append(
                _err(
                    loc,
                    f"ensure this value is less than or equal to {f.le:g}",
                    "value_error.number.not_le",
                    {"limit_value": f.le},
                )
            )
        out[f.name] = value
    return out, errors
