"""sdfleet snapshot build/check against moto (EC2, IAM, ECR, STS) with a fake node shell.

moto cannot run commands on an instance (SSM Run Command to Bottlerocket) and does not let
anyone create the public /aws/service/... parameters, so those two parts are faked: the
shell by :class:`FakeShell`, the AMI parameter by :class:`MotoEc2` (it records the name).
"""

from __future__ import annotations

import base64
import json
import os
import signal
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws

from sdfleet.cli import main
from sdfleet.snapshot import cli as snapshot_cli
from sdfleet.snapshot import cloud
from sdfleet.snapshot.cloud import CommandResult, Ec2Ops

ROOT = Path(__file__).resolve().parent.parent
REGION = "us-east-1"
CLUSTER = "sdfleet-dev"  # the dev stack sets no cluster.name
AGENT = "123456789012.dkr.ecr.us-east-1.amazonaws.com/sdfleet-agent@sha256:" + "a" * 64
SDWEBUI = "123456789012.dkr.ecr.us-east-1.amazonaws.com/sdfleet-sdwebui@sha256:" + "b" * 64
COMFY = "public.ecr.aws/example/comfyui:v1@sha256:" + "c" * 64
_SSM_POLICY = json.dumps(
    {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Action": "ssm:UpdateInstanceInformation", "Resource": "*"}
        ],
    }
)
AMI_PARAMETER = "/aws/service/bottlerocket/aws-k8s-1.33-nvidia/x86_64/1.63.0/image_id"


class MotoEc2(Ec2Ops):
    """Ec2Ops on moto, except the public SSM parameter (reserved names cannot be created)."""

    ami_id = ""
    asked: list[str]

    def ssm_parameter(self, name: str) -> str:
        self.asked.append(name)
        return self.ami_id


class FakeShell:
    """The SSM Run Command side: records commands; ``on_pull`` may fail or interrupt."""

    def __init__(self, on_pull: Callable[[int, str], CommandResult] | None = None) -> None:
        self.online: list[str] = []
        self.commands: list[str] = []
        self.on_pull = on_pull

    def wait_online(self, instance_id: str, timeout: float) -> None:
        self.online.append(instance_id)

    def run(self, instance_id: str, commands: list[str], timeout: int) -> CommandResult:
        self.commands.extend(commands)
        if self.on_pull is not None:
            return self.on_pull(len(self.commands), commands[0])
        return CommandResult("Success", "done")


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    for key in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    with mock_aws():
        session = boto3.Session(region_name=REGION)
        ec2 = session.client("ec2")
        vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
        subnet = ec2.create_subnet(
            VpcId=vpc,
            CidrBlock="10.0.0.0/19",
            TagSpecifications=[
                {
                    "ResourceType": "subnet",
                    "Tags": [{"Key": "karpenter.sh/discovery", "Value": CLUSTER}],
                }
            ],
        )["Subnet"]["SubnetId"]
        ec2.create_subnet(VpcId=vpc, CidrBlock="10.0.64.0/22")  # untagged: never chosen
        MotoEc2.ami_id = "ami-0123456789abcdef0"  # moto launches any id
        # The role gets the AWS-managed SSM policy. moto knows AWS-managed policies only when
        # it loads all of them (seconds per test), so a same-named account policy stands in.
        policy = session.client("iam").create_policy(
            PolicyName="AmazonSSMManagedInstanceCore", PolicyDocument=_SSM_POLICY
        )["Policy"]["Arn"]
        monkeypatch.setattr(cloud, "SSM_CORE_POLICY", policy.replace(":aws:", ":{partition}:", 1))
        yield {"session": session, "vpc": vpc, "subnet": subnet}


def _use(monkeypatch: pytest.MonkeyPatch, session: Any, shell: FakeShell) -> MotoEc2:
    ops = MotoEc2(session, sleep=lambda s: None, waiter_delay=0)
    ops.asked = []
    monkeypatch.setattr(snapshot_cli, "default_clients", lambda region: (ops, shell))
    return ops


def _leftovers(session: Any) -> dict[str, list[str]]:
    ec2, iam = session.client("ec2"), session.client("iam")
    reservations = ec2.describe_instances()["Reservations"]
    return {
        "instances": [
            i["InstanceId"]
            for r in reservations
            for i in r["Instances"]
            if i["State"]["Name"] != "terminated"
        ],
        "groups": [
            g["GroupId"]
            for g in ec2.describe_security_groups()["SecurityGroups"]
            if g["GroupName"] != "default"
        ],
        "roles": [r["RoleName"] for r in iam.list_roles()["Roles"]],
        "profiles": [
            p["InstanceProfileName"] for p in iam.list_instance_profiles()["InstanceProfiles"]
        ],
    }


NOTHING_LEFT: dict[str, list[str]] = {"instances": [], "groups": [], "roles": [], "profiles": []}


