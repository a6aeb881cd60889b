"""ContainerImage and the runtime server images under the recording mocks: one docker-build
Image per runtime type (plus the agent's), built for linux/amd64 from runtimes/<type>/, cached
in ECR, pushed to an immutable, scanned repository of its own, used by digest."""

from __future__ import annotations

import functools
import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from sdfleet.components.agent_image import AgentImage, AgentImageArgs
from sdfleet.components.builders import image as ib
from sdfleet.components.builders import image_build as plan
from sdfleet.components.config_model import AgentImageConfig
from sdfleet.components.container_image import ContainerImage, ContainerImageArgs, runtime_images
from sdfleet.invariants import check_all
from sdfleet.mocking import Recorder, run_program

ROOT = Path(__file__).resolve().parent.parent
REPO = "aws:ecr/repository:Repository"
POLICY = "aws:ecr/lifecyclePolicy:LifecyclePolicy"
IMAGE = "docker-build:index:Image"
DIGEST = "sha256:" + "0" * 64
OVERRIDE = f"123456789012.dkr.ecr.us-east-1.amazonaws.com/mine@{DIGEST}"


def _fleet(runtimes: list[tuple[str, str | None]], **kw: Any) -> tuple[Recorder, dict[str, str]]:
    refs: dict[str, str] = {}

    def program() -> None:
        AgentImage("fleet-agent", AgentImageArgs())
        for kind, image in runtime_images("fleet", runtimes, **kw).items():
            image.ref.apply(functools.partial(refs.__setitem__, kind))

    return run_program(program), refs


def test_one_build_per_runtime_type_plus_the_agent() -> None:
    graph, refs = _fleet([("sdwebui", None), ("comfyui", None), ("sdwebui", None)])
    names = sorted(r.name for r in graph.of_type(IMAGE))
    assert names == [
        "fleet-agent-image",
        "fleet-comfyui-server-image",
        "fleet-sdwebui-server-image",
    ]
    components = graph.of_type("sdfleet:index:ContainerImage")
    assert sorted(c.name for c in components) == ["fleet-comfyui-server", "fleet-sdwebui-server"]
    assert sorted(refs) == ["comfyui", "sdwebui"]
    assert check_all(graph) == []


def test_runtimes_with_an_image_override_are_not_built() -> None:
    graph, refs = _fleet([("sdwebui", OVERRIDE), ("comfyui", None), ("comfyui", OVERRIDE)])
    assert sorted(r.name for r in graph.of_type(IMAGE)) == [
        "fleet-agent-image",
        "fleet-comfyui-server-image",
    ]
    assert list(refs) == ["comfyui"]
    graph, refs = _fleet([("sdwebui", OVERRIDE)])
    assert [r.name for r in graph.of_type(IMAGE)] == ["fleet-agent-image"]
    assert refs == {}


@pytest.mark.parametrize("kind", ["sdwebui", "comfyui"])
def test_server_image_build(kind: str) -> None:
    graph, refs = _fleet([(kind, None)])
    name = f"fleet-{kind}-server"
    image = graph.one(IMAGE, f"{name}-image")
    repo = graph.one(REPO, f"{name}-repo")
    cache_repo = graph.one(REPO, f"{name}-cache-repo")
    url, cache_url = repo.state["repositoryUrl"], cache_repo.state["repositoryUrl"]
    context = ROOT / "runtimes" / kind
    assert image.parent == repo.parent == cache_repo.parent == name
    assert image.inputs["context"] == {"location": str(context)}
    assert image.inputs["dockerfile"] == {"location": str(context / "Dockerfile")}
    assert image.inputs["platforms"] == ["linux/amd64"]
    assert image.inputs["push"] is True
    assert image.inputs["buildOnPreview"] is False
    assert "buildArgs" not in image.inputs
    assert image.inputs["tags"] == [f"{url}:{ib.image_tag(context, prefix=f'{kind}-')}"]
    assert image.inputs["cacheFrom"] == [{"registry": {"ref": f"{cache_url}:cache"}}]
    (cache_to,) = image.inputs["cacheTo"]
    # ECR takes a cache as one OCI image manifest (not an index); the SDK fills in the rest.
    assert {
        "ref": f"{cache_url}:cache",
        "mode": "max",
        "imageManifest": True,
        "ociMediaTypes": True,
        "ignoreError": True,
    }.items() <= cache_to["registry"].items()
    # Pinned by digest in the image's own repository, no tag.
    assert refs[kind] == f"{url}@{DIGEST}"


