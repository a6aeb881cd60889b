"""Offline validation of the manifests the program creates.

- Custom resources (Karpenter, KEDA) against the real CRD schemas vendored in ``schemas/crds/``
  (see ``schemas/README.md``), with unknown fields treated as errors the way the API server's
  strict field validation does.
- Built-in kinds with ``kubernetes-validate`` (strict) for a Kubernetes version.

``x-kubernetes-*`` rules (CEL validations, int-or-string) are not JSON Schema and are not checked.
"""

from __future__ import annotations

import copy
import functools
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import yaml

REPO_ROOT = Path(__file__).resolve().parent.parent
# Part of the repository: a fresh clone validates against them, nothing is skipped.
SCHEMAS_DIR = REPO_ROOT / "schemas"
CRD_DIR = SCHEMAS_DIR / "crds"
_COMBINATORS = ("allOf", "anyOf", "oneOf", "not")


def schemas_dir() -> Path:
    """The vendored CRD directory; a missing or empty one is an error, never a skip."""
    if not CRD_DIR.is_dir() or not any(CRD_DIR.glob("*.yaml")):
        raise FileNotFoundError(f"vendored CRD schemas missing: no *.yaml in {CRD_DIR}")
    return CRD_DIR


def require_schemas_dir() -> Path:
    """Kept for the tests that call it: the CRD directory (raises when it is missing)."""
    return schemas_dir()


@functools.lru_cache(maxsize=4)
def _crd_index(directory: str) -> dict[tuple[str, str], dict[str, Any]]:
    index: dict[tuple[str, str], dict[str, Any]] = {}
    for path in sorted(Path(directory).glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if isinstance(doc, dict) and doc.get("kind") == "CustomResourceDefinition":
                spec = doc["spec"]
                index[(spec["group"], spec["names"]["kind"])] = doc
    return index


def _strict(schema: dict[str, Any]) -> dict[str, Any]:
    """Close every object schema that lists properties and does not preserve unknown fields."""
    if not isinstance(schema, dict):
        return schema
    out = dict(schema)
    if (
        "properties" in out
        and not out.get("x-kubernetes-preserve-unknown-fields")
        and "additionalProperties" not in out
    ):
        out["additionalProperties"] = False
    if isinstance(out.get("properties"), dict):
        out["properties"] = {k: _strict(v) for k, v in out["properties"].items()}
    if isinstance(out.get("items"), dict):
        out["items"] = _strict(out["items"])
    if isinstance(out.get("additionalProperties"), dict):
        out["additionalProperties"] = _strict(out["additionalProperties"])
    # Combinator branches only restate constraints on the same fields; closing them would
    # reject fields declared next to them, so they are left as they are.
    return out


@functools.lru_cache(maxsize=32)
def _validator(directory: str, group: str, kind: str, version: str) -> jsonschema.Draft4Validator:
    crd = _crd_index(directory).get((group, kind))
    if crd is None:
        raise LookupError(f"no CRD for {group}/{kind} in {directory}")
    for served in crd["spec"]["versions"]:
        if served["name"] == version:
            schema = _strict(copy.deepcopy(served["schema"]["openAPIV3Schema"]))
            # OpenAPI 3.0 schemas: boolean exclusiveMinimum etc., as in JSON Schema draft 4.
            return jsonschema.Draft4Validator(schema)
    raise LookupError(f"CRD {group}/{kind} does not serve version {version}")


def _path(error: jsonschema.ValidationError) -> str:
    parts = [str(p) if not isinstance(p, int) else f"[{p}]" for p in error.absolute_path]
    return ".".join(parts).replace(".[", "[") or "<root>"


def validate_crd(manifest: dict[str, Any]) -> list[str]:
    """Errors of a custom resource against its CRD schema ([] when valid)."""
    directory = schemas_dir()
    api_version = manifest.get("apiVersion", "")
    kind = manifest.get("kind", "")
    if "/" not in api_version:
        return [f"apiVersion: {api_version!r} is not a custom resource group/version"]
    group, version = api_version.split("/", 1)
    try:
        validator = _validator(str(directory), group, kind, version)
    except LookupError as exc:
        return [str(exc)]
    errors = sorted(validator.iter_errors(manifest), key=lambda e: list(e.absolute_path))
    return [f"{_path(e)}: {e.message}" for e in errors]


def validate_builtin(manifest: dict[str, Any], k8s_version: str) -> list[str]:
    """Errors of a built-in kind per ``kubernetes-validate`` in strict mode ([] when valid).
    The package reports the first error only."""
    try:
        kubernetes_validate.validate(manifest, k8s_version, strict=True)
    except kubernetes_validate.ValidationError as exc:
        return [f"{_path(exc)}: {exc.message}"]
    except kubernetes_validate.SchemaNotFoundError as exc:
        return [exc.message]
    return []


CRD_GROUPS = ("karpenter.sh", "karpenter.k8s.aws", "keda.sh")


def is_custom_resource(manifest: dict[str, Any]) -> bool:
    group = str(manifest.get("apiVersion", "")).split("/", 1)[0]
    return group in CRD_GROUPS


def validate_manifest(manifest: dict[str, Any], k8s_version: str) -> list[str]:
    """Dispatch on the API group: Karpenter/KEDA kinds to their CRDs, the rest as built-ins."""
    if is_custom_resource(manifest):
        return validate_crd(manifest)
    return validate_builtin(manifest, k8s_version)


def assert_valid(manifest: dict[str, Any], k8s_version: str) -> None:
    """For tests: assert a manifest validates."""
    errors = validate_manifest(manifest, k8s_version)
    name = manifest.get("metadata", {}).get("name")
    assert errors == [], f"{manifest.get('kind')} {name}: {errors}"
