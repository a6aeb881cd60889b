"""The one shape every rule reads: a resource as type, name, URN and properties.

Three sources are converted to it: the recording mocks' :class:`~sdfleet.mocking.Recorder`
(tests, ``sdfleet synth``), a ``resources.json`` written by ``sdfleet synth`` (``sdfleet
check``), and the Pulumi policy SDK's ``args.props`` (the policy pack, :mod:`sdfleet.policy.pack`).
Properties are camelCase, as the engine sees them.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any


class Unknown:
    """A value the engine does not know yet (``pulumi preview``). Rules never judge one."""

    _instance: Unknown | None = None

    def __new__(cls) -> Unknown:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "<unknown>"


UNKNOWN = Unknown()


@dataclass(frozen=True)
class Resource:
    type: str
    name: str
    props: Mapping[str, Any]
    urn: str | None = None
    # Property name -> URNs of the resources that property's value came from (policy SDK only).
    property_dependencies: Mapping[str, Sequence[str]] = field(default_factory=dict)

    @property
    def subject(self) -> str:
        """How a finding names the resource: its URN when known, else its name."""
        return self.urn or self.name


@dataclass(frozen=True)
class Finding:
    rule: str
    resource_type: str
    name: str
    subject: str
    message: str

    def line(self) -> str:
        """``<urn or name>: <rule id>: <message>``, as ``sdfleet check`` prints it."""
        return f"{self.subject}: {self.rule}: {self.message}"

    def __str__(self) -> str:
        return f"{self.resource_type} {self.name}: {self.message} [{self.rule}]"


def finding(rule: str, res: Resource, message: str) -> Finding:
    return Finding(rule, res.type, res.name, res.subject, message)


# The outputs rules read besides inputs: what other resources refer to a resource by.
IDENTITY_OUTPUTS: tuple[str, ...] = ("id", "arn", "name", "url", "bucket")


def _props(inputs: Mapping[str, Any], state: Mapping[str, Any]) -> dict[str, Any]:
    """Inputs, plus the identity outputs the mocks assigned (a test that removes an input on
    a cloned graph must not see it come back from the recorded state)."""
    return {**{k: state[k] for k in IDENTITY_OUTPUTS if k in state}, **inputs}


def from_recorder(recorded: Iterable[Any]) -> list[Resource]:
    """From :class:`sdfleet.mocking.Recorded` entries."""
    return [Resource(r.type, r.name, _props(r.inputs, r.state), urn=r.urn) for r in recorded]


class ResourcesFileError(ValueError):
    """``resources.json`` is not what ``sdfleet synth`` writes."""


_REGION_IN_ARN = re.compile(r"arn:aws[a-z-]*:[a-z0-9-]+:([a-z]{2}(?:-[a-z]+)+-\d):")


def from_resources_json(data: Any, source: str = "resources.json") -> list[Resource]:
    """From the list ``sdfleet synth`` writes (``type``, ``name``, ``parent``, ``inputs``).

    The file holds inputs only, so the placeholder outputs the mocks gave each resource (IDs,
    ARNs) are recomputed the same way, in the region the file's ARNs name; entries that carry
    ``state`` (and ``urn``) use those instead.
    """
    from sdfleet.mocking import Recorder, RecordingMocks, mock_id

    if not isinstance(data, list):
        raise ResourcesFileError(
            f"{source}: expected a list of resources, got {type(data).__name__}"
        )
    match = _REGION_IN_ARN.search(json.dumps(data))
    mocks = RecordingMocks(Recorder(), region=match.group(1) if match else "us-east-1")
    out: list[Resource] = []
    for i, entry in enumerate(data):
        if not isinstance(entry, dict):
            raise ResourcesFileError(f"{source}[{i}]: expected an object, got {entry!r:.60}")
        type_, name, inputs = entry.get("type"), entry.get("name"), entry.get("inputs", {})
        if not isinstance(type_, str) or not isinstance(name, str) or not isinstance(inputs, dict):
            raise ResourcesFileError(
                f"{source}[{i}]: needs string 'type' and 'name' and an object 'inputs'"
            )
        state = entry.get("state")
        if not isinstance(state, dict):
            state = {"id": mock_id(name), **mocks._outputs(type_, name, inputs)}
        urn = entry.get("urn") if isinstance(entry.get("urn"), str) else None
        out.append(Resource(type_, name, _props(inputs, state), urn=urn))
    return out
