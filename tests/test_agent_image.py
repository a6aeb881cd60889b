"""AgentImage under the recording mocks, and the pure tag/lifecycle helpers."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from pulumi.runtime import rpc

from sdfleet.components import versions
from sdfleet.components.agent_image import DEFAULT_CONTEXT_DIR, AgentImage, AgentImageArgs
from sdfleet.components.builders import image as ib
from sdfleet.invariants import check_all
from sdfleet.mocking import Recorder, run_program

REPO_ROOT = Path(__file__).resolve().parent.parent
DIGEST = "sha256:" + "0" * 64
# How the mocks see a secret input: the engine's envelope {sig key: secret sig, "value": ...}.
SECRET_SIG = rpc._special_sig_key
SECRET_VALUE_SIG = rpc._special_secret_sig


def _context(tmp_path: Path) -> Path:
    ctx = tmp_path / "agent"
    (ctx / "servers").mkdir(parents=True)
    (ctx / "Dockerfile").write_text("FROM python:3.12.12-slim-trixie\nCOPY . /app/agent\n")
    (ctx / "__main__.py").write_text("print('agent')\n")
    (ctx / "servers" / "comfyui.py").write_text("X = 1\n")
    return ctx


def _build(args: AgentImageArgs, preview: bool = False) -> tuple[Recorder, dict[str, Any]]:
    outputs: dict[str, Any] = {}

    def program() -> None:
        image = AgentImage("agent", args)
        image.ref.apply(lambda ref: outputs.setdefault("ref", ref))

    return run_program(program, preview=preview), outputs


def test_repository_is_scanned_immutable_and_encrypted(tmp_path: Path) -> None:
    graph, _ = _build(AgentImageArgs(context_dir=str(_context(tmp_path)), force_delete=False))
    repo = graph.one("aws:ecr/repository:Repository", "agent-repo")
    assert repo.parent == "agent"
    assert repo.inputs["imageScanningConfiguration"] == {"scanOnPush": True}
    assert repo.inputs["imageTagMutability"] == "IMMUTABLE"
    assert repo.inputs["encryptionConfigurations"] == [{"encryptionType": "AES256"}]
    assert repo.inputs["forceDelete"] is False
    assert check_all(graph) == []


@pytest.mark.parametrize("keep", [1, 10, 25])
def test_lifecycle_keeps_the_last_n_images(tmp_path: Path, keep: int) -> None:
    graph, _ = _build(AgentImageArgs(context_dir=str(_context(tmp_path)), keep_images=keep))
    repo = graph.one("aws:ecr/repository:Repository", "agent-repo")
    policy = graph.one("aws:ecr/lifecyclePolicy:LifecyclePolicy", "agent-lifecycle")
    assert policy.inputs["repository"] == repo.state["name"]
    (rule,) = json.loads(policy.inputs["policy"])["rules"]
    assert rule["selection"] == {
        "tagStatus": "tagged",
        "tagPrefixList": [ib.TAG_PREFIX],
        "countType": "imageCountMoreThan",
        "countNumber": keep,
    }
    assert rule["action"] == {"type": "expire"}


def test_image_is_built_for_amd64_pushed_by_content_tag_and_not_on_preview(
    tmp_path: Path,
) -> None:
    ctx = _context(tmp_path)
    graph, outputs = _build(AgentImageArgs(context_dir=str(ctx)))
    repo = graph.one("aws:ecr/repository:Repository", "agent-repo")
    image = graph.one("docker-build:index:Image", "agent-image")
    url = repo.state["repositoryUrl"]
    assert image.parent == "agent"
    assert image.inputs["context"] == {"location": str(ctx)}
    assert image.inputs["dockerfile"] == {"location": str(ctx / "Dockerfile")}
    assert image.inputs["platforms"] == ["linux/amd64"]
    assert image.inputs["push"] is True
    assert image.inputs["buildOnPreview"] is False
    assert image.inputs["buildArgs"] == {"BASE_IMAGE": versions.AGENT_BASE_IMAGE}
    # The layer cache: the agent's own mutable cache repository, tag "cache".
    cache_url = graph.one("aws:ecr/repository:Repository", "agent-cache-repo").state[
        "repositoryUrl"
    ]
    assert image.inputs["cacheFrom"] == [{"registry": {"ref": f"{cache_url}:cache"}}]
    (cache_to,) = image.inputs["cacheTo"]
    assert cache_to["registry"]["ref"] == f"{cache_url}:cache"
    assert cache_to["registry"]["imageManifest"] is True
    build_args = {"BASE_IMAGE": versions.AGENT_BASE_IMAGE}
    assert image.inputs["tags"] == [f"{url}:{ib.image_tag(ctx, build_args)}"]
    # The password makes the registries input secret (the engine's secret envelope).
    registries = image.inputs["registries"]
    assert registries[SECRET_SIG] == SECRET_VALUE_SIG
    (registry,) = registries["value"]
    assert registry["address"] == url
    assert registry["username"] == "AWS"
    assert registry["password"] == "mock-password"
    tokens = [token for token, _ in graph.invokes]
    assert "aws:ecr/getAuthorizationToken:getAuthorizationToken" in tokens
    # Deployed by digest: the ref is the pushed image's digest reference, not the tag.
    assert outputs["ref"] == image.state["ref"] == f"{url}@{DIGEST}"
    assert ":" + ib.TAG_PREFIX not in outputs["ref"]


def test_preview_registers_the_image_without_building(tmp_path: Path) -> None:
    graph, _ = _build(AgentImageArgs(context_dir=str(_context(tmp_path))), preview=True)
    assert graph.one("docker-build:index:Image", "agent-image").inputs["buildOnPreview"] is False


def test_default_context_is_the_agent_package() -> None:
    assert Path(AgentImageArgs().context_dir) == REPO_ROOT / "agent"
    assert str(REPO_ROOT / "agent") == DEFAULT_CONTEXT_DIR


def test_builds_from_the_repository_agent_dir() -> None:
    graph, _ = _build(AgentImageArgs())
    image = graph.one("docker-build:index:Image", "agent-image")
    assert image.inputs["context"] == {"location": str(REPO_ROOT / "agent")}
    assert image.inputs["dockerfile"] == {"location": str(REPO_ROOT / "agent" / "Dockerfile")}


def test_prebuilt_reference_skips_repository_and_build() -> None:
    ref = f"123456789012.dkr.ecr.us-east-1.amazonaws.com/agent@{DIGEST}"
    graph, outputs = _build(AgentImageArgs(image_ref=ref))
    assert graph.of_type("aws:ecr/repository:Repository") == []
    assert graph.of_type("aws:ecr/lifecyclePolicy:LifecyclePolicy") == []
    assert graph.of_type("docker-build:index:Image") == []
    assert outputs["ref"] == ref


@pytest.mark.parametrize("ref", ["example.com/agent", "example.com/agent:latest"])
def test_unpinned_prebuilt_reference_is_rejected(ref: str) -> None:
    with pytest.raises(ValueError, match=r"image_ref: got .*pinned by digest"):
        AgentImage("agent", AgentImageArgs(image_ref=ref))


def test_missing_dockerfile_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"context_dir: got .*Dockerfile"):
        AgentImage("agent", AgentImageArgs(context_dir=str(tmp_path)))


@pytest.mark.parametrize("keep", [0, 1001, True, "5"])
def test_bad_keep_images_is_rejected(keep: Any) -> None:
    with pytest.raises(ValueError, match=r"keepImages: got .*from 1 to 1000"):
        ib.ecr_lifecycle_policy(keep)


# ------------------------------------------------------------------------------------------
# Content tag


def test_tag_is_deterministic_and_follows_every_source_change(tmp_path: Path) -> None:
    ctx = _context(tmp_path)
    tag = ib.image_tag(ctx)
    assert tag == ib.image_tag(ctx)
    assert tag.startswith(ib.TAG_PREFIX) and len(tag) == len(ib.TAG_PREFIX) + ib.TAG_HASH_LENGTH

    (ctx / "servers" / "comfyui.py").write_text("X = 2\n")
    changed = ib.image_tag(ctx)
    assert changed != tag
    (ctx / "servers" / "new.py").write_text("")
    added = ib.image_tag(ctx)
    assert added != changed
    (ctx / "servers" / "new.py").rename(ctx / "servers" / "renamed.py")
    assert ib.image_tag(ctx) != added


def test_tag_follows_the_build_args(tmp_path: Path) -> None:
    ctx = _context(tmp_path)
    a = ib.image_tag(ctx, {"BASE_IMAGE": "python:3.12.12-slim-trixie"})
    b = ib.image_tag(ctx, {"BASE_IMAGE": "python:3.12.13-slim-trixie"})
    assert len({a, b, ib.image_tag(ctx)}) == 3
    assert a == ib.image_tag(ctx, {"BASE_IMAGE": "python:3.12.12-slim-trixie"})


def test_tag_does_not_depend_on_the_context_location(tmp_path: Path) -> None:
    a = _context(tmp_path / "a")
    b = _context(tmp_path / "b")
    assert ib.image_tag(a) == ib.image_tag(b)


def test_dockerignored_files_do_not_change_the_tag(tmp_path: Path) -> None:
    ctx = _context(tmp_path)
    (ctx / ".dockerignore").write_text("# caches\n**/__pycache__\n*.pyc\n/notes/\n")
    tag = ib.image_tag(ctx)
    (ctx / "servers" / "__pycache__").mkdir()
    (ctx / "servers" / "__pycache__" / "comfyui.cpython-311.pyc").write_bytes(b"\0")
    (ctx / "stale.pyc").write_bytes(b"\0")
    (ctx / "notes").mkdir()
    (ctx / "notes" / "todo.txt").write_text("x")
    assert ib.image_tag(ctx) == tag
    # Only top-level *.pyc is ignored, as Docker reads the pattern.
    (ctx / "servers" / "nested.pyc").write_bytes(b"\0")
    assert ib.image_tag(ctx) != tag


def test_untranslatable_dockerignore_hashes_everything(tmp_path: Path) -> None:
    ctx = _context(tmp_path)
    (ctx / ".dockerignore").write_text("*.txt\n!keep.txt\n")
    files = {p.as_posix() for p in ib.context_files(ctx)}
    (ctx / "other.txt").write_text("x")
    assert "other.txt" in {p.as_posix() for p in ib.context_files(ctx)} - files


def test_dockerfile_is_always_hashed(tmp_path: Path) -> None:
    ctx = _context(tmp_path)
    (ctx / ".dockerignore").write_text("Dockerfile\n.dockerignore\n")
    files = {p.as_posix() for p in ib.context_files(ctx)}
    assert {"Dockerfile", ".dockerignore"} <= files


def test_missing_context_dir_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"context_dir: got .*existing directory"):
        ib.image_tag(tmp_path / "nope")
