"""The sdfleet Pulumi program: validate the stack config, build the pipeline, export outputs."""

import json
from typing import Any

import pulumi
from pulumi.runtime.config import CONFIG, get_config_env

from sdfleet.components.config import ConfigError, parse_config, split_namespaced
from sdfleet.components.pipeline import SdPipeline, SdPipelineArgs


def _stack_config() -> dict[str, Any]:
    """Every ``sdfleet:`` key, so unknown ones are reported too. Structured values arrive as
    JSON text; scalars stay strings and the model converts them."""
    values = {**get_config_env(), **CONFIG.get()}
    raw: dict[str, Any] = {}
    for key, value in split_namespaced(values).items():
        if isinstance(value, str) and value.lstrip()[:1] in ("{", "["):
            value = json.loads(value)
        raw[key] = value
    return raw


try:
    config = parse_config(_stack_config())
except ConfigError as err:
    # One message with every problem, before any resource is registered.
    raise pulumi.RunError(str(err)) from None

pipeline = SdPipeline("sdfleet", SdPipelineArgs(config=config))
for output_name, value in pipeline.outputs.items():
    pulumi.export(output_name, value)
