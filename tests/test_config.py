"""The stack configuration model: defaults, conversions and every class of error."""

from __future__ import annotations

from typing import Any

import pytest

from sdfleet.components.config import ConfigError, StackConfig, parse_config, split_namespaced


def parse(raw: dict[str, Any]) -> StackConfig:
    return parse_config(split_namespaced(raw))


def errors_of(raw: dict[str, Any]) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse(raw)
    return info.value.errors


def minimal(**extra: Any) -> dict[str, Any]:
    raw: dict[str, Any] = {
        "sdfleet:runtimes": [{"name": "sd15", "type": "sdwebui", "modelFilename": "m.safetensors"}]
    }
    raw.update({f"sdfleet:{k}": v for k, v in extra.items()})
    return raw


def test_dev_stack_is_valid(dev_config: dict[str, Any]) -> None:
    config = parse(dev_config)
    assert [(r.name, r.type) for r in config.runtimes] == [("sd15", "sdwebui"), ("flux", "comfyui")]
    assert config.spot_ratio == 0.7
    flux = config.runtimes[1]
    assert flux.k8s_namespace == "comfy-flux"
    assert config.runtime_spot_ratio(flux) == 0.0
    assert config.runtime_spot_ratio(config.runtimes[0]) == 0.7


def test_defaults() -> None:
    config = parse(minimal())
    rt = config.runtimes[0]
    assert rt.k8s_namespace == "sd15"
    assert rt.job_timeout_seconds == 600
    assert rt.dynamic_model is False
    assert rt.gpu.instance_types == ["g6.2xlarge", "g5.2xlarge"]
    assert config.api.stage_name == "v1"
    assert (config.api.throttle.rate_limit, config.api.throttle.burst_limit) == (30.0, 50)
    assert config.api.quota is None
    assert config.api.reserved_concurrency is None
    assert config.models.bucket_name is None
    assert config.outputs.expire_after_days == 30
    assert config.queues.max_receive_count == 3
    assert config.queues.visibility_timeout_seconds == 60


def test_cli_strings_are_converted() -> None:
    """`pulumi config set` stores scalars as strings."""
    raw = minimal(spotRatio="0.25", api={"throttle": {"rateLimit": "12.5", "burstLimit": "20"}})
    raw["sdfleet:runtimes"][0].update(jobTimeoutSeconds="900", dynamicModel="false")
    config = parse(raw)
    assert config.spot_ratio == 0.25
    assert config.api.throttle.rate_limit == 12.5
    assert config.api.throttle.burst_limit == 20
    assert config.runtimes[0].job_timeout_seconds == 900
    assert config.runtimes[0].dynamic_model is False


