"""SdRuntime under the recording mocks, against a cluster the program does not manage (bring your
own cluster): a Kubernetes provider from a kubeconfig, an existing cluster name, and the queue,
topic and buckets given as plain IDs/ARNs/URLs."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import runpy
from pathlib import Path
from typing import Any, ClassVar

import pulumi
import pulumi_aws as aws
import pulumi_kubernetes as k8s
import pytest
from pulumi.output import Unknown

from sdfleet import mocking
from sdfleet.agent.contract import Limits
from sdfleet.cli import kubernetes_manifest
from sdfleet.components import versions
from sdfleet.components.builders import karpenter as kp
from sdfleet.components.builders import workload as wl
from sdfleet.components.builders.s3 import OUTPUT_SUFFIXES
from sdfleet.components.config import RuntimeConfig, ScalingConfig
from sdfleet.components.gpu_node_pool import GpuNodePool
from sdfleet.components.sd_runtime import (
    SKIP_AWAIT,
    RuntimeNames,
    SdRuntime,
    SdRuntimeArgs,
    runtime_args,
)
from sdfleet.invariants import check_all
from sdfleet.mocking import Recorded, Recorder, run_program
from tests.k8s_validation import assert_valid

REPO_ROOT = Path(__file__).resolve().parent.parent
REGION = "us-west-2"
ACCOUNT = "111122223333"
CLUSTER = "existing-cluster"
OUTPUT_TOPIC = f"arn:aws:sns:{REGION}:{ACCOUNT}:sdfleet-output"
OUTPUT_BUCKET = "sdfleet-outputs-1111"
MODEL_BUCKET = "sdfleet-models-1111"
AGENT_IMAGE = f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/agent@sha256:{'a' * 64}"
KUBECONFIG = json.dumps({"apiVersion": "v1", "kind": "Config", "clusters": []})
K8S_VERSION = "1.33"

# runtime name -> (type, namespace, kwargs for SdRuntimeArgs)
CASES: dict[str, tuple[str, str, dict[str, Any]]] = {
    "sd15": (
        "sdwebui",
        "sd15",
        {
            "model_filename": "v1-5-pruned-emaonly.safetensors",
            "model_prefix": "sd15/",
            "drain_seconds": 90,
            "job_timeout_seconds": 900,
        },
    ),
    "flux": (
        "comfyui",
        "gen-flux",
        {
            "server_image": "example.com/comfyui:v0.3.40",
            "model_path": "/opt/ComfyUI/models",
            "drain_seconds": 30,
            "max_replicas": 6,
            "queue_length": 3,
            "activation_queue_length": 1,
            "polling_interval": 20,
            "cooldown_period": 120,
            "scale_down_pods": 2,
            "scale_down_period_seconds": 90,
            "cpu": "6",
            "memory": "30Gi",
        },
    ),
}
SPOT_RATIO = {"sd15": 0.7, "flux": 1.0}


def queue_url(runtime: str) -> str:
    return f"https://sqs.{REGION}.amazonaws.com/{ACCOUNT}/sdfleet-{runtime}"


def queue_arn(runtime: str) -> str:
    return f"arn:aws:sqs:{REGION}:{ACCOUNT}:sdfleet-{runtime}"


def scheduling(runtime: str) -> dict[str, Any]:
    return kp.pod_scheduling(runtime_name=runtime, split=kp.capacity_split(SPOT_RATIO[runtime]))


def wiring(runtime: str, **over: Any) -> dict[str, Any]:
    """What SdRuntimeArgs takes besides the runtime's own settings (runtime_args' ``wiring``)."""
    return {
        "cluster_name": CLUSTER,
        "region": REGION,
        "queue_url": queue_url(runtime),
        "queue_arn": queue_arn(runtime),
        "output_topic_arn": OUTPUT_TOPIC,
        "output_bucket_name": OUTPUT_BUCKET,
        "output_bucket_arn": f"arn:aws:s3:::{OUTPUT_BUCKET}",
        "model_bucket_name": MODEL_BUCKET,
        "agent_image": AGENT_IMAGE,
        "scheduling": {},
        **over,
    }


def on_cluster(provider: pulumi.ProviderResource, *deps: pulumi.Resource) -> pulumi.ResourceOptions:
    """How a caller hands SdRuntime its cluster and prerequisites: ResourceOptions, not Args."""
    return pulumi.ResourceOptions(provider=provider, depends_on=list(deps))


def make_args(runtime: str, **over: Any) -> SdRuntimeArgs:
    rtype, namespace, extra = CASES[runtime]
    values: dict[str, Any] = {
        "runtime_name": runtime,
        "runtime_type": rtype,
        "namespace": namespace,
        **wiring(
            runtime,
            # An Output, as AgentImage.ref is: the manifests are built inside an apply.
            agent_image=pulumi.Output.from_input(AGENT_IMAGE),
            scheduling=scheduling(runtime),
        ),
        **extra,
        **over,
    }
    return SdRuntimeArgs(**values)


def int_numbers(value: Any) -> Any:
    """The mock engine hands numbers back as floats; manifests carry integers."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {k: int_numbers(v) for k, v in value.items()}
    if isinstance(value, list):
        return [int_numbers(v) for v in value]
    return value


class Run:
    def __init__(self, graph: Recorder, outputs: dict[str, dict[str, Any]]) -> None:
        self.graph = graph
        self.outputs = outputs

    def res(self, type_: str, runtime: str, suffix: str) -> Recorded:
        return self.graph.one(type_, f"rt-{runtime}-{suffix}")

    def manifest(self, type_: str, runtime: str, suffix: str) -> dict[str, Any]:
        rec = self.res(type_, runtime, suffix)
        manifest = kubernetes_manifest(rec.type, int_numbers(rec.inputs))
        assert manifest is not None
        return manifest

    def deployment(self, runtime: str) -> dict[str, Any]:
        return self.manifest("kubernetes:apps/v1:Deployment", runtime, "deployment")

    def pod(self, runtime: str) -> dict[str, Any]:
        spec: dict[str, Any] = self.deployment(runtime)["spec"]["template"]["spec"]
        return spec


