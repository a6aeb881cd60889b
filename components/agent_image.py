"""AgentImage: the queue agent's container image, built from ``agent/`` and pushed to a private
ECR repository, or a prebuilt reference for machines without Docker.

The output ``ref`` is the digest-pinned reference (``<repo>@sha256:...``) the push returned:
pods run exactly the image that was built, whatever happens to tags later.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pulumi
import pulumi_aws as aws
import pulumi_docker_build as docker_build

from sdfleet.components import versions
from sdfleet.components.builders import image as ib
from sdfleet.components.config_model import AgentImageConfig, config_default

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
    """The agent's container image: built from the agent sources for linux/amd64 and pushed
    to a private, scan-on-push ECR repository with a lifecycle policy, or a prebuilt
    reference used as is."""

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
        dockerfile = context / "Dockerfile"
        if not dockerfile.is_file():
            raise ValueError(
                f"context_dir: got {args.context_dir!r}; allowed: a directory holding a "
                "Dockerfile (the agent sources), or set image_ref to a prebuilt image"
            )
        # Validated before any resource exists.
        lifecycle = json.dumps(ib.ecr_lifecycle_policy(args.keep_images))
        # The base image is pinned in versions.py; the Dockerfile declares `ARG BASE_IMAGE`.
        build_args = {"BASE_IMAGE": versions.AGENT_BASE_IMAGE}
        self.tag = ib.image_tag(context, build_args)

        child = pulumi.ResourceOptions(parent=self)
        repo = aws.ecr.Repository(
            f"{name}-repo",
            image_scanning_configuration=aws.ecr.RepositoryImageScanningConfigurationArgs(
                scan_on_push=True
            ),
            image_tag_mutability="IMMUTABLE",
            encryption_configurations=[
                aws.ecr.RepositoryEncryptionConfigurationArgs(encryption_type="AES256")
            ],
            # Only deleting the repository deletes its images, after the pods that pull them
            # (they depend on the image); the lifecycle policy expires old ones.
            force_delete=args.force_delete,
            opts=child,
        )
        aws.ecr.LifecyclePolicy(
            f"{name}-lifecycle",
            repository=repo.name,
            policy=lifecycle,
            opts=pulumi.ResourceOptions(parent=repo),
        )
        creds = aws.ecr.get_authorization_token_output(
            registry_id=repo.registry_id, opts=pulumi.InvokeOutputOptions(parent=self)
        )
        tag = self.tag
        image = docker_build.Image(
            f"{name}-image",
            context=docker_build.BuildContextArgs(location=str(context)),
            dockerfile=docker_build.DockerfileArgs(location=str(dockerfile)),
            build_args=build_args,
            # GPU nodes are x86_64; an image built on an arm64 laptop would not start there.
            platforms=[docker_build.Platform.LINUX_AMD64],
            push=True,
            tags=[repo.repository_url.apply(lambda url: f"{url}:{tag}")],
            registries=[
                docker_build.RegistryArgs(
                    address=repo.repository_url,
                    username=creds.user_name,
                    password=pulumi.Output.secret(creds.password),
                )
            ],
            # Previews must work without Docker (and without pushing anything).
            build_on_preview=False,
            opts=child,
        )
        self.repository_url = repo.repository_url
        self.ref = image.ref
        self.register_outputs({"ref": self.ref, "repository_url": self.repository_url})
