"""The task table (``sdfleet.agent.task_state``) as plain data, and who may do what to it.

Pure: no Pulumi import. The key and the TTL attribute come from
``sdfleet.agent.task_state_schema``, the module the store writes with, so the table cannot be
created with names the code does not use.

IAM: one statement per principal, resource = the table ARN only (no index: the table has
none). IAM has no condition key that requires a ConditionExpression, so "PutItem only if the
id is new" is enforced by the store's code (``TaskStore.create``), not by the policy.
``dynamodb:LeadingKeys`` is no use here: task ids are not tied to the caller's identity.
"""

from __future__ import annotations

import re
from typing import Any

from sdfleet.agent import task_state_schema as schema
from sdfleet.components.builders.errors import fail
from sdfleet.components.builders.iam.documents import statement

HASH_KEY = schema.TASK_ID
TTL_ATTRIBUTE = schema.EXPIRES_AT
BILLING_MODE = "PAY_PER_REQUEST"
DEFAULT_TTL_SECONDS = schema.DEFAULT_TTL_SECONDS
# Only key attributes are declared: DynamoDB is schemaless for the rest (and the Pulumi
# provider loops on plans when a non-key attribute is declared).
ATTRIBUTES: tuple[dict[str, str], ...] = ({"name": HASH_KEY, "type": "S"},)

API_ACTIONS: tuple[str, ...] = ("dynamodb:PutItem", "dynamodb:GetItem")
AGENT_ACTIONS: tuple[str, ...] = ("dynamodb:UpdateItem", "dynamodb:GetItem")
SWEEPER_ACTIONS: tuple[str, ...] = ("dynamodb:UpdateItem", "dynamodb:GetItem")

# arn:<partition>:dynamodb:<region>:<account>:table/<name>; no wildcard, no index suffix.
_TABLE_ARN = re.compile(r"^arn:aws[a-z-]*:dynamodb:[a-z0-9-]+:\d{12}:table/[A-Za-z0-9_.-]{3,255}$")
_TABLE_NAME = re.compile(r"^[A-Za-z0-9_.-]{3,255}$")
_KMS_KEY_ARN = re.compile(r"^arn:aws[a-z-]*:kms:[a-z0-9-]+:\d{12}:key/[A-Za-z0-9-]+$")


def table_args(
    *,
    point_in_time_recovery: bool,
    deletion_protection: bool = False,
    kms_key_arn: str | None = None,
) -> dict[str, Any]:
    """Keyword arguments for ``aws.dynamodb.Table`` (its snake_case ``*ArgsDict`` shapes).

    Encryption at rest with KMS: the AWS-managed key ``aws/dynamodb`` unless ``kms_key_arn``
    names a customer key. Point-in-time recovery is the caller's choice (on in prod).
    """
    encryption: dict[str, Any] = {"enabled": True}
    if kms_key_arn is not None:
        if not _KMS_KEY_ARN.match(kms_key_arn):
            raise fail(
                "kms_key_arn",
                kms_key_arn,
                "a KMS key ARN (arn:aws:kms:<region>:<account>:key/<id>)",
            )
        encryption["kms_key_arn"] = kms_key_arn
    return {
        "billing_mode": BILLING_MODE,
        "hash_key": HASH_KEY,
        "attributes": [dict(a) for a in ATTRIBUTES],
        "ttl": {"attribute_name": TTL_ATTRIBUTE, "enabled": True},
        "server_side_encryption": encryption,
        "point_in_time_recovery": {"enabled": bool(point_in_time_recovery)},
        "deletion_protection_enabled": bool(deletion_protection),
    }


def create_table_request(table_name: str) -> dict[str, Any]:
    """The same key schema and billing as boto3 ``CreateTable`` arguments (tests, moto).
    TTL is a separate call: :func:`ttl_request`."""
    _check_table_name(table_name)
    return {
        "TableName": table_name,
        "BillingMode": BILLING_MODE,
        "KeySchema": [{"AttributeName": HASH_KEY, "KeyType": "HASH"}],
        "AttributeDefinitions": [
            {"AttributeName": a["name"], "AttributeType": a["type"]} for a in ATTRIBUTES
        ],
        "SSESpecification": {"Enabled": True},
    }


def ttl_request(table_name: str) -> dict[str, Any]:
    """boto3 ``UpdateTimeToLive`` arguments enabling the TTL attribute."""
    _check_table_name(table_name)
    return {
        "TableName": table_name,
        "TimeToLiveSpecification": {"Enabled": True, "AttributeName": TTL_ATTRIBUTE},
    }


def api_task_table_statements(table_arn: str) -> list[dict[str, Any]]:
    """The task API Lambda creates records (conditional put) and reads them for the status API."""
    return [_statement("RecordAndReadTasks", API_ACTIONS, table_arn)]


def agent_task_table_statements(table_arn: str) -> list[dict[str, Any]]:
    """The agent pod role moves states forward (conditional updates, which also create the
    record of a task sent straight to SNS) and reads a record back after a refused update."""
    return [_statement("AdvanceTaskState", AGENT_ACTIONS, table_arn)]


def sweeper_task_table_statements(table_arn: str) -> list[dict[str, Any]]:
    """The DLQ sweeper marks dead-lettered tasks failed (the same forward-only update)."""
    return [_statement("FailDeadLetteredTasks", SWEEPER_ACTIONS, table_arn)]


def _statement(sid: str, actions: tuple[str, ...], table_arn: str) -> dict[str, Any]:
    if not isinstance(table_arn, str) or not _TABLE_ARN.match(table_arn):
        raise fail(
            "table_arn",
            table_arn,
            "a DynamoDB table ARN (arn:aws:dynamodb:<region>:<account>:table/<name>)",
        )
    return statement(list(actions), table_arn, sid=sid)


def _check_table_name(table_name: str) -> None:
    if not isinstance(table_name, str) or not _TABLE_NAME.match(table_name):
        raise fail("table_name", table_name, "3-255 characters of A-Z a-z 0-9 _ . -")
