"""The Pulumi policy pack runs the same rules as `sdfleet check`.

The validations are called with the argument objects the pulumi_policy SDK builds (its own
classes, props deserialized and wrapped in its unknown-checking proxy, as in
``_PolicyAnalyzerServicer.Analyze``/``AnalyzeStack``); one test serves the pack over gRPC on
127.0.0.1 and calls it the way the Pulumi CLI does.
"""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf import empty_pb2, struct_pb2
from pulumi.runtime import proto
from pulumi.runtime.proto import analyzer_pb2_grpc
from pulumi_policy import (
    PolicyCustomTimeouts,
    PolicyResource,
    PolicyResourceOptions,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    StackValidationArgs,
    StackValidationPolicy,
)
from pulumi_policy.deserialize import deserialize_properties
from pulumi_policy.proxy import UNKNOWN_STRING_VALUE, unknown_checking_proxy

from sdfleet.mocking import Recorder
from sdfleet.policy import RULE_IDS, from_resources_json
from sdfleet.policy.pack import PACK_NAME, policies
from sdfleet.render import jsonable
from tests.policy_plants import PLANTED, Entries

REPO_ROOT = Path(__file__).resolve().parent.parent
POLICIES = {p.name: p for p in policies()}
OPTS = PolicyResourceOptions(False, [], None, [], PolicyCustomTimeouts(0, 0, 0), [])
BUCKET_URN = "urn:pulumi:dev::sdfleet::aws:s3/bucket:Bucket::b"
BPA = "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock"


def _urn(type_: str, name: str) -> str:
    return f"urn:pulumi:dev::sdfleet::{type_}::{name}"


def _props(values: dict[str, Any]) -> Any:
    return unknown_checking_proxy(deserialize_properties(copy.deepcopy(values)))


Resources = list[tuple[str, str, dict[str, Any], dict[str, list[str]]]]


def _collect(found: set[Any], policy: str, *, by_urn: bool) -> Callable[..., None]:
    """A ReportViolation(message, urn=None) that records (policy, urn or message)."""

    def report(message: str, urn: str | None = None) -> None:
        found.add((policy, urn if by_urn else message))

    return report


def run_resource_policies(type_: str, name: str, inputs: dict[str, Any]) -> set[tuple[str, str]]:
    """(policy name, message) of every violation the resource policies report."""
    args = ResourceValidationArgs(type_, _props(inputs), _urn(type_, name), name, OPTS, None)
    found: set[tuple[str, str]] = set()
    for policy in POLICIES.values():
        if isinstance(policy, ResourceValidationPolicy):
            policy.validate(args, _collect(found, policy.name, by_urn=False))
    return found


def run_stack_policies(resources: Resources) -> set[tuple[str, str | None]]:
    """(policy name, urn) of every violation; resources are (type, name, props, deps)."""
    built = {
        _urn(t, n): PolicyResource(t, _props(p), _urn(t, n), n, OPTS, None, None, [], {})
        for t, n, p, _ in resources
    }
    for t, n, _, deps in resources:
        built[_urn(t, n)].property_dependencies = {
            k: [built[u] for u in urns] for k, urns in deps.items()
        }
    found: set[tuple[str, str | None]] = set()
    for policy in POLICIES.values():
        if isinstance(policy, StackValidationPolicy):
            args = StackValidationArgs(list(built.values()))
            policy.validate(args, _collect(found, policy.name, by_urn=True))
    return found


def test_one_policy_per_rule() -> None:
    assert list(POLICIES) == list(RULE_IDS)
    assert all(p.enforcement_level is not None for p in POLICIES.values())


@pytest.fixture(scope="module")
def clean(dev_graph: Recorder) -> Entries:
    return [jsonable(r.to_json()) for r in dev_graph.resources]


def _pack_findings(data: Entries) -> set[tuple[str, str]]:
    """(resource name, policy name) over the whole graph, resource and stack policies."""
    found = {
        (e["name"], policy)
        for e in data
        for policy, _ in run_resource_policies(e["type"], e["name"], e["inputs"])
    }
    resources: Resources = [(r.type, r.name, dict(r.props), {}) for r in from_resources_json(data)]
    found |= {
        (str(urn).rsplit("::", 1)[-1], policy) for policy, urn in run_stack_policies(resources)
    }
    return found


def test_clean_dev_graph_passes_the_pack(clean: Entries) -> None:
    assert _pack_findings(clean) == set()


