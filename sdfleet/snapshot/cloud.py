"""The AWS operations the snapshot tools use, in two small classes.

:class:`Ec2Ops` is plain EC2/IAM/SSM-parameter/ECR work that moto emulates, so tests run it
as is. :class:`NodeShell` runs commands on the Bottlerocket instance through SSM Run
Command: moto cannot execute anything on an instance, so tests replace it with a fake.
"""

from __future__ import annotations

import base64
import functools
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import ClientError

# Policy the temporary instance role gets: the SSM agent in Bottlerocket's control container
# registers with it (Run Command). Pulls authenticate with a token passed on the command line.
SSM_CORE_POLICY = "arn:{partition}:iam::aws:policy/AmazonSSMManagedInstanceCore"
_EC2_TRUST = (
    '{"Version":"2012-10-17","Statement":[{"Effect":"Allow",'
    '"Principal":{"Service":"ec2.amazonaws.com"},"Action":"sts:AssumeRole"}]}'
)
DATA_DEVICE = "/dev/xvdb"
_LIVE_STATES = ["pending", "running", "stopping", "stopped", "shutting-down"]


def _tag_spec(kind: str, tags: Mapping[str, str]) -> dict[str, Any]:
    return {"ResourceType": kind, "Tags": [{"Key": k, "Value": v} for k, v in tags.items()]}


def _code(err: ClientError) -> str:
    return str(err.response.get("Error", {}).get("Code", ""))


@dataclass(frozen=True)
class InstanceSpec:
    ami_id: str
    instance_type: str
    subnet_id: str
    security_group_id: str
    instance_profile: str
    data_volume_gib: int
    user_data: str
    tags: Mapping[str, str]


