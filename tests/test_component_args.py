"""Component Args take their defaults and closed sets from the config model (one place), accept
an explicit None as "use the default", and accept plain strings for closed sets."""

import dataclasses

import pytest

from sdfleet.components.agent_image import AgentImageArgs
from sdfleet.components.api_ingress import ApiIngressArgs
from sdfleet.components.config_checks import ConfigError
from sdfleet.components.config_model import (
    AgentImageConfig,
    ApiConfig,
    Arch,
    ClusterConfig,
    ModelsConfig,
    NatGateways,
    NetworkConfig,
    ObservabilityConfig,
    OutputsConfig,
    QueuesConfig,
    QuotaConfig,
    QuotaPeriod,
    SystemNodesConfig,
    ThrottleConfig,
    config_default,
)
from sdfleet.components.config_parse import parse_config
from sdfleet.components.eks_cluster import EksClusterArgs
from sdfleet.components.event_fanout import EventFanoutArgs
from sdfleet.components.karpenter import KarpenterArgs
from sdfleet.components.model_store import ModelStoreArgs
from sdfleet.components.network import NetworkArgs
from sdfleet.components.observability import ObservabilityArgs


def api_args(**overrides: object) -> ApiIngressArgs:
    return ApiIngressArgs("topic-arn", "bucket", "bucket-arn", [], **overrides)  # type: ignore[arg-type]


def test_defaults_are_the_config_models() -> None:
    api, throttle = ApiConfig(), ThrottleConfig()
    args = api_args()
    assert (args.stage_name, args.manage_account_log_role) == (
        api.stage_name,
        api.manage_account_log_role,
    )
    assert (args.rate_limit, args.burst_limit) == (throttle.rate_limit, throttle.burst_limit)
    assert args.log_retention_days == ObservabilityConfig().log_retention_days
    assert args.quota_period is QuotaPeriod.DAY

    fanout, queues, outputs = EventFanoutArgs(["a"]), QueuesConfig(), OutputsConfig()
    assert fanout.max_receive_count == queues.max_receive_count
    assert fanout.visibility_timeout_seconds == queues.visibility_timeout_seconds
    assert fanout.output_expire_after_days == outputs.expire_after_days
    assert fanout.output_force_destroy == outputs.force_destroy

    models = ModelStoreArgs()
    assert (models.existing_bucket_name, models.force_destroy) == (
        ModelsConfig().bucket_name,
        ModelsConfig().force_destroy,
    )
    obs, obs_config = (
        ObservabilityArgs({}, "unrouted", "fn", "fn-logs", "api", "v1", "c1"),
        ObservabilityConfig(),
    )
    assert obs.alarm_email == obs_config.alarm_email
    assert obs.container_insights == obs_config.container_insights
    assert (obs.oldest_message_alarm_seconds, obs.gpu_idle_alarm_minutes) == (
        obs_config.oldest_message_alarm_seconds,
        obs_config.gpu_idle_alarm_minutes,
    )
    assert obs.spot_interruptions_alarm_per_hour == obs_config.spot_interruptions_alarm_per_hour

    image, image_config = AgentImageArgs(), AgentImageConfig()
    assert (image.keep_images, image.force_delete, image.image_ref) == (
        image_config.keep_images,
        image_config.force_destroy,
        image_config.image_ref,
    )
    assert KarpenterArgs("c").create_spot_service_linked_role is False


def test_network_and_cluster_defaults_are_the_config_models() -> None:
    net, net_config = NetworkArgs("c"), NetworkConfig()
    for f in dataclasses.fields(NetworkConfig):
        assert getattr(net, f.name) == getattr(net_config, f.name), f.name
    cluster = EksClusterArgs("c", "vpc-1", [], [], "arn")
    cluster_config, system = ClusterConfig(), SystemNodesConfig()
    assert cluster.kubernetes_version == cluster_config.version
    assert cluster.public_access_cidrs == cluster_config.public_access_cidrs
    assert cluster.system_instance_types == system.instance_types
    assert cluster.system_arch is Arch.ARM64 == system.arch
    assert (cluster.system_min_size, cluster.system_desired_size, cluster.system_max_size) == (
        system.min_size,
        system.desired_size,
        system.max_size,
    )


def test_explicit_none_means_the_default() -> None:
    args = api_args(stage_name=None, rate_limit=None, quota_period=None, tags=None)
    assert args.stage_name == ApiConfig().stage_name
    assert args.rate_limit == ThrottleConfig().rate_limit
    assert args.quota_period is QuotaPeriod.DAY
    assert args.tags == {}
    # A field whose default is None stays None.
    assert api_args(quota_limit=None).quota_limit is None
    fanout = EventFanoutArgs(["a"], max_receive_count=None, output_force_destroy=None)
    assert fanout.max_receive_count == QueuesConfig().max_receive_count
    assert fanout.output_force_destroy is OutputsConfig().force_destroy
    assert ModelStoreArgs(force_destroy=None).force_destroy is False


def test_closed_sets_accept_plain_strings_and_reject_others() -> None:
    args = api_args(quota_period="WEEK")
    assert args.quota_period is QuotaPeriod.WEEK
    assert args.quota_period == "WEEK"
    with pytest.raises(ValueError, match="'week' is not a valid QuotaPeriod"):
        api_args(quota_period="week")
    # str enums compare with the strings the config model holds.
    assert NatGateways("onePerAz") == "onePerAz" and f"{NatGateways.ONE_PER_AZ}" == "onePerAz"


def test_config_checks_list_the_enum_values() -> None:
    raw = {
        "runtimes": [{"name": "comfy", "type": "comfyui"}],
        "network": {"natGateways": "two"},
        "cluster": {"systemNodes": {"arch": "x86"}},
        "api": {"quota": {"limit": 5, "period": "YEAR"}},
    }
    with pytest.raises(ConfigError) as err:
        parse_config(raw)
    text = str(err.value)
    assert "natGateways: 'two' is not one of single, onePerAz" in text
    assert "arch: 'x86' is not one of arm64, amd64" in text
    assert "period: 'YEAR' is not one of DAY, WEEK, MONTH" in text
    parsed = parse_config({**raw, "network": {}, "cluster": {}, "api": {"quota": {"limit": 5}}})
    assert parsed.network.nat_gateways is NatGateways.SINGLE
    assert parsed.api.quota is not None and parsed.api.quota.period is config_default(
        QuotaConfig, "period"
    )


def test_config_default() -> None:
    first = config_default(SystemNodesConfig, "instance_types")
    first.append("changed")
    assert config_default(SystemNodesConfig, "instance_types") == ["m7g.large"]
    assert config_default(NetworkConfig, "nat_gateways") is NatGateways.SINGLE
    with pytest.raises(KeyError, match=r"QuotaConfig\.limit has no default"):
        config_default(QuotaConfig, "limit")
