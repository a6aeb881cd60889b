"""The rules as a Pulumi policy pack (``policypack/``): one Pulumi policy per rule id.

Resource rules become ``ResourceValidationPolicy`` (run on each resource's inputs before it is
created or updated); stack rules become ``StackValidationPolicy`` (run on every resource's
outputs, with the property dependencies that tie a bucket to its public access block even
while IDs are unknown). Both convert the SDK's ``props`` to :class:`~sdfleet.policy.Resource`
and call the same check functions as ``sdfleet check``.

During ``pulumi preview`` a value that depends on a resource not created yet is unknown: the
SDK's ``props`` proxy raises when one is read. The adapter reads the raw values instead and
turns each unknown into :data:`~sdfleet.policy.UNKNOWN`, which the rules never judge, so a
policy still checks everything that is known (``pulumi up`` runs it again with real values).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from pulumi_policy import (
    EnforcementLevel,
    PolicyResource,
    ReportViolation,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    StackValidationArgs,
    StackValidationPolicy,
)
from pulumi_policy import proxy as sdk_proxy

from sdfleet.policy.model import UNKNOWN, Finding, Resource
from sdfleet.policy.rules import RESOURCE_RULES, STACK_RULES, ResourceRule, StackRule

PACK_NAME = "sdfleet-security"

UNKNOWN_SENTINELS: frozenset[str] = frozenset(
    {
        sdk_proxy.UNKNOWN_BOOLEAN_VALUE,
        sdk_proxy.UNKNOWN_NUMBER_VALUE,
        sdk_proxy.UNKNOWN_STRING_VALUE,
        sdk_proxy.UNKNOWN_ARRAY_VALUE,
        sdk_proxy.UNKNOWN_ASSET_VALUE,
        sdk_proxy.UNKNOWN_ARCHIVE_VALUE,
        sdk_proxy.UNKNOWN_OBJECT_VALUE,
    }
)


def plain(value: Any) -> Any:
    """A props value as plain dicts and lists, with unknowns as :data:`UNKNOWN`.

    The SDK wraps dicts and lists in proxies whose item access raises on unknowns; its own
    serializer unwraps them through the ``"__target"`` key, and so does this."""
    if isinstance(value, (sdk_proxy._DictProxy, sdk_proxy._ListProxy)):
        value = value["__target"]
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, str) and value in UNKNOWN_SENTINELS:
        return UNKNOWN
    return value


def resource_from_args(args: ResourceValidationArgs) -> Resource:
    return Resource(args.resource_type, args.name, plain(args.props), urn=args.urn)


def resource_from_stack(res: PolicyResource) -> Resource:
    deps = {key: [d.urn for d in found] for key, found in res.property_dependencies.items()}
    return Resource(res.resource_type, res.name, plain(res.props), res.urn, deps)


def _report(found: Iterable[Finding], report_violation: ReportViolation) -> None:
    for item in found:
        report_violation(item.message, item.subject if item.subject.startswith("urn:") else None)


def resource_validation(
    rule: ResourceRule,
) -> Callable[[ResourceValidationArgs, ReportViolation], None]:
    def validate(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
        _report(rule.check(resource_from_args(args)), report_violation)

    return validate


def stack_validation(rule: StackRule) -> Callable[[StackValidationArgs, ReportViolation], None]:
    def validate(args: StackValidationArgs, report_violation: ReportViolation) -> None:
        _report(rule.check([resource_from_stack(r) for r in args.resources]), report_violation)

    return validate


def policies(
    level: EnforcementLevel = EnforcementLevel.MANDATORY,
) -> list[ResourceValidationPolicy | StackValidationPolicy]:
    """One policy per rule, named by the rule id (so each can be configured on its own)."""
    found: list[ResourceValidationPolicy | StackValidationPolicy] = [
        ResourceValidationPolicy(
            name=rule.id,
            description=rule.description,
            validate=resource_validation(rule),
            enforcement_level=level,
        )
        for rule in RESOURCE_RULES
    ]
    found += [
        StackValidationPolicy(
            name=rule.id,
            description=rule.description,
            validate=stack_validation(rule),
            enforcement_level=level,
        )
        for rule in STACK_RULES
    ]
    return found
