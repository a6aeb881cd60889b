"""ContainerImage: an image sdfleet builds from a context in this package and pushes to a private
ECR repository of its own; the queue agent's (through :class:`AgentImage`) and one per runtime
type (``runtimes/<type>/``, shared by every runtime of that type).

The build itself (context, tag, lifecycle policies, cache options) is planned by
:mod:`sdfleet.components.builders.image_build`; this module only makes the resources. The
output ``ref`` is the digest-pinned reference (``<repo>@sha256:...``): pods run exactly the
image that was built, whatever happens to tags later.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import cast

import pulumi
import pulumi_aws as aws
import pulumi_docker_build as docker_build

from sdfleet.components._inputs import as_args, none_means_default
from sdfleet.components.builders import image as ib
from sdfleet.components.builders import image_build as plan
from sdfleet.components.config_model import AgentImageConfig, config_default


@dataclass(frozen=True)
class PushedImage:
    """What :func:`build_and_push` made: the repositories and the pushed image's ref."""

    ref: pulumi.Output[str]
    repository_url: pulumi.Output[str]
    cache_repository_url: pulumi.Output[str]


def _repository(
    name: str, owner: pulumi.Resource, *, mutable: bool, scan: bool, force_delete: bool
) -> aws.ecr.Repository:
    return aws.ecr.Repository(
        name,
        image_scanning_configuration=aws.ecr.RepositoryImageScanningConfigurationArgs(
            scan_on_push=scan
        ),
        image_tag_mutability="MUTABLE" if mutable else "IMMUTABLE",
        encryption_configurations=[
            aws.ecr.RepositoryEncryptionConfigurationArgs(encryption_type="AES256")
        ],
        force_delete=force_delete,
        opts=pulumi.ResourceOptions(parent=owner),
    )


def build_and_push(
    owner: pulumi.Resource, name: str, build: plan.ImageBuild, force_delete: bool
) -> PushedImage:
    """The image repository, its build cache repository, their lifecycle policies and the
    docker-build Image, children of ``owner`` named ``<name>-repo``, ``<name>-lifecycle``,
    ``<name>-cache-repo``, ``<name>-cache-lifecycle`` and ``<name>-image``."""
    # Immutable tags: a content tag names one build forever. Only deleting the repository
    # deletes its images, after the pods that pull them (they depend on the image).
    repo = _repository(f"{name}-repo", owner, mutable=False, scan=True, force_delete=force_delete)
    aws.ecr.LifecyclePolicy(
        f"{name}-lifecycle",
        repository=repo.name,
        policy=build.lifecycle_policy,
        opts=pulumi.ResourceOptions(parent=repo),
    )
    # The layer cache is one tag every build rewrites, so it cannot live among immutable tags;
    # a repository of its own also lets superseded caches expire without a rule on untagged
    # images next to deployed ones (their platform manifests are untagged). It holds no image
    # to scan and nothing worth keeping at destroy.
    cache_repo = _repository(
        f"{name}-cache-repo", owner, mutable=True, scan=False, force_delete=True
    )
    aws.ecr.LifecyclePolicy(
        f"{name}-cache-lifecycle",
        repository=cache_repo.name,
        policy=build.cache_lifecycle_policy,
        opts=pulumi.ResourceOptions(parent=cache_repo),
    )
    creds = aws.ecr.get_authorization_token_output(
        registry_id=repo.registry_id, opts=pulumi.InvokeOutputOptions(parent=owner)
    )
    cache = cache_repo.repository_url.apply(ib.cache_ref)
    image = docker_build.Image(
        f"{name}-image",
        context=docker_build.BuildContextArgs(location=str(build.context_dir)),
        dockerfile=docker_build.DockerfileArgs(location=str(build.dockerfile)),
        build_args=dict(build.build_args) or None,
        # GPU nodes are x86_64; an image built on an arm64 laptop would not start there.
        platforms=[docker_build.Platform.LINUX_AMD64],
        push=True,
        tags=[repo.repository_url.apply(build.tagged)],
        cache_from=[
            docker_build.CacheFromArgs(registry=docker_build.CacheFromRegistryArgs(ref=cache))
        ],
        cache_to=[
            docker_build.CacheToArgs(
                registry=docker_build.CacheToRegistryArgs(
                    ref=cache,
                    mode=docker_build.CacheMode(plan.CACHE_TO_OPTIONS["mode"]),
                    image_manifest=bool(plan.CACHE_TO_OPTIONS["image_manifest"]),
                    oci_media_types=bool(plan.CACHE_TO_OPTIONS["oci_media_types"]),
                    ignore_error=bool(plan.CACHE_TO_OPTIONS["ignore_error"]),
                )
            )
        ],
        # One ECR registry (account and region) holds both repositories: one token for both.
        registries=[
            docker_build.RegistryArgs(
                address=repo.repository_url,
                username=creds.user_name,
                password=pulumi.Output.secret(creds.password),
            )
        ],
        # Previews must work without Docker (and without pushing anything).
        build_on_preview=False,
        opts=pulumi.ResourceOptions(parent=owner),
    )
    # The digest, not the provider's `ref` (a tag plus digest, "not guaranteed stable").
    ref = pulumi.Output.all(repo.repository_url, image.digest).apply(
        lambda parts: f"{parts[0]}@{parts[1]}"
    )
    return PushedImage(ref, repo.repository_url, cache_repo.repository_url)


