"""Render recorded resources as plain JSON and Kubernetes manifests."""

from __future__ import annotations

from typing import Any

import pulumi

from sdfleet.mocking import Recorder


def jsonable(value: Any) -> Any:
    """Recorded inputs hold assets and archives; describe them instead of failing."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, float) and value.is_integer():
        return int(value)  # the engine's protobuf numbers are all floats
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, pulumi.Resource):
        # A resource passed as an input (remote components take them): name it.
        return {"resource": type(value).__name__, "name": value._name}
    path = getattr(value, "path", None)
    if path is not None:
        return {"asset": type(value).__name__, "path": str(path)}
    assets = getattr(value, "assets", None)
    if isinstance(assets, dict):
        return {"archive": type(value).__name__, "assets": jsonable(assets)}
    text = getattr(value, "text", None)
    if isinstance(text, str):
        return {"asset": type(value).__name__, "text": text}
    return repr(value)


def kubernetes_manifest(resource_type: str, inputs: dict[str, Any]) -> dict[str, Any] | None:
    """The YAML a ``kubernetes:*`` resource stands for, or None for non-object types."""
    if not resource_type.startswith("kubernetes:") or "helm.sh" in resource_type:
        return None
    _, group_version, kind = resource_type.split(":", 2)
    group, _, version = group_version.partition("/")
    api_version = version if group == "core" else f"{group}/{version}"
    manifest: dict[str, Any] = {"apiVersion": api_version, "kind": kind}
    for key, value in inputs.items():
        if key not in ("apiVersion", "kind"):
            manifest[key] = value
    return manifest


def recorded_manifests(recorder: Recorder) -> list[tuple[str, dict[str, Any]]]:
    """(resource name, manifest) for every Kubernetes object in the graph."""
    found = []
    for rec in recorder.resources:
        manifest = kubernetes_manifest(rec.type, jsonable(rec.inputs))
        if manifest is not None:
            found.append((rec.name, manifest))
    return found