def run_runtimes(**over: Any) -> Run:
    outputs: dict[str, dict[str, Any]] = {}

    def program() -> None:
        provider = k8s.Provider("byo-cluster", kubeconfig=KUBECONFIG)
        for runtime in CASES:
            rt = SdRuntime(f"rt-{runtime}", make_args(runtime, **over), on_cluster(provider))
            got = outputs.setdefault(runtime, {})
            for attr in (
                "namespace",
                "service_account",
                "role_arn",
                "deployment_name",
                "scaled_object_name",
                "manifests",
                "metrics_log_group_name",
                "metrics_log_group_arn",
            ):
                getattr(rt, attr).apply(lambda v, a=attr, g=got: g.setdefault(a, v))

    return Run(run_program(program, {"aws:region": REGION}), outputs)


@pytest.fixture(scope="module")
def run() -> Run:
    return run_runtimes()


RUNTIMES = list(CASES)


# ------------------------------------------------------------------------------------------
# Deployment


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_server_is_a_native_sidecar_started_before_the_agent(run: Run, runtime: str) -> None:
    rtype = CASES[runtime][0]
    pod = run.pod(runtime)
    assert [c["name"] for c in pod["initContainers"]] == [wl.SERVER_CONTAINER]
    assert [c["name"] for c in pod["containers"]] == [wl.AGENT_CONTAINER]
    (server,) = pod["initContainers"]
    assert server["restartPolicy"] == "Always"
    probe_path = {"sdwebui": "/sdapi/v1/options", "comfyui": "/system_stats"}[rtype]
    assert server["startupProbe"]["httpGet"] == {"path": probe_path, "port": 8080}
    # A budget for model loading: 15 minutes before the kubelet gives up.
    budget = server["startupProbe"]["periodSeconds"] * server["startupProbe"]["failureThreshold"]
    assert budget == 900
    assert server["livenessProbe"]["httpGet"] == {"path": probe_path, "port": 8080}
    assert server["ports"] == [{"name": "http", "containerPort": 8080, "protocol": "TCP"}]
    # The pod contract's images need no arguments (server_contract.py).
    assert "args" not in server and wl.DEFAULT_SERVER_ARGS[rtype] == ()


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_agent_probes_on_its_health_endpoints(run: Run, runtime: str) -> None:
    (agent,) = run.pod(runtime)["containers"]
    assert agent["image"] == AGENT_IMAGE
    assert agent["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": 8081}
    assert agent["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": 8081}
    assert agent["securityContext"]["runAsNonRoot"] is True
    assert "nvidia.com/gpu" not in agent["resources"]["limits"]


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_agent_env_is_exactly_the_wired_outputs(run: Run, runtime: str) -> None:
    rtype, _, extra = CASES[runtime]
    (agent,) = run.pod(runtime)["containers"]
    base_url = {
        "sdwebui": "http://127.0.0.1:8080/sdapi/v1/",
        "comfyui": "http://127.0.0.1:8080",
    }[rtype]
    expected = [
        ("SQS_QUEUE_URL", queue_url(runtime)),
        ("SNS_TOPIC_ARN", OUTPUT_TOPIC),
        ("S3_BUCKET", OUTPUT_BUCKET),
        ("RUNTIME_TYPE", rtype),
        ("RUNTIME_NAME", runtime),
        ("API_BASE_URL", base_url),
        ("JOB_TIMEOUT_SECONDS", str(extra.get("job_timeout_seconds", 600))),
        ("DRAIN_SECONDS", str(extra["drain_seconds"])),
        ("DYNAMIC_SD_MODEL", "false"),
        ("AWS_REGION", REGION),
        ("HEALTH_PORT", "8081"),
    ]
    if "model_filename" in extra:
        expected.append(("MODEL_FILENAME", extra["model_filename"]))
    # Default task limits; no s3:// input buckets; the pod's own name from the downward API.
    expected.append(
        ("TASK_LIMITS", json.dumps(Limits().to_json(), separators=(",", ":"), sort_keys=True))
    )
    env = {e["name"]: e for e in agent["env"]}
    assert len(env) == len(agent["env"])
    for name, value in expected:
        assert env[name] == {"name": name, "value": value}, name
    assert "INPUT_S3_BUCKETS" not in env
    assert env["POD_NAME"]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    assert env["POD_NAMESPACE"]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.namespace"}}
    assert set(env) <= set(wl.AgentEnv.names())


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_server_image_resources_and_models(run: Run, runtime: str) -> None:
    rtype, _, extra = CASES[runtime]
    (server,) = run.pod(runtime)["initContainers"]
    image = extra.get("server_image") or versions.default_server_image(rtype)
    assert server["image"] == image
    resources = server["resources"]
    assert resources["requests"]["nvidia.com/gpu"] == "1"
    assert resources["limits"]["nvidia.com/gpu"] == "1"
    assert resources["requests"]["cpu"] == extra.get("cpu", "4")
    assert resources["requests"]["memory"] == extra.get("memory", "24Gi")
    mount_path = extra.get("model_path") or wl.DEFAULT_MODEL_PATHS[rtype]
    assert server["volumeMounts"] == [
        {"name": "models", "mountPath": mount_path, "readOnly": True},
        {"name": "server-tmp", "mountPath": "/tmp"},
        {"name": "server-state", "mountPath": "/var/lib/sdserver"},
    ]
    assert {e["name"]: e["value"] for e in server["env"]}["MODEL_DIR"] == mount_path
    names = RuntimeNames.of(runtime, CASES[runtime][1])
    volumes = {v["name"]: v for v in run.pod(runtime)["volumes"]}
    assert volumes["models"]["persistentVolumeClaim"] == {
        "claimName": names.claim,
        "readOnly": True,
    }


