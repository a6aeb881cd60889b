from __future__ import annotations

from typing import Any

import pytest

from sdfleet.components.builders import karpenter as k
from sdfleet.components.builders import workload as w
from tests.k8s_validation import assert_valid

K8S = "1.33"
DIGEST_IMAGE = "111122223333.dkr.ecr.us-west-2.amazonaws.com/sdfleet-agent@sha256:" + "a" * 64


def _env(runtime_type: str = "sdwebui", **overrides: Any) -> w.AgentEnv:
    args: dict[str, Any] = {
        "sqs_queue_url": "https://sqs.us-west-2.amazonaws.com/111122223333/sdfleet-sd15",
        "sns_topic_arn": "arn:aws:sns:us-west-2:111122223333:sdfleet-output",
        "s3_bucket": "sdfleet-output",
        "runtime_type": runtime_type,
        "runtime_name": "sd15",
        "aws_region": "us-west-2",
    }
    args.update(overrides)
    return w.AgentEnv(**args)


def _deployment(
    runtime_type: str = "sdwebui", env: w.AgentEnv | None = None, **overrides: Any
) -> dict[str, Any]:
    args: dict[str, Any] = {
        "name": "sd15",
        "namespace": "sd15",
        "runtime_name": "sd15",
        "runtime_type": runtime_type,
        "agent_image": DIGEST_IMAGE,
        "server_image": "ghcr.io/example/server:1.0",
        "agent_env": env or _env(runtime_type),
        "service_account_name": "sd15",
        "model_claim_name": "models-sd15",
        "scheduling": k.pod_scheduling(runtime_name="sd15", split=k.capacity_split(0.7)),
    }
    args.update(overrides)
    return w.runtime_deployment(**args)


def test_namespace_and_service_account_validate() -> None:
    ns = w.namespace("sd15", labels={"app.kubernetes.io/part-of": "sdfleet"})
    sa = w.service_account("sd15", "sd15")
    assert sa["metadata"] == {"name": "sd15", "namespace": "sd15"}
    assert "eks.amazonaws.com/role-arn" not in str(sa)  # Pod Identity, not IRSA
    assert_valid(ns, K8S)
    assert_valid(sa, K8S)


def test_model_volume_and_claim() -> None:
    pv = w.model_volume(
        name="sdfleet-models-sd15",
        volume_handle="sdfleet-models-sd15",
        bucket_name="sdfleet-models-111122223333",
        region="us-west-2",
        claim_name="models-sd15",
        claim_namespace="sd15",
        prefix="sd15/",
        cache_size_limit="20Gi",
    )
    spec = pv["spec"]
    assert spec["csi"]["driver"] == "s3.csi.aws.com"
    assert spec["csi"]["volumeHandle"] == "sdfleet-models-sd15"
    assert spec["csi"]["readOnly"] is True
    assert spec["csi"]["volumeAttributes"] == {
        "bucketName": "sdfleet-models-111122223333",
        "cache": "emptyDir",
        "cacheEmptyDirSizeLimit": "20Gi",
    }
    assert spec["accessModes"] == ["ReadOnlyMany"]
    assert spec["storageClassName"] == ""
    assert spec["claimRef"] == {"namespace": "sd15", "name": "models-sd15"}
    assert spec["mountOptions"] == [
        "read-only",
        "allow-other",
        "region us-west-2",
        "prefix sd15/",
        "metadata-ttl indefinite",
    ]
    pvc = w.model_claim(name="models-sd15", namespace="sd15", volume_name="sdfleet-models-sd15")
    assert pvc["spec"]["volumeName"] == "sdfleet-models-sd15"
    assert pvc["spec"]["storageClassName"] == ""
    assert pvc["spec"]["accessModes"] == ["ReadOnlyMany"]
    assert_valid(pv, K8S)
    assert_valid(pvc, K8S)


def test_model_volume_without_cache_or_prefix() -> None:
    pv = w.model_volume(
        name="m",
        volume_handle="h",
        bucket_name="bucket-a",
        region="eu-central-1",
        claim_name="c",
        claim_namespace="n",
        metadata_ttl="300",
        maximum_throughput_gbps=25,
    )
    assert pv["spec"]["csi"]["volumeAttributes"] == {"bucketName": "bucket-a"}
    assert pv["spec"]["mountOptions"] == [
        "read-only",
        "allow-other",
        "region eu-central-1",
        "metadata-ttl 300",
        "maximum-throughput-gbps 25",
    ]
    assert_valid(pv, K8S)


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"prefix": "sd15"}, "modelPrefix"),
        ({"prefix": "/sd15/"}, "modelPrefix"),
        ({"region": "us west"}, "region"),
        ({"cache_size_limit": "lots"}, "cacheSizeLimit"),
        ({"metadata_ttl": "forever"}, "metadataTtl"),
        ({"bucket_name": "Bad_Bucket"}, "bucket_name"),
        ({"volume_handle": ""}, "volume_handle"),
    ],
)
def test_model_volume_rejects_bad_input(overrides: dict[str, Any], field: str) -> None:
    args: dict[str, Any] = {
        "name": "m",
        "volume_handle": "h",
        "bucket_name": "bucket-a",
        "region": "us-west-2",
        "claim_name": "c",
        "claim_namespace": "n",
    }
    args.update(overrides)
    with pytest.raises(ValueError, match=rf"^{field}: got .*allowed"):
        w.model_volume(**args)


