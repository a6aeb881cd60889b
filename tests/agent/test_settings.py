"""One definition of the agent's settings: the builder writes what the agent reads."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from sdfleet.agent import settings
from sdfleet.agent.config import load_config
from sdfleet.agent.contract import Limits
from sdfleet.components.builders import workload as w


def _env(**overrides: object) -> w.AgentEnv:
    args: dict[str, object] = {
        "sqs_queue_url": "https://sqs.us-west-2.amazonaws.com/111122223333/sdfleet-sd15",
        "sns_topic_arn": "arn:aws:sns:us-west-2:111122223333:sdfleet-output",
        "s3_bucket": "sdfleet-output",
        "runtime_type": "sdwebui",
        "runtime_name": "sd15",
        "aws_region": "us-west-2",
    }
    args.update(overrides)
    return w.AgentEnv(**args)  # type: ignore[arg-type]


def _as_pod_env(entries: list[dict[str, object]]) -> dict[str, str]:
    """What the kubelet would give the agent (downward-API fields resolved)."""
    resolved = {
        "metadata.name": "sd15-7d9f-abcde",
        "metadata.namespace": "sdfleet",
        "spec.nodeName": "ip-10-0-1-2.us-west-2.compute.internal",
    }
    env: dict[str, str] = {}
    for entry in entries:
        if "valueFrom" in entry:
            path = entry["valueFrom"]["fieldRef"]["fieldPath"]  # type: ignore[index]
            env[str(entry["name"])] = resolved[path]
        else:
            env[str(entry["name"])] = str(entry["value"])
    return env


def test_every_builder_output_name_is_a_known_setting() -> None:
    full = _env(
        model_filename="m.safetensors",
        task_limits={"maxSteps": 50},
        input_s3_buckets=("in-a", "in-b"),
        extra={"LOGLEVEL": "DEBUG", "EXP_CALLBACK_WHEN_RUNNING": "true"},
    )
    names = [e["name"] for e in full.to_env()]
    assert len(names) == len(set(names))
    assert set(names) <= set(settings.BY_NAME)
    assert set(w.AgentEnv.names()) <= set(settings.BY_NAME)


def test_builder_defaults_are_the_agents_defaults() -> None:
    fields = {f.name: f.default for f in dataclasses.fields(w.AgentEnv)}
    assert fields["drain_seconds"] == settings.default("DRAIN_SECONDS") == 90
    assert fields["job_timeout_seconds"] == settings.default("JOB_TIMEOUT_SECONDS")
    assert fields["health_port"] == settings.default("HEALTH_PORT") == w.AGENT_HEALTH_PORT
    assert fields["input_fetch_timeout_seconds"] == settings.default("INPUT_FETCH_TIMEOUT_SECONDS")
    assert fields["input_task_timeout_seconds"] == settings.default("INPUT_TASK_TIMEOUT_SECONDS")
    assert fields["input_max_total_bytes"] == settings.default("INPUT_MAX_TOTAL_BYTES")
    assert fields["pod_deletion_cost"] is settings.default("POD_DELETION_COST") is True
    assert w.default_termination_grace_seconds() == 120  # 90 s drain + 30 s, capped
    # The agent's own fallback URL and the builder's are one value (IPv4 loopback).
    for runtime_type in ("sdwebui", "comfyui"):
        base = _as_pod_env(_env(runtime_type=runtime_type).to_env())
        built = base.pop("API_BASE_URL")
        assert load_config(base).api_base_url == built
        assert built.startswith("http://127.0.0.1:8080")


def test_the_agent_reads_back_what_the_builder_writes() -> None:
    env = _env(
        job_timeout_seconds=300,
        drain_seconds=45,
        task_limits={"maxSteps": 50, "maxImages": 2},
        input_s3_buckets=("in-a", "in-b"),
        input_fetch_timeout_seconds=10,
        input_task_timeout_seconds=20.5,
        input_max_total_bytes=1024,
        pod_deletion_cost=False,
        extra={"HEARTBEAT_SECONDS": "2"},
    )
    config = load_config(_as_pod_env(env.to_env()))
    assert (config.job_timeout_seconds, config.drain_seconds) == (300, 45)
    assert config.task_limits == Limits(max_steps=50, max_images=2)
    assert config.input_s3_buckets == frozenset({"in-a", "in-b"})
    assert (config.input_fetch_timeout, config.input_task_timeout) == (10, 20.5)
    assert config.input_max_total_bytes == 1024 and config.pod_deletion_cost is False
    assert (config.pod_name, config.pod_namespace) == ("sd15-7d9f-abcde", "sdfleet")
    assert config.node_name == "ip-10-0-1-2.us-west-2.compute.internal"
    assert config.heartbeat_seconds == 2 and config.region == "us-west-2"
    # Unset fields take the agent's defaults, which are the builder's.
    plain = load_config(_as_pod_env(_env().to_env()))
    assert plain.input_fetch_timeout == settings.default("INPUT_FETCH_TIMEOUT_SECONDS")
    assert plain.input_task_timeout == settings.default("INPUT_TASK_TIMEOUT_SECONDS")
    assert plain.input_max_total_bytes == settings.default("INPUT_MAX_TOTAL_BYTES")
    assert plain.drain_seconds == settings.default("DRAIN_SECONDS")
    assert plain.task_limits == Limits() and plain.input_s3_buckets == frozenset()


def test_pod_identity_comes_from_the_downward_api() -> None:
    entries = {e["name"]: e for e in _env().to_env()}
    assert entries["POD_NAME"] == {
        "name": "POD_NAME",
        "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}},
    }
    assert entries["POD_NAMESPACE"]["valueFrom"] == {
        "fieldRef": {"fieldPath": "metadata.namespace"}
    }
    # The node's name, for the AgentUp metric's capacity type (read from the node's labels).
    assert entries["NODE_NAME"]["valueFrom"] == {"fieldRef": {"fieldPath": "spec.nodeName"}}


@pytest.mark.parametrize(
    ("overrides", "path"),
    [
        ({"extra": {"NO_SUCH_SETTING": "1"}}, "agent_env.extra.NO_SUCH_SETTING"),
        ({"extra": {"DRAIN_SECONDS": "5"}}, "agent_env.extra.DRAIN_SECONDS"),
        ({"extra": {"POD_NAME": "x"}}, "agent_env.extra.POD_NAME"),
        ({"input_s3_buckets": ("a,b",)}, "agent_env.input_s3_buckets"),
        ({"input_fetch_timeout_seconds": 0}, "agent_env.input_fetch_timeout_seconds"),
        ({"input_max_total_bytes": 0}, "agent_env.input_max_total_bytes"),
        ({"task_limits": [1]}, "agent_env.task_limits"),
    ],
)
def test_bad_agent_env_names_the_field(overrides: dict[str, object], path: str) -> None:
    with pytest.raises(ValueError, match=rf"^{path}: got "):
        _env(**overrides).to_env()


def test_settings_table_is_consistent() -> None:
    for setting in settings.SETTINGS:
        assert setting.doc, setting.name
        assert setting.kind in ("str", "bool", "int", "float", "csv", "json", "port")
        if setting.default is not None and setting.kind in ("int", "float", "port"):
            low, high = setting.minimum, setting.maximum
            assert low is None or setting.default >= low, setting.name
            assert high is None or setting.default <= high, setting.name
        if setting.default is not None:
            # The written form of the default parses back to the default.
            text = settings.to_env_value(setting.name, setting.default)
            assert settings.parse({setting.name: text}, setting.name) == setting.default
    with pytest.raises(KeyError):
        settings.raw({}, "NOT_A_SETTING")


DURATIONS = [s.name for s in settings.SETTINGS if s.kind == "float"]


@pytest.mark.parametrize("name", DURATIONS)
@pytest.mark.parametrize("text", ["inf", "-inf", "1e300", "1e10"])
def test_durations_are_finite_and_bounded(name: str, text: str) -> None:
    # Waits and socket timeouts raise OverflowError past ~9.2e9 s (and on inf): a value the
    # agent cannot wait for is a config error naming the variable, not a crash per task.
    with pytest.raises(settings.ConfigError, match=rf"^{name}: '{text}' is out of range"):
        settings.parse({name: text}, name)


def test_every_duration_has_an_upper_bound_the_stack_config_fits() -> None:
    for name in DURATIONS:
        assert settings.BY_NAME[name].maximum is not None, name
    # The stack config allows jobTimeoutSeconds up to 36000 and drainSeconds up to 3600.
    assert settings.parse({"JOB_TIMEOUT_SECONDS": "36000"}, "JOB_TIMEOUT_SECONDS") == 36000
    assert settings.parse({"DRAIN_SECONDS": "3600"}, "DRAIN_SECONDS") == 3600


def test_every_setting_has_a_row_in_the_agent_docs() -> None:
    text = (Path(__file__).resolve().parents[2] / "docs" / "agent.md").read_text()
    table = "\n".join(line for line in text.splitlines() if line.startswith("| `"))
    missing = [s.name for s in settings.SETTINGS if f"`{s.name}`" not in table]
    assert not missing, f"add rows for {missing} to docs/agent.md (Configuration)"