def test_default_server_images_per_type() -> None:
    assert versions.default_server_image("sdwebui") == versions.DEFAULT_SDWEBUI_IMAGE
    assert versions.default_server_image("comfyui") == versions.DEFAULT_COMFYUI_IMAGE


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_scheduling_annotation_and_grace_period(run: Run, runtime: str) -> None:
    deployment = run.deployment(runtime)
    template = deployment["spec"]["template"]
    pod = template["spec"]
    expected = scheduling(runtime)
    assert pod["tolerations"] == expected["tolerations"]
    assert pod["nodeSelector"] == {"sdfleet.io/runtime": runtime}
    assert pod["affinity"] == expected["affinity"]
    if SPOT_RATIO[runtime] < 1:
        assert pod["topologySpreadConstraints"] == [
            {
                "maxSkew": 1,
                "topologyKey": "capacity-spread",
                "whenUnsatisfiable": "DoNotSchedule",
                "labelSelector": {"matchLabels": {"sdfleet.io/runtime": runtime}},
            }
        ]
    else:
        assert "topologySpreadConstraints" not in pod
    assert template["metadata"]["labels"]["sdfleet.io/runtime"] == runtime
    assert template["metadata"]["annotations"] == {
        "karpenter.sh/do-not-disrupt": "true",
        "eks.amazonaws.com/skip-containers": "inference-server",
    }
    drain = CASES[runtime][2]["drain_seconds"]
    grace = pod["terminationGracePeriodSeconds"]
    # Above the agent's drain, inside the 2-minute spot notice.
    assert grace == min(drain + 30, 120)
    assert drain < grace <= 120
    names = RuntimeNames.of(runtime, CASES[runtime][1])
    assert pod["serviceAccountName"] == names.service_account
    # KEDA owns the replica count; Pulumi does not wait for a GPU pod.
    assert "replicas" not in deployment["spec"]
    assert deployment["metadata"]["annotations"] == SKIP_AWAIT


# ------------------------------------------------------------------------------------------
# Models


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_model_volume_is_read_only_and_bound_by_name(run: Run, runtime: str) -> None:
    namespace = CASES[runtime][1]
    names = RuntimeNames.of(runtime, namespace)
    pv = run.manifest("kubernetes:core/v1:PersistentVolume", runtime, "models-pv")
    pvc = run.manifest("kubernetes:core/v1:PersistentVolumeClaim", runtime, "models-pvc")
    assert pv["metadata"]["name"] == names.volume
    spec = pv["spec"]
    assert spec["accessModes"] == ["ReadOnlyMany"]
    assert spec["storageClassName"] == ""
    assert spec["claimRef"] == {"namespace": namespace, "name": names.claim}
    assert spec["csi"]["driver"] == "s3.csi.aws.com"
    assert spec["csi"]["readOnly"] is True
    assert spec["csi"]["volumeHandle"] == names.volume_handle
    assert spec["csi"]["volumeAttributes"] == {
        "bucketName": MODEL_BUCKET,
        "cache": "emptyDir",
        "cacheEmptyDirSizeLimit": "20Gi",
    }
    options = spec["mountOptions"]
    assert options[:3] == ["read-only", "allow-other", f"region {REGION}"]
    prefix = CASES[runtime][2].get("model_prefix")
    assert (f"prefix {prefix}" in options) == bool(prefix)
    assert "metadata-ttl indefinite" in options
    assert pvc["metadata"] == {"name": names.claim, "namespace": namespace}
    assert pvc["spec"]["volumeName"] == names.volume
    assert pvc["spec"]["accessModes"] == ["ReadOnlyMany"]
    assert pvc["spec"]["storageClassName"] == ""


def test_volume_handles_and_names_are_unique(run: Run) -> None:
    pvs = run.graph.of_type("kubernetes:core/v1:PersistentVolume")
    handles = [pv.inputs["spec"]["csi"]["volumeHandle"] for pv in pvs]
    names = [pv.inputs["metadata"]["name"] for pv in pvs]
    assert len(pvs) == 2
    assert len(set(handles)) == 2 and len(set(names)) == 2
    # Same runtime name in another namespace: still a different cluster-wide PV.
    assert RuntimeNames.of("sd15", "a").volume_handle != RuntimeNames.of("sd15", "b").volume_handle
    assert RuntimeNames.of("x", "a-b").volume != RuntimeNames.of("b-x", "a").volume


