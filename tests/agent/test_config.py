from __future__ import annotations

import pytest

from agent.config import (
    DEFAULT_COMFYUI_URL,
    DEFAULT_SDWEBUI_URL,
    ConfigError,
    load_config,
    normalise_api_base_url,
)

BASE = {
    "SQS_QUEUE_URL": "https://sqs.eu-west-1.amazonaws.com/123456789012/sdfleet-sd15",
    "SNS_TOPIC_ARN": "arn:aws:sns:eu-west-1:123456789012:sdfleet-output",
    "S3_BUCKET": "sdfleet-output",
    "RUNTIME_TYPE": "sdwebui",
    "RUNTIME_NAME": "sd15",
}


def test_defaults() -> None:
    config = load_config(BASE)
    assert config.api_base_url == DEFAULT_SDWEBUI_URL
    assert config.job_timeout_seconds == 600
    assert config.drain_seconds == 90
    assert config.heartbeat_seconds == 20
    assert config.visibility_extension_seconds == 60
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
    import socket
    import sys

    from agent.__main__ import main

    # main() configures the process; keep this test's process as the other tests expect it.
    monkeypatch.setattr(sys, "setswitchinterval", lambda _interval: None)
    monkeypatch.setattr("agent.logging_setup.setup_logging", lambda *_a, **_k: None)
    root = logging.getLogger()
    monkeypatch.setattr(root, "handlers", list(root.handlers))

    with socket.socket() as taken:
        taken.bind(("0.0.0.0", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = {**BASE, "HEALTH_PORT": str(port), "AWS_DEFAULT_REGION": "eu-west-1"}
        assert main(env) == 2
    err = capsys.readouterr().err
    assert f"HEALTH_PORT: {port} cannot be bound" in err
