"""Pure builders for the event plane: SNS filter policies, SQS queue settings and the topics'
active tracing."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any

from sdfleet.components.builders.errors import fail
from sdfleet.components.builders.iam.documents import topic_queue_policy
from sdfleet.components.builders.iam.telemetry import sns_tracing_policy

# Raw delivery stays off: see agent/contract.py for why the SNS envelope is kept.
RAW_MESSAGE_DELIVERY = False
FILTER_POLICY_SCOPE = "MessageAttributes"
DLQ_RETENTION_SECONDS = 14 * 24 * 3600
# The agent's heartbeat extends a held message well before this runs out (every 20 s by
# default), so a short timeout means a crashed pod's task is visible again within a minute.
DEFAULT_VISIBILITY_TIMEOUT_SECONDS = 60
DEFAULT_MAX_RECEIVE_COUNT = 3
# Long polling for every consumer, so idle agents cost few requests.
RECEIVE_WAIT_SECONDS = 20
# SNS sends X-Ray segments for sampled messages and passes the trace header to subscribers.
TOPIC_TRACING = "Active"
# X-Ray resource policy names: [\w+=,.@-]{1,128}, unique in the account.
_POLICY_NAME_BAD = re.compile(r"[^\w+=,.@-]")
_POLICY_NAME_MAX = 128


def runtime_filter_policy(runtime_name: str) -> dict[str, list[str]]:
    """Deliver only tasks whose ``runtime`` message attribute names this runtime."""
    return {"runtime": [runtime_name]}


def runtime_filter_policy_json(runtime_name: str) -> str:
    return json.dumps(runtime_filter_policy(runtime_name), separators=(",", ":"))


def redrive_policy(dlq_arn: str, max_receive_count: int) -> str:
    return json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": max_receive_count})


def redrive_allow_policy(source_queue_arn: str) -> str:
    """Only the runtime's own queue may use its DLQ."""
    return json.dumps({"redrivePermission": "byQueue", "sourceQueueArns": [source_queue_arn]})


def queue_policy(queue_arn: str, topic_arn: str) -> dict[str, Any]:
    """Only the input topic may send to a runtime queue; TLS only."""
    return topic_queue_policy(queue_arn, topic_arn, "AllowInputTopic")


def unrouted_filter_policy(runtime_names: list[str]) -> dict[str, object]:
    """Match tasks whose ``runtime`` names no configured runtime, or that carry none."""
    return {
        "$or": [
            {"runtime": [{"anything-but": sorted(runtime_names)}]},
            {"runtime": [{"exists": False}]},
        ]
    }


def unrouted_filter_policy_json(runtime_names: list[str]) -> str:
    return json.dumps(unrouted_filter_policy(runtime_names), separators=(",", ":"))


def tracing_policy_name(project: str, stack: str, component: str) -> str:
    """The X-Ray resource policy's name, unique per stack and component (policy names are
    per account); characters X-Ray refuses become ``-``."""
    name = _POLICY_NAME_BAD.sub("-", f"sdfleet-{project}-{stack}-{component}-sns-tracing")
    if len(name) > _POLICY_NAME_MAX:
        raise fail("tracing policy name", name, f"at most {_POLICY_NAME_MAX} characters")
    return name


def tracing_policy_json(account_id: str, topic_arns: Sequence[str]) -> str:
    """The X-Ray resource policy that lets SNS trace these topics (see
    :func:`sdfleet.components.builders.iam.sns_tracing_policy`)."""
    return json.dumps(sns_tracing_policy(account_id, topic_arns))
