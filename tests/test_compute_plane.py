"""The GPU compute plane in the dev stack's graph: network, cluster, addons, Karpenter, KEDA
and one GpuNodePool per runtime, with their key inputs, manifests and IAM."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from sdfleet.components import versions
from sdfleet.components.builders import iam
from sdfleet.components.builders import karpenter as kb
from sdfleet.invariants import check_all
from sdfleet.mocking import ACCOUNT_ID, Recorder
from sdfleet.render import recorded_manifests
from tests.k8s_validation import validate_manifest

CLUSTER = "sdfleet-dev"


def test_network_and_s3_endpoint(dev_graph: Recorder) -> None:
    vpc = dev_graph.one("awsx:ec2:Vpc", "sdfleet-network-vpc")
    assert vpc.inputs["natGateways"] == {"strategy": "Single"}
    private = next(s for s in vpc.inputs["subnetSpecs"] if s["type"] == "Private")
    assert private["tags"]["karpenter.sh/discovery"] == CLUSTER
    endpoint = dev_graph.one("aws:ec2/vpcEndpoint:VpcEndpoint", "sdfleet-network-s3")
    assert endpoint.inputs["vpcEndpointType"] == "Gateway"
    assert endpoint.inputs["serviceName"] == "com.amazonaws.us-east-1.s3"
    assert endpoint.inputs["routeTableIds"] == ["rtb-0000000000000000a", "rtb-0000000000000000b"]


def test_cluster_settings(dev_graph: Recorder) -> None:
    cluster = dev_graph.one("eks:index:Cluster", "sdfleet-cluster-eks")
    i = cluster.inputs
    assert i["name"] == CLUSTER
    assert i["version"] == versions.KUBERNETES_VERSION
    assert i["authenticationMode"] == "API"
    assert i["skipDefaultNodeGroup"] is True
    assert i["enabledClusterLogTypes"] == ["api", "audit", "authenticator"]
    key = dev_graph.one("aws:kms/key:Key", "sdfleet-cluster-secrets")
    assert i["encryptionConfigKeyArn"] == key.state["arn"]
    assert key.inputs["enableKeyRotation"] is True
    assert i["vpcCniOptions"]["addonVersion"] == versions.EKS_ADDON_VERSIONS["vpc-cni"]
    assert i["kubeProxyAddonOptions"]["version"] == versions.EKS_ADDON_VERSIONS["kube-proxy"]
    assert i["endpointPublicAccess"] is True and i["publicAccessCidrs"] == ["0.0.0.0/0"]
    assert i["endpointPrivateAccess"] is True
    # The VPC CNI's node agent enforces the runtimes' NetworkPolicies.
    assert i["vpcCniOptions"]["enableNetworkPolicy"] is True


def test_restricted_api_endpoint(synth: Any, dev_config: dict[str, Any]) -> None:
    dev_config["sdfleet:cluster"] = {"publicAccessCidrs": ["203.0.113.0/24"]}
    i = synth(dev_config).one("eks:index:Cluster", "sdfleet-cluster-eks").inputs
    assert (i["endpointPublicAccess"], i["endpointPrivateAccess"]) == (True, True)
    assert i["publicAccessCidrs"] == ["203.0.113.0/24"]
    dev_config["sdfleet:cluster"] = {"endpointPublicAccess": False}
    i = synth(dev_config).one("eks:index:Cluster", "sdfleet-cluster-eks").inputs
    assert i["endpointPublicAccess"] is False and i["endpointPrivateAccess"] is True
    assert "publicAccessCidrs" not in i


def test_system_node_group(dev_graph: Recorder) -> None:
    mng = dev_graph.one("eks:index:ManagedNodeGroup", "sdfleet-cluster-system")
    assert mng.inputs["instanceTypes"] == ["m7g.large"]
    assert mng.inputs["amiType"] == "AL2023_ARM_64_STANDARD"
    assert mng.inputs["capacityType"] == "ON_DEMAND"
    assert mng.inputs["scalingConfig"] == {"minSize": 2, "desiredSize": 2, "maxSize": 3}
    assert mng.inputs["labels"] == {"sdfleet.io/pool": "system"}


@pytest.mark.parametrize(
    "addon", ["coredns", "eks-pod-identity-agent", "aws-mountpoint-s3-csi-driver"]
)
def test_addons_pinned(dev_graph: Recorder, addon: str) -> None:
    found = [a for a in dev_graph.of_type("aws:eks/addon:Addon") if a.inputs["addonName"] == addon]
    assert len(found) == 1
    assert found[0].inputs["addonVersion"] == versions.EKS_ADDON_VERSIONS[addon]
    assert found[0].inputs["clusterName"] == CLUSTER


def test_mountpoint_role_reads_only_the_model_bucket(dev_graph: Recorder) -> None:
    addon = next(
        a
        for a in dev_graph.of_type("aws:eks/addon:Addon")
        if a.inputs["addonName"] == "aws-mountpoint-s3-csi-driver"
    )
    role = dev_graph.one("aws:iam/role:Role", "sdfleet-cluster-mountpoint-role")
    assert addon.inputs["podIdentityAssociations"] == [
        {"roleArn": role.state["arn"], "serviceAccount": "s3-csi-driver-sa"}
    ]
    trust = json.loads(role.inputs["assumeRolePolicy"])["Statement"][0]
    assert trust["Principal"] == {"Service": "pods.eks.amazonaws.com"}
    assert trust["Condition"] == {"StringEquals": {"aws:SourceAccount": ACCOUNT_ID}}
    bucket = dev_graph.one("aws:s3/bucket:Bucket", "sdfleet-models-models").state["arn"]
    policy = json.loads(
        dev_graph.one(
            "aws:iam/rolePolicy:RolePolicy", "sdfleet-cluster-mountpoint-read-models"
        ).inputs["policy"]
    )
    grants = sorted(
        (
            s["Action"] if isinstance(s["Action"], str) else tuple(s["Action"]),
            json.dumps(s["Resource"]),
        )
        for s in policy["Statement"]
    )
    assert grants == sorted(
        [("s3:ListBucket", json.dumps(bucket)), ("s3:GetObject", json.dumps(f"{bucket}/*"))]
    )


def test_karpenter_node_role_and_access_entry(dev_graph: Recorder) -> None:
    role = dev_graph.one("aws:iam/role:Role", "sdfleet-karpenter-node-role")
    assert role.inputs["name"] == f"KarpenterNodeRole-{CLUSTER}"
    trust = json.loads(role.inputs["assumeRolePolicy"])["Statement"]
    assert [s["Principal"] for s in trust] == [{"Service": "ec2.amazonaws.com"}]
    attached = {
        a.inputs["policyArn"]
        for a in dev_graph.of_type("aws:iam/rolePolicyAttachment:RolePolicyAttachment")
        if a.parent == role.name
    }
    assert attached == set(iam.node_role_managed_policy_arns())
    entry = dev_graph.one("aws:eks/accessEntry:AccessEntry", "sdfleet-karpenter-node-access")
    assert entry.inputs == {
        "clusterName": CLUSTER,
        "principalArn": role.state["arn"],
        "type": "EC2_LINUX",
    }


def test_interruption_queue_and_rules(dev_graph: Recorder) -> None:
    queue = dev_graph.one("aws:sqs/queue:Queue", "sdfleet-karpenter-interruptions")
    assert queue.inputs["name"] == CLUSTER
    assert queue.inputs["sqsManagedSseEnabled"] is True
    assert queue.inputs["messageRetentionSeconds"] == 300
    policy = json.loads(
        dev_graph.one(
            "aws:sqs/queuePolicy:QueuePolicy", "sdfleet-karpenter-interruptions-policy"
        ).inputs["policy"]
    )
    assert policy == iam.interruption_queue_policy(queue.state["arn"])
    rules = {
        r.name: json.loads(r.inputs["eventPattern"])
        for r in dev_graph.of_type("aws:cloudwatch/eventRule:EventRule")
        if r.name.startswith("sdfleet-karpenter-")
    }
    assert rules == {
        f"sdfleet-karpenter-{k}": v for k, v in iam.INTERRUPTION_EVENT_PATTERNS.items()
    }
    targets = [
        t
        for t in dev_graph.of_type("aws:cloudwatch/eventTarget:EventTarget")
        if t.name.startswith("sdfleet-karpenter-")
    ]
    assert len(targets) == 5
    assert all(t.inputs["arn"] == queue.state["arn"] for t in targets)


def test_karpenter_controller_policies_keep_conditions(dev_graph: Recorder) -> None:
    node_role = dev_graph.one("aws:iam/role:Role", "sdfleet-karpenter-node-role")
    queue = dev_graph.one("aws:sqs/queue:Queue", "sdfleet-karpenter-interruptions")
    expected = iam.karpenter_controller_policies(
        cluster_name=CLUSTER,
        region="us-east-1",
        account_id=ACCOUNT_ID,
        node_role_arn=node_role.state["arn"],
        interruption_queue_arn=queue.state["arn"],
    )
    recorded = {
        p.inputs["name"].removesuffix(f"-{CLUSTER}"): json.loads(p.inputs["policy"])
        for p in dev_graph.of_type("aws:iam/policy:Policy")
    }
    assert recorded == expected
    conditions = [s for doc in recorded.values() for s in doc["Statement"] if "Condition" in s]
    assert any(
        f"aws:ResourceTag/kubernetes.io/cluster/{CLUSTER}" in json.dumps(s["Condition"])
        for s in conditions
    )
    association = dev_graph.one(
        "aws:eks/podIdentityAssociation:PodIdentityAssociation", "sdfleet-karpenter-pod-identity"
    )
    role = dev_graph.one("aws:iam/role:Role", "sdfleet-karpenter-controller-role")
    assert association.inputs == {
        "clusterName": CLUSTER,
        "namespace": "kube-system",
        "serviceAccount": "karpenter",
        "roleArn": role.state["arn"],
    }


def test_karpenter_release(dev_graph: Recorder) -> None:
    release = dev_graph.one("kubernetes:helm.sh/v3:Release", "sdfleet-karpenter-release")
    assert release.inputs["chart"] == "oci://public.ecr.aws/karpenter/karpenter"
    assert release.inputs["version"] == versions.KARPENTER_CHART_VERSION == "1.14.1"
    assert release.inputs["namespace"] == "kube-system"
    values = release.inputs["values"]
    assert values["settings"] == {"clusterName": CLUSTER, "interruptionQueue": CLUSTER}
    assert values["nodeSelector"]["sdfleet.io/pool"] == "system"


def test_keda_release_and_policy(dev_graph: Recorder) -> None:
    release = dev_graph.one("kubernetes:helm.sh/v3:Release", "sdfleet-keda-release")
    assert release.inputs["version"] == versions.KEDA_CHART_VERSION == "2.20.2"
    assert release.inputs["repositoryOpts"] == {"repo": "https://kedacore.github.io/charts"}
    policy = json.loads(
        dev_graph.one("aws:iam/rolePolicy:RolePolicy", "sdfleet-keda-read-queue-depth").inputs[
            "policy"
        ]
    )
    queues = [
        dev_graph.one("aws:sqs/queue:Queue", f"sdfleet-events-{rt}-queue").state["arn"]
        for rt in ("sd15", "flux")
    ]
    (statement,) = policy["Statement"]
    assert statement["Action"] in ("sqs:GetQueueAttributes", ["sqs:GetQueueAttributes"])
    assert statement["Resource"] == queues
    association = dev_graph.one(
        "aws:eks/podIdentityAssociation:PodIdentityAssociation", "sdfleet-keda-pod-identity"
    )
    assert association.inputs["serviceAccount"] == "keda-operator"
    assert association.inputs["namespace"] == "keda"


def _manifests(graph: Recorder, kind: str) -> dict[str, dict[str, Any]]:
    return {m["metadata"]["name"]: m for _, m in recorded_manifests(graph) if m["kind"] == kind}


def test_gpu_node_classes(dev_graph: Recorder) -> None:
    classes = _manifests(dev_graph, "EC2NodeClass")
    assert set(classes) == {"sd15-gpu", "flux-gpu"}
    spec = classes["sd15-gpu"]["spec"]
    assert spec["role"] == f"KarpenterNodeRole-{CLUSTER}-mock" or spec["role"].startswith(
        "KarpenterNodeRole-"
    )
    assert spec["amiSelectorTerms"] == [{"alias": versions.BOTTLEROCKET_ALIAS}]
    assert spec["subnetSelectorTerms"] == [{"tags": {"karpenter.sh/discovery": CLUSTER}}]
    assert spec["securityGroupSelectorTerms"] == [{"tags": {"karpenter.sh/discovery": CLUSTER}}]
    # IMDS unreachable from pods at node level too: IMDSv2 only, and its token response
    # cannot cross the extra hop into a pod's network namespace.
    for node_class in classes.values():
        assert node_class["spec"]["metadataOptions"] == {
            "httpEndpoint": "enabled",
            "httpProtocolIPv6": "disabled",
            "httpPutResponseHopLimit": 1,
            "httpTokens": "required",
        }
    devices = {d["deviceName"]: d["ebs"] for d in spec["blockDeviceMappings"]}
    assert devices["/dev/xvdb"]["volumeSize"] == "100Gi"
    assert classes["flux-gpu"]["spec"]["blockDeviceMappings"][1]["ebs"]["volumeSize"] == "200Gi"
    assert all(d["encrypted"] is True for d in devices.values())


def test_node_pools_follow_spot_ratio(dev_graph: Recorder) -> None:
    pools = _manifests(dev_graph, "NodePool")
    # sd15: 0.7 -> 7 spot and 3 on-demand slots; flux overrides the ratio with 0.
    assert set(pools) == {"sd15-spot", "sd15-ondemand", "flux-ondemand"}
    split = kb.capacity_split(0.7, spot_fallback=True)
    expected = kb.node_pools(
        runtime_name="sd15",
        node_class_name="sd15-gpu",
        split=split,
        instance_types=["g6.2xlarge", "g5.2xlarge"],
        max_gpus=8,
        consolidate_after="5m",
        expire_after="168h",
    )
    assert [pools[p["metadata"]["name"]] for p in expected] == expected
    spot = pools["sd15-spot"]["spec"]
    requirements = {r["key"]: r for r in spot["template"]["spec"]["requirements"]}
    assert requirements["karpenter.sh/capacity-type"]["values"] == ["spot"]
    assert len(requirements["capacity-spread"]["values"]) == 7
    assert (
        len(pools["sd15-ondemand"]["spec"]["template"]["spec"]["requirements"][-1]["values"]) == 3
    )
    assert spot["template"]["spec"]["taints"] == [
        {"key": "nvidia.com/gpu", "value": "true", "effect": "NoSchedule"},
        {"key": "sdfleet.io/runtime", "value": "sd15", "effect": "NoSchedule"},
    ]
    assert spot["limits"] == {"nvidia.com/gpu": "8"}
    assert spot["disruption"] == {
        "consolidationPolicy": "WhenEmpty",
        "consolidateAfter": "5m",
        "budgets": [{"nodes": "10%"}],
    }
    flux = pools["flux-ondemand"]["spec"]
    flux_req = {r["key"]: r for r in flux["template"]["spec"]["requirements"]}
    assert flux_req["karpenter.sh/capacity-type"]["values"] == ["on-demand"]
    assert "capacity-spread" not in flux_req
    assert flux_req["node.kubernetes.io/instance-type"]["values"] == ["g6e.2xlarge", "g5.4xlarge"]
    assert flux["limits"] == {"nvidia.com/gpu": "4"}


def test_spot_only_runtime_gets_fallback_pool(synth: Any, dev_config: dict[str, Any]) -> None:
    dev_config["sdfleet:runtimes"][0]["spotRatio"] = 1
    pools = _manifests(synth(dev_config), "NodePool")
    assert {"sd15-spot", "sd15-ondemand-fallback"} <= set(pools)
    assert pools["sd15-spot"]["spec"]["weight"] > pools["sd15-ondemand-fallback"]["spec"]["weight"]
    dev_config["sdfleet:runtimes"][0]["gpu"]["spotFallback"] = False
    pools = _manifests(synth(dev_config), "NodePool")
    assert {n for n in pools if n.startswith("sd15")} == {"sd15-spot"}


def test_every_manifest_validates(dev_graph: Recorder) -> None:
    manifests = recorded_manifests(dev_graph)
    kinds = {m["kind"] for _, m in manifests}
    assert {"EC2NodeClass", "NodePool", "Namespace"} <= kinds
    problems = {name: validate_manifest(m, versions.KUBERNETES_VERSION) for name, m in manifests}
    assert {k: v for k, v in problems.items() if v} == {}


def test_security_invariants_on_whole_graph(dev_graph: Recorder) -> None:
    assert check_all(dev_graph) == []


def test_bring_your_own_network(synth: Any, dev_config: dict[str, Any]) -> None:
    dev_config["sdfleet:network"] = {
        "vpcId": "vpc-0aaaaaaaaaaaaaaaa",
        "privateSubnetIds": ["subnet-0aaaaaaaaaaaaaaa1", "subnet-0aaaaaaaaaaaaaaa2"],
        "publicSubnetIds": ["subnet-0aaaaaaaaaaaaaaa3"],
    }
    graph = synth(dev_config)
    assert graph.of_type("awsx:ec2:Vpc") == []
    cluster = graph.one("eks:index:Cluster", "sdfleet-cluster-eks")
    assert cluster.inputs["vpcId"] == "vpc-0aaaaaaaaaaaaaaaa"
    tags = {
        t.inputs["resourceId"]
        for t in graph.of_type("aws:ec2/tag:Tag")
        if t.inputs["key"] == "karpenter.sh/discovery"
    }
    assert {"subnet-0aaaaaaaaaaaaaaa1", "subnet-0aaaaaaaaaaaaaaa2"} <= tags


def test_synth_writes_gpu_manifests(tmp_path: Path, repo_root: Path) -> None:
    from sdfleet.cli import main

    assert (
        main(
            [
                "synth",
                "--stack",
                "dev",
                "--out",
                str(tmp_path),
                "--quiet",
                "--project-dir",
                str(repo_root),
            ]
        )
        == 0
    )
    names = {p.name for p in (tmp_path / "manifests").glob("*.yaml")}
    assert {
        "nodepool-sdfleet-sd15-gpu-sd15-spot.yaml",
        "ec2nodeclass-sdfleet-sd15-gpu-nodeclass.yaml",
    } <= names