@pytest.mark.parametrize(
    ("build", "field", "max_len"),
    [
        (lambda: w.namespace("Bad_NS"), "namespace", 63),
        (lambda: w.service_account("x" * 64, "n"), "service_account", 63),
        (lambda: w.model_claim(name="-c", namespace="n", volume_name="v"), "pvc name", 253),
        (
            lambda: k.node_pools(
                runtime_name="R", node_class_name="r", split=k.capacity_split(0), max_gpus=1
            ),
            "runtime_name",
            40,
        ),
    ],
)
def test_workload_and_karpenter_names_fail_alike(build: Any, field: str, max_len: int) -> None:
    """One name check (builders/errors.py) for every builder, with one message."""
    with pytest.raises(
        ValueError,
        match=rf"^{field}: got '.*'; allowed: a lowercase DNS label \(a-z, 0-9, '-'\), "
        rf"at most {max_len} characters$",
    ):
        build()


def _pod(d: dict[str, Any]) -> dict[str, Any]:
    return d["spec"]["template"]["spec"]


@pytest.mark.parametrize("runtime_type", ["sdwebui", "comfyui"])
def test_deployment_containers_order_probes_and_gpu(runtime_type: str) -> None:
    d = _deployment(runtime_type)
    pod = _pod(d)
    assert "replicas" not in d["spec"]
    (server,) = pod["initContainers"]
    (agent,) = pod["containers"]
    assert server["name"] == "inference-server"
    assert server["restartPolicy"] == "Always"
    probe = server["startupProbe"]
    expected_path = "/sdapi/v1/options" if runtime_type == "sdwebui" else "/system_stats"
    assert probe["httpGet"] == {"path": expected_path, "port": 8080}
    assert probe["periodSeconds"] * probe["failureThreshold"] == 900
    assert server["resources"]["requests"]["nvidia.com/gpu"] == "1"
    assert server["resources"]["limits"]["nvidia.com/gpu"] == "1"
    # The contract's images take their settings from the env: no arguments, no command.
    assert w.DEFAULT_SERVER_ARGS[runtime_type] == ()
    assert "args" not in server and "command" not in server
    mount = server["volumeMounts"][0]
    assert mount == {
        "name": "models",
        "mountPath": w.DEFAULT_MODEL_PATHS[runtime_type],
        "readOnly": True,
    }
    assert agent["name"] == "queue-agent"
    assert agent["image"] == DIGEST_IMAGE
    assert agent["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": 8081}
    assert agent["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": 8081}
    assert "nvidia.com/gpu" not in agent["resources"]["limits"]
    sec = agent["securityContext"]
    assert sec["runAsNonRoot"] is True
    assert sec["runAsUser"] == w.AGENT_UID
    assert sec["readOnlyRootFilesystem"] is True
    assert sec["capabilities"] == {"drop": ["ALL"]}
    assert_valid(d, K8S)


