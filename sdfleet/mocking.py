"""Run a Pulumi program under Pulumi's mock runtime and record every resource.

Used by the offline synth (`sdfleet synth`) and by the test suite. Placeholder values stand in
for everything the cloud would assign (IDs, ARNs, URLs, kubeconfigs); the account is
``123456789012`` and the region the stack's ``aws:region`` (default us-east-1).
"""

from __future__ import annotations

import dataclasses
import json
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import pulumi
from pulumi.runtime import mocks as pulumi_mocks
from pulumi.runtime import settings as pulumi_settings
from pulumi.runtime.stack import run_pulumi_func
from pulumi.runtime.sync_await import _sync_await

ACCOUNT_ID = "123456789012"
PLACEHOLDER_NOTE = (
    "Placeholder values stand in for cloud-assigned IDs, ARNs, URLs and secrets "
    f"(account {ACCOUNT_ID}); nothing was created."
)


def _copy_plain(value: Any) -> Any:
    """Copy dicts and lists; keep other objects (resource references, assets) as they are."""
    if isinstance(value, dict):
        return {k: _copy_plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_copy_plain(v) for v in value]
    return value


@dataclass
class Recorded:
    type: str
    name: str
    urn: str
    parent: str | None
    custom: bool
    inputs: dict[str, Any]
    state: dict[str, Any] = field(default_factory=dict)
    # Names of the resources it waits for: ``depends_on`` and those its inputs came from.
    dependencies: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {"type": self.type, "name": self.name, "parent": self.parent, "inputs": self.inputs}