def test_example_error_message() -> None:
    raw = minimal()
    raw["sdfleet:runtimes"].append({"name": "flux", "type": "comfy"})
    assert errors_of(raw) == ["sdfleet:runtimes[1].type: 'comfy' is not one of sdwebui, comfyui"]


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (lambda r: r.pop("sdfleet:runtimes"), "sdfleet:runtimes: is required"),
        (
            lambda r: r.update({"sdfleet:runtimes": []}),
            "sdfleet:runtimes: [] must list at least one runtime",
        ),
        (
            lambda r: r.update({"sdfleet:runtimes": "sd15"}),
            "sdfleet:runtimes: 'sd15' must be a list",
        ),
        (
            lambda r: r["sdfleet:runtimes"][0].update(name="SD_15"),
            "sdfleet:runtimes[0].name: 'SD_15' must be a DNS-1123 label",
        ),
        (lambda r: r["sdfleet:runtimes"][0].update(name="x" * 41), "at most 40 characters"),
        (
            lambda r: r["sdfleet:runtimes"][0].pop("modelFilename"),
            "sdfleet:runtimes[0].modelFilename: is required for an sdwebui runtime unless dynamicModel is true",
        ),
        (
            lambda r: r["sdfleet:runtimes"][0].update(jobTimeoutSeconds=5),
            "sdfleet:runtimes[0].jobTimeoutSeconds: 5 must be between 10 and 36000",
        ),
        (
            lambda r: r["sdfleet:runtimes"][0].update(jobTimeoutSeconds="ten"),
            "sdfleet:runtimes[0].jobTimeoutSeconds: 'ten' must be a whole number",
        ),
        (
            lambda r: r["sdfleet:runtimes"][0].update(dynamicModel="yes"),
            "sdfleet:runtimes[0].dynamicModel: 'yes' must be true or false",
        ),
        (
            lambda r: r["sdfleet:runtimes"][0].update(spotRatio=2),
            "sdfleet:runtimes[0].spotRatio: 2 must be between 0 and 1",
        ),
        (
            lambda r: r["sdfleet:runtimes"][0].update(modelFilename=" "),
            "sdfleet:runtimes[0].modelFilename: ' ' must not be empty",
        ),
        (
            lambda r: r["sdfleet:runtimes"][0].update(namespce="x"),
            "sdfleet:runtimes[0].namespce: unknown key; allowed: ",
        ),
        (
            lambda r: r.update({"sdfleet:spotRatio": -0.1}),
            "sdfleet:spotRatio: -0.1 must be between 0 and 1",
        ),
        (
            lambda r: r.update({"sdfleet:spotRatio": True}),
            "sdfleet:spotRatio: True must be a number",
        ),
        (
            lambda r: r.update({"sdfleet:spotratio": 0.5}),
            "sdfleet:spotratio: unknown key; allowed: ",
        ),
        (
            lambda r: r.update({"sdfleet:api": {"stageName": "v 1"}}),
            "sdfleet:api.stageName: 'v 1' must be 1-128 of",
        ),
        (
            lambda r: r.update({"sdfleet:api": {"throttle": {"burstLimit": 0}}}),
            "sdfleet:api.throttle.burstLimit: 0 must be between 1 and 5000",
        ),
        (
            lambda r: r.update({"sdfleet:api": {"quota": {"period": "DAY"}}}),
            "sdfleet:api.quota.limit: is required",
        ),
        (
            lambda r: r.update({"sdfleet:api": {"quota": {"limit": 10, "period": "YEAR"}}}),
            "sdfleet:api.quota.period: 'YEAR' is not one of DAY, WEEK, MONTH",
        ),
        (
            lambda r: r.update({"sdfleet:models": {"bucketName": "Bad_Bucket"}}),
            "sdfleet:models.bucketName: 'Bad_Bucket' must be an S3 bucket name",
        ),
        (
            lambda r: r.update({"sdfleet:outputs": {"expireAfterDays": 0}}),
            "sdfleet:outputs.expireAfterDays: 0 must be between 1 and 3650",
        ),
        (
            lambda r: r.update({"sdfleet:queues": {"maxReceiveCount": 0}}),
            "sdfleet:queues.maxReceiveCount: 0 must be between 1 and 1000",
        ),
        (
            lambda r: r.update({"sdfleet:observability": {"logRetentionDays": 31}}),
            "sdfleet:observability.logRetentionDays: 31 is not a CloudWatch retention",
        ),
        (
            lambda r: r["sdfleet:runtimes"][0].update(gpu={"instanceTypes": []}),
            "sdfleet:runtimes[0].gpu.instanceTypes: [] must be a non-empty list",
        ),
        (
            lambda r: r["sdfleet:runtimes"][0].update(gpu={"instanceTypes": ["G6 xl"]}),
            "sdfleet:runtimes[0].gpu.instanceTypes: ['G6 xl'] must be a non-empty list of EC2 "
            "instance types such as g6.2xlarge",
        ),
        (
            lambda r: r.update({"sdfleet:cluster": {"systemNodes": {"instanceTypes": ["m7g"]}}}),
            "sdfleet:cluster.systemNodes.instanceTypes: ['m7g'] must be a non-empty list of EC2 "
            "instance types",
        ),
        (
            lambda r: r.update({"sdfleet:network": {"privateSubnetIds": ["subnet-1", "s-2"]}}),
            "sdfleet:network.privateSubnetIds: ['subnet-1', 's-2'] must be subnet ids",
        ),
        (
            lambda r: r.update({"sdfleet:network": {"publicSubnetIds": "subnet-1,s-2"}}),
            "sdfleet:network.publicSubnetIds: 'subnet-1,s-2' must be subnet ids",
        ),
        (
            lambda r: r["sdfleet:runtimes"][0].update(gpu={"snapshotId": "snap-XYZ"}),
            "sdfleet:runtimes[0].gpu.snapshotId: 'snap-XYZ' must be an EBS snapshot id",
        ),
        (
            lambda r: r["sdfleet:runtimes"][0].update(image="repo/sd:latest"),
            "sdfleet:runtimes[0].image: 'repo/sd:latest' must be an image reference pinned",
        ),
        (
            lambda r: r.update({"sdfleet:cluster": {"bottlerocketAlias": "bottlerocket@latest"}}),
            "never latest",
        ),
    ],
)
def test_each_error_class(mutate: Any, expected: str) -> None:
    raw = minimal()
    mutate(raw)
    errors = errors_of(raw)
    assert len(errors) == 1, errors
    assert expected in errors[0], errors[0]


