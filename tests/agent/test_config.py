from __future__ import annotations

import pytest

from sdfleet.agent.config import (
    DEFAULT_COMFYUI_URL,
    DEFAULT_SDWEBUI_URL,
    ConfigError,
    load_config,
    normalise_api_base_url,
)
from tests.agent.harness import AGENT_ENV

BASE = AGENT_ENV


def test_defaults() -> None:
    config = load_config(BASE)
    assert config.api_base_url == DEFAULT_SDWEBUI_URL
    assert config.job_timeout_seconds == 600
    assert config.drain_seconds == 90
    # Fast recovery: a crashed agent's task is visible again within 15 s of its last beat.
    assert config.heartbeat_seconds == 5
    assert config.visibility_extension_seconds == 15
    assert config.heartbeat_timeout_seconds == 3
    assert config.receive_wait_seconds == 20
    assert config.max_input_bytes == 20 * 1024 * 1024
    assert config.allowed_input_hosts == frozenset()
    assert config.health_port == 8081
    assert config.otlp_endpoint is None
    assert config.dynamic_sd_model is False and config.callback_when_running is False
    assert config.region == "eu-west-1"  # from the queue URL when no AWS_REGION is set


def test_comfyui_default_url_and_flags() -> None:
    config = load_config(
        {
            **BASE,
            "RUNTIME_TYPE": "comfyui",
            "DYNAMIC_SD_MODEL": "True",
            "EXP_CALLBACK_WHEN_RUNNING": "yes",
            "ALLOWED_INPUT_HOSTS": "Images.Example.com, cdn.x",
            "OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318",
            "AWS_REGION": "us-east-1",
        }
    )
    assert config.api_base_url == DEFAULT_COMFYUI_URL
    assert config.dynamic_sd_model and config.callback_when_running
    assert config.allowed_input_hosts == frozenset({"images.example.com", "cdn.x"})
    assert config.otlp_endpoint == "http://collector:4318"
    assert config.region == "us-east-1"


@pytest.mark.parametrize(
    ("runtime", "raw", "expected"),
    [
        ("sdwebui", "localhost:7861", "http://localhost:7861/sdapi/v1/"),
        ("sdwebui", "http://sd:8080", "http://sd:8080/sdapi/v1/"),
        ("sdwebui", "http://sd:8080/sdapi/v1", "http://sd:8080/sdapi/v1/"),
        ("comfyui", "127.0.0.1:8188", "http://127.0.0.1:8188"),
        ("comfyui", "http://comfy:8188/", "http://comfy:8188"),
    ],
)
def test_api_base_url_forms(runtime: str, raw: str, expected: str) -> None:
    assert normalise_api_base_url(runtime, raw) == expected