@pytest.mark.parametrize("force", [True, False])
def test_repositories(force: bool) -> None:
    graph, _ = _fleet([("sdwebui", None)], keep_images=7, force_delete=force)
    repo = graph.one(REPO, "fleet-sdwebui-server-repo")
    assert repo.inputs["imageScanningConfiguration"] == {"scanOnPush": True}
    assert repo.inputs["imageTagMutability"] == "IMMUTABLE"
    assert repo.inputs["encryptionConfigurations"] == [{"encryptionType": "AES256"}]
    assert repo.inputs["forceDelete"] is force
    (rule,) = json.loads(graph.one(POLICY, "fleet-sdwebui-server-lifecycle").inputs["policy"])[
        "rules"
    ]
    assert rule["selection"] == {
        "tagStatus": "tagged",
        "tagPrefixList": ["sdwebui-"],
        "countType": "imageCountMoreThan",
        "countNumber": 7,
    }
    # The cache: a mutable tag rewritten by each build, always deletable, superseded caches
    # expire.
    cache = graph.one(REPO, "fleet-sdwebui-server-cache-repo")
    assert cache.inputs["imageTagMutability"] == "MUTABLE"
    assert cache.inputs["forceDelete"] is True
    assert cache.inputs["encryptionConfigurations"] == [{"encryptionType": "AES256"}]
    cache_policy = graph.one(POLICY, "fleet-sdwebui-server-cache-lifecycle")
    assert cache_policy.inputs["repository"] == cache.state["name"]
    (rule,) = json.loads(cache_policy.inputs["policy"])["rules"]
    assert rule["selection"]["tagStatus"] == "untagged"
    assert rule["selection"]["countType"] == "sinceImagePushed"


def test_defaults_are_the_agent_settings() -> None:
    args = ContainerImageArgs(context_dir="x", tag_prefix="x-", keep_images=None)
    config = AgentImageConfig()
    assert (args.keep_images, args.force_delete) == (config.keep_images, config.force_destroy)
    assert args.build_args is None


def test_preview_registers_the_builds_without_building() -> None:
    def program() -> None:
        runtime_images("fleet", [("sdwebui", None)])

    graph = run_program(program, preview=True)
    assert graph.one(IMAGE, "fleet-sdwebui-server-image").inputs["buildOnPreview"] is False


def _copy_context(tmp_path: Path, kind: str) -> Path:
    context = tmp_path / kind
    shutil.copytree(ROOT / "runtimes" / kind, context)
    return context


def _tag_of(context: Path) -> str:
    def program() -> None:
        ContainerImage("img", ContainerImageArgs(context_dir=str(context), tag_prefix="t-"))

    graph = run_program(program)
    (tag,) = graph.one(IMAGE, "img-image").inputs["tags"]
    return str(tag).rsplit(":", 1)[1]


@pytest.mark.parametrize("kind", ["sdwebui", "comfyui"])
def test_tag_follows_the_context_files_not_caches(tmp_path: Path, kind: str) -> None:
    context = _copy_context(tmp_path, kind)
    tag = _tag_of(context)
    (context / "__pycache__").mkdir()
    (context / "__pycache__" / "launch.cpython-310.pyc").write_bytes(b"\0")
    (context / "notes.txt").write_text("not copied by the Dockerfile")
    assert _tag_of(context) == tag
    with (context / "launch.sh").open("a") as script:
        script.write("# changed\n")
    changed = _tag_of(context)
    assert changed != tag
    (context / "launch.sh").chmod(0o644)
    assert _tag_of(context) != changed  # the executable bit is part of the image
    with (context / "Dockerfile").open("a") as dockerfile:
        dockerfile.write("LABEL x=y\n")
    assert _tag_of(context) not in {tag, changed}


def test_bad_inputs_fail_before_any_resource(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"context_dir: got .*Dockerfile"):
        ContainerImage("img", ContainerImageArgs(context_dir=str(tmp_path), tag_prefix="t-"))
    context = _copy_context(tmp_path, "comfyui")
    with pytest.raises(ValueError, match=r"tag_prefix: got 'T'"):
        ContainerImage("img", ContainerImageArgs(context_dir=str(context), tag_prefix="T"))
    with pytest.raises(ValueError, match=r"keepImages: got 0"):
        ContainerImage(
            "img", ContainerImageArgs(context_dir=str(context), tag_prefix="t-", keep_images=0)
        )
    with pytest.raises(ValueError, match=r"runtime_type: got 'invokeai'"):
        runtime_images("fleet", [("invokeai", None)])


def test_the_repository_contexts_are_the_server_images() -> None:
    for kind in ("sdwebui", "comfyui"):
        assert plan.runtime_context_dir(kind) == ROOT / "runtimes" / kind
        assert (plan.runtime_context_dir(kind) / "Dockerfile").is_file()