# ------------------------------------------------------------------------------------------
# KEDA


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_scaled_object_and_trigger_authentication(run: Run, runtime: str) -> None:
    namespace = CASES[runtime][1]
    extra = CASES[runtime][2]
    names = RuntimeNames.of(runtime, namespace)
    auth = run.manifest(
        "kubernetes:keda.sh/v1alpha1:TriggerAuthentication", runtime, "trigger-auth"
    )
    assert auth["metadata"] == {"name": names.trigger_authentication, "namespace": namespace}
    assert auth["spec"] == {"podIdentity": {"provider": "aws"}}

    so = run.manifest("kubernetes:keda.sh/v1alpha1:ScaledObject", runtime, "scaled-object")
    assert so["metadata"] == {"name": names.scaled_object, "namespace": namespace}
    spec = so["spec"]
    assert spec["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": names.deployment,
    }
    assert spec["minReplicaCount"] == 0
    assert spec["maxReplicaCount"] == extra.get("max_replicas", 4)
    assert spec["pollingInterval"] == extra.get("polling_interval", 15)
    assert spec["cooldownPeriod"] == extra.get("cooldown_period", 300)
    (trigger,) = spec["triggers"]
    assert trigger["type"] == "aws-sqs-queue"
    assert trigger["authenticationRef"] == {
        "name": names.trigger_authentication,
        "kind": "TriggerAuthentication",
    }
    assert trigger["metadata"] == {
        "queueURL": queue_url(runtime),
        "queueLength": str(extra.get("queue_length", 2)),
        "activationQueueLength": str(extra.get("activation_queue_length", 0)),
        "scaleOnInFlight": "true",
        "awsRegion": REGION,
    }
    assert all(isinstance(v, str) for v in trigger["metadata"].values())
    scale_down = spec["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]["scaleDown"]
    assert scale_down["policies"] == [
        {
            "type": "Pods",
            "value": extra.get("scale_down_pods", 1),
            "periodSeconds": extra.get("scale_down_period_seconds", 60),
        }
    ]


# ------------------------------------------------------------------------------------------
# Identity


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_pod_identity_role_is_least_privilege(run: Run, runtime: str) -> None:
    role = run.res("aws:iam/role:Role", runtime, "role")
    trust = json.loads(role.inputs["assumeRolePolicy"])
    assert trust["Statement"] == [
        {
            "Effect": "Allow",
            "Principal": {"Service": "pods.eks.amazonaws.com"},
            "Action": ["sts:AssumeRole", "sts:TagSession"],
            "Condition": {"StringEquals": {"aws:SourceAccount": "123456789012"}},
        }
    ]
    policy = run.res("aws:iam/rolePolicy:RolePolicy", runtime, "policy")
    assert policy.inputs["role"] == role.state["id"]
    statements = json.loads(policy.inputs["policy"])["Statement"]
    grants = [(s["Action"], s["Resource"], s.get("Condition")) for s in statements]
    # Nothing on the model bucket (the Mountpoint driver's role reads it), no input buckets.
    assert grants == [
        (
            [
                "sqs:ReceiveMessage",
                "sqs:DeleteMessage",
                "sqs:ChangeMessageVisibility",
                "sqs:GetQueueAttributes",
            ],
            queue_arn(runtime),
            None,
        ),
        (["s3:PutObject"], f"arn:aws:s3:::{OUTPUT_BUCKET}/*", None),
        (["s3:GetObject"], f"arn:aws:s3:::{OUTPUT_BUCKET}/*request.json", None),
        (["s3:GetObject"], [f"arn:aws:s3:::{OUTPUT_BUCKET}/*{x}" for x in OUTPUT_SUFFIXES], None),
        ("sns:Publish", OUTPUT_TOPIC, None),
        # Its own metrics log group's streams, nothing else in CloudWatch Logs.
        (
            ["logs:CreateLogStream", "logs:PutLogEvents"],
            f"arn:aws:logs:{REGION}:123456789012:log-group:"
            f"/sdfleet/sdfleet-dev/{runtime}/agent-metrics:*",
            None,
        ),
    ]
    assert MODEL_BUCKET not in policy.inputs["policy"]
    assert all(s["Effect"] == "Allow" for s in statements)


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_pod_identity_association_targets_the_service_account(run: Run, runtime: str) -> None:
    namespace = CASES[runtime][1]
    role = run.res("aws:iam/role:Role", runtime, "role")
    assoc = run.res(
        "aws:eks/podIdentityAssociation:PodIdentityAssociation", runtime, "pod-identity"
    )
    sa = run.manifest("kubernetes:core/v1:ServiceAccount", runtime, "sa")
    assert assoc.inputs == {
        "clusterName": CLUSTER,
        "namespace": namespace,
        "serviceAccount": sa["metadata"]["name"],
        "roleArn": role.state["arn"],
    }
    assert sa["metadata"]["namespace"] == namespace
    # No IRSA annotation: credentials come from the association.
    assert "annotations" not in sa["metadata"]


# ------------------------------------------------------------------------------------------
# Whole graph


def test_every_manifest_validates(run: Run) -> None:
    kube = [r for r in run.graph.resources if r.type.startswith("kubernetes:")]
    kinds = sorted({r.type.rsplit(":", 1)[-1] for r in kube})
    assert kinds == [
        "ClusterRole",
        "ClusterRoleBinding",
        "Deployment",
        "Namespace",
        "NetworkPolicy",
        "PersistentVolume",
        "PersistentVolumeClaim",
        "Role",
        "RoleBinding",
        "ScaledObject",
        "ServiceAccount",
        "TriggerAuthentication",
    ]
    assert len(kube) == 24
    for rec in kube:
        manifest = kubernetes_manifest(rec.type, int_numbers(rec.inputs))
        assert manifest is not None
        assert_valid(manifest, K8S_VERSION)


def test_manifests_output_is_what_was_applied(run: Run) -> None:
    for runtime in RUNTIMES:
        children = [
            r for r in run.graph.children_of(f"rt-{runtime}") if r.type.startswith("kubernetes:")
        ]
        applied = {
            (m["kind"], m["metadata"]["name"]): m
            for m in (kubernetes_manifest(r.type, int_numbers(r.inputs)) for r in children)
            if m is not None
        }
        given = {(m["kind"], m["metadata"]["name"]): m for m in run.outputs[runtime]["manifests"]}
        assert given == applied


def test_outputs(run: Run) -> None:
    for runtime, (_, namespace, _) in CASES.items():
        names = RuntimeNames.of(runtime, namespace)
        got = run.outputs[runtime]
        role = run.res("aws:iam/role:Role", runtime, "role")
        assert got["namespace"] == namespace
        assert got["service_account"] == names.service_account
        assert got["deployment_name"] == names.deployment
        assert got["scaled_object_name"] == names.scaled_object
        assert got["role_arn"] == role.state["arn"]


def test_everything_is_a_child_of_its_runtime_and_uses_the_given_provider(run: Run) -> None:
    for rec in run.graph.resources:
        if rec.type.startswith(("kubernetes:", "aws:")):
            runtime_parent = rec.parent or ""
            assert runtime_parent.startswith("rt-") or runtime_parent.endswith("-role"), rec.name
    provider = run.graph.one("pulumi:providers:kubernetes", "byo-cluster")
    assert provider.inputs["kubeconfig"] == KUBECONFIG


def test_invariants_hold(run: Run) -> None:
    assert check_all(run.graph) == []


def _unknown() -> pulumi.Output[str]:
    """An Output whose value is not known, as a queue URL is in a first preview."""
    loop = asyncio.get_event_loop()
    value: asyncio.Future[str | None] = loop.create_future()
    value.set_result(None)
    known: asyncio.Future[bool] = loop.create_future()
    known.set_result(False)
    return pulumi.Output(set(), value, known)  # type: ignore[arg-type]


def test_preview_with_unknown_wiring() -> None:
    """Nothing may fail on values a preview does not know yet."""

    def program() -> None:
        provider = k8s.Provider("byo-cluster", kubeconfig=KUBECONFIG)
        SdRuntime(
            "rt-sd15",
            make_args("sd15", queue_url=_unknown(), agent_image=_unknown()),
            on_cluster(provider),
        )

    graph = run_program(program, {"aws:region": REGION}, preview=True)
    assert len([r for r in graph.resources if r.type.startswith("kubernetes:")]) == 12
    deployment = graph.one("kubernetes:apps/v1:Deployment", "rt-sd15-deployment")
    assert isinstance(deployment.inputs["spec"], Unknown)
    assert deployment.inputs["metadata"]["name"] == "sd15"
    # Values that do not depend on the unknown ones are still sent.
    pvc = graph.one("kubernetes:core/v1:PersistentVolumeClaim", "rt-sd15-models-pvc")
    assert pvc.inputs["spec"]["volumeName"] == RuntimeNames.of("sd15", "sd15").volume


def test_existing_namespace_is_not_created() -> None:
    run = run_runtimes(create_namespace=False)
    assert run.graph.of_type("kubernetes:core/v1:Namespace") == []
    assert run.outputs["flux"]["namespace"] == "gen-flux"
    kinds = [m["kind"] for m in run.outputs["flux"]["manifests"]]
    assert "Namespace" not in kinds and "Deployment" in kinds


# ------------------------------------------------------------------------------------------
# Ordering


class _DependencyMonitor(mocking.RecordingMonitor):
    """Also records each resource's dependencies (by name) and provider reference."""

    dependencies: ClassVar[dict[str, set[str]]] = {}
    providers: ClassVar[dict[str, str]] = {}

    def RegisterResource(self, request: Any) -> Any:
        deps = {urn.rsplit("::", 1)[-1] for urn in request.dependencies}
        self.dependencies[request.name] = deps
        self.providers[request.name] = request.provider
        return super().RegisterResource(request)


def test_creation_order_and_provider(monkeypatch: pytest.MonkeyPatch) -> None:
    _DependencyMonitor.dependencies.clear()
    _DependencyMonitor.providers.clear()
    monkeypatch.setattr(mocking, "RecordingMonitor", _DependencyMonitor)

    def program() -> None:
        provider = k8s.Provider("byo-cluster", kubeconfig=KUBECONFIG)
        # Stands in for the KEDA release / Mountpoint addon the runtime must wait for.
        addon = aws.eks.Addon(
            "prerequisite", cluster_name=CLUSTER, addon_name="aws-mountpoint-s3-csi-driver"
        )
        SdRuntime("rt-sd15", make_args("sd15"), on_cluster(provider, addon))

    graph = run_program(program, {"aws:region": REGION})
    deps = _DependencyMonitor.dependencies
    kube = [r.name for r in graph.resources if r.type.startswith("kubernetes:")]
    assert len(kube) == 12
    for name in kube:
        assert "prerequisite" in deps[name], name
        provider_urn = _DependencyMonitor.providers[name].rsplit("::", 1)[0]
        assert provider_urn.endswith("pulumi:providers:kubernetes::byo-cluster"), name
    # Credentials are injected at pod admission: identity and claim first, then the pods.
    assert deps["rt-sd15-deployment"] >= {
        "rt-sd15-pod-identity",
        "rt-sd15-policy",
        "rt-sd15-models-pvc",
        "rt-sd15-sa",
        "rt-sd15-namespace",
        # No pod runs before its NetworkPolicy and the agent's RBAC exist.
        "rt-sd15-network-policy",
        "rt-sd15-deletion-cost-role",
        "rt-sd15-deletion-cost-binding",
        "rt-sd15-node-reader-role",
        "rt-sd15-node-reader-binding",
        # The agent ships metrics from its first task on.
        "rt-sd15-agent-metrics",
    }
    assert deps["rt-sd15-deletion-cost-binding"] >= {"rt-sd15-deletion-cost-role", "rt-sd15-sa"}
    assert deps["rt-sd15-node-reader-binding"] >= {"rt-sd15-node-reader-role", "rt-sd15-sa"}
    assert deps["rt-sd15-models-pvc"] >= {"rt-sd15-models-pv", "rt-sd15-namespace"}
    assert deps["rt-sd15-scaled-object"] >= {"rt-sd15-deployment", "rt-sd15-trigger-auth"}
    assert deps["rt-sd15-sa"] >= {"rt-sd15-namespace"}
    # AWS resources do not wait for the cluster's add-ons.
    assert "prerequisite" not in deps["rt-sd15-role"]
    assert "prerequisite" not in deps["rt-sd15-agent-metrics"]
    assert "prerequisite" not in deps["rt-sd15-pod-identity"]


# ------------------------------------------------------------------------------------------
# Bad input fails before anything is registered


def _construct(runtime: str = "sd15", **over: Any) -> None:
    def program() -> None:
        provider = k8s.Provider("byo-cluster", kubeconfig=KUBECONFIG)
        SdRuntime("rt", make_args(runtime, **over), on_cluster(provider))

    run_program(program, {"aws:region": REGION})


@pytest.mark.parametrize(
    ("over", "message"),
    [
        ({"runtime_type": "invokeai"}, r"runtime_type: got 'invokeai'; allowed: sdwebui.*comfyui"),
        ({"queue_url": "sdfleet-sd15"}, r"queueURL: got 'sdfleet-sd15'"),
        ({"queue_arn": "arn:aws:sns:us-west-2:1:x"}, r"queue_arn: got .*an sqs ARN"),
        ({"drain_seconds": 115}, r"termination_grace_period_seconds: got 120; allowed: at least"),
        ({"model_prefix": "sd15"}, r"modelPrefix: got 'sd15'"),
        ({"max_replicas": 0}, r"maxReplicas: got 0"),
        ({"cpu": "four"}, r"serverResources.cpu: got 'four'"),
        ({"server_image": "example.com/webui:latest"}, r"server_image: got .*pinned"),
        ({"namespace": "Bad_NS"}, r"namespace: got 'Bad_NS'"),
        ({"server_command": []}, r"server_command: got \[\]; allowed: a non-empty list"),
    ],
)
def test_bad_input_names_the_field(over: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        _construct(**over)


def test_server_command_overrides_the_entrypoint() -> None:
    outputs: dict[str, Any] = {}
    command = ["/bin/sh", "-c", 'exec python launch.py "$@"', "--"]

    def program() -> None:
        provider = k8s.Provider("byo-cluster", kubeconfig=KUBECONFIG)
        rt = SdRuntime("rt", make_args("sd15", server_command=command), on_cluster(provider))
        rt.manifests.apply(lambda m: outputs.setdefault("m", m))

    run_program(program, {"aws:region": REGION})
    deployment = next(m for m in outputs["m"] if m["kind"] == "Deployment")
    (server,) = deployment["spec"]["template"]["spec"]["initContainers"]
    assert server["command"] == command
    assert "args" not in server
    assert_valid(deployment, K8S_VERSION)


def test_by_default_the_image_entrypoint_runs(run: Run) -> None:
    for runtime in RUNTIMES:
        (server,) = run.pod(runtime)["initContainers"]
        assert "command" not in server


def test_long_drain_works_with_an_explicit_grace_period() -> None:
    outputs: dict[str, Any] = {}

    def program() -> None:
        provider = k8s.Provider("byo-cluster", kubeconfig=KUBECONFIG)
        rt = SdRuntime(
            "rt",
            make_args("sd15", drain_seconds=300, termination_grace_period_seconds=330),
            on_cluster(provider),
        )
        rt.manifests.apply(lambda m: outputs.setdefault("m", m))

    run_program(program, {"aws:region": REGION})
    deployment = next(m for m in outputs["m"] if m["kind"] == "Deployment")
    assert deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] == 330


# ------------------------------------------------------------------------------------------
# From the stack config, and the bring-your-own-cluster example


def test_runtime_args_from_config() -> None:
    rt = RuntimeConfig(
        name="xl",
        type="sdwebui",
        namespace="sdxl",
        model_filename="sdxl.safetensors",
        image="example.com/webui:v1",
        model_path="/models",
        model_prefix="xl/",
        drain_seconds=45,
        job_timeout_seconds=1200,
        scaling=ScalingConfig(max_replicas=9, queue_length=4, scale_down_pods=3),
    )
    args = runtime_args(rt, **wiring("xl", scheduling=scheduling("sd15")))
    assert (args.runtime_name, args.runtime_type, args.namespace) == ("xl", "sdwebui", "sdxl")
    assert args.server_image == "example.com/webui:v1"
    assert (args.model_path, args.model_prefix, args.model_filename) == (
        "/models",
        "xl/",
        "sdxl.safetensors",
    )
    assert (args.drain_seconds, args.job_timeout_seconds) == (45, 1200)
    assert (args.cpu, args.memory) == ("4", "24Gi")
    assert (args.max_replicas, args.queue_length, args.scale_down_pods) == (9, 4, 3)
    assert (args.polling_interval, args.cooldown_period) == (15, 300)


def test_byo_cluster_example_synthesizes() -> None:
    example = REPO_ROOT / "examples" / "byo_cluster" / "__main__.py"
    config = {
        "aws:region": REGION,
        "byo-cluster:kubeconfig": KUBECONFIG,
        "byo-cluster:clusterName": CLUSTER,
        "byo-cluster:nodeRoleName": "KarpenterNodeRole-existing",
        "byo-cluster:queueUrl": queue_url("sd15"),
        "byo-cluster:queueArn": queue_arn("sd15"),
        "byo-cluster:outputTopicArn": OUTPUT_TOPIC,
        "byo-cluster:outputBucket": OUTPUT_BUCKET,
        "byo-cluster:modelBucket": MODEL_BUCKET,
        "byo-cluster:agentImage": AGENT_IMAGE,
        "byo-cluster:modelFilename": "v1-5-pruned-emaonly.safetensors",
    }
    graph = run_program(
        lambda: runpy.run_path(str(example), run_name="__main__"),
        config,
        project="byo-cluster",
    )
    assert graph.of_type("sdfleet:index:SdRuntime") and graph.of_type("sdfleet:index:GpuNodePool")
    deployment = graph.of_type("kubernetes:apps/v1:Deployment")[0]
    pod = deployment.inputs["spec"]["template"]["spec"]
    assert pod["containers"][0]["image"] == AGENT_IMAGE
    env = {e["name"]: e.get("value") for e in pod["containers"][0]["env"]}
    assert env["SQS_QUEUE_URL"] == queue_url("sd15")
    assoc = graph.of_type("aws:eks/podIdentityAssociation:PodIdentityAssociation")[0]
    assert assoc.inputs["clusterName"] == CLUSTER
    for rec in graph.resources:
        manifest = kubernetes_manifest(rec.type, int_numbers(rec.inputs))
        if manifest is not None:
            assert_valid(manifest, K8S_VERSION)
    assert check_all(graph) == []


# ------------------------------------------------------------------------------------------
# Who holds which credentials, and the network fences


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_only_the_agent_gets_aws_and_kubernetes_credentials(run: Run, runtime: str) -> None:
    deployment = run.deployment(runtime)
    template = deployment["spec"]["template"]
    pod = template["spec"]
    (server,) = pod["initContainers"]
    (agent,) = pod["containers"]
    # Pod Identity's webhook mutates every container and init container except these.
    assert (
        template["metadata"]["annotations"]["eks.amazonaws.com/skip-containers"] == (server["name"])
    )
    assert not any(e["name"].startswith("AWS_") for e in server.get("env", []))
    # No API token for the pod as a whole; the agent mounts an explicit projection.
    assert pod["automountServiceAccountToken"] is False
    token_volume = next(v for v in pod["volumes"] if "projected" in v)
    sources = token_volume["projected"]["sources"]
    assert sources[0]["serviceAccountToken"]["path"] == "token"
    assert sources[1]["configMap"]["name"] == "kube-root-ca.crt"
    assert sources[2]["downwardAPI"]["items"][0]["fieldRef"]["fieldPath"] == "metadata.namespace"
    assert [m["name"] for m in server["volumeMounts"]] == ["models", "server-tmp", "server-state"]
    assert {
        "name": token_volume["name"],
        "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount",
        "readOnly": True,
    } in agent["volumeMounts"]


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_network_policy_denies_ingress_and_imds(run: Run, runtime: str) -> None:
    namespace = CASES[runtime][1]
    policy = run.manifest(
        "kubernetes:networking.k8s.io/v1:NetworkPolicy", runtime, "network-policy"
    )
    deployment = run.deployment(runtime)
    assert policy["metadata"] == {"name": f"{runtime}-isolation", "namespace": namespace}
    spec = policy["spec"]
    # Exactly the Deployment's pods.
    assert spec["podSelector"] == {"matchLabels": deployment["spec"]["selector"]["matchLabels"]}
    assert spec["policyTypes"] == ["Ingress", "Egress"]
    assert spec.get("ingress", []) == []
    (egress,) = spec["egress"]
    blocks = [peer["ipBlock"] for peer in egress["to"] if "ipBlock" in peer]
    assert blocks == [
        {"cidr": "0.0.0.0/0", "except": ["169.254.169.254/32"]},
        {"cidr": "::/0", "except": ["fd00:ec2::254/128"]},
    ]
    assert "ports" not in egress


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_agent_may_only_get_and_patch_pods_in_its_namespace(run: Run, runtime: str) -> None:
    namespace = CASES[runtime][1]
    names = RuntimeNames.of(runtime, namespace)
    role = run.manifest(
        "kubernetes:rbac.authorization.k8s.io/v1:Role", runtime, "deletion-cost-role"
    )
    binding = run.manifest(
        "kubernetes:rbac.authorization.k8s.io/v1:RoleBinding", runtime, "deletion-cost-binding"
    )
    assert role["metadata"]["namespace"] == namespace
    assert role["rules"] == [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "patch"]}]
    assert binding["metadata"]["namespace"] == namespace
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "Role",
        "name": role["metadata"]["name"],
    }
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": names.service_account, "namespace": namespace}
    ]
    # The one cluster-wide grant: reading Node objects (the node's capacity type).
    cluster_role = run.manifest(
        "kubernetes:rbac.authorization.k8s.io/v1:ClusterRole", runtime, "node-reader-role"
    )
    assert cluster_role["rules"] == [{"apiGroups": [""], "resources": ["nodes"], "verbs": ["get"]}]
    cluster_binding = run.manifest(
        "kubernetes:rbac.authorization.k8s.io/v1:ClusterRoleBinding", runtime, "node-reader-binding"
    )
    assert cluster_binding["metadata"] == {"name": names.node_reader}
    assert cluster_binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "ClusterRole",
        "name": cluster_role["metadata"]["name"],
    }
    assert cluster_binding["subjects"] == binding["subjects"]
    cluster_wide = [r for r in run.graph.resources if "ClusterRole" in r.type]
    assert len(cluster_wide) == 2 * len(RUNTIMES)