def test_deployment_env_exactly_from_args() -> None:
    env = _env(
        model_filename="v1-5-pruned-emaonly.safetensors",
        job_timeout_seconds=300,
        drain_seconds=45,
        extra={"LOGLEVEL": "DEBUG"},
    )
    agent = _pod(_deployment(env=env))["containers"][0]
    assert agent["env"] == [
        {
            "name": "SQS_QUEUE_URL",
            "value": "https://sqs.us-west-2.amazonaws.com/111122223333/sdfleet-sd15",
        },
        {"name": "SNS_TOPIC_ARN", "value": "arn:aws:sns:us-west-2:111122223333:sdfleet-output"},
        {"name": "S3_BUCKET", "value": "sdfleet-output"},
        {"name": "RUNTIME_TYPE", "value": "sdwebui"},
        {"name": "RUNTIME_NAME", "value": "sd15"},
        {"name": "API_BASE_URL", "value": "http://127.0.0.1:8080/sdapi/v1/"},
        {"name": "JOB_TIMEOUT_SECONDS", "value": "300"},
        {"name": "DRAIN_SECONDS", "value": "45"},
        {"name": "DYNAMIC_SD_MODEL", "value": "false"},
        {"name": "AWS_REGION", "value": "us-west-2"},
        {"name": "HEALTH_PORT", "value": "8081"},
        {"name": "MODEL_FILENAME", "value": "v1-5-pruned-emaonly.safetensors"},
        {"name": "INPUT_FETCH_TIMEOUT_SECONDS", "value": "30"},
        {"name": "INPUT_TASK_TIMEOUT_SECONDS", "value": "60"},
        {"name": "INPUT_MAX_TOTAL_BYTES", "value": "67108864"},
        {"name": "POD_DELETION_COST", "value": "true"},
        {"name": "OTEL_SERVICE_NAME", "value": "sdfleet-agent-sd15"},
        {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {"name": "POD_NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
        {"name": "NODE_NAME", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
        {"name": "LOGLEVEL", "value": "DEBUG"},
    ]


def test_comfyui_api_base_url_and_dynamic_flag() -> None:
    env = _env("comfyui", dynamic_sd_model=True)
    values = {e["name"]: e.get("value") for e in env.to_env()}
    assert values["API_BASE_URL"] == "http://127.0.0.1:8080"
    assert values["DYNAMIC_SD_MODEL"] == "true"
    assert "MODEL_FILENAME" not in values


def test_deployment_scheduling_annotation_labels_and_grace() -> None:
    sched = k.pod_scheduling(runtime_name="sd15", split=k.capacity_split(0.7))
    d = _deployment(scheduling=sched)
    pod = _pod(d)
    template_meta = d["spec"]["template"]["metadata"]
    assert template_meta["annotations"] == {
        "karpenter.sh/do-not-disrupt": "true",
        "eks.amazonaws.com/skip-containers": "inference-server",
    }
    assert pod["tolerations"] == sched["tolerations"]
    assert pod["topologySpreadConstraints"] == sched["topologySpreadConstraints"]
    assert pod["nodeSelector"] == {"sdfleet.io/runtime": "sd15"}
    # The spread constraint selects the pods by the runtime label.
    selector = sched["topologySpreadConstraints"][0]["labelSelector"]["matchLabels"]
    assert selector.items() <= template_meta["labels"].items()
    assert d["spec"]["selector"]["matchLabels"].items() <= template_meta["labels"].items()
    # drain 90 s (the agent's default) -> 120 s, the 2-minute spot notice.
    assert pod["terminationGracePeriodSeconds"] == 120
    assert pod["volumes"][0] == {
        "name": "models",
        "persistentVolumeClaim": {"claimName": "models-sd15", "readOnly": True},
    }


def test_grace_period_default_is_capped_at_spot_notice() -> None:
    assert w.default_termination_grace_seconds(60) == 90
    assert w.default_termination_grace_seconds(100) == 120
    pod = _pod(_deployment(env=_env(drain_seconds=105)))
    assert pod["terminationGracePeriodSeconds"] == 120


def test_grace_period_must_exceed_drain() -> None:
    with pytest.raises(ValueError, match=r"^termination_grace_period_seconds: got 60; allowed"):
        _deployment(env=_env(drain_seconds=60), termination_grace_period_seconds=60)
    with pytest.raises(ValueError, match=r"^termination_grace_period_seconds: got 120"):
        _deployment(env=_env(drain_seconds=115))
    pod = _pod(_deployment(env=_env(drain_seconds=200), termination_grace_period_seconds=240))
    assert pod["terminationGracePeriodSeconds"] == 240


def test_custom_mount_path_args_and_resources() -> None:
    d = _deployment(
        model_mount_path="/opt/ml/code/models",
        server_args=[],
        server_env={"API_ONLY": "true"},
        server_resources=w.Resources(cpu="2500m", memory="6Gi"),
    )
    server = _pod(d)["initContainers"][0]
    assert server["volumeMounts"][0]["mountPath"] == "/opt/ml/code/models"
    assert "args" not in server
    # The launch script reads the mount path from MODEL_DIR; the user's env comes last.
    env = {e["name"]: e["value"] for e in server["env"]}
    assert env == {
        "SERVER_PORT": "8080",
        "MODEL_DIR": "/opt/ml/code/models",
        "STATE_DIR": "/var/lib/sdserver",
        "API_ONLY": "true",
    }
    assert server["resources"] == {
        "requests": {"cpu": "2500m", "memory": "6Gi", "nvidia.com/gpu": "1"},
        "limits": {"memory": "6Gi", "nvidia.com/gpu": "1"},
    }
    assert_valid(d, K8S)


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"runtime_type": "invokeai"}, "runtime_type"),
        ({"server_image": "ghcr.io/example/server:latest"}, "server_image"),
        ({"agent_image": ""}, "agent_image"),
        ({"model_mount_path": "models"}, "model_mount_path"),
        ({"server_port": 8081}, "server_port"),
        ({"startup_failure_threshold": 0}, "startup_failure_threshold"),
        ({"agent_uid": 0}, "agent_uid"),
        ({"server_resources": w.Resources(cpu="two", memory="8Gi")}, r"serverResources\.cpu"),
        ({"runtime_name": "other"}, "agent_env.runtime_type/runtime_name"),
    ],
)
def test_deployment_rejects_bad_input(overrides: dict[str, Any], field: str) -> None:
    with pytest.raises(ValueError, match=rf"^{field}: got .*allowed"):
        _deployment(**overrides)


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"sqs_queue_url": ""}, "agent_env.sqs_queue_url"),
        ({"drain_seconds": -1}, "agent_env.drain_seconds"),
        ({"health_port": 0}, "agent_env.health_port"),
        ({"extra": {"SQS_QUEUE_URL": "x"}}, "agent_env.extra.SQS_QUEUE_URL"),
        ({"runtime_type": "sd"}, "runtime_type"),
    ],
)
def test_agent_env_rejects_bad_input(overrides: dict[str, Any], field: str) -> None:
    with pytest.raises(ValueError, match=rf"^{field}: got .*allowed"):
        _env(**overrides).to_env()


