"""The ``sdfleet snapshot`` subcommands (wired into sdfleet/cli.py by :func:`add_parser`)."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from sdfleet.snapshot.build import BuildError, BuildOptions, build
from sdfleet.snapshot.check import check, report
from sdfleet.snapshot.cloud import Ec2Ops, NodeShell
from sdfleet.snapshot.images import (
    ImageError,
    ImageRef,
    parse_image_args,
    stack_images,
    stack_outputs,
)
from sdfleet.snapshot.stack import StackInfo, load_stack

SNAPSHOT_HELP = """\
Image-cache snapshots for the GPU nodes. A runtime whose gpu.snapshotId names one boots its
Bottlerocket data volume (/dev/xvdb) from it, with the runtime and agent images already in
containerd, so a new node skips the multi-GB pull. See docs/image-cache.md.
"""

BUILD_HELP = """\
Build an EBS snapshot holding the images the stack deploys, and print its id.

Steps: resolve the Bottlerocket AMI the GPU nodes run (the x86_64 NVIDIA variant of the
stack's Kubernetes and pinned Bottlerocket version, from the public SSM parameter
/aws/service/bottlerocket/aws-k8s-<k8s>-nvidia/x86_64/<version>/image_id); create a
temporary security group (no ingress) and an IAM role and instance profile (SSM managed
instance policy only); launch one instance in a private subnet of the stack's VPC (the
subnets tagged karpenter.sh/discovery=<cluster>); pull every image by digest with ctr
through SSM Run Command (`apiclient exec admin sheltie ctr ... images pull`, as AWS's
bottlerocket-images-cache sample does; ECR images authenticate with a 12-hour registry
token, which SSM keeps in the command's parameters); stop the instance; snapshot its data
volume; tag the snapshot with sdfleet:stack and one sdfleet:digest:<digest> tag per image.

Everything it creates except the snapshot (instance, security group, role, instance
profile, and an incomplete snapshot) is deleted when it finishes, fails, or is stopped with
Ctrl-C or SIGTERM. If a deletion fails, it says what is left.

Images: by default the agent and runtime images the deployed stack runs (pulumi stack
output --json, or --outputs FILE) with the config's overrides (sdfleet:agent.imageRef,
runtimes[i].image); or exactly the --image arguments. Only digest-pinned references.

Cost: the instance (of --instance-type; default the first GPU type of the first runtime)
is billed for the minutes it runs, plus its EBS volumes and the NAT traffic of the pulls.
The snapshot is then billed per GB-month of the data it holds (the compressed and unpacked
image layers), until you delete it. New nodes read a restored volume lazily from S3 at first;
the EC2NodeClass raises the data volume's gp3 IOPS/throughput for that (extra cost per
provisioned IOPS and MiB/s while a node lives). Prices: https://aws.amazon.com/ec2/pricing/
and https://aws.amazon.com/ebs/pricing/ (snapshot storage, gp3 performance).

