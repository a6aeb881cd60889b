"""Security rules over a resource graph, shared by the tests, ``sdfleet check``/``synth`` and
the Pulumi policy pack (``policypack/``). See docs/policy-checks.md."""

from sdfleet.policy.model import (
    UNKNOWN,
    Finding,
    Resource,
    ResourcesFileError,
    Unknown,
    from_recorder,
    from_resources_json,
)
from sdfleet.policy.rules import RESOURCE_RULES, RULE_IDS, STACK_RULES, run_rules

__all__ = [
    "RESOURCE_RULES",
    "RULE_IDS",
    "STACK_RULES",
    "UNKNOWN",
    "Finding",
    "Resource",
    "ResourcesFileError",
    "Unknown",
    "from_recorder",
    "from_resources_json",
    "run_rules",
]
