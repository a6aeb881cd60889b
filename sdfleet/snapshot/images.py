"""The images an image-cache snapshot must hold, pinned by digest, and how they are tagged.

Sources, in this order: explicit ``--image`` arguments; otherwise the stack's outputs
(``pulumi stack output --json``: ``agentImage`` and, when the program exports it,
``runtimeImages`` mapping runtime name to image) with the stack config's overrides
(``sdfleet:agent.imageRef``, ``runtimes[i].image``) taking precedence, as in the program.
Only digest-pinned references are accepted: a tag can move, so a snapshot tagged with it
could not be checked later.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

AGENT = "agent"
# EC2 tag keys are at most 128 characters and values 256; a digest key is 86.
DIGEST_TAG_PREFIX = "sdfleet:digest:"
STACK_TAG = "sdfleet:stack"
_DIGEST_REF = re.compile(
    r"^(?P<repo>[a-z0-9][a-z0-9._/:-]*?)(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?"
    r"@(?P<digest>sha256:[0-9a-f]{64})$"
)
# ECR private registries need a login token; public registries (public.ecr.aws) do not.
_ECR_HOST = re.compile(r"^\d{12}\.dkr\.ecr(?:-fips)?\.(?P<region>[a-z0-9-]+)\.amazonaws\.com")


class ImageError(ValueError):
    """An image reference that cannot go into a snapshot, or no images at all."""


@dataclass(frozen=True)
class ImageRef:
    """One image to cache: who uses it (``agent``, a runtime name, or ``arg``) and its ref."""

    user: str
    ref: str

    @property
    def _match(self) -> re.Match[str]:
        match = _DIGEST_REF.match(self.ref)
        if match is None:  # parse_image checked it; kept for direct construction
            raise ImageError(f"{self.user}: {self.ref!r} is not pinned by digest")
        return match

    @property
    def digest(self) -> str:
        return self._match["digest"]

    @property
    def repository(self) -> str:
        return self._match["repo"]

    @property
    def pull_ref(self) -> str:
        """``repository@digest``: what containerd stores and the kubelet looks up."""
        return f"{self.repository}@{self.digest}"

    @property
    def ecr_region(self) -> str | None:
        match = _ECR_HOST.match(self.repository)
        return match["region"] if match else None


def parse_image(user: str, ref: str) -> ImageRef:
    ref = ref.strip()
    if _DIGEST_REF.match(ref) is None:
        raise ImageError(
            f"{user}: {ref!r} is not pinned by digest (expected <repository>@sha256:<64 hex>);"
            " a snapshot can only be checked against digests"
        )
    return ImageRef(user, ref)


def parse_image_args(values: Sequence[str]) -> list[ImageRef]:
    """``--image`` values: ``ref`` or ``user=ref`` (the user names the runtime, for output)."""
    images = []
    for value in values:
        user, sep, ref = value.partition("=")
        images.append(parse_image(user if sep else "arg", ref if sep else value))
    return images


Runner = Callable[..., "subprocess.CompletedProcess[str]"]


def stack_outputs(
    stack: str,
    *,
    cwd: str | None = None,
    which: Callable[[str], str | None] = shutil.which,
    run: Runner = subprocess.run,
) -> dict[str, Any] | None:
    """The stack's outputs from the pulumi CLI, or None when the CLI is not installed."""
    if which("pulumi") is None:
        return None
    done = run(
        ["pulumi", "stack", "output", "--json", "--stack", stack],
        cwd=cwd,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise ImageError(f"pulumi stack output --stack {stack} failed: {done.stderr.strip()}")
    outputs = json.loads(done.stdout or "{}")
    if not isinstance(outputs, dict):
        raise ImageError("pulumi stack output --json did not print an object")
    return outputs


def stack_images(
    outputs: Mapping[str, Any] | None,
    agent_override: str | None,
    runtime_overrides: Mapping[str, str | None],
) -> dict[str, ImageRef]:
    """User -> image for the agent and each runtime, from outputs and config overrides.

    A user with neither an override nor an output is an error: the snapshot would silently
    miss an image the stack deploys.
    """
    outputs = outputs or {}
    deployed = outputs.get("runtimeImages") or {}
    if not isinstance(deployed, dict):
        raise ImageError("stack output runtimeImages is not a mapping")
    wanted: dict[str, str | None] = {AGENT: agent_override or outputs.get("agentImage")}
    for name, override in runtime_overrides.items():
        wanted[name] = override or deployed.get(name)
    missing = [user for user, ref in wanted.items() if not ref]
    if missing:
        raise ImageError(
            f"no image known for {', '.join(missing)}: deploy the stack first (its outputs"
            " name the images) or pass every image with --image"
        )
    return {user: parse_image(user, str(ref)) for user, ref in wanted.items()}


def unique(images: Iterable[ImageRef]) -> list[ImageRef]:
    """One entry per digest (runtimes of one type share an image), first user kept."""
    seen: dict[str, ImageRef] = {}
    for image in images:
        seen.setdefault(image.digest, image)
    return list(seen.values())


def snapshot_tags(
    stack: str, images: Iterable[ImageRef], extra: Mapping[str, str]
) -> dict[str, str]:
    """Tags naming every digest the snapshot holds (value: the repository, cut to 256)."""
    tags = {STACK_TAG: stack, **extra}
    for image in unique(images):
        tags[DIGEST_TAG_PREFIX + image.digest] = image.repository[-256:]
    if len(tags) > 50:  # the EC2 limit per resource
        raise ImageError(f"{len(tags)} tags: EC2 allows 50 per snapshot; cache fewer images")
    return tags


def digests_in_tags(tags: Mapping[str, str]) -> set[str]:
    return {key[len(DIGEST_TAG_PREFIX) :] for key in tags if key.startswith(DIGEST_TAG_PREFIX)}