Needs AWS credentials allowed to: ssm:GetParameter, ssm:SendCommand,
ssm:GetCommandInvocation, ssm:DescribeInstanceInformation, ec2:RunInstances/StopInstances/
TerminateInstances/Describe*/CreateSecurityGroup/DeleteSecurityGroup/CreateSnapshot/
DeleteSnapshot/CreateTags, iam:CreateRole/AttachRolePolicy/CreateInstanceProfile/
AddRoleToInstanceProfile/PassRole and their deletes, ecr:GetAuthorizationToken.
"""

CHECK_HELP = """\
Tell whether the snapshots a stack configures (runtimes[i].gpu.snapshotId in
stacks/Pulumi.<stack>.yaml), or the one given with --snapshot-id, hold the images the stack
would deploy. It compares the snapshot's sdfleet:digest:* tags (written by `snapshot build`)
with the image digests from the stack outputs and config overrides, or the --image
arguments. A runtime needs the agent image and its own. Reads tags only (ec2:DescribeSnapshots);
costs nothing. Exit code 0 when every snapshot holds every image, 1 otherwise (a missing
image makes nodes pull it at start: slower, not broken), 2 on a usage or config error.
"""

ClientFactory = Callable[[str | None], tuple[Ec2Ops, NodeShell]]


def default_clients(region: str | None) -> tuple[Ec2Ops, NodeShell]:
    import boto3

    session = boto3.Session(region_name=region)
    return Ec2Ops(session), NodeShell(session)


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--stack", default="dev", help="stack name (stacks/Pulumi.<stack>.yaml)")
    p.add_argument("--project-dir", type=Path, help="folder with Pulumi.yaml (default: cwd)")
    p.add_argument("--region", help="AWS region (default: the stack's aws:region)")
    p.add_argument(
        "--image",
        action="append",
        default=[],
        metavar="[NAME=]REF",
        help="an image to cache/expect, repository@sha256:<digest>; repeatable; replaces the"
        " images read from the stack (NAME: the runtime it serves, for messages)",
    )
    p.add_argument(
        "--outputs",
        type=Path,
        help="the stack's outputs as printed by `pulumi stack output --json` (default: run"
        " the pulumi CLI when it is installed)",
    )


def add_parser(sub: Any) -> None:
    """``sdfleet snapshot {build,check}`` on the top-level subparsers."""
    fmt = argparse.RawDescriptionHelpFormatter
    p = sub.add_parser(
        "snapshot",
        help="build or check GPU node image-cache snapshots",
        description=SNAPSHOT_HELP,
        formatter_class=fmt,
    )
    tools = p.add_subparsers(dest="snapshot_command", required=True)
    b = tools.add_parser(
        "build",
        help="build an image-cache EBS snapshot for a stack",
        description=BUILD_HELP,
        formatter_class=fmt,
    )
    _common(b)
    b.add_argument(
        "--instance-type",
        help="builder instance type (default: the first runtime's first gpu.instanceTypes entry)",
    )
    b.add_argument(
        "--volume-size",
        type=int,
        help="data volume GiB (default: the smallest"
        " runtime dataVolumeSizeGiB, so the snapshot fits every runtime's volume)",
    )
    b.add_argument("--subnet-id", help="private subnet to launch in (default: discovered)")
    b.add_argument("--pull-timeout", type=int, default=3600, help="seconds per image pull")
    b.set_defaults(func=run_build)
    c = tools.add_parser(
        "check",
        help="does a configured snapshot hold the stack's images?",
        description=CHECK_HELP,
        formatter_class=fmt,
    )
    _common(c)
    c.add_argument("--snapshot-id", help="check this snapshot instead of the configured ones")
    c.set_defaults(func=run_check)


def _images(args: argparse.Namespace, stack: StackInfo, project_dir: Path) -> dict[str, ImageRef]:
    if args.image:
        return {f"{img.user}#{i}": img for i, img in enumerate(parse_image_args(args.image))}
    if args.outputs:
        outputs = json.loads(args.outputs.read_text())
    else:
        outputs = stack_outputs(stack.name, cwd=str(project_dir))
    overrides = {rt.name: rt.image for rt in stack.runtimes}
    return stack_images(outputs, stack.agent_image, overrides)


def _load(args: argparse.Namespace) -> tuple[StackInfo, dict[str, ImageRef]]:
    from sdfleet.cli import find_project_dir

    project_dir = (args.project_dir or find_project_dir(Path.cwd())).resolve()
    stack = load_stack(project_dir, args.stack)
    return stack, _images(args, stack, project_dir)


def run_build(args: argparse.Namespace, clients: ClientFactory | None = None) -> int:
    try:
        stack, images = _load(args)
    except (FileNotFoundError, ValueError) as err:  # ImageError is a ValueError
        print(f"sdfleet snapshot build: {err}", file=sys.stderr)
        return 2
    first = stack.runtimes[0]
    opts = BuildOptions(
        instance_type=args.instance_type or first.instance_types[0],
        volume_gib=args.volume_size or min(rt.data_volume_size_gib for rt in stack.runtimes),
        subnet_id=args.subnet_id,
        pull_timeout=args.pull_timeout,
    )
    ec2, shell = (clients or default_clients)(args.region or stack.region)
    try:
        snapshot_id = build(stack, list(images.values()), opts, ec2, shell)
    except (BuildError, ImageError, LookupError, TimeoutError, ClientError, BotoCoreError) as err:
        print(f"sdfleet snapshot build: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("sdfleet snapshot build: interrupted; temporary resources deleted", file=sys.stderr)
        return 130
    print(f"\nSnapshot: {snapshot_id}  (data volume {opts.volume_gib} GiB)")
    print("Use it for every runtime (each one's dataVolumeSizeGiB must stay >= the size above):")
    for line in stack.set_commands(snapshot_id):
        print(f"  {line}")
    return 0


def run_check(args: argparse.Namespace, clients: ClientFactory | None = None) -> int:
    try:
        stack, images = _load(args)
    except (FileNotFoundError, ValueError) as err:
        print(f"sdfleet snapshot check: {err}", file=sys.stderr)
        return 2
    ec2, _shell = (clients or default_clients)(args.region or stack.region)
    try:
        findings = check(stack, images, ec2, args.snapshot_id)
    except BotoCoreError as err:  # no credentials, no region, no network
        print(f"sdfleet snapshot check: {err}", file=sys.stderr)
        return 2
    return report(stack, findings)
