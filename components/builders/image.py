"""Pure helpers for the images sdfleet builds (the queue agent's and one per runtime type): a
content-hash tag, the ECR lifecycle policies and the registry-cache reference.

Each image's repository has immutable tags, so every build needs a tag no earlier build used.
The tag is a prefix naming the image plus a hash of the build context (file paths and bytes,
in sorted order): the same sources give the same tag (no rebuild, no push conflict), any change
gives a new one. Deployments use the digest the push returns, never the tag.

The BuildKit layer cache lives in a second, mutable repository under one tag
(:data:`CACHE_TAG`), rewritten by every build; see :func:`cache_lifecycle_policy`.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from sdfleet.components.builders.dockerfile_sources import copied_files
from sdfleet.components.builders.errors import fail

TAG_PREFIX = "agent-"
TAG_HASH_LENGTH = 20
# ECR tags: letters, digits, '_', '.', '-' (at most 128). A prefix ends in '-' so that no
# image's prefix is another's (the lifecycle rules select by prefix).
_TAG_PREFIX = re.compile(r"[a-z0-9][a-z0-9_.-]{0,62}-")
# The registry-cache manifest's tag in the cache repository.
CACHE_TAG = "cache"
# Superseded cache manifests (untagged when the next build rewrites CACHE_TAG) live this long.
CACHE_UNTAGGED_DAYS = 1
# Always part of what the builder reads, whatever .dockerignore says.
ALWAYS_INCLUDED = frozenset({"Dockerfile", ".dockerignore"})


def _pattern_regex(pattern: str) -> re.Pattern[str] | None:
    """A .dockerignore pattern (rooted at the context, ``**`` spans directories) as a regex;
    None for syntax we do not translate (character classes, escapes)."""
    if any(c in pattern for c in "[]\\"):
        return None
    out = []
    i = 0
    while i < len(pattern):
        if pattern.startswith("**", i):
            out.append(".*")
            i += 2
            if pattern.startswith("/", i):
                out[-1] = "(?:.*/)?"
                i += 1
        elif pattern[i] == "*":
            out.append("[^/]*")
            i += 1
        elif pattern[i] == "?":
            out.append("[^/]")
            i += 1
        else:
            out.append(re.escape(pattern[i]))
            i += 1
    return re.compile("".join(out) + "(?:/.*)?")


def dockerignore_patterns(context_dir: str | Path) -> list[re.Pattern[str]]:
    """The context's exclusions, or none at all when .dockerignore uses syntax this module does
    not translate (exceptions with ``!``, character classes).

    The tag must change whenever the builder's view of the context changes (else the push
    hits an existing immutable tag), so hashing too much is safe and hashing too little is not:
    when in doubt, nothing is excluded.
    """
    path = Path(context_dir) / ".dockerignore"
    if not path.is_file():
        return []
    patterns: list[re.Pattern[str]] = []
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("!"):
            return []
        line = line.lstrip("/").removeprefix("./").rstrip("/")
        regex = _pattern_regex(line) if line else None
        if regex is None:
            return []
        patterns.append(regex)
    return patterns


def context_files(context_dir: str | Path) -> list[Path]:
    """The context files the image can depend on, as sorted paths relative to the context:
    the Dockerfile, .dockerignore and the files it copies when it names single files only
    (:mod:`.dockerfile_sources`); else every file minus .dockerignore exclusions."""
    root = Path(context_dir)
    if not root.is_dir():
        raise fail("context_dir", str(context_dir), "an existing directory (a build context)")
    named = copied_files(root) if (root / "Dockerfile").is_file() else None
    if named is not None:
        present = [name for name in sorted(ALWAYS_INCLUDED) if (root / name).is_file()]
        return sorted({Path(name) for name in [*present, *named]}, key=lambda p: p.as_posix())
    ignored = dockerignore_patterns(root)
    files: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for filename in filenames:
            rel = (Path(dirpath) / filename).relative_to(root)
            posix = rel.as_posix()
            if posix not in ALWAYS_INCLUDED and any(p.fullmatch(posix) for p in ignored):
                continue
            files.append(rel)
    # POSIX form so the hash is the same on every OS.
    return sorted(files, key=lambda p: p.as_posix())


def context_hash(context_dir: str | Path, build_args: Mapping[str, str] | None = None) -> str:
    """SHA-256 over every context file's relative path, executable bit and bytes, and the
    build args (they change the image without changing a file)."""
    root = Path(context_dir)
    digest = hashlib.sha256()
    for rel in context_files(root):
        path = root / rel
        executable = os.access(path, os.X_OK)
        digest.update(rel.as_posix().encode())
        digest.update(b"\0x\0" if executable else b"\0-\0")
        data = path.read_bytes()
        digest.update(str(len(data)).encode() + b"\0")
        digest.update(data)
    for key, value in sorted((build_args or {}).items()):
        digest.update(f"\0arg\0{key}={value}".encode())
    return digest.hexdigest()


def check_tag_prefix(prefix: str) -> str:
    """``prefix`` if it can start an ECR tag and ends in '-' (e.g. ``sdwebui-``)."""
    if not isinstance(prefix, str) or not _TAG_PREFIX.fullmatch(prefix):
        raise fail(
            "tag_prefix",
            prefix,
            "lowercase letters, digits, '_', '.', '-', at most 64 characters, ending in '-'",
        )
    return prefix


def image_tag(
    context_dir: str | Path,
    build_args: Mapping[str, str] | None = None,
    prefix: str = TAG_PREFIX,
) -> str:
    """The immutable tag for the current sources and build args, e.g. ``agent-3f2a...``."""
    return check_tag_prefix(prefix) + context_hash(context_dir, build_args)[:TAG_HASH_LENGTH]


def cache_ref(cache_repository_url: str) -> str:
    """The registry-cache reference BuildKit reads and writes (``<repo>:cache``)."""
    return f"{cache_repository_url}:{CACHE_TAG}"


def cache_lifecycle_policy() -> dict[str, Any]:
    """Expire cache manifests a later build has superseded.

    Each build rewrites :data:`CACHE_TAG`, leaving the previous cache manifest untagged. The
    cache repository holds nothing else (BuildKit writes one image manifest per cache when
    ``image-manifest`` is set, no index with untagged children), so expiring untagged images
    there cannot touch a deployed image, unlike in the image repository.
    """
    rule = {
        "rulePriority": 1,
        "description": f"Expire superseded build caches after {CACHE_UNTAGGED_DAYS} day(s)",
        "selection": {
            "tagStatus": "untagged",
            "countType": "sinceImagePushed",
            "countUnit": "days",
            "countNumber": CACHE_UNTAGGED_DAYS,
        },
        "action": {"type": "expire"},
    }
    return {"rules": [rule]}


def ecr_lifecycle_policy(keep_images: int, tag_prefix: str = TAG_PREFIX) -> dict[str, Any]:
    """Keep the ``keep_images`` newest builds (tags starting with ``tag_prefix``), expire older
    ones.

    The rule selects tagged images with our tag prefix only. A pushed build may be an image
    index whose platform and attestation manifests are untagged; a rule on untagged (or "any")
    images could expire those children while their index is still deployed, or count them as
    builds, so they are left alone.
    """
    if isinstance(keep_images, bool) or not isinstance(keep_images, int):
        raise fail("keepImages", keep_images, "an integer from 1 to 1000")
    if not 1 <= keep_images <= 1000:
        raise fail("keepImages", keep_images, "an integer from 1 to 1000")
    rule = {
        "rulePriority": 1,
        "description": f"Keep the last {keep_images} {tag_prefix}* images",
        "selection": {
            "tagStatus": "tagged",
            "tagPrefixList": [check_tag_prefix(tag_prefix)],
            "countType": "imageCountMoreThan",
            "countNumber": keep_images,
        },
        "action": {"type": "expire"},
    }
    return {"rules": [rule]}
