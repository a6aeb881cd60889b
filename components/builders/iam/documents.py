"""The one builder of IAM policy documents and statements, and the checks of their inputs.

Every policy the builders render goes through :func:`policy` and :func:`statement`, so the
key order (``Sid, Effect, Principal, Action, Resource, Condition``) and the policy version are
the same everywhere.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

from sdfleet.components.builders.errors import fail

VERSION = "2012-10-17"

Strings = Sequence[str] | str


def _element(value: Strings) -> str | list[str]:
    # One value stays a string (as AWS's own templates write it), several become a list.
    return value if isinstance(value, str) else list(value)


def statement(
    actions: Strings,
    resources: Strings | None = None,
    *,
    sid: str | None = None,
    effect: Literal["Allow", "Deny"] = "Allow",
    principal: Mapping[str, Strings] | str | None = None,
    condition: Mapping[str, Mapping[str, Any]] | None = None,
) -> dict[str, Any]:
    """One statement. ``resources`` is None only in trust policies (they name no resource);
    ``principal`` only in trust and resource policies."""
    s: dict[str, Any] = {}
    if sid is not None:
        s["Sid"] = sid
    s["Effect"] = effect
    if principal is not None:
        s["Principal"] = principal if isinstance(principal, str) else dict(principal)
    s["Action"] = _element(actions)
    if resources is not None:
        s["Resource"] = _element(resources)
    if condition:
        s["Condition"] = {op: dict(keys) for op, keys in condition.items()}
    return s


def policy(*statements: dict[str, Any], policy_id: str | None = None) -> dict[str, Any]:
    """A policy document of ``statements`` (``policy_id`` is the optional ``Id`` element)."""
    doc: dict[str, Any] = {"Version": VERSION}
    if policy_id is not None:
        doc["Id"] = policy_id
    doc["Statement"] = list(statements)
    return doc


def checked_arn(field: str, value: str, service: str) -> str:
    """``value`` if it is an ARN of ``service``; the builders never widen a bad ARN."""
    if not isinstance(value, str) or not value.startswith("arn:") or f":{service}:" not in value:
        raise fail(field, value, f"an {service} ARN")
    return value


def check_account_id(field: str, value: str) -> str:
    if not value.isdigit() or len(value) != 12:
        raise fail(field, value, "a 12-digit AWS account id")
    return value


def topic_queue_policy(queue_arn: str, topic_arn: str, sid: str) -> dict[str, Any]:
    """An SQS queue policy: only the SNS topic ``topic_arn`` may send (statement ``sid``), and
    no request without TLS."""
    return policy(
        statement(
            "sqs:SendMessage",
            queue_arn,
            sid=sid,
            principal={"Service": "sns.amazonaws.com"},
            condition={"ArnEquals": {"aws:SourceArn": topic_arn}},
        ),
        statement(
            "sqs:*",
            queue_arn,
            sid="DenyInsecureTransport",
            effect="Deny",
            principal="*",
            condition={"Bool": {"aws:SecureTransport": "false"}},
        ),
    )