# ------------------------------------------------------------------------------------------
# Pass-through settings

PASS_THROUGH: dict[str, Any] = {
    "server_extra_args": ["--medvram", "--xformers"],
    "server_env": {"HF_HUB_OFFLINE": "1"},
    "agent_extra_env": {"EXP_CALLBACK_WHEN_RUNNING": "true"},
    "pod_labels": {"team": "imaging"},
    "pod_annotations": {"example.com/owner": "imaging@example.com"},
    "image_pull_policy": "Always",
    "min_replicas": 1,
    "input_s3_buckets": ["team-inputs", "shared.assets/uploads/"],
    "task_limits": Limits(max_steps=60, max_pixels=1024 * 1024, max_images=4, max_inputs=2),
}


@pytest.fixture(scope="module")
def custom() -> Run:
    return run_runtimes(**PASS_THROUGH)


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_pass_through_reaches_the_pods(custom: Run, runtime: str) -> None:
    rtype = CASES[runtime][0]
    deployment = custom.deployment(runtime)
    template = deployment["spec"]["template"]
    (server,) = template["spec"]["initContainers"]
    (agent,) = template["spec"]["containers"]
    assert server["args"] == [*wl.DEFAULT_SERVER_ARGS[rtype], "--medvram", "--xformers"]
    # The pod contract's env first (server_contract.py), the extra env last.
    assert server["env"][-1] == {"name": "HF_HUB_OFFLINE", "value": "1"}
    assert [e["name"] for e in server["env"][:3]] == ["SERVER_PORT", "MODEL_DIR", "STATE_DIR"]
    assert server["imagePullPolicy"] == "Always"
    assert "imagePullPolicy" not in agent
    env = {e["name"]: e.get("value") for e in agent["env"]}
    assert env["EXP_CALLBACK_WHEN_RUNNING"] == "true"
    assert env["INPUT_S3_BUCKETS"] == "team-inputs,shared.assets/uploads/"
    assert json.loads(env["TASK_LIMITS"]) == {
        "maxSteps": 60,
        "maxPixels": 1024 * 1024,
        "maxImages": 4,
        "maxInputs": 2,
    }
    assert template["metadata"]["labels"]["team"] == "imaging"
    assert template["metadata"]["labels"]["sdfleet.io/runtime"] == runtime
    annotations = template["metadata"]["annotations"]
    assert annotations["example.com/owner"] == "imaging@example.com"
    assert annotations["eks.amazonaws.com/skip-containers"] == "inference-server"
    so = custom.manifest("kubernetes:keda.sh/v1alpha1:ScaledObject", runtime, "scaled-object")
    assert so["spec"]["minReplicaCount"] == 1
    assert_valid(deployment, K8S_VERSION)


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_pod_role_reads_exactly_the_input_buckets(custom: Run, runtime: str) -> None:
    policy = custom.res("aws:iam/rolePolicy:RolePolicy", runtime, "policy")
    statements = json.loads(policy.inputs["policy"])["Statement"]
    reads = [s for s in statements if s.get("Sid") == "ReadTaskInputs"]
    assert reads == [
        {
            "Sid": "ReadTaskInputs",
            "Effect": "Allow",
            "Action": "s3:GetObject",
            "Resource": ["arn:aws:s3:::team-inputs/*", "arn:aws:s3:::shared.assets/uploads/*"],
        }
    ]
    assert check_all(custom.graph) == []