class Recorder:
    """Thread-safe list of registered resources, in registration order."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.resources: list[Recorded] = []
        self.invokes: list[tuple[str, dict[str, Any]]] = []

    def clone(self) -> Recorder:
        """A deep copy, for tests that break a graph on purpose."""
        other = Recorder()
        plain = ("inputs", "state", "dependencies")
        other.resources = [
            dataclasses.replace(r, **{k: _copy_plain(getattr(r, k)) for k in plain})
            for r in self.resources
        ]
        other.invokes = [(token, _copy_plain(args)) for token, args in self.invokes]
        return other

    def add(self, rec: Recorded) -> None:
        with self._lock:
            self.resources.append(rec)

    def of_type(self, type_: str) -> list[Recorded]:
        return [r for r in self.resources if r.type == type_]

    def one(self, type_: str, name: str) -> Recorded:
        found = [r for r in self.resources if r.type == type_ and r.name == name]
        if len(found) != 1:
            names = sorted(r.name for r in self.of_type(type_))
            raise KeyError(f"expected one {type_} named {name!r}, found {len(found)}; have {names}")
        return found[0]

    def counts_by_type(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for r in self.resources:
            counts[r.type] = counts.get(r.type, 0) + 1
        return dict(sorted(counts.items()))

    def children_of(self, parent_name: str | None) -> list[Recorded]:
        return [r for r in self.resources if r.parent == parent_name]


def mock_id(name: str) -> str:
    """The ID the mocks give a resource that has no natural one."""
    return f"{name}-id"


def _arn(service: str, region: str, resource: str, account: bool = True) -> str:
    return f"arn:aws:{service}:{region}:{ACCOUNT_ID if account else ''}:{resource}"


class RecordingMocks(pulumi.runtime.Mocks):
    """Returns plausible outputs for the resource types sdfleet creates, and records inputs."""

    def __init__(self, recorder: Recorder, region: str = "us-east-1") -> None:
        self.recorder = recorder
        self.region = region
        self.current: tuple[str, str] = ("", "")  # (parent urn, urn) set by the monitor
        self.current_dependencies: list[str] = []  # URNs the monitor saw, same call

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str | None, dict]:
        inputs = dict(args.inputs)
        # A remote component's (awsx, eks) mock state *is* its outputs, whose types differ
        # from its inputs; custom resources echo their inputs like a provider would.
        state = dict(inputs) if args.custom else {}
        state.update(self._outputs(args.typ, args.name, inputs))
        parent_urn, urn = self.current
        parent = None
        if parent_urn and parent_urn.split("::")[2].split("$")[-1] != "pulumi:pulumi:Stack":
            parent = parent_urn.rsplit("::", 1)[-1]
        state.setdefault("id", mock_id(args.name))
        deps = sorted({d.rsplit("::", 1)[-1] for d in self.current_dependencies})
        self.recorder.add(
            Recorded(args.typ, args.name, urn, parent, bool(args.custom), inputs, state, deps)
        )
        return state.get("id") or mock_id(args.name), state

    def call(self, args: pulumi.runtime.MockCallArgs) -> dict:  # type: ignore[override]
        self.recorder.invokes.append((args.token, dict(args.args)))
        region = self.region
        token = args.token
        if token == "aws:index/getCallerIdentity:getCallerIdentity":
            return {
                "accountId": ACCOUNT_ID,
                "arn": f"arn:aws:iam::{ACCOUNT_ID}:user/mock",
                "userId": "AIDAMOCK",
                "id": ACCOUNT_ID,
            }
        if token == "aws:index/getRegion:getRegion":
            return {
                "name": region,
                "region": region,
                "id": region,
                "description": region,
                "endpoint": f"ec2.{region}.amazonaws.com",
            }
        if token == "aws:index/getPartition:getPartition":
            return {
                "partition": "aws",
                "dnsSuffix": "amazonaws.com",
                "id": "aws",
                "reverseDnsPrefix": "com.amazonaws",
            }
        if token == "aws:index/getAvailabilityZones:getAvailabilityZones":
            names = [f"{region}{z}" for z in "abcdef"]
            return {"names": names, "zoneIds": [f"use1-az{i}" for i in range(6)], "id": region}
        if token == "aws:ec2/getRouteTables:getRouteTables":
            return {"ids": ["rtb-0000000000000000a", "rtb-0000000000000000b"], "id": "rtb"}
        if token == "aws:eks/getAddonVersion:getAddonVersion":
            return {
                "version": "v0.0.0-eksbuild.1",
                "id": args.args.get("addonName", "addon"),
                "addonName": args.args.get("addonName"),
                "kubernetesVersion": args.args.get("kubernetesVersion"),
            }
        if token == "aws:s3/getBucket:getBucket":
            bucket = args.args.get("bucket", "bucket")
            return {
                "bucket": bucket,
                "arn": f"arn:aws:s3:::{bucket}",
                "id": bucket,
                "region": region,
                "bucketDomainName": f"{bucket}.s3.amazonaws.com",
            }
        if token == "aws:ecr/getAuthorizationToken:getAuthorizationToken":
            return {
                "userName": "AWS",
                "password": "mock-password",
                "proxyEndpoint": f"https://{ACCOUNT_ID}.dkr.ecr.{region}.amazonaws.com",
                "authorizationToken": "bW9jaw==",
                "id": region,
            }
        return {}

    def _outputs(self, typ: str, name: str, inputs: Mapping[str, Any]) -> dict[str, Any]:
        r = self.region
        physical = inputs.get("name") or f"{name}-mock"
        build = _OUTPUTS_BY_TYPE.get(typ)
        out: dict[str, Any] = {}
        if build is not None:
            out = build(_Made(name=name, physical=physical, inputs=inputs, region=r))
        elif typ.startswith("aws:") and "arn" not in inputs:
            service = typ.split(":")[1].split("/")[0] if typ.count(":") >= 2 else ""
            out = {"arn": _arn(service, r, f"{typ.rsplit(':', 1)[-1].lower()}/{name}")}
        if typ.startswith("aws:") and "name" not in inputs and "name" not in out:
            out["name"] = physical  # the provider's auto-name
        return out


@dataclass(frozen=True)
class _Made:
    """What a mocked resource's outputs are made from."""

    name: str
    physical: str
    inputs: Mapping[str, Any]
    region: str