def test_comfyui_rejects_sdwebui_fields() -> None:
    raw = {
        "sdfleet:runtimes": [
            {"name": "c", "type": "comfyui", "modelFilename": "x", "dynamicModel": True}
        ]
    }
    errors = errors_of(raw)
    assert any(
        e.startswith("sdfleet:runtimes[0].modelFilename: 'x' is for sdwebui") for e in errors
    )
    assert any(e.startswith("sdfleet:runtimes[0].dynamicModel:") for e in errors)


def test_duplicate_names_and_namespaces() -> None:
    raw = {
        "sdfleet:runtimes": [
            {"name": "a", "type": "comfyui"},
            {"name": "a", "type": "comfyui", "namespace": "other"},
            {"name": "b", "type": "comfyui", "namespace": "other"},
        ]
    }
    assert errors_of(raw) == [
        "sdfleet:runtimes[1].name: 'a' is already used by runtimes[0]; names must be unique",
        "sdfleet:runtimes[2].namespace: 'other' is already used by runtimes[1]; each runtime "
        "needs its own namespace",
    ]


def test_all_errors_in_one_run() -> None:
    raw = {
        "sdfleet:runtimes": [
            {"name": "ok", "type": "sdwebui", "modelFilename": "m"},
            {"name": "Bad", "type": "comfy", "typo": 1},
            {"name": "x", "type": "sdwebui"},
        ],
        "sdfleet:spotRatio": "1.5",
        "sdfleet:api": {"throttle": {"rateLimit": "fast"}},
        "sdfleet:bogus": 1,
    }
    errors = errors_of(raw)
    expected_paths = [
        "sdfleet:bogus:",
        "sdfleet:runtimes[1].typo:",
        "sdfleet:runtimes[1].name:",
        "sdfleet:runtimes[1].type:",
        "sdfleet:runtimes[2].modelFilename:",
        "sdfleet:spotRatio:",
        "sdfleet:api.throttle.rateLimit:",
    ]
    for path in expected_paths:
        assert any(e.startswith(path) for e in errors), (path, errors)
    assert len(errors) == len(expected_paths)
    message = str(ConfigError(errors))
    assert all(e in message for e in errors)


def test_bring_your_own_network_needs_two_subnets() -> None:
    errors = errors_of(
        minimal(
            network={
                "vpcId": "vpc-0123456789abcdef0",
                "privateSubnetIds": ["subnet-0123456789abcdef0"],
            }
        )
    )
    assert errors[0].startswith("sdfleet:network.privateSubnetIds:")


def test_drain_must_fit_the_grace_period() -> None:
    raw = minimal()
    raw["sdfleet:runtimes"][0]["drainSeconds"] = 300
    assert errors_of(raw) == [
        "sdfleet:runtimes[0].drainSeconds: 300 does not fit the default grace period (at most "
        "120 s, the spot notice, and drain + 10 s): lower it to 110 or set "
        "terminationGracePeriodSeconds"
    ]
    raw["sdfleet:runtimes"][0]["terminationGracePeriodSeconds"] = 200
    assert errors_of(raw) == [
        "sdfleet:runtimes[0].terminationGracePeriodSeconds: 200 must be at least "
        "drainSeconds + 10 = 310"
    ]
    raw["sdfleet:runtimes"][0]["terminationGracePeriodSeconds"] = 330
    assert parse(raw).runtimes[0].termination_grace_period_seconds == 330


def test_every_config_key_is_documented() -> None:
    import dataclasses
    import typing
    from pathlib import Path

    reference = (Path(__file__).resolve().parent.parent / "docs" / "configuration.md").read_text()

    def keys(cls: Any) -> set[str]:
        found = set()
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            found.add(f.metadata["key"])
            tp = hints[f.name]
            for candidate in (tp, *typing.get_args(tp)):
                if dataclasses.is_dataclass(candidate):
                    found |= keys(candidate)
        return found

    missing = sorted(k for k in keys(StackConfig) if k not in reference)
    assert missing == []


