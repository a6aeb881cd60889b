"""``sdfleet snapshot check``: does a configured snapshot hold the images the stack deploys?

It compares the digests the snapshot was tagged with at build time (``sdfleet:digest:*``)
with the digests of the images the stack would run. The tags are the record: the check does
not mount the snapshot. A snapshot built by another tool has no such tags and fails.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from botocore.exceptions import ClientError

from sdfleet.snapshot.cloud import Ec2Ops
from sdfleet.snapshot.images import AGENT, ImageRef, digests_in_tags
from sdfleet.snapshot.stack import StackInfo


@dataclass(frozen=True)
class Finding:
    snapshot_id: str
    users: tuple[str, ...]  # runtimes configured with it ("--snapshot-id" when given)
    missing: tuple[ImageRef, ...]
    note: str | None = None
    warning: str | None = None  # printed, does not fail the check

    @property
    def ok(self) -> bool:
        return not self.missing and self.note is None


def _targets(
    stack: StackInfo, snapshot_id: str | None, images: Mapping[str, ImageRef]
) -> dict[str, tuple[tuple[str, ...], list[ImageRef]]]:
    """Snapshot id -> (who uses it, the images it must hold)."""
    if snapshot_id:
        return {snapshot_id: (("--snapshot-id",), list(images.values()))}
    targets: dict[str, tuple[tuple[str, ...], list[ImageRef]]] = {}
    for rt in stack.runtimes:
        if not rt.snapshot_id:
            continue
        needed = [img for img in images.values() if img.user in (AGENT, rt.name, "arg")]
        users, wanted = targets.get(rt.snapshot_id, ((), []))
        targets[rt.snapshot_id] = ((*users, rt.name), wanted + needed)
    return targets


def check(
    stack: StackInfo,
    images: Mapping[str, ImageRef],
    ec2: Ec2Ops,
    snapshot_id: str | None = None,
) -> list[Finding]:
    """One finding per snapshot the stack configures (or the one given)."""
    findings = []
    for snap, (users, wanted) in _targets(stack, snapshot_id, images).items():
        try:
            tags = ec2.snapshot_tags(snap)
        except ClientError as err:
            findings.append(Finding(snap, users, (), f"cannot read it: {err}"))
            continue
        held = digests_in_tags(tags)
        missing = {img.digest: img for img in wanted if img.digest not in held}
        # Another stack's snapshot is fine when it holds the same digests.
        note = None
        if not held:
            note = "it carries no sdfleet:digest:* tags (not built by sdfleet snapshot build)"
        built_on = tags.get("sdfleet:bottlerocket")
        runs = f"{stack.variant}/{stack.bottlerocket_version}"
        warning = None
        if built_on and built_on != runs:
            warning = f"built on {built_on}, the nodes run {runs}: rebuild it after the bump"
        findings.append(Finding(snap, users, tuple(missing.values()), note, warning))
    return findings


def report(
    stack: StackInfo, findings: Sequence[Finding], log: Callable[[str], None] = print
) -> int:
    """Print the verdict; 0 when every snapshot holds every image, else 1."""
    if not findings:
        log(
            f"stack {stack.name!r} configures no gpu.snapshotId; nothing to check"
            " (pass --snapshot-id to check one)"
        )
        return 1
    for f in findings:
        who = ", ".join(f.users)
        if f.warning:
            log(f"NOTE {f.snapshot_id} ({who}): {f.warning}")
        if f.ok:
            log(f"OK   {f.snapshot_id} ({who}): holds every image the stack deploys")
            continue
        log(f"FAIL {f.snapshot_id} ({who}): {f.note or 'images missing'}")
        for img in f.missing:
            log(f"       missing {img.user}: {img.pull_ref}")
    if all(f.ok for f in findings):
        return 0
    log("Rebuild with `sdfleet snapshot build --stack " + stack.name + "` and set the new id.")
    return 1
