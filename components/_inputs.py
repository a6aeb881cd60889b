"""How a component reads its Args. A Python program passes the Args dataclass; Pulumi's provider
host (a TypeScript, Go or YAML program using sdfleet as a component package) passes a plain
mapping with snake_case names, nested types as mappings and only enums converted. ``as_args``
turns the second into the first, so each component has one code path."""

import dataclasses
import inspect
import types
import typing
from collections.abc import Mapping, Sequence
from enum import Enum
from typing import Any, TypeVar

import pulumi

T = TypeVar("T")


def none_means_default(args: Any) -> None:
    """An Args dataclass's fields given as an explicit None take their declared default."""
    for spec in dataclasses.fields(args):
        if getattr(args, spec.name) is not None:
            continue
        if spec.default_factory is not dataclasses.MISSING:
            setattr(args, spec.name, spec.default_factory())
        elif spec.default is not dataclasses.MISSING:
            setattr(args, spec.name, spec.default)


def as_args(cls: type[T], args: object) -> T:
    """``args`` itself when it is a ``cls``; else ``cls`` built from the host's mapping."""
    if isinstance(args, cls):
        return args
    if not isinstance(args, Mapping):
        raise TypeError(f"{cls.__name__}: expected {cls.__name__} or a mapping, got {args!r}")
    return typing.cast(T, _build(cls, args, cls.__name__))


def _build(cls: type, data: Mapping[str, Any], path: str) -> Any:
    # pulumi.Input[X] refers to Output by a forward reference that only this namespace resolves.
    hints = typing.get_type_hints(cls, localns={"Output": pulumi.Output, "T": Any})
    names = {f.name for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - names)
    if unknown:
        raise TypeError(f"{path}: unknown argument(s) {unknown}; allowed: {sorted(names)}")
    return cls(**{k: _convert(hints[k], v, f"{path}.{k}") for k, v in data.items()})


def _convert(hint: Any, value: Any, path: str) -> Any:
    if value is None or isinstance(value, pulumi.Output) or inspect.isawaitable(value):
        return value
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return _convert(_member_for(typing.get_args(hint), value), value, path)
    if dataclasses.is_dataclass(hint) and isinstance(value, Mapping):
        return _build(typing.cast(type, hint), value, path)
    if isinstance(hint, type) and issubclass(hint, Enum) and not isinstance(value, hint):
        return hint(value)
    item_hints = typing.get_args(hint)
    if origin in (list, tuple, Sequence) and isinstance(value, list | tuple) and item_hints:
        items = [_convert(item_hints[0], v, f"{path}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin in (dict, Mapping) and isinstance(value, Mapping) and len(item_hints) == 2:
        return {k: _convert(item_hints[1], v, f"{path}.{k}") for k, v in value.items()}
    return value


def _member_for(members: tuple[Any, ...], value: Any) -> Any:
    """The union member a plain value belongs to: a dataclass for a mapping, a list type for a
    list, a mapping type for a mapping; else the first non-None member."""
    candidates = [m for m in members if m is not type(None)]
    for member in candidates:
        origin = typing.get_origin(member) or member
        if isinstance(value, Mapping) and (
            dataclasses.is_dataclass(member) or origin in (dict, Mapping)
        ):
            return member
        if isinstance(value, list | tuple) and origin in (list, tuple, Sequence):
            return member
    return candidates[0] if candidates else Any