# ------------------------------------------------------------------------------------------
# Issue 8: limits, s3 inputs, pass-through, API endpoint


def test_new_defaults() -> None:
    from sdfleet.agent.contract import Limits

    config = parse(minimal())
    rt = config.runtimes[0]
    assert rt.limits.to_contract() == Limits()
    assert (rt.limits.max_steps, rt.limits.max_pixels) == (150, 2048 * 2048)
    assert (rt.limits.max_images, rt.limits.max_inputs) == (8, 8)
    assert config.inputs.s3_buckets == []
    assert rt.scaling.min_replicas == 0
    assert (rt.server.extra_args, rt.server.extra_env, rt.agent.extra_env) == ([], {}, {})
    assert (rt.pod_labels, rt.pod_annotations) == ({}, {})
    assert (rt.node_requirements, rt.node_taints, rt.image_pull_policy) == ([], [], None)
    # Today's endpoint behaviour: private on, public open to the internet.
    cl = config.cluster
    assert (cl.endpoint_private_access, cl.endpoint_public_access) == (True, True)
    assert cl.public_access_cidrs == ["0.0.0.0/0"]


def test_pass_through_and_limits_parse() -> None:
    raw = minimal(inputs={"s3Buckets": ["team-inputs", "shared.assets/uploads/"]})
    raw["sdfleet:runtimes"][0].update(
        limits={"maxSteps": "60", "maxPixels": 1048576, "maxImages": 4, "maxInputs": 2},
        server={"extraArgs": ["--medvram"], "extraEnv": {"HF_HUB_OFFLINE": "1"}},
        agent={"extraEnv": {"EXP_CALLBACK_WHEN_RUNNING": "true"}},
        podLabels={"team": "imaging", "app.kubernetes.io/component": "gpu"},
        podAnnotations={"example.com/owner": "imaging@example.com"},
        nodeRequirements=[
            {
                "key": "karpenter.k8s.aws/instance-gpu-memory",
                "operator": "Gte",
                "values": ["24000"],
            },
            {"key": "example.com/ok", "operator": "Exists"},
        ],
        nodeTaints=[{"key": "example.com/dedicated", "value": "imaging", "effect": "NoSchedule"}],
        imagePullPolicy="IfNotPresent",
        scaling={"minReplicas": "1", "maxReplicas": 3},
    )
    config = parse(raw)
    rt = config.runtimes[0]
    assert config.inputs.s3_buckets == ["team-inputs", "shared.assets/uploads/"]
    assert rt.limits.to_contract().to_json() == {
        "maxSteps": 60,
        "maxPixels": 1048576,
        "maxImages": 4,
        "maxInputs": 2,
    }
    assert rt.server.extra_args == ["--medvram"]
    assert rt.server.extra_env == {"HF_HUB_OFFLINE": "1"}
    assert rt.agent.extra_env == {"EXP_CALLBACK_WHEN_RUNNING": "true"}
    assert rt.node_requirements[0].values == ["24000"]
    assert rt.node_taints[0].effect == "NoSchedule"
    assert (rt.scaling.min_replicas, rt.image_pull_policy) == (1, "IfNotPresent")


