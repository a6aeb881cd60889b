"""The task API stage's X-Ray sampling rule: every task traced by default, bounded input."""

from __future__ import annotations

import pytest

from sdfleet.components.builders import api as apib
from sdfleet.components.config import ConfigError, parse_config, split_namespaced


def test_the_rule_comes_before_xrays_default_and_keeps_the_rate() -> None:
    rule = apib.sampling_rule("sdfleet-0123456789abcdef", 0.25)
    assert rule["fixed_rate"] == 0.25 and rule["reservoir_size"] == 1
    # X-Ray's default rule has priority 10000; lower numbers are evaluated first.
    assert 1 <= rule["priority"] < 10000
    assert rule["service_type"] == "AWS::ApiGateway::Stage"
    assert "service_name" not in rule  # the component adds "<api name>/<stage>"


@pytest.mark.parametrize("rate", [-0.1, 1.5])
def test_a_rate_outside_0_1_is_refused(rate: float) -> None:
    with pytest.raises(ValueError, match="trace_sample_rate"):
        apib.sampling_rule("sdfleet-x", rate)


def test_rule_names_fit_xrays_32_characters() -> None:
    with pytest.raises(ValueError, match="1-32"):
        apib.sampling_rule("x" * 33, 1.0)


def test_the_stack_setting_is_checked_with_its_path(dev_config: dict[str, object]) -> None:
    dev_config["sdfleet:observability"] = {"traceSampleRate": 2}
    with pytest.raises(ConfigError) as err:
        parse_config(split_namespaced(dev_config))
    assert any("observability.traceSampleRate" in line and "2" in line for line in err.value.errors)
