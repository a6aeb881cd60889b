"""What one image build is, decided before any resource exists: the context, the Dockerfile,
the build args, the content tag and the ECR lifecycle policies. The same plan serves the queue
agent's image and each runtime type's server image (``runtimes/<type>/``); the component
(:mod:`sdfleet.components.container_image`) only turns it into resources.

Pure: no Pulumi import.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from sdfleet.components.builders import image as ib
from sdfleet.components.builders.enums import RuntimeType
from sdfleet.components.builders.errors import fail

# The repository root (``components/..``) in a checkout; the ``sdfleet`` package when
# installed. resolve() follows the sdfleet/components symlink.
PACKAGE_ROOT = Path(__file__).resolve().parent.parent.parent
# One build context per runtime type: runtimes/<type>/ with a Dockerfile and a launch script.
RUNTIMES_DIR = PACKAGE_ROOT / "runtimes"
# BuildKit's registry-cache options for ECR: one image manifest, not an index (ECR refuses a
# cache index), OCI media types, every layer of every stage (mode=max). A failed cache export
# does not fail a build whose image was pushed.
CACHE_TO_OPTIONS: Mapping[str, object] = {
    "mode": "max",
    "image_manifest": True,
    "oci_media_types": True,
    "ignore_error": True,
}


@dataclass(frozen=True)
class ImageBuild:
    """One image's build: where from, how it is tagged, what its repositories keep."""

    context_dir: Path
    """The build context (absolute)."""
    dockerfile: Path
    """The Dockerfile in it."""
    tag_prefix: str
    """Names the image in its tags (``agent-``, ``sdwebui-``); the lifecycle rule counts it."""
    tag: str
    """The content tag: ``tag_prefix`` + a hash of the context files and build args."""
    keep_images: int
    """Images the lifecycle policy keeps."""
    build_args: Mapping[str, str] = field(default_factory=dict)
    """Docker build args (part of the tag)."""

    @property
    def lifecycle_policy(self) -> str:
        """The image repository's lifecycle policy (JSON)."""
        return json.dumps(ib.ecr_lifecycle_policy(self.keep_images, self.tag_prefix))

    @property
    def cache_lifecycle_policy(self) -> str:
        """The cache repository's lifecycle policy (JSON)."""
        return json.dumps(ib.cache_lifecycle_policy())

    def tagged(self, repository_url: str) -> str:
        """The reference the build pushes (``<repo>:<tag>``)."""
        return f"{repository_url}:{self.tag}"


def plan_build(
    context_dir: str | Path,
    tag_prefix: str,
    keep_images: int,
    build_args: Mapping[str, str] | None = None,
) -> ImageBuild:
    """The build of the image in ``context_dir``; every argument checked."""
    context = Path(context_dir).absolute()
    dockerfile = context / "Dockerfile"
    if not dockerfile.is_file():
        raise fail(
            "context_dir", str(context_dir), "a directory holding a Dockerfile (a build context)"
        )
    args = dict(build_args or {})
    for key, value in args.items():
        if not isinstance(key, str) or not key or not isinstance(value, str):
            raise fail("build_args", {key: value}, "a mapping of non-empty names to strings")
    # Checked here, not at the first push: the lifecycle policy validates keep_images.
    ib.ecr_lifecycle_policy(keep_images, tag_prefix)
    return ImageBuild(
        context_dir=context,
        dockerfile=dockerfile,
        tag_prefix=tag_prefix,
        tag=ib.image_tag(context, args, tag_prefix),
        keep_images=keep_images,
        build_args=args,
    )


def _runtime_type(runtime_type: str) -> str:
    allowed = [t.value for t in RuntimeType]
    if runtime_type not in allowed:
        raise fail("runtime_type", runtime_type, ", ".join(allowed))
    return str(runtime_type)


def runtime_context_dir(runtime_type: str, runtimes_dir: str | Path = RUNTIMES_DIR) -> Path:
    """The build context of a runtime type's server image (``runtimes/<type>/``)."""
    return Path(runtimes_dir) / _runtime_type(runtime_type)


def runtime_tag_prefix(runtime_type: str) -> str:
    """The server image's tag prefix: the runtime type and '-' (``sdwebui-``)."""
    return ib.check_tag_prefix(f"{_runtime_type(runtime_type)}-")


def types_to_build(runtimes: Iterable[tuple[str, str | None]]) -> list[str]:
    """The runtime types whose server image the program builds, given each runtime's
    ``(type, image override)``: the types of the runtimes without an override, once each,
    in first-seen order (runtimes of one type share one build)."""
    types: list[str] = []
    for runtime_type, override in runtimes:
        name = _runtime_type(runtime_type)
        if override is None and name not in types:
            types.append(name)
    return types