def _queue(m: _Made) -> dict[str, Any]:
    return {
        "arn": _arn("sqs", m.region, m.physical),
        "name": m.physical,
        "url": f"https://sqs.{m.region}.amazonaws.com/{ACCOUNT_ID}/{m.physical}",
    }


def _bucket(m: _Made) -> dict[str, Any]:
    bucket = m.inputs.get("bucket") or f"{m.name}-mock"
    return {
        "arn": f"arn:aws:s3:::{bucket}",
        "bucket": bucket,
        "id": bucket,
        "bucketDomainName": f"{bucket}.s3.amazonaws.com",
        "bucketRegionalDomainName": f"{bucket}.s3.{m.region}.amazonaws.com",
    }


def _function(m: _Made) -> dict[str, Any]:
    arn = _arn("lambda", m.region, f"function:{m.physical}")
    return {
        "arn": arn,
        "name": m.physical,
        "qualifiedArn": f"{arn}:$LATEST",
        "invokeArn": f"arn:aws:apigateway:{m.region}:lambda:path/2015-03-31/functions/"
        f"{arn}/invocations",
    }


def _rest_api(m: _Made) -> dict[str, Any]:
    return {
        "id": f"{m.name}-api",
        "rootResourceId": f"{m.name}-root",
        "executionArn": _arn("execute-api", m.region, f"{m.name}-api"),
        "arn": _arn("apigateway", m.region, f"/restapis/{m.name}-api", account=False),
    }


def _stage(m: _Made) -> dict[str, Any]:
    stage = m.inputs.get("stageName", "v1")
    return {
        "invokeUrl": f"https://mock-api.execute-api.{m.region}.amazonaws.com/{stage}",
        "executionArn": _arn("execute-api", m.region, f"mock-api/{stage}"),
        "arn": _arn("apigateway", m.region, f"/restapis/mock-api/stages/{stage}", account=False),
    }


def _repository(m: _Made) -> dict[str, Any]:
    return {
        "arn": _arn("ecr", m.region, f"repository/{m.physical}"),
        "name": m.physical,
        "registryId": ACCOUNT_ID,
        "repositoryUrl": f"{ACCOUNT_ID}.dkr.ecr.{m.region}.amazonaws.com/{m.physical}",
    }


def _image(m: _Made) -> dict[str, Any]:
    tags = m.inputs.get("tags") or ["mock:tag"]
    repo = str(tags[0]).rsplit(":", 1)[0]
    return {"ref": f"{repo}@sha256:{'0' * 64}", "digest": f"sha256:{'0' * 64}"}


def _cluster(m: _Made) -> dict[str, Any]:
    cluster = m.inputs.get("name") or m.name
    return {
        "kubeconfigJson": json.dumps(
            {"apiVersion": "v1", "kind": "Config", "clusters": [{"name": cluster}]}
        ),
        "clusterSecurityGroupId": "sg-0123456789abcdef0",
        "nodeSecurityGroupId": "sg-0123456789abcdef0",
        "oidcProviderArn": f"arn:aws:iam::{ACCOUNT_ID}:oidc-provider/mock",
        "oidcIssuer": "oidc.eks.mock/id/MOCK",
    }


def _vpc(m: _Made) -> dict[str, Any]:
    return {
        "vpcId": "vpc-0123456789abcdef0",
        "privateSubnetIds": [f"subnet-00000000000000a{i}" for i in range(3)],
        "publicSubnetIds": [f"subnet-00000000000000b{i}" for i in range(3)],
        "isolatedSubnetIds": [],
    }


def _pod_identity(m: _Made) -> dict[str, Any]:
    cluster = m.inputs.get("clusterName") or "cluster"
    association_id = f"a-{m.name}"
    return {
        "associationArn": _arn(
            "eks", m.region, f"podidentityassociation/{cluster}/{association_id}"
        ),
        "associationId": association_id,
        "id": f"{cluster},{association_id}",
    }


