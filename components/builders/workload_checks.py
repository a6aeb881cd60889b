"""The input checks and metadata helper shared by the workload builders (workload.py,
workload_objects.py, workload_agent_env.py); every error names the field, the bad value and
what is allowed."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from components.patterns import DNS_LABEL as _DNS_LABEL
from components.patterns import QUANTITY as _QUANTITY

SDWEBUI = "sdwebui"
COMFYUI = "comfyui"
RUNTIME_TYPES = (SDWEBUI, COMFYUI)


def _fail(field_name: str, value: Any, allowed: str) -> ValueError:
    return ValueError(f"{field_name}: got {value!r}; allowed: {allowed}")


def _check_name(field_name: str, value: Any, max_len: int = 63) -> None:
    if not isinstance(value, str) or len(value) > max_len or not _DNS_LABEL.match(value):
        raise _fail(
            field_name, value, f"a lowercase DNS label (a-z, 0-9, '-'), at most {max_len} chars"
        )


def _check_type(runtime_type: str) -> None:
    if runtime_type not in RUNTIME_TYPES:
        raise _fail("runtime_type", runtime_type, " or ".join(RUNTIME_TYPES))


def _check_quantity(field_name: str, value: Any) -> None:
    if not isinstance(value, str) or not _QUANTITY.match(value):
        raise _fail(field_name, value, "a Kubernetes quantity string such as '500m' or '8Gi'")


def _check_int(field_name: str, value: Any, low: int, high: int | None = None) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise _fail(field_name, value, f"an integer >= {low}" + (f", <= {high}" if high else ""))
    if high is not None and value > high:
        raise _fail(field_name, value, f"an integer from {low} to {high}")


def _meta(
    name: str, namespace: str | None = None, labels: Mapping[str, str] | None = None
) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name}
    if namespace is not None:
        meta["namespace"] = namespace
    if labels:
        meta["labels"] = dict(labels)
    return meta