@pytest.mark.parametrize(
    ("runtime_extra", "expected"),
    [
        ({"limits": {"maxSteps": 0}}, "sdfleet:runtimes[0].limits.maxSteps: 0 must be between"),
        ({"limits": {"maxPixels": 10**12}}, "sdfleet:runtimes[0].limits.maxPixels: 1000000000000"),
        ({"limits": {"maxSteps": 1e9 + 0.5}}, "sdfleet:runtimes[0].limits.maxSteps:"),
        ({"limits": {"maxFrames": 3}}, "sdfleet:runtimes[0].limits.maxFrames: unknown key"),
        (
            {"server": {"extraEnv": {"AWS_ACCESS_KEY_ID": "x"}}},
            "sdfleet:runtimes[0].server.extraEnv: {'AWS_ACCESS_KEY_ID': 'x'} has name "
            "'AWS_ACCESS_KEY_ID': no AWS_* variables",
        ),
        (
            {"server": {"extraEnv": {"PORT": 8080}}},
            "sdfleet:runtimes[0].server.extraEnv.PORT: 8080 must be a string",
        ),
        ({"server": {"extraArgs": "--a"}}, None),
        ({"server": {"extraArgs": [""]}}, "sdfleet:runtimes[0].server.extraArgs: [''] has ''"),
        (
            {"agent": {"extraEnv": {"SQS_QUEUE_URL": "https://elsewhere"}}},
            "sdfleet:runtimes[0].agent.extraEnv: {'SQS_QUEUE_URL': 'https://elsewhere'} has "
            "name 'SQS_QUEUE_URL': one of the agent's other settings",
        ),
        (
            {"agent": {"extraEnv": {"AWS_SECRET_ACCESS_KEY": "x"}}},
            "sdfleet:runtimes[0].agent.extraEnv: {'AWS_SECRET_ACCESS_KEY': 'x'} has name",
        ),
        (
            {"agent": {"extraEnv": {"AWS_DEFAULT_REGION": "eu-west-1"}}},
            "sdfleet:runtimes[0].agent.extraEnv: {'AWS_DEFAULT_REGION': 'eu-west-1'} has name",
        ),
        (
            {"agent": {"extraEnv": {"EXP_CALLBACK_WHEN_RUNNING": "maybe"}}},
            "sdfleet:runtimes[0].agent.extraEnv: {'EXP_CALLBACK_WHEN_RUNNING': 'maybe'} has "
            "EXP_CALLBACK_WHEN_RUNNING='maybe'",
        ),
        (
            {"podLabels": {"app.kubernetes.io/name": "x"}},
            "sdfleet:runtimes[0].podLabels: {'app.kubernetes.io/name': 'x'} has key "
            "'app.kubernetes.io/name': a label sdfleet does not set itself",
        ),
        ({"podLabels": {"team": "a b"}}, "sdfleet:runtimes[0].podLabels: {'team': 'a b'} has"),
        (
            {"podAnnotations": {"controller.kubernetes.io/pod-deletion-cost": "-5"}},
            "sdfleet:runtimes[0].podAnnotations: {'controller.kubernetes.io/pod-deletion-cost': "
            "'-5'} has key 'controller.kubernetes.io/pod-deletion-cost': an annotation",
        ),
        (
            {"podAnnotations": {"eks.amazonaws.com/skip-containers": ""}},
            "sdfleet:runtimes[0].podAnnotations: {'eks.amazonaws.com/skip-containers': ''} has",
        ),
        (
            {"nodeRequirements": [{"key": "karpenter.sh/capacity-type", "operator": "In"}]},
            "sdfleet:runtimes[0].nodeRequirements[0]: key 'karpenter.sh/capacity-type'",
        ),
        (
            {"nodeRequirements": [{"key": "a", "operator": "Near", "values": ["b"]}]},
            "sdfleet:runtimes[0].nodeRequirements[0].operator: 'Near' is not one of In, NotIn",
        ),
        (
            {"nodeRequirements": [{"key": "a", "operator": "Gt", "values": ["x"]}]},
            "sdfleet:runtimes[0].nodeRequirements[0]: a Gt: exactly one non-negative integer",
        ),
        (
            {"nodeRequirements": [{"operator": "Exists"}]},
            "sdfleet:runtimes[0].nodeRequirements[0].key: is required",
        ),
        (
            {"nodeTaints": [{"key": "nvidia.com/gpu", "effect": "NoSchedule"}]},
            "sdfleet:runtimes[0].nodeTaints[0]: key 'nvidia.com/gpu'",
        ),
        (
            {"nodeTaints": [{"key": "a", "effect": "NoRun"}]},
            "sdfleet:runtimes[0].nodeTaints[0].effect: 'NoRun' is not one of NoSchedule",
        ),
        (
            {
                "nodeTaints": [
                    {"key": "a", "value": "x", "effect": "NoSchedule"},
                    {"key": "a", "value": "y", "effect": "NoSchedule"},
                ]
            },
            "sdfleet:runtimes[0].nodeTaints: [('a', 'NoSchedule'), ('a', 'NoSchedule')] must not",
        ),
        (
            {"imagePullPolicy": "always"},
            "sdfleet:runtimes[0].imagePullPolicy: 'always' is not one of Always, IfNotPresent, "
            "Never",
        ),
        (
            {"scaling": {"minReplicas": 5, "maxReplicas": 2}},
            "sdfleet:runtimes[0].scaling.minReplicas: 5 must be at most maxReplicas (2)",
        ),
        (
            # Valid alone, but a hung beat would outlive the visibility extension.
            {"agent": {"extraEnv": {"HEARTBEAT_TIMEOUT_SECONDS": "10"}}},
            "sdfleet:runtimes[0].agent.extraEnv.HEARTBEAT_TIMEOUT_SECONDS: 10 is too long",
        ),
    ],
)
def test_pass_through_errors(runtime_extra: dict[str, Any], expected: str | None) -> None:
    raw = minimal()
    raw["sdfleet:runtimes"][0].update(runtime_extra)
    if expected is None:  # a comma-separated string is a list, as for other lists
        assert parse(raw).runtimes[0].server.extra_args == ["--a"]
        return
    errors = errors_of(raw)
    assert len(errors) == 1, errors
    assert errors[0].startswith(expected), errors