@pytest.mark.parametrize(
    ("override", "name", "fragment"),
    [
        ({"SQS_QUEUE_URL": ""}, "SQS_QUEUE_URL", "required"),
        ({"SNS_TOPIC_ARN": "output"}, "SNS_TOPIC_ARN", "not an ARN"),
        ({"S3_BUCKET": "Bad_Bucket"}, "S3_BUCKET", "bucket name"),
        ({"RUNTIME_TYPE": "invokeai"}, "RUNTIME_TYPE", "sdwebui, comfyui"),
        ({"RUNTIME_NAME": " "}, "RUNTIME_NAME", "required"),
        ({"API_BASE_URL": "ftp://x"}, "API_BASE_URL", "ftp://x"),
        ({"API_BASE_URL": "host:notaport"}, "API_BASE_URL", "port"),
        ({"DYNAMIC_SD_MODEL": "maybe"}, "DYNAMIC_SD_MODEL", "'maybe'"),
        ({"LOGLEVEL": "LOUD"}, "LOGLEVEL", "DEBUG"),
        ({"JOB_TIMEOUT_SECONDS": "-1"}, "JOB_TIMEOUT_SECONDS", "at least"),
        ({"HEARTBEAT_SECONDS": "soon"}, "HEARTBEAT_SECONDS", "not a number"),
        ({"RECEIVE_WAIT_SECONDS": "30"}, "RECEIVE_WAIT_SECONDS", "at most 20"),
        ({"MAX_INPUT_BYTES": "1.5"}, "MAX_INPUT_BYTES", "integer"),
        ({"HEALTH_PORT": "70000"}, "HEALTH_PORT", "at most 65535"),
        ({"HEARTBEAT_SECONDS": "60"}, "VISIBILITY_EXTENSION_SECONDS", "greater than"),
        ({"HEARTBEAT_SECONDS": "10"}, "VISIBILITY_EXTENSION_SECONDS", "twice"),
        ({"HEARTBEAT_TIMEOUT_SECONDS": "60"}, "HEARTBEAT_TIMEOUT_SECONDS", "at most 30"),
        # 5 s + a hung beat (connect + read: 2 x 5 s) outlives the 15 s extension.
        ({"HEARTBEAT_TIMEOUT_SECONDS": "5"}, "HEARTBEAT_TIMEOUT_SECONDS", "15"),
        ({"OUTPUT_RETRIES": "-1"}, "OUTPUT_RETRIES", "at least 0"),
        ({"INPUT_MAX_TOTAL_BYTES": "0"}, "INPUT_MAX_TOTAL_BYTES", "at least 1"),
        ({"INPUT_TASK_TIMEOUT_SECONDS": "x"}, "INPUT_TASK_TIMEOUT_SECONDS", "not a number"),
        ({"TASK_LIMITS": "{maxSteps"}, "TASK_LIMITS", "not valid JSON"),
        ({"TASK_LIMITS": "[1]"}, "TASK_LIMITS", "must be an object"),
        ({"TASK_LIMITS": '{"maxSteps": 0}'}, "TASK_LIMITS", "limits.maxSteps"),
        ({"TASK_LIMITS": '{"steps": 5}'}, "TASK_LIMITS", "unknown key"),
        ({"POD_DELETION_COST": "sometimes"}, "POD_DELETION_COST", "'sometimes'"),
        ({"METRICS_FLUSH_SECONDS": "0.5"}, "METRICS_FLUSH_SECONDS", "at least 1 and at most 60"),
        ({"METRICS_FLUSH_SECONDS": "61"}, "METRICS_FLUSH_SECONDS", "at most 60"),
        ({"METRICS_FLUSH_SECONDS": "soon"}, "METRICS_FLUSH_SECONDS", "not a number"),
        ({"METRICS_LOG_GROUP": "/sdfleet/a b"}, "METRICS_LOG_GROUP", "Logs group name"),
        ({"METRICS_LOG_GROUP": "x" * 513}, "METRICS_LOG_GROUP", "1-512"),
    ],
)
def test_invalid_values_name_the_variable(
    override: dict[str, str], name: str, fragment: str
) -> None:
    with pytest.raises(ConfigError) as info:
        load_config({**BASE, **override})
    assert info.value.name == name
    assert str(info.value).startswith(f"{name}: ")
    assert fragment in str(info.value)


def test_health_port_can_be_disabled() -> None:
    assert load_config({**BASE, "HEALTH_PORT": "off"}).health_port is None


