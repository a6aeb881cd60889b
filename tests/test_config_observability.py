"""sdfleet:observability: tracing and the alarm thresholds, their defaults and range errors."""

from __future__ import annotations

from typing import Any

import pytest

from sdfleet.components.config import ConfigError, parse_config, split_namespaced
from sdfleet.components.config_model import ObservabilityConfig

RUNTIMES = [{"name": "sd15", "type": "sdwebui", "modelFilename": "m.safetensors"}]


def _observability(values: dict[str, Any]) -> ObservabilityConfig:
    raw = {"sdfleet:runtimes": RUNTIMES, "sdfleet:observability": values}
    return parse_config(split_namespaced(raw)).observability


def _errors(values: dict[str, Any]) -> list[str]:
    with pytest.raises(ConfigError) as err:
        _observability(values)
    return err.value.errors


def test_defaults() -> None:
    config = _observability({})
    assert config.tracing is True
    assert config.oldest_message_alarm_seconds == 900
    assert config.gpu_idle_alarm_minutes == 15
    assert config.spot_interruptions_alarm_per_hour == 5


def test_values_and_cli_strings_parse() -> None:
    config = _observability(
        {
            "tracing": "false",
            "oldestMessageAlarmSeconds": "60",
            "gpuIdleAlarmMinutes": 1440,
            "spotInterruptionsAlarmPerHour": 1000,
        }
    )
    assert (config.tracing, config.oldest_message_alarm_seconds) == (False, 60)
    assert (config.gpu_idle_alarm_minutes, config.spot_interruptions_alarm_per_hour) == (1440, 1000)


@pytest.mark.parametrize(
    ("key", "value", "allowed"),
    [
        ("oldestMessageAlarmSeconds", 59, "between 60 and 86400"),
        ("oldestMessageAlarmSeconds", 86401, "between 60 and 86400"),
        ("gpuIdleAlarmMinutes", 4, "between 5 and 1440"),
        ("spotInterruptionsAlarmPerHour", 0, "between 1 and 1000"),
    ],
)
def test_errors_name_path_value_and_range(key: str, value: int, allowed: str) -> None:
    assert _errors({key: value}) == [f"sdfleet:observability.{key}: {value} must be {allowed}"]
