"""AgentImage: the queue agent's container image, built from ``agent/`` and pushed to a private
ECR repository, or a prebuilt reference for machines without Docker. The build is the one every
image sdfleet builds gets (:func:`sdfleet.components.container_image.build_and_push`).

The output ``ref`` is the digest-pinned reference (``<repo>@sha256:...``) the push returned:
pods run exactly the image that was built, whatever happens to tags later.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pulumi

from sdfleet.components import versions
from sdfleet.components.builders import image as ib
from sdfleet.components.builders.image_build import plan_build
from sdfleet.components.config_model import AgentImageConfig, config_default
from sdfleet.components.container_image import build_and_push

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CONTEXT_DIR = str(REPO_ROOT / "agent")


@dataclass
class AgentImageArgs:
    """Inputs of AgentImage: the build context and ECR settings, or a prebuilt image.
    Defaults are the stack configuration's (``sdfleet:agent``)."""

    context_dir: str = DEFAULT_CONTEXT_DIR
    """Directory holding the agent's Dockerfile and sources (default: the package's agent/)."""
    keep_images: int = config_default(AgentImageConfig, "keep_images")
    """Images the ECR lifecycle policy keeps (1-1000); older ones expire."""
    image_ref: str | None = config_default(AgentImageConfig, "image_ref")
    """A prebuilt image pinned by digest or a tag other than latest: no repository, no build."""
    force_delete: bool = config_default(AgentImageConfig, "force_destroy")
    """Let ``pulumi destroy`` delete the ECR repository with the images in it."""


def _check_prebuilt(ref: str) -> None:
    tag = ref.rsplit("/", 1)[-1].partition(":")[2]
    if "@sha256:" not in ref and (not tag or tag == "latest"):
        raise ValueError(
            f"image_ref: got {ref!r}; allowed: an image reference pinned by digest "
            "(repo@sha256:...) or by a tag other than 'latest'"
        )


class AgentImage(pulumi.ComponentResource):
    """The agent's container image: built from the agent sources for linux/amd64 (registry
    cache in ECR) and pushed to a private, scan-on-push ECR repository with a lifecycle
    policy, or a prebuilt reference used as is."""

    ref: pulumi.Output[str]
    repository_url: pulumi.Output[str] | None
    tag: str | None

    def __init__(
        self, name: str, args: AgentImageArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("sdfleet:index:AgentImage", name, None, opts)
        if args.image_ref is not None:
            _check_prebuilt(args.image_ref)
            self.ref = pulumi.Output.from_input(args.image_ref)
            self.repository_url = None
            self.tag = None
            self.register_outputs({"ref": self.ref})
            return

        context = Path(args.context_dir)
        if not (context / "Dockerfile").is_file():
            raise ValueError(
                f"context_dir: got {args.context_dir!r}; allowed: a directory holding a "
                "Dockerfile (the agent sources), or set image_ref to a prebuilt image"
            )
        # Planned (and checked) before any resource exists. The base image is pinned in
        # versions.py; the Dockerfile declares `ARG BASE_IMAGE`.
        build = plan_build(
            context,
            ib.TAG_PREFIX,
            args.keep_images,
            {"BASE_IMAGE": versions.AGENT_BASE_IMAGE},
        )
        self.tag = build.tag
        # The same repositories, cache and build as every image sdfleet builds; children of
        # this component under the names they always had (no replacement on upgrade).
        pushed = build_and_push(self, name, build, args.force_delete)
        self.repository_url = pushed.repository_url
        self.ref = pushed.ref
        self.register_outputs({"ref": self.ref, "repository_url": self.repository_url})