def test_busy_health_port_exits_2_naming_it(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import logging
    import signal
    import socket
    import sys

    from sdfleet.agent.__main__ import main

    # main() configures the process; keep this test's process as the other tests expect it.
    monkeypatch.setattr(sys, "setswitchinterval", lambda _interval: None)
    monkeypatch.setattr("sdfleet.agent.logging_setup.setup_logging", lambda *_a, **_k: None)
    root = logging.getLogger()
    monkeypatch.setattr(root, "handlers", list(root.handlers))

    with socket.socket() as taken:
        taken.bind(("0.0.0.0", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = {**BASE, "HEALTH_PORT": str(port), "AWS_DEFAULT_REGION": "eu-west-1"}
        before = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)
        assert main(env) == 2
        # The process's own handlers are back (a leaked one broke later signal tests).
        assert (signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)) == before
    err = capsys.readouterr().err
    assert f"HEALTH_PORT: {port} cannot be bound" in err


def test_default_server_url_is_the_ipv4_loopback() -> None:
    # The servers listen on IPv4 only; "localhost" may resolve to ::1 first.
    assert DEFAULT_SDWEBUI_URL == "http://127.0.0.1:8080/sdapi/v1/"
    assert DEFAULT_COMFYUI_URL == "http://127.0.0.1:8080"


def test_new_settings_parse() -> None:
    config = load_config(
        {
            **BASE,
            "INPUT_S3_BUCKETS": "in-a, in-b,,",
            "INPUT_FETCH_TIMEOUT_SECONDS": "12.5",
            "INPUT_TASK_TIMEOUT_SECONDS": "40",
            "INPUT_MAX_TOTAL_BYTES": "1048576",
            "POD_NAME": "sd15-abc",
            "POD_NAMESPACE": "sdfleet",
            "POD_DELETION_COST": "off",
            "OUTPUT_RETRIES": "2",
        }
    )
    assert config.input_s3_buckets == frozenset({"in-a", "in-b"})
    assert config.input_fetch_timeout == 12.5 and config.input_task_timeout == 40
    assert config.input_max_total_bytes == 1048576
    assert (config.pod_name, config.pod_namespace) == ("sd15-abc", "sdfleet")
    assert config.pod_deletion_cost is False and config.output_retries == 2
    defaults = load_config(BASE)
    assert defaults.input_s3_buckets == frozenset() and defaults.pod_deletion_cost is True
    assert defaults.input_max_total_bytes == 64 * 1024 * 1024
    assert (defaults.input_fetch_timeout, defaults.input_task_timeout) == (30, 60)


def test_metrics_settings() -> None:
    defaults = load_config(BASE)
    # Unset: EMF lines on stdout, as in the sandbox and tests.
    assert defaults.metrics_log_group is None and defaults.node_name is None
    assert defaults.metrics_flush_seconds == 10
    config = load_config(
        {
            **BASE,
            "METRICS_LOG_GROUP": "/sdfleet/demo-dev/sd15/agent-metrics",
            "METRICS_FLUSH_SECONDS": "2.5",
            "NODE_NAME": "ip-10-0-1-2.eu-west-1.compute.internal",
        }
    )
    assert config.metrics_log_group == "/sdfleet/demo-dev/sd15/agent-metrics"
    assert config.metrics_flush_seconds == 2.5
    assert config.node_name == "ip-10-0-1-2.eu-west-1.compute.internal"


def test_service_name_defaults_per_runtime() -> None:
    config = load_config(BASE)
    assert config.service_name == f"sdfleet-agent-{config.runtime_name}"
    named = load_config({**BASE, "OTEL_SERVICE_NAME": "agent-x"})
    assert named.service_name == "agent-x"


def test_every_config_default_comes_from_the_settings_table() -> None:
    import dataclasses

    from sdfleet.agent import settings
    from sdfleet.agent.config import Config

    config = load_config(BASE)
    by_field = {
        "heartbeat_seconds": "HEARTBEAT_SECONDS",
        "visibility_extension_seconds": "VISIBILITY_EXTENSION_SECONDS",
        "drain_seconds": "DRAIN_SECONDS",
        "job_timeout_seconds": "JOB_TIMEOUT_SECONDS",
        "health_port": "HEALTH_PORT",
        "output_retries": "OUTPUT_RETRIES",
        "max_input_bytes": "MAX_INPUT_BYTES",
        "pod_deletion_cost": "POD_DELETION_COST",
        "metrics_flush_seconds": "METRICS_FLUSH_SECONDS",
    }
    fields = {f.name: f for f in dataclasses.fields(Config)}
    for name, variable in by_field.items():
        assert getattr(config, name) == settings.default(variable) == fields[name].default


def test_comfyui_queue_ahead_is_on_by_default_and_can_be_turned_off() -> None:
    from sdfleet.agent.__main__ import build_server

    comfy = {**BASE, "RUNTIME_TYPE": "comfyui"}
    assert load_config(comfy).comfyui_queue_ahead is True
    off = load_config({**comfy, "COMFYUI_QUEUE_AHEAD": "false"})
    assert off.comfyui_queue_ahead is False
    assert build_server(off, s3=None).queue_ahead is False
    assert build_server(load_config(comfy), s3=None).queue_ahead is True
    with pytest.raises(ConfigError, match="COMFYUI_QUEUE_AHEAD"):
        load_config({**comfy, "COMFYUI_QUEUE_AHEAD": "sometimes"})