@pytest.mark.parametrize(("case", "rule", "plant"), PLANTED, ids=[c[0] for c in PLANTED])
def test_pack_reports_each_planted_weakness(
    clean: Entries, case: str, rule: str, plant: Any
) -> None:
    data = copy.deepcopy(clean)
    name = plant(data)
    assert _pack_findings(data) == {(name, rule)}


def test_unknown_values_during_preview_are_not_judged() -> None:
    # A policy that embeds a not-yet-created ARN is unknown as a whole during preview; the
    # SDK proxy would raise UnknownValueError on access, the adapter must not.
    assert (
        run_resource_policies(
            "aws:iam/rolePolicy:RolePolicy", "p", {"policy": UNKNOWN_STRING_VALUE}
        )
        == set()
    )
    # A structured document with one unknown resource still has its known parts checked.
    doc = {
        "Statement": [{"Effect": "Allow", "Action": "s3:Put*", "Resource": UNKNOWN_STRING_VALUE}]
    }
    found = run_resource_policies("aws:iam/rolePolicy:RolePolicy", "p", {"policy": doc})
    assert {p for p, _ in found} == {"iam-action-wildcard"}
    assert (
        run_resource_policies(
            "aws:lambda/permission:Permission",
            "l",
            {"principal": "s3.amazonaws.com", "sourceArn": UNKNOWN_STRING_VALUE},
        )
        == set()
    )


def test_stack_policies_follow_property_dependencies() -> None:
    """During preview a new bucket's id is unknown; its BPA is tied to it by dependency."""
    bucket: tuple[str, str, dict[str, Any], dict[str, list[str]]]
    bucket = ("aws:s3/bucket:Bucket", "b", {"id": UNKNOWN_STRING_VALUE}, {})
    flags = dict.fromkeys(
        ("blockPublicAcls", "blockPublicPolicy", "ignorePublicAcls", "restrictPublicBuckets"), True
    )
    bpa = (BPA, "b-bpa", {"bucket": UNKNOWN_STRING_VALUE, **flags}, {"bucket": [BUCKET_URN]})
    found = run_stack_policies([bucket, bpa])
    assert ("bucket-public-access-block", BUCKET_URN) not in found
    assert ("bucket-public-access-block", BUCKET_URN) in run_stack_policies([bucket])
    # The other bucket rules report against the bucket's URN too.
    assert {p for p, urn in found if urn == BUCKET_URN} == {"bucket-encryption", "bucket-tls-only"}


@pytest.fixture
def served_pack() -> Iterator[analyzer_pb2_grpc.AnalyzerStub]:
    """`policypack/__main__.py` as the Pulumi CLI starts it: it prints its port and serves."""
    proc = subprocess.Popen(
        [sys.executable, "__main__.py"],
        cwd=REPO_ROOT / "policypack",
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        port = int(proc.stdout.readline())
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            yield analyzer_pb2_grpc.AnalyzerStub(channel)
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def _struct(values: dict[str, Any]) -> struct_pb2.Struct:
    out = struct_pb2.Struct()
    out.update(values)
    return out


def test_served_pack_over_grpc(served_pack: analyzer_pb2_grpc.AnalyzerStub) -> None:
    info = served_pack.GetAnalyzerInfo(empty_pb2.Empty())
    assert info.name == PACK_NAME
    assert [p.name for p in info.policies] == list(RULE_IDS)
    policy = json.dumps(
        {"Statement": [{"Effect": "Allow", "Action": "iam:*Role*", "Resource": "*"}]}
    )
    urn = _urn("aws:iam/rolePolicy:RolePolicy", "p")
    reply = served_pack.Analyze(
        proto.AnalyzeRequest(
            type="aws:iam/rolePolicy:RolePolicy",
            urn=urn,
            name="p",
            properties=_struct({"policy": policy}),
        )
    )
    assert sorted(d.policyName for d in reply.diagnostics) == [
        "iam-action-wildcard",
        "iam-resource-wildcard",
    ]
    assert all(d.enforcementLevel == proto.MANDATORY for d in reply.diagnostics)
    stack = served_pack.AnalyzeStack(
        proto.AnalyzeStackRequest(
            resources=[
                proto.AnalyzerResource(
                    type="aws:sqs/queue:Queue",
                    urn=_urn("aws:sqs/queue:Queue", "q"),
                    name="q",
                    properties=_struct({"sqsManagedSseEnabled": True}),
                )
            ]
        )
    )
    assert [(d.policyName, d.urn) for d in stack.diagnostics] == [
        ("queue-dead-letter", _urn("aws:sqs/queue:Queue", "q"))
    ]