@pytest.mark.parametrize(
    ("buckets", "expected"),
    [
        (["Bad_Bucket"], "sdfleet:inputs.s3Buckets: ['Bad_Bucket'] has 'Bad_Bucket': each must"),
        (["arn:aws:s3:::x"], "sdfleet:inputs.s3Buckets: ['arn:aws:s3:::x'] has"),
        (["a-bucket", "a-bucket"], "sdfleet:inputs.s3Buckets: ['a-bucket', 'a-bucket'] must not"),
        # A wildcard in the prefix would widen the pods' IAM grant.
        (
            ["a-bucket/up*"],
            "sdfleet:inputs.s3Buckets: ['a-bucket/up*'] has 'a-bucket/up*': a prefix",
        ),
        (["a-bucket/"], "sdfleet:inputs.s3Buckets: ['a-bucket/'] has 'a-bucket/': a prefix"),
        ({"a": 1}, "sdfleet:inputs.s3Buckets: {'a': 1} must be a list"),
    ],
)
def test_input_buckets_are_validated(buckets: Any, expected: str) -> None:
    errors = errors_of(minimal(inputs={"s3Buckets": buckets}))
    assert len(errors) == 1 and errors[0].startswith(expected), errors


@pytest.mark.parametrize(
    ("cluster", "expected"),
    [
        (
            {"publicAccessCidrs": ["203.0.113.7/24"]},
            "sdfleet:cluster.publicAccessCidrs: ['203.0.113.7/24'] has '203.0.113.7/24': each "
            "must be an IPv4 network",
        ),
        (
            {"publicAccessCidrs": ["10.0.0.0/8"]},
            "sdfleet:cluster.publicAccessCidrs: ['10.0.0.0/8'] has '10.0.0.0/8': each must be "
            "internet address space",
        ),
        ({"publicAccessCidrs": []}, "sdfleet:cluster.publicAccessCidrs: [] must list at least"),
        (
            {"endpointPublicAccess": False, "endpointPrivateAccess": False},
            "sdfleet:cluster.endpointPrivateAccess: False with endpointPublicAccess False",
        ),
        (
            {"endpointPublicAccess": False, "publicAccessCidrs": ["203.0.113.0/24"]},
            "sdfleet:cluster.publicAccessCidrs: ['203.0.113.0/24'] has no effect",
        ),
        (
            {"endpointPrivateAccess": "false", "publicAccessCidrs": ["203.0.113.0/24"]},
            "sdfleet:cluster.endpointPrivateAccess: False with restricted publicAccessCidrs",
        ),
    ],
)
def test_api_endpoint_access(cluster: dict[str, Any], expected: str) -> None:
    errors = errors_of(minimal(cluster=cluster))
    assert len(errors) == 1 and errors[0].startswith(expected), errors


def test_restricted_public_endpoint_and_private_only_are_valid() -> None:
    config = parse(minimal(cluster={"publicAccessCidrs": ["203.0.113.0/24", "198.51.100.7/32"]}))
    assert config.cluster.public_access_cidrs == ["203.0.113.0/24", "198.51.100.7/32"]
    private_only = parse(minimal(cluster={"endpointPublicAccess": False}))
    assert private_only.cluster.endpoint_public_access is False
