"""``sdfleet snapshot build``: an EBS snapshot of a Bottlerocket data volume holding the images.

The approach is the one of AWS's bottlerocket-images-cache sample: Bottlerocket has no shell,
so the pulls run through SSM Run Command in the control container, which calls
``apiclient exec admin sheltie`` (a root shell in the host's namespaces, via the admin
container) to run ``ctr`` against the node's containerd, in the ``k8s.io`` namespace the
kubelet reads. The data volume (``/dev/xvdb``: containerd's store) is snapshotted with the
instance stopped, so the filesystem is consistent.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from sdfleet.snapshot.cloud import Ec2Ops, InstanceSpec, NodeShell
from sdfleet.snapshot.images import STACK_TAG, ImageRef, snapshot_tags, unique
from sdfleet.snapshot.ledger import CleanupLedger, interrupts_raise
from sdfleet.snapshot.stack import StackInfo

# The admin container must run for `sheltie`; the control container runs the SSM agent. No
# cluster settings: containerd and the SSM agent start, the kubelet never joins a cluster.
USER_DATA = """\
[settings.host-containers.admin]
enabled = true

[settings.host-containers.control]
enabled = true
"""
_CTR = "apiclient exec admin sheltie ctr -a /run/containerd/containerd.sock -n k8s.io"


class BuildError(RuntimeError):
    """A step failed; everything created so far has been cleaned up (or is listed)."""


@dataclass(frozen=True)
class BuildOptions:
    instance_type: str
    volume_gib: int
    subnet_id: str | None = None
    pull_timeout: int = 3600
    online_timeout: int = 600


def pull_command(image: ImageRef, password: str | None) -> str:
    """The ctr pull for one image. The label marks it as the CRI's own (as a kubelet pull
    would), ``--platform`` keeps only the GPU nodes' architecture."""
    user = f" --user 'AWS:{password}'" if password else ""
    return (
        f"{_CTR} images pull --platform linux/amd64"
        f" --label io.cri-containerd.image=managed{user} {image.pull_ref}"
    )


def _scrub(text: str, secrets_: Sequence[str]) -> str:
    for value in secrets_:
        text = text.replace(value, "***")
    return text


def _pull_all(
    images: Sequence[ImageRef],
    instance_id: str,
    ec2: Ec2Ops,
    shell: NodeShell,
    timeout: int,
    log: Callable[[str], None],
) -> None:
    # ECR tokens last 12 hours; one per registry region is enough for the whole build.
    passwords: dict[str, str] = {}
    for image in images:
        region = image.ecr_region
        if region and region not in passwords:
            passwords[region] = ec2.ecr_password(region)
        password = passwords.get(region) if region else None
        log(f"  pulling {image.pull_ref} ({image.user})")
        result = shell.run(instance_id, [pull_command(image, password)], timeout)
        if result.status != "Success":
            tail = _scrub(result.output, list(passwords.values()))[-2000:]
            raise BuildError(f"pull of {image.pull_ref} ended {result.status}: {tail}")


def _launch(
    stack: StackInfo,
    opts: BuildOptions,
    ec2: Ec2Ops,
    ledger: CleanupLedger,
    name: str,
    log: Callable[[str], None],
) -> str:
    tags = {"Name": name, STACK_TAG: stack.name, "sdfleet:purpose": "snapshot-build"}
    ami_id = ec2.ssm_parameter(stack.ami_parameter)
    log(f"[1/6] {stack.variant} {stack.bottlerocket_version}: {ami_id} ({stack.ami_parameter})")
    subnet_ids = [opts.subnet_id] if opts.subnet_id else list(stack.private_subnet_ids)
    subnet_id, vpc_id = ec2.private_subnet(stack.cluster_name, stack.vpc_id, subnet_ids)
    # Each undo is recorded before its create call and finds its resources by name, so an
    # interrupt in the middle of a call (created, reply lost) leaks nothing either.
    ledger.add(f"security group {name}", lambda: ec2.delete_security_groups_named(vpc_id, name))
    group_id = ec2.create_security_group(vpc_id, name, tags)
    ledger.add(f"instance profile and role {name}", lambda: ec2.delete_instance_profile(name))
    ec2.create_instance_profile(name, tags)
    spec = InstanceSpec(
        ami_id=ami_id,
        instance_type=opts.instance_type,
        subnet_id=subnet_id,
        security_group_id=group_id,
        instance_profile=name,
        data_volume_gib=opts.volume_gib,
        user_data=USER_DATA,
        tags=tags,
    )
    ledger.add(f"instance {name}", lambda: ec2.terminate_instances_named(name))
    instance_id = ec2.run_instance(spec)
    log(f"[2/6] launched {instance_id} ({opts.instance_type}) in {subnet_id} ({vpc_id})")
    return instance_id


def _steps(
    stack: StackInfo,
    images: Sequence[ImageRef],
    opts: BuildOptions,
    ec2: Ec2Ops,
    shell: NodeShell,
    ledger: CleanupLedger,
    log: Callable[[str], None],
) -> str:
    name = f"sdfleet-snapshot-{stack.name[:30]}-{secrets.token_hex(4)}"
    instance_id = _launch(stack, opts, ec2, ledger, name, log)
    ec2.wait_instance(instance_id, "running")
    shell.wait_online(instance_id, opts.online_timeout)
    log(f"[3/6] pulling {len(images)} images by digest through SSM")
    _pull_all(images, instance_id, ec2, shell, opts.pull_timeout, log)
    log("[4/6] stopping the instance (a consistent data volume)")
    ec2.stop_instance(instance_id)
    ec2.wait_instance(instance_id, "stopped")
    volume_id = ec2.data_volume(instance_id)
    tags = snapshot_tags(
        stack.name,
        images,
        {"Name": name, "sdfleet:bottlerocket": f"{stack.variant}/{stack.bottlerocket_version}"},
    )
    description = f"sdfleet image cache for stack {stack.name}: {len(images)} images"
    what = f"snapshot {name} (incomplete)"
    ledger.add(what, lambda: ec2.delete_snapshots_named(name))
    snapshot_id = ec2.create_snapshot(volume_id, description, tags)
    log(f"[5/6] snapshot {snapshot_id} of {volume_id}: waiting for it to complete")
    ec2.wait_snapshot(snapshot_id)
    ledger.keep(what)
    return snapshot_id


def build(
    stack: StackInfo,
    images: Sequence[ImageRef],
    opts: BuildOptions,
    ec2: Ec2Ops,
    shell: NodeShell,
    log: Callable[[str], None] = print,
) -> str:
    """The snapshot id. Whatever happens, every temporary resource is deleted before this
    returns or raises; a cleanup failure raises BuildError naming what is left."""
    images = unique(images)
    if not images:
        raise BuildError("no images to cache")
    ledger = CleanupLedger(log)
    snapshot_id: str | None = None
    try:
        with interrupts_raise():
            snapshot_id = _steps(stack, images, opts, ec2, shell, ledger, log)
    except BaseException as err:
        kind = "interrupted" if isinstance(err, KeyboardInterrupt) else "failed"
        log(f"build {kind}; deleting what it created")
        raise
    finally:
        if snapshot_id is not None:
            log("[6/6] deleting the temporary instance, security group and role")
        failures = ledger.run()
        if failures:
            left = "; ".join(failures)
            raise BuildError(f"cleanup incomplete, delete these by hand: {left}")
    assert snapshot_id is not None  # _steps returned or raised
    return snapshot_id