# ------------------------------------------------------------------------------------------
# Credentials per container, pass-through settings


def test_server_gets_no_aws_or_kubernetes_credentials() -> None:
    d = _deployment(server_env={"HF_HOME": "/cache"})
    meta = d["spec"]["template"]["metadata"]
    pod = _pod(d)
    (server,) = pod["initContainers"]
    (agent,) = pod["containers"]
    # EKS Pod Identity's webhook skips the containers named here (init containers too).
    assert meta["annotations"]["eks.amazonaws.com/skip-containers"] == server["name"]
    # Only the pod contract's variables and the user's; no AWS_* nor a token path.
    assert [e["name"] for e in server["env"]] == [
        "SERVER_PORT",
        "MODEL_DIR",
        "STATE_DIR",
        "HF_HOME",
    ]
    assert pod["automountServiceAccountToken"] is False
    api = next(v for v in pod["volumes"] if v["name"] == "agent-kube-api")
    kinds = [next(iter(src)) for src in api["projected"]["sources"]]
    assert kinds == ["serviceAccountToken", "configMap", "downwardAPI"]
    sa_mount = "/var/run/secrets/kubernetes.io/serviceaccount"
    assert all(m["mountPath"] != sa_mount for m in server["volumeMounts"])
    assert {"name": "agent-kube-api", "mountPath": sa_mount, "readOnly": True} in agent[
        "volumeMounts"
    ]
    assert_valid(d, K8S)


def test_pass_through_labels_annotations_and_pull_policy() -> None:
    d = _deployment(
        pod_labels={"team": "imaging"},
        pod_annotations={"example.com/owner": "me"},
        image_pull_policy="IfNotPresent",
    )
    meta = d["spec"]["template"]["metadata"]
    assert meta["labels"]["team"] == "imaging"
    assert meta["annotations"]["example.com/owner"] == "me"
    (server,) = _pod(d)["initContainers"]
    assert server["imagePullPolicy"] == "IfNotPresent"
    assert "team" not in d["spec"]["selector"]["matchLabels"]
    assert_valid(d, K8S)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"server_env": {"AWS_CONTAINER_CREDENTIALS_FULL_URI": "x"}}, r"^server_env: .*AWS_"),
        ({"server_env": {"1BAD": "x"}}, r"^server_env: name '1BAD'"),
        ({"pod_labels": {"sdfleet.io/runtime": "other"}}, r"^pod_labels: key 'sdfleet.io/runtime'"),
        ({"pod_labels": {"team": "a b"}}, r"^pod_labels: team='a b'"),
        (
            {"pod_annotations": {"eks.amazonaws.com/skip-containers": "queue-agent"}},
            r"^pod_annotations: key 'eks.amazonaws.com/skip-containers'",
        ),
        (
            {"pod_annotations": {"karpenter.sh/do-not-disrupt": "false"}},
            r"^pod_annotations: key 'karpenter.sh/do-not-disrupt'",
        ),
        ({"image_pull_policy": "always"}, r"^image_pull_policy: got 'always'"),
    ],
)
def test_pass_through_refuses_what_sdfleet_owns(overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        _deployment(**overrides)