def _snapshots(session: Any) -> list[dict[str, Any]]:
    # moto's stock AMIs come with snapshots of their own; ours carry sdfleet:stack.
    ec2 = session.client("ec2")
    tagged = [{"Name": "tag-key", "Values": ["sdfleet:stack"]}]
    return list(ec2.describe_snapshots(OwnerIds=["self"], Filters=tagged)["Snapshots"])


_BUILD = ["snapshot", "build", "--stack", "dev", "--project-dir", str(ROOT), "--region", REGION]
_IMAGES = ["--image", f"agent={AGENT}", "--image", f"sd15={SDWEBUI}", "--image", f"flux={COMFY}"]


def _build(*extra: str) -> int:
    return main([*_BUILD, *_IMAGES, *extra])


# ------------------------------------------------------------------------------------------
# build


def test_build_happy_path_prints_the_id_tags_digests_and_deletes_the_rest(
    aws: dict[str, Any], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    shell = FakeShell()
    ops = _use(monkeypatch, aws["session"], shell)
    assert _build() == 0
    out = capsys.readouterr().out

    (snap,) = _snapshots(aws["session"])
    snapshot_id = snap["SnapshotId"]
    tags = {t["Key"]: t["Value"] for t in snap["Tags"]}
    assert tags["sdfleet:stack"] == "dev"
    assert tags["sdfleet:bottlerocket"] == "aws-k8s-1.33-nvidia/v1.63.0"
    assert tags[f"sdfleet:digest:sha256:{'a' * 64}"].endswith("/sdfleet-agent")
    assert tags[f"sdfleet:digest:sha256:{'b' * 64}"].endswith("/sdfleet-sdwebui")
    assert tags[f"sdfleet:digest:sha256:{'c' * 64}"] == "public.ecr.aws/example/comfyui"
    # The pinned NVIDIA variant, resolved through its public SSM parameter.
    assert ops.asked == [AMI_PARAMETER]
    assert f"Snapshot: {snapshot_id}" in out
    assert (
        f"pulumi config set --path 'sdfleet:runtimes[0].gpu.snapshotId' {snapshot_id} --stack dev"
        in out
    )
    assert f"'sdfleet:runtimes[1].gpu.snapshotId' {snapshot_id}" in out
    # One pull per image, by digest, into the kubelet's namespace; ECR ones with a token.
    assert len(shell.commands) == 3
    for command in shell.commands:
        assert command.startswith("apiclient exec admin sheltie ctr -a /run/containerd/")
        assert " -n k8s.io images pull --platform linux/amd64 " in command
    assert shell.commands[0].endswith(" " + AGENT)
    assert "--user 'AWS:" in shell.commands[0]
    assert "--user" not in shell.commands[2]  # public registry
    assert shell.commands[2].endswith("public.ecr.aws/example/comfyui@sha256:" + "c" * 64)
    assert _leftovers(aws["session"]) == NOTHING_LEFT


def test_the_builder_instance_matches_the_nodes(
    aws: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Launched in the discovered private subnet, IMDSv2 only, data volume sized to fit
    every runtime (the smallest dataVolumeSizeGiB: 100 in the dev stack), admin container on."""
    seen: dict[str, Any] = {}
    session = aws["session"]

    def inspect(n: int, command: str) -> CommandResult:
        ec2 = session.client("ec2")
        (res,) = ec2.describe_instances()["Reservations"]
        seen["instance"] = instance = res["Instances"][0]
        data = [m for m in instance["BlockDeviceMappings"] if m["DeviceName"] == "/dev/xvdb"]
        seen["volume"] = ec2.describe_volumes(VolumeIds=[data[0]["Ebs"]["VolumeId"]])["Volumes"]
        iam = session.client("iam")
        (profile,) = iam.list_instance_profiles()["InstanceProfiles"]
        seen["policies"] = [
            p["PolicyName"]
            for role in profile["Roles"]
            for p in iam.list_attached_role_policies(RoleName=role["RoleName"])["AttachedPolicies"]
        ]
        seen["user_data"] = ec2.describe_instance_attribute(
            InstanceId=instance["InstanceId"], Attribute="userData"
        )["UserData"]["Value"]
        return CommandResult("Success", "")

    _use(monkeypatch, session, FakeShell(on_pull=inspect))
    assert _build() == 0
    instance = seen["instance"]
    assert instance["SubnetId"] == aws["subnet"]
    assert instance["InstanceType"] == "g6.2xlarge"  # the first runtime's first type
    assert instance["MetadataOptions"]["HttpTokens"] == "required"
    assert seen["policies"] == ["AmazonSSMManagedInstanceCore"]  # and nothing else
    (volume,) = seen["volume"]
    assert (volume["Size"], volume["VolumeType"], volume["Encrypted"]) == (100, "gp3", True)
    text = base64.b64decode(seen["user_data"]).decode()
    assert "[settings.host-containers.admin]\nenabled = true" in text


def test_a_failed_pull_deletes_everything_and_hides_the_token(
    aws: dict[str, Any], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def fail_second(n: int, command: str) -> CommandResult:
        if n < 2:
            return CommandResult("Success", "")
        token = command.split("--user 'AWS:")[1].split("'")[0]
        return CommandResult("Failed", f"ctr: failed to resolve, auth AWS:{token} rejected")

    _use(monkeypatch, aws["session"], FakeShell(on_pull=fail_second))
    assert _build() == 1
    err = capsys.readouterr().err
    assert "pull of 123456789012.dkr.ecr.us-east-1.amazonaws.com/sdfleet-sdwebui@" in err
    assert "ended Failed" in err and "AWS:***" in err
    assert _snapshots(aws["session"]) == []
    assert _leftovers(aws["session"]) == NOTHING_LEFT


def test_ctrl_c_during_the_pulls_deletes_everything(
    aws: dict[str, Any], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def interrupt(n: int, command: str) -> CommandResult:
        raise KeyboardInterrupt

    _use(monkeypatch, aws["session"], FakeShell(on_pull=interrupt))
    assert _build() == 130
    captured = capsys.readouterr()
    assert "build interrupted; deleting what it created" in captured.out
    assert "interrupted; temporary resources deleted" in captured.err
    assert _leftovers(aws["session"]) == NOTHING_LEFT


def test_sigterm_while_waiting_for_the_snapshot_deletes_it_too(
    aws: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    ops = _use(monkeypatch, aws["session"], FakeShell())

    def killed(snapshot_id: str) -> None:
        os.kill(os.getpid(), signal.SIGTERM)  # the handler raises KeyboardInterrupt here

    monkeypatch.setattr(ops, "wait_snapshot", killed)
    assert _build() == 130
    assert _snapshots(aws["session"]) == []  # the incomplete snapshot is not kept
    assert _leftovers(aws["session"]) == NOTHING_LEFT
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # handlers restored


@pytest.mark.parametrize("call", ["create_security_group", "run_instance", "create_snapshot"])
def test_interrupt_after_a_create_call_succeeded_leaks_nothing(
    call: str, aws: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ctrl-C lands after AWS created the resource but before its id came back."""
    ops = _use(monkeypatch, aws["session"], FakeShell())
    original = getattr(ops, call)

    def created_then_interrupted(*args: Any, **kwargs: Any) -> Any:
        original(*args, **kwargs)
        raise KeyboardInterrupt

    monkeypatch.setattr(ops, call, created_then_interrupted)
    assert _build() == 130
    assert _snapshots(aws["session"]) == []
    assert _leftovers(aws["session"]) == NOTHING_LEFT


def test_security_group_deletion_waits_for_the_instance_interface(
    aws: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """DependencyViolation while the terminated instance's ENI lingers: retried, not fatal."""
    ops = _use(monkeypatch, aws["session"], FakeShell())
    real = ops._client("ec2")
    refusals = iter([True, True])

    class LingeringEni:
        def __getattr__(self, attr: str) -> Any:
            return getattr(real, attr)

        def delete_security_group(self, **kwargs: Any) -> Any:
            if next(refusals, False):
                raise ClientError(
                    {"Error": {"Code": "DependencyViolation", "Message": "in use"}},
                    "DeleteSecurityGroup",
                )
            return real.delete_security_group(**kwargs)

    ops._clients["ec2"] = LingeringEni()
    slept: list[float] = []
    ops.sleep = slept.append
    assert _build() == 0
    assert slept == [10, 10]
    assert _leftovers(aws["session"]) == NOTHING_LEFT


def test_build_refuses_tag_only_images(
    aws: dict[str, Any], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _use(monkeypatch, aws["session"], FakeShell())
    assert _build("--image", "ghcr.io/ai-dock/comfyui:v2") == 2
    assert "is not pinned by digest" in capsys.readouterr().err
    assert _leftovers(aws["session"]) == NOTHING_LEFT


def test_build_reads_images_from_stack_outputs(
    aws: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    shell = FakeShell()
    _use(monkeypatch, aws["session"], shell)
    outputs = tmp_path / "outputs.json"
    outputs.write_text(json.dumps({"agentImage": AGENT, "runtimeImages": {"sd15": SDWEBUI}}))
    base = ["snapshot", "build", "--stack", "dev", "--project-dir", str(ROOT)]
    # flux has no image in the outputs and no override: refused before anything is created.
    assert main([*base, "--outputs", str(outputs)]) == 2
    assert "no image known for flux" in capsys.readouterr().err
    outputs.write_text(
        json.dumps({"agentImage": AGENT, "runtimeImages": {"sd15": SDWEBUI, "flux": SDWEBUI}})
    )
    assert main([*base, "--outputs", str(outputs)]) == 0
    assert len(shell.commands) == 2  # runtimes sharing an image pull it once


def test_the_role_gets_the_aws_managed_ssm_policy_in_any_partition() -> None:
    arn = cloud.SSM_CORE_POLICY.format(partition="aws-cn")
    assert arn == "arn:aws-cn:iam::aws:policy/AmazonSSMManagedInstanceCore"