@dataclass
class Ec2Ops:
    """EC2, IAM, SSM parameters and ECR tokens through boto3 (``session``: a boto3.Session)."""

    session: Any
    sleep: Callable[[float], None] = time.sleep
    waiter_delay: int = 15
    _clients: dict[str, Any] = field(default_factory=dict)

    def _client(self, name: str) -> Any:
        if name not in self._clients:
            self._clients[name] = self.session.client(name)
        return self._clients[name]

    def _wait(self, service: str, waiter: str, **kwargs: Any) -> None:
        config = {"Delay": self.waiter_delay, "MaxAttempts": 240}
        self._client(service).get_waiter(waiter).wait(WaiterConfig=config, **kwargs)

    def ssm_parameter(self, name: str) -> str:
        return str(self._client("ssm").get_parameter(Name=name)["Parameter"]["Value"])

    def private_subnet(
        self, cluster_name: str, vpc_id: str | None, subnet_ids: Sequence[str]
    ) -> tuple[str, str]:
        """(subnet, vpc): the configured private subnets, else those tagged for Karpenter."""
        ec2 = self._client("ec2")
        if subnet_ids:
            subnets = ec2.describe_subnets(SubnetIds=list(subnet_ids))["Subnets"]
        else:
            filters = [{"Name": "tag:karpenter.sh/discovery", "Values": [cluster_name]}]
            if vpc_id:
                filters.append({"Name": "vpc-id", "Values": [vpc_id]})
            subnets = ec2.describe_subnets(Filters=filters)["Subnets"]
        if not subnets:
            raise LookupError(
                f"no private subnet tagged karpenter.sh/discovery={cluster_name}: is the stack"
                " deployed in this account and region? (or pass --subnet-id)"
            )
        best = max(subnets, key=lambda s: (s.get("AvailableIpAddressCount", 0), s["SubnetId"]))
        return str(best["SubnetId"]), str(best["VpcId"])

    def create_security_group(self, vpc_id: str, name: str, tags: Mapping[str, str]) -> str:
        # No ingress rule: SSM and the registries are reached outbound (default egress rule).
        return str(
            self._client("ec2").create_security_group(
                GroupName=name,
                Description="sdfleet snapshot build (temporary, no ingress)",
                VpcId=vpc_id,
                TagSpecifications=[_tag_spec("security-group", tags)],
            )["GroupId"]
        )

    def delete_security_groups_named(self, vpc_id: str, name: str) -> None:
        """Every group of that name in the VPC, so a create call cut short is covered too;
        retried while a terminated instance's network interface still holds the group."""
        ec2 = self._client("ec2")
        filters = [
            {"Name": "vpc-id", "Values": [vpc_id]},
            {"Name": "group-name", "Values": [name]},
        ]
        for group in ec2.describe_security_groups(Filters=filters)["SecurityGroups"]:
            for attempt in range(12):
                try:
                    ec2.delete_security_group(GroupId=group["GroupId"])
                    break
                except ClientError as err:
                    if _code(err) == "InvalidGroup.NotFound":
                        break
                    if _code(err) != "DependencyViolation" or attempt == 11:
                        raise
                    self.sleep(10)

    def create_instance_profile(self, name: str, tags: Mapping[str, str]) -> str:
        """A role and an instance profile of the same name; the caller records both for cleanup."""
        iam = self._client("iam")
        tag_list = [{"Key": k, "Value": v} for k, v in tags.items()]
        iam.create_role(RoleName=name, AssumeRolePolicyDocument=_EC2_TRUST, Tags=tag_list)
        partition = self._client("sts").get_caller_identity()["Arn"].split(":")[1]
        iam.attach_role_policy(RoleName=name, PolicyArn=SSM_CORE_POLICY.format(partition=partition))
        iam.create_instance_profile(InstanceProfileName=name, Tags=tag_list)
        iam.add_role_to_instance_profile(InstanceProfileName=name, RoleName=name)
        self._wait("iam", "instance_profile_exists", InstanceProfileName=name)
        return name

    def delete_instance_profile(self, name: str) -> None:
        """Undo :meth:`create_instance_profile`, whatever part of it happened."""
        iam = self._client("iam")
        steps: list[Callable[[], Any]] = [
            lambda: iam.remove_role_from_instance_profile(InstanceProfileName=name, RoleName=name),
            lambda: iam.delete_instance_profile(InstanceProfileName=name),
        ]
        try:
            for policy in iam.list_attached_role_policies(RoleName=name)["AttachedPolicies"]:
                detach = functools.partial(
                    iam.detach_role_policy, RoleName=name, PolicyArn=policy["PolicyArn"]
                )
                steps.append(detach)
        except ClientError as err:
            if _code(err) != "NoSuchEntity":
                raise
        steps.append(lambda: iam.delete_role(RoleName=name))
        for step in steps:
            try:
                step()
            except ClientError as err:
                if _code(err) != "NoSuchEntity":
                    raise

    def run_instance(self, spec: InstanceSpec, attempts: int = 10) -> str:
        """Launch; retried while a new instance profile is not yet visible to EC2."""
        request = {
            "ImageId": spec.ami_id,
            "InstanceType": spec.instance_type,
            "MinCount": 1,
            "MaxCount": 1,
            "SubnetId": spec.subnet_id,
            "SecurityGroupIds": [spec.security_group_id],
            "IamInstanceProfile": {"Name": spec.instance_profile},
            "UserData": spec.user_data,  # botocore base64-encodes it for RunInstances
            "MetadataOptions": {"HttpTokens": "required", "HttpPutResponseHopLimit": 1},
            "InstanceInitiatedShutdownBehavior": "stop",
            "BlockDeviceMappings": [
                {
                    "DeviceName": DATA_DEVICE,
                    "Ebs": {
                        "VolumeSize": spec.data_volume_gib,
                        "VolumeType": "gp3",
                        "Encrypted": True,
                        "DeleteOnTermination": True,
                    },
                }
            ],
            "TagSpecifications": [
                _tag_spec("instance", spec.tags),
                _tag_spec("volume", spec.tags),
            ],
        }
        for attempt in range(attempts):
            try:
                reply = self._client("ec2").run_instances(**request)
                return str(reply["Instances"][0]["InstanceId"])
            except ClientError as err:
                propagating = _code(err) == "InvalidParameterValue" and "profile" in str(err)
                if not propagating or attempt == attempts - 1:
                    raise
                self.sleep(5)
        raise AssertionError("unreachable")

    def wait_instance(self, instance_id: str, state: str) -> None:
        """Wait for ``running``, ``stopped`` or ``terminated``."""
        self._wait("ec2", f"instance_{state}", InstanceIds=[instance_id])

    def stop_instance(self, instance_id: str) -> None:
        self._client("ec2").stop_instances(InstanceIds=[instance_id])

    def terminate_instances_named(self, name: str) -> None:
        """Every live instance tagged ``Name=name`` (tags are applied at launch, so this also
        finds an instance whose RunInstances reply never arrived)."""
        ec2 = self._client("ec2")
        filters = [
            {"Name": "tag:Name", "Values": [name]},
            {"Name": "instance-state-name", "Values": _LIVE_STATES},
        ]
        reservations = ec2.describe_instances(Filters=filters)["Reservations"]
        ids = [i["InstanceId"] for r in reservations for i in r["Instances"]]
        if ids:
            ec2.terminate_instances(InstanceIds=ids)
            self._wait("ec2", "instance_terminated", InstanceIds=ids)

    def data_volume(self, instance_id: str) -> str:
        reply = self._client("ec2").describe_instances(InstanceIds=[instance_id])
        instance = reply["Reservations"][0]["Instances"][0]
        for mapping in instance.get("BlockDeviceMappings", []):
            if mapping["DeviceName"] == DATA_DEVICE:
                return str(mapping["Ebs"]["VolumeId"])
        raise LookupError(f"{instance_id} has no {DATA_DEVICE} (the Bottlerocket data volume)")

    def create_snapshot(self, volume_id: str, description: str, tags: Mapping[str, str]) -> str:
        return str(
            self._client("ec2").create_snapshot(
                VolumeId=volume_id,
                Description=description,
                TagSpecifications=[_tag_spec("snapshot", tags)],
            )["SnapshotId"]
        )

    def wait_snapshot(self, snapshot_id: str) -> None:
        self._wait("ec2", "snapshot_completed", SnapshotIds=[snapshot_id])

    def delete_snapshots_named(self, name: str) -> None:
        """Every snapshot of this account tagged ``Name=name`` (tagged at creation)."""
        ec2 = self._client("ec2")
        filters = [{"Name": "tag:Name", "Values": [name]}]
        for snap in ec2.describe_snapshots(OwnerIds=["self"], Filters=filters)["Snapshots"]:
            try:
                ec2.delete_snapshot(SnapshotId=snap["SnapshotId"])
            except ClientError as err:
                if _code(err) != "InvalidSnapshot.NotFound":
                    raise

    def snapshot_tags(self, snapshot_id: str) -> dict[str, str]:
        snaps = self._client("ec2").describe_snapshots(SnapshotIds=[snapshot_id])["Snapshots"]
        return {t["Key"]: t["Value"] for t in snaps[0].get("Tags", [])}

    def ecr_password(self, region: str) -> str:
        """A registry token (valid 12 hours) for ``ctr --user AWS:<token>``."""
        client = self.session.client("ecr", region_name=region)
        token = client.get_authorization_token()["authorizationData"][0]["authorizationToken"]
        return base64.b64decode(token).decode().partition(":")[2]


