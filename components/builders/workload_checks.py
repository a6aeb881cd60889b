"""The input checks and metadata helper shared by the workload builders (workload.py,
workload_objects.py, workload_agent_env.py); every error names the field, the bad value and
what is allowed."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sdfleet.components.builders.enums import RuntimeType
from sdfleet.components.builders.errors import fail
from sdfleet.components.patterns import QUANTITY as _QUANTITY

SDWEBUI: str = RuntimeType.SDWEBUI.value
COMFYUI: str = RuntimeType.COMFYUI.value
RUNTIME_TYPES = tuple(t.value for t in RuntimeType)


def _check_type(runtime_type: str) -> None:
    if runtime_type not in RUNTIME_TYPES:
        raise fail("runtime_type", runtime_type, " or ".join(RUNTIME_TYPES))


def _check_quantity(field_name: str, value: Any) -> None:
    if not isinstance(value, str) or not _QUANTITY.match(value):
        raise fail(field_name, value, "a Kubernetes quantity string such as '500m' or '8Gi'")


def _check_int(field_name: str, value: Any, low: int, high: int | None = None) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise fail(field_name, value, f"an integer >= {low}" + (f", <= {high}" if high else ""))
    if high is not None and value > high:
        raise fail(field_name, value, f"an integer from {low} to {high}")


def _meta(
    name: str, namespace: str | None = None, labels: Mapping[str, str] | None = None
) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name}
    if namespace is not None:
        meta["namespace"] = namespace
    if labels:
        meta["labels"] = dict(labels)
    return meta
