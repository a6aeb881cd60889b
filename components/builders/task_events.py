"""Pure builders for TaskEvents: the webhook subscription's filter policy, the Lambdas' code
bundle and settings, and the alarm on the webhook dead-letter queue.

The webhook queue is subscribed to the output topic with raw message delivery **off**
(``sdfleet.agent.webhooks`` takes the SNS envelope's ``MessageId`` as the ``webhook-id``) and a
filter on the message body, so only notifications that carry a ``callback`` reach it. SNS's
``exists`` operator matches leaf values only, not an object such as ``callback``; every
callback the agent or the sweeper publishes has a ``url`` string (``Callback.to_json``), so the
policy tests ``callback.url``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

WEBHOOK_FILTER_POLICY_SCOPE = "MessageBody"
WEBHOOK_RAW_MESSAGE_DELIVERY = False

LAMBDA_RUNTIME = "python3.13"  # the task API's (sdfleet.components.api_ingress)
LAMBDA_ARCHITECTURE = "arm64"
SWEEPER_HANDLER = "sdfleet.components.task_events.sweeper.handler"
WEBHOOK_HANDLER = "sdfleet.components.task_events.webhook.handler"
# EventBridge: every minute, so a dead-lettered task hears within the 5 minutes.
SWEEP_SCHEDULE = "rate(1 minute)"
SWEEPER_TIMEOUT_SECONDS = 50
SWEEP_MAX_MESSAGES = 200  # under the schedule's period: runs do not overlap
# handle_batch keeps deadline (20 s) + 5 s free per record; a batch of 10 fits easily.
WEBHOOK_TIMEOUT_SECONDS = 120
WEBHOOK_BATCH_SIZE = 10
# AWS: a Lambda-triggering queue's visibility timeout at least 6x the function's timeout.
WEBHOOK_VISIBILITY_TIMEOUT_SECONDS = 6 * WEBHOOK_TIMEOUT_SECONDS
# A record whose processing crashed this many times goes to the webhook DLQ (retries are new
# messages, so this never counts delivery failures).
WEBHOOK_MAX_RECEIVE_COUNT = 5
# Retries run over 27 h 35 min; 4 days keeps a delayed hop comfortably within retention.
WEBHOOK_QUEUE_RETENTION_SECONDS = 4 * 24 * 3600
WEBHOOK_DLQ_RETENTION_SECONDS = 14 * 24 * 3600
WEBHOOK_DLQ_ALARM_DESCRIPTION = (
    "Webhook deliveries ran out of retries (27 h) or kept crashing the delivery function. "
    "First check: the receiver's URL answers 2xx to a signed POST, and the webhook Lambda's "
    "log group (level ERROR); redrive the webhook dead-letter queue for one more attempt each. "
    "Runbook: docs/troubleshooting.md#webhook-dlq-not-empty"
)
SECRET_DESCRIPTION = (
    "sdfleet webhook signing secrets: whitespace-separated whsec_<base64> values, newest first"
)

# What the Lambdas import besides their own package (stdlib + boto3 otherwise).
AGENT_GLOBS = ("contract*.py", "task_state*.py", "webhooks*.py", "netguard.py")
PRODUCT_MODULES = ("dlq.py",)  # sdfleet/dlq.py: the DLQ peek the CLI uses too
LAMBDA_PACKAGE_DIR = "sdfleet/components/task_events"
LAMBDA_PACKAGE_INITS = (
    "sdfleet/__init__.py",
    "sdfleet/agent/__init__.py",
    "sdfleet/components/__init__.py",
)


def webhook_filter_policy() -> dict[str, Any]:
    """Deliver only notifications whose body has a ``callback`` (with its ``url``)."""
    return {"callback": {"url": [{"exists": True}]}}


def webhook_filter_policy_json() -> str:
    return json.dumps(webhook_filter_policy(), separators=(",", ":"))


def lambda_files(package_dir: Path, agent_dir: Path, sdfleet_dir: Path) -> dict[str, Path]:
    """Archive path -> source file, for both functions (one archive): the task-event package,
    the agent modules it imports (``AGENT_GLOBS``) and ``sdfleet/dlq.py``. The package markers
    (``LAMBDA_PACKAGE_INITS``) are added empty: the real ones import Pulumi."""
    files: dict[str, Path] = {}
    for module in sorted(package_dir.glob("*.py")):
        files[f"{LAMBDA_PACKAGE_DIR}/{module.name}"] = module
    for pattern in AGENT_GLOBS:
        for module in sorted(agent_dir.glob(pattern)):
            files[f"sdfleet/agent/{module.name}"] = module
    for name in PRODUCT_MODULES:
        files[f"sdfleet/{name}"] = sdfleet_dir / name
    return files


def queue_url_from_arn(arn: str) -> str:
    """The queue URL SQS gives a queue ARN ``arn:<partition>:sqs:<region>:<account>:<name>``."""
    parts = arn.split(":")
    if len(parts) != 6 or parts[0] != "arn" or parts[2] != "sqs" or not parts[5]:
        raise ValueError(f"not an SQS queue ARN: {arn!r}")
    suffix = "amazonaws.com.cn" if parts[1] == "aws-cn" else "amazonaws.com"
    return f"https://sqs.{parts[3]}.{suffix}/{parts[4]}/{parts[5]}"


def dlq_urls_env(dlq_urls: dict[str, str]) -> str:
    """The sweeper's ``DLQ_URLS``: runtime -> DLQ URL."""
    if not dlq_urls:
        raise ValueError("the sweeper needs at least one runtime DLQ")
    return json.dumps(dict(sorted(dlq_urls.items())), separators=(",", ":"))