@pytest.mark.parametrize(
    ("over", "message"),
    [
        ({"server_env": {"AWS_ACCESS_KEY_ID": "x"}}, r"server_env: .*no AWS_\* variables"),
        (
            {"pod_annotations": {"controller.kubernetes.io/pod-deletion-cost": "0"}},
            r"pod_annotations: .*pod-deletion-cost",
        ),
        ({"pod_labels": {"app.kubernetes.io/name": "x"}}, r"pod_labels: .*app.kubernetes.io/name"),
        ({"image_pull_policy": "Sometimes"}, r"image_pull_policy: got 'Sometimes'"),
        ({"min_replicas": 5, "max_replicas": 2}, r"minReplicas: got 5"),
        ({"input_s3_buckets": ["arn:aws:s3:::x"]}, r"input_s3_buckets\[0\]: got 'arn:aws:s3:::x'"),
        ({"agent_extra_env": {"SQS_QUEUE_URL": "x"}}, r"agent_env.extra.SQS_QUEUE_URL"),
    ],
)
def test_bad_pass_through_names_the_field(over: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        _construct(**over)


def test_runtime_args_carry_the_pass_through_settings() -> None:
    from sdfleet.components.config import parse_config

    config = parse_config(
        {
            "runtimes": [
                {
                    "name": "xl",
                    "type": "comfyui",
                    "limits": {"maxInputs": 3},
                    "server": {"extraArgs": ["--lowvram"], "extraEnv": {"A": "1"}},
                    "agent": {"extraEnv": {"EXP_CALLBACK_WHEN_RUNNING": "true"}},
                    "podLabels": {"team": "x"},
                    "podAnnotations": {"example.com/a": "b"},
                    "imagePullPolicy": "Never",
                    "scaling": {"minReplicas": 2},
                }
            ]
        }
    )
    args = runtime_args(config.runtimes[0], **wiring("xl"))
    assert args.server_extra_args == ("--lowvram",)
    assert args.server_env == {"A": "1"}
    assert args.agent_extra_env == {"EXP_CALLBACK_WHEN_RUNNING": "true"}
    assert (args.pod_labels, args.pod_annotations) == ({"team": "x"}, {"example.com/a": "b"})
    assert (args.image_pull_policy, args.min_replicas) == ("Never", 2)
    assert args.task_limits == Limits(max_inputs=3)


def test_a_mapping_from_the_provider_host_is_the_args() -> None:
    """Pulumi's provider host (a TypeScript/Go/YAML program) passes a mapping with plain
    strings for enums; SdRuntime and GpuNodePool build their Args from it."""
    seen: dict[str, Any] = {}

    def program() -> None:
        provider = k8s.Provider("byo-cluster", kubeconfig=KUBECONFIG)
        pool = GpuNodePool(
            "pool",
            {  # type: ignore[arg-type]
                "runtime_name": "sd15",
                "cluster_name": CLUSTER,
                "node_role_name": "gpu-nodes",
                "spot_ratio": 1.0,
                "instance_store_policy": "RAID0",
            },
            on_cluster(provider),
        )
        seen["pools"] = pool.node_pool_names
        given = make_args("sd15")
        mapping = {f.name: getattr(given, f.name) for f in dataclasses.fields(given)}
        mapping["runtime_type"] = "sdwebui"
        mapping["task_limits"] = {"max_inputs": 3}
        rt = SdRuntime("rt", mapping, on_cluster(provider))  # type: ignore[arg-type]
        rt.manifests.apply(lambda m: seen.setdefault("manifests", m))

    run_program(program, {"aws:region": REGION})
    assert seen["pools"] == ["sd15-spot", "sd15-ondemand-fallback"]
    deployment = next(m for m in seen["manifests"] if m["kind"] == "Deployment")
    env = {
        e["name"]: e.get("value")
        for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]
    }
    assert env["RUNTIME_TYPE"] == "sdwebui"
    assert json.loads(env["TASK_LIMITS"])["maxInputs"] == 3