# Outputs the provider would compute, per resource type; other aws: types get an ARN.
_OUTPUTS_BY_TYPE: dict[str, Callable[[_Made], dict[str, Any]]] = {
    "aws:sqs/queue:Queue": _queue,
    "aws:sns/topic:Topic": lambda m: {"arn": _arn("sns", m.region, m.physical), "name": m.physical},
    "aws:s3/bucket:Bucket": _bucket,
    "aws:iam/role:Role": lambda m: {
        "arn": f"arn:aws:iam::{ACCOUNT_ID}:role/{m.physical}",
        "name": m.physical,
    },
    "aws:iam/policy:Policy": lambda m: {
        "arn": f"arn:aws:iam::{ACCOUNT_ID}:policy/{m.physical}",
        "name": m.physical,
    },
    "aws:cloudwatch/logGroup:LogGroup": lambda m: {
        "arn": _arn("logs", m.region, f"log-group:{m.physical}"),
        "name": m.physical,
    },
    "aws:lambda/function:Function": _function,
    "aws:apigateway/restApi:RestApi": _rest_api,
    "aws:apigateway/stage:Stage": _stage,
    "aws:apigateway/apiKey:ApiKey": lambda m: {
        "value": "mock-api-key-0123456789abcdef",
        "arn": _arn("apigateway", m.region, f"/apikeys/{m.name}", account=False),
    },
    "aws:kms/key:Key": lambda m: {
        "arn": _arn("kms", m.region, f"key/{m.name}-mock"),
        "keyId": f"{m.name}-mock",
    },
    "aws:ecr/repository:Repository": _repository,
    "docker-build:index:Image": _image,
    "eks:index:Cluster": _cluster,
    "awsx:ec2:Vpc": _vpc,
    "aws:eks/podIdentityAssociation:PodIdentityAssociation": _pod_identity,
}


class RecordingMonitor(pulumi_mocks.MockMonitor):
    """The stock mock monitor, but it tells the mocks each resource's parent and URN."""

    def __init__(self, mocks: RecordingMocks) -> None:
        super().__init__(mocks)
        self.recording_mocks = mocks
        self._lock = threading.Lock()

    def RegisterResource(self, request: Any) -> Any:
        with self._lock:
            urn = self.make_urn(request.parent, request.type, request.name)
            self.recording_mocks.current = (request.parent, urn)
            self.recording_mocks.current_dependencies = list(request.dependencies)
            return super().RegisterResource(request)


def config_from_stack_file(values: Mapping[str, Any]) -> dict[str, str]:
    """Pulumi passes structured config to programs as JSON strings, scalars as strings."""
    out: dict[str, str] = {}
    for key, value in values.items():
        if isinstance(value, (dict, list)):
            out[key] = json.dumps(value)
        elif isinstance(value, bool):
            out[key] = "true" if value else "false"
        else:
            out[key] = str(value)
    return out


def run_program(
    program: Callable[[], Any],
    config: Mapping[str, str] | None = None,
    *,
    project: str = "sdfleet",
    stack: str = "dev",
    preview: bool = False,
    recorder: Recorder | None = None,
) -> Recorder:
    """Run ``program`` under mocks with ``config`` (``ns:key`` -> string) and return what it
    registered. Raises whatever the program (or an apply inside it) raised."""
    recorder = recorder if recorder is not None else Recorder()
    region = (config or {}).get("aws:region", "us-east-1")
    mocks = RecordingMocks(recorder, region=region)
    pulumi.runtime.set_mocks(
        mocks, project=project, stack=stack, preview=preview, monitor=RecordingMonitor(mocks)
    )
    pulumi.runtime.set_all_config(dict(config or {}), [])
    settings = pulumi_settings.SETTINGS
    settings.rpc_manager.clear()
    settings.outputs.clear()
    _sync_await(run_pulumi_func(program))
    return recorder