@dataclass
class ContainerImageArgs:
    """Inputs of ContainerImage: the build context and the repository settings. Defaults are
    the stack configuration's (``sdfleet:agent``, shared by every image sdfleet builds)."""

    context_dir: str
    """Directory holding the Dockerfile and every file it copies (``runtimes/<type>/``)."""
    tag_prefix: str
    """Starts every tag of this image (lowercase, ending in '-', e.g. ``sdwebui-``); the
    lifecycle rule counts the images with this prefix."""
    build_args: Mapping[str, str] | None = None
    """Docker build args; they are part of the content tag. Unset: none."""
    keep_images: int | None = config_default(AgentImageConfig, "keep_images")
    """Images the ECR lifecycle policy keeps (1-1000); older ones expire."""
    force_delete: bool | None = config_default(AgentImageConfig, "force_destroy")
    """Let ``pulumi destroy`` delete the ECR repository with the images in it."""

    def __post_init__(self) -> None:
        none_means_default(self)


class ContainerImage(pulumi.ComponentResource):
    """An image built from a context for linux/amd64 with a registry cache in ECR, pushed to a
    private, scan-on-push, immutable-tag ECR repository with a lifecycle policy. Not built in
    preview."""

    ref: pulumi.Output[str]
    """The pushed image, pinned by digest (``<repo>@sha256:...``)."""
    repository_url: pulumi.Output[str]
    """The image's ECR repository."""
    cache_repository_url: pulumi.Output[str]
    """The ECR repository holding the BuildKit layer cache (tag ``cache``)."""
    tag: str
    """The content tag of this build."""

    def __init__(
        self, name: str, args: ContainerImageArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("sdfleet:index:ContainerImage", name, None, opts)
        args = as_args(ContainerImageArgs, args)
        # Planned (and checked) before any resource exists.
        build = plan.plan_build(
            args.context_dir, args.tag_prefix, cast(int, args.keep_images), args.build_args
        )
        pushed = build_and_push(self, name, build, bool(args.force_delete))
        self.tag = build.tag
        self.ref = pushed.ref
        self.repository_url = pushed.repository_url
        self.cache_repository_url = pushed.cache_repository_url
        self.register_outputs(
            {
                "ref": self.ref,
                "repository_url": self.repository_url,
                "cache_repository_url": self.cache_repository_url,
            }
        )


def runtime_images(
    name: str,
    runtimes: Iterable[tuple[str, str | None]],
    keep_images: int | None = None,
    force_delete: bool | None = None,
    opts: pulumi.ResourceOptions | None = None,
) -> dict[str, ContainerImage]:
    """Runtime type -> the ContainerImage ``<name>-<type>-server`` built from
    ``runtimes/<type>/``, for the types of the runtimes given as ``(type, image override)``
    without an override; one per type."""
    return {
        runtime_type: ContainerImage(
            f"{name}-{runtime_type}-server",
            ContainerImageArgs(
                context_dir=str(plan.runtime_context_dir(runtime_type)),
                tag_prefix=plan.runtime_tag_prefix(runtime_type),
                keep_images=keep_images,
                force_delete=force_delete,
            ),
            opts,
        )
        for runtime_type in plan.types_to_build(runtimes)
    }
