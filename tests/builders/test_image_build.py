"""The pure image-build planning: plans, runtime contexts, cache references and policies, and
which context files a Dockerfile can read."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sdfleet.components.builders import dockerfile_sources as ds
from sdfleet.components.builders import image as ib
from sdfleet.components.builders import image_build as plan
from sdfleet.components.builders.enums import RuntimeType

ROOT = Path(__file__).resolve().parents[2]


def _context(tmp_path: Path, dockerfile: str, files: dict[str, str] | None = None) -> Path:
    tmp_path.mkdir(parents=True, exist_ok=True)
    (tmp_path / "Dockerfile").write_text(dockerfile)
    for name, text in (files or {}).items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    return tmp_path


# ------------------------------------------------------------------------------------------
# Plans


def test_plan_build(tmp_path: Path) -> None:
    ctx = _context(tmp_path, "FROM scratch\nCOPY a /a\n", {"a": "1"})
    build = plan.plan_build(ctx, "sdwebui-", 5, {"X": "1"})
    assert build.context_dir == ctx and build.dockerfile == ctx / "Dockerfile"
    assert build.tag == ib.image_tag(ctx, {"X": "1"}, "sdwebui-")
    assert build.tag.startswith("sdwebui-")
    assert build.tagged("acct.dkr.ecr/repo") == f"acct.dkr.ecr/repo:{build.tag}"
    (rule,) = json.loads(build.lifecycle_policy)["rules"]
    assert rule["selection"]["tagPrefixList"] == ["sdwebui-"]
    assert rule["selection"]["countNumber"] == 5
    assert json.loads(build.cache_lifecycle_policy) == ib.cache_lifecycle_policy()


def test_plan_build_rejects_bad_inputs(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"context_dir: got .*Dockerfile"):
        plan.plan_build(tmp_path, "x-", 5)
    ctx = _context(tmp_path, "FROM scratch\n")
    with pytest.raises(ValueError, match=r"keepImages: got 0"):
        plan.plan_build(ctx, "x-", 0)
    with pytest.raises(ValueError, match=r"build_args: got"):
        plan.plan_build(ctx, "x-", 5, {"X": 1})  # type: ignore[dict-item]


@pytest.mark.parametrize("prefix", ["sdwebui-", "agent-", "a.b_c-"])
def test_good_tag_prefixes(prefix: str) -> None:
    assert ib.check_tag_prefix(prefix) == prefix


@pytest.mark.parametrize("prefix", ["", "sdwebui", "-x-", "Upper-", "a/b-", "x" * 64 + "-"])
def test_bad_tag_prefixes(prefix: str) -> None:
    with pytest.raises(ValueError, match=r"tag_prefix: got"):
        ib.check_tag_prefix(prefix)


def test_tags_of_different_prefixes_differ(tmp_path: Path) -> None:
    ctx = _context(tmp_path, "FROM scratch\n")
    assert ib.image_tag(ctx, prefix="sdwebui-") != ib.image_tag(ctx, prefix="comfyui-")
    assert ib.image_tag(ctx) == ib.image_tag(ctx, prefix=ib.TAG_PREFIX)


def test_runtime_contexts_and_prefixes() -> None:
    for kind in RuntimeType:
        assert plan.runtime_context_dir(kind) == ROOT / "runtimes" / kind.value
        assert plan.runtime_tag_prefix(kind) == f"{kind.value}-"
    assert plan.runtime_context_dir("comfyui", "/x") == Path("/x/comfyui")
    with pytest.raises(ValueError, match=r"runtime_type: got 'invokeai'; allowed: sdwebui"):
        plan.runtime_context_dir("invokeai")


def test_types_to_build_once_each_and_only_without_override() -> None:
    runtimes = [
        ("comfyui", None),
        ("sdwebui", "example.com/own@sha256:" + "1" * 64),
        (RuntimeType.COMFYUI, None),
        ("sdwebui", None),
    ]
    assert plan.types_to_build(runtimes) == ["comfyui", "sdwebui"]
    assert plan.types_to_build([("sdwebui", "example.com/own:v1")]) == []
    with pytest.raises(ValueError, match="runtime_type"):
        plan.types_to_build([("nope", "example.com/own:v1")])


def test_cache_reference_and_policy() -> None:
    assert ib.cache_ref("acct.dkr.ecr.us-east-1.amazonaws.com/c") == (
        "acct.dkr.ecr.us-east-1.amazonaws.com/c:cache"
    )
    (rule,) = ib.cache_lifecycle_policy()["rules"]
    assert rule["selection"] == {
        "tagStatus": "untagged",
        "countType": "sinceImagePushed",
        "countUnit": "days",
        "countNumber": ib.CACHE_UNTAGGED_DAYS,
    }
    assert rule["action"] == {"type": "expire"}
    assert plan.CACHE_TO_OPTIONS["image_manifest"] is True


# ------------------------------------------------------------------------------------------
# What a Dockerfile reads


@pytest.mark.parametrize("kind", ["sdwebui", "comfyui"])
def test_server_images_read_named_files_only(kind: str) -> None:
    context = ROOT / "runtimes" / kind
    named = ds.copied_files(context)
    assert named is not None and "launch.sh" in named and "fetch-repo.sh" in named
    assert [p.as_posix() for p in ib.context_files(context)] == sorted(["Dockerfile", *named])


def test_the_agent_image_reads_its_whole_context() -> None:
    assert ds.copied_files(ROOT / "agent") is None  # COPY . /app/sdfleet/agent


def test_named_files_continuations_and_other_stages(tmp_path: Path) -> None:
    ctx = _context(
        tmp_path,
        "# syntax=docker/dockerfile:1\n"
        "FROM scratch AS base\n"
        "COPY --chown=1:1 --chmod=755 a.sh \\\n"
        "  # a comment inside the instruction\n"
        "  ./conf/b.json /opt/\n"
        'ADD ["c.txt", "/opt/c"]\n'
        "ADD https://example.com/x.tgz /opt/x.tgz\n"
        "COPY --from=base /opt /opt\n"
        "RUN --mount=type=cache,target=/root/.cache pip install x\n",
        {"a.sh": "", "conf/b.json": "{}", "c.txt": "", "stray.txt": ""},
    )
    assert ds.copied_files(ctx) == ["a.sh", "c.txt", "conf/b.json"]


@pytest.mark.parametrize(
    "line",
    [
        "COPY . /app",
        "COPY conf /app/conf",  # a directory
        "COPY *.sh /app/",
        "COPY ${FILE} /app/",
        "COPY --parents a.sh /app/",
        "COPY --exclude=*.pyc a.sh /app/",
        "COPY <<EOF /app/x\nhello\nEOF",
        "COPY missing.sh /app/",
        "COPY ../outside /app/",
        "COPY a.sh",
        "RUN --mount=target=/src make",  # bind mount of the context (the default type)
        "RUN --mount=type=bind,source=a.sh,target=/a.sh sh /a.sh",
    ],
)
def test_anything_that_may_read_more_is_unknown(tmp_path: Path, line: str) -> None:
    ctx = _context(tmp_path, f"FROM scratch\n{line}\n", {"a.sh": "", "conf/b.json": "{}"})
    assert ds.copied_files(ctx) is None
    # ... and the whole context is hashed.
    assert "conf/b.json" in {p.as_posix() for p in ib.context_files(ctx)}


def test_escape_directive_is_unknown(tmp_path: Path) -> None:
    ctx = _context(tmp_path, "# escape=`\nFROM scratch\nCOPY a.sh /a\n", {"a.sh": ""})
    assert ds.copied_files(ctx) is None


def test_mounts_from_other_stages_do_not_read_the_context(tmp_path: Path) -> None:
    ctx = _context(
        tmp_path,
        "FROM scratch\nRUN --mount=type=bind,from=base,target=/b --mount=type=secret,id=s ls\n",
    )
    assert ds.copied_files(ctx) == []
    assert [p.as_posix() for p in ib.context_files(ctx)] == ["Dockerfile"]


def test_named_file_changes_change_the_tag_and_stray_files_do_not(tmp_path: Path) -> None:
    ctx = _context(tmp_path, "FROM scratch\nCOPY a.sh /a\n", {"a.sh": "1"})
    tag = ib.image_tag(ctx)
    (ctx / "__pycache__").mkdir()
    (ctx / "__pycache__" / "x.pyc").write_bytes(b"\0")
    (ctx / "README").write_text("x")
    assert ib.image_tag(ctx) == tag
    (ctx / ".dockerignore").write_text("README\n")
    with_ignore = ib.image_tag(ctx)
    assert with_ignore != tag  # .dockerignore is always part of the context
    (ctx / "a.sh").write_text("2")
    assert ib.image_tag(ctx) != with_ignore