@dataclass(frozen=True)
class CommandResult:
    status: str  # SSM's: Success, Failed, TimedOut, Cancelled, ...
    output: str


@dataclass
class NodeShell:
    """Commands on the instance through SSM Run Command (the control container's agent)."""

    session: Any
    sleep: Callable[[float], None] = time.sleep
    poll_seconds: float = 5.0

    def wait_online(self, instance_id: str, timeout: float) -> None:
        ssm = self.session.client("ssm")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            info = ssm.describe_instance_information(
                Filters=[{"Key": "InstanceIds", "Values": [instance_id]}]
            )["InstanceInformationList"]
            if info and info[0].get("PingStatus") == "Online":
                return
            self.sleep(self.poll_seconds)
        raise TimeoutError(f"{instance_id} did not register with SSM within {timeout:.0f} s")

    def run(self, instance_id: str, commands: Sequence[str], timeout: int) -> CommandResult:
        ssm = self.session.client("ssm")
        command_id = ssm.send_command(
            InstanceIds=[instance_id],
            DocumentName="AWS-RunShellScript",
            Comment="sdfleet snapshot build: image pull",
            Parameters={"commands": list(commands), "executionTimeout": [str(timeout)]},
        )["Command"]["CommandId"]
        while True:
            self.sleep(self.poll_seconds)
            try:
                reply = ssm.get_command_invocation(CommandId=command_id, InstanceId=instance_id)
            except ClientError as err:
                if _code(err) == "InvocationDoesNotExist":  # not registered yet
                    continue
                raise
            if reply["Status"] not in ("Pending", "InProgress", "Delayed"):
                output = reply.get("StandardOutputContent", "") + reply.get(
                    "StandardErrorContent", ""
                )
                return CommandResult(str(reply["Status"]), output)
