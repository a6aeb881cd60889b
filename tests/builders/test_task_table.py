"""The task table's definition and its IAM statements, as pure data."""

from __future__ import annotations

import re
from typing import Any

import pytest

from sdfleet.agent import task_state_schema as schema
from sdfleet.components.builders import task_table

ARN = "arn:aws:dynamodb:us-west-2:111122223333:table/sdfleet-tasks"


def test_table_args_match_what_the_store_writes() -> None:
    args = task_table.table_args(point_in_time_recovery=True)
    assert args == {
        "billing_mode": "PAY_PER_REQUEST",
        "hash_key": schema.TASK_ID,
        "attributes": [{"name": "task_id", "type": "S"}],
        "ttl": {"attribute_name": schema.EXPIRES_AT, "enabled": True},
        "server_side_encryption": {"enabled": True},
        "point_in_time_recovery": {"enabled": True},
        "deletion_protection_enabled": False,
    }
    dev = task_table.table_args(point_in_time_recovery=False, deletion_protection=True)
    assert dev["point_in_time_recovery"] == {"enabled": False}
    assert dev["deletion_protection_enabled"] is True
    # The builder hands out copies: a caller's edit does not change the module's data.
    args["attributes"][0]["name"] = "changed"
    assert task_table.ATTRIBUTES[0]["name"] == "task_id"


def test_a_customer_kms_key_is_checked() -> None:
    key = "arn:aws:kms:us-west-2:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab"
    args = task_table.table_args(point_in_time_recovery=True, kms_key_arn=key)
    assert args["server_side_encryption"] == {"enabled": True, "kms_key_arn": key}
    with pytest.raises(ValueError, match="kms_key_arn"):
        task_table.table_args(point_in_time_recovery=True, kms_key_arn="alias/aws/dynamodb")


def test_boto3_requests_describe_the_same_table() -> None:
    create = task_table.create_table_request("sdfleet-tasks")
    assert create["KeySchema"] == [{"AttributeName": schema.TASK_ID, "KeyType": "HASH"}]
    assert create["AttributeDefinitions"] == [{"AttributeName": "task_id", "AttributeType": "S"}]
    assert create["BillingMode"] == task_table.BILLING_MODE
    ttl = task_table.ttl_request("sdfleet-tasks")["TimeToLiveSpecification"]
    assert ttl == {"Enabled": True, "AttributeName": schema.EXPIRES_AT}
    assert task_table.DEFAULT_TTL_SECONDS == 7 * 24 * 3600
    for bad in ("ab", "has space", "x" * 256):
        with pytest.raises(ValueError, match="table_name"):
            task_table.create_table_request(bad)


@pytest.mark.parametrize(
    ("build", "sid", "actions"),
    [
        (task_table.api_task_table_statements, "RecordAndReadTasks", ["dynamodb:PutItem", "dynamodb:GetItem"]),
        (task_table.agent_task_table_statements, "AdvanceTaskState", ["dynamodb:UpdateItem", "dynamodb:GetItem"]),
        (task_table.sweeper_task_table_statements, "FailDeadLetteredTasks", ["dynamodb:UpdateItem", "dynamodb:GetItem"]),
    ],
)  # fmt: skip
def test_each_principal_gets_exact_actions_on_the_table_only(
    build: Any, sid: str, actions: list[str]
) -> None:
    (statement,) = build(ARN)
    assert statement == {"Sid": sid, "Effect": "Allow", "Action": actions, "Resource": ARN}
    # The key order of the iam package's statement(): Sid, Effect, Action, Resource.
    assert list(statement) == ["Sid", "Effect", "Action", "Resource"]
    assert re.fullmatch(r"[A-Za-z0-9]+", statement["Sid"])
    # Nobody may scan, query, delete or touch the table's settings.
    assert not {"dynamodb:Scan", "dynamodb:Query", "dynamodb:DeleteItem"} & set(actions)


def test_sids_are_distinct_across_principals() -> None:
    builders = (
        task_table.api_task_table_statements,
        task_table.agent_task_table_statements,
        task_table.sweeper_task_table_statements,
    )
    sids = [s["Sid"] for build in builders for s in build(ARN)]
    assert len(set(sids)) == len(sids)


@pytest.mark.parametrize(
    "bad",
    [
        "arn:aws:dynamodb:us-west-2:111122223333:table/*",
        "arn:aws:dynamodb:us-west-2:111122223333:table/sdfleet-tasks/index/by-key",
        "arn:aws:dynamodb:us-west-2:*:table/sdfleet-tasks",
        "arn:aws:s3:::sdfleet-tasks",
        "*",
        "",
    ],
)
def test_statements_refuse_anything_but_one_table_arn(bad: str) -> None:
    with pytest.raises(ValueError, match="table_arn"):
        task_table.agent_task_table_statements(bad)


def test_other_partitions_are_accepted() -> None:
    arn = "arn:aws-cn:dynamodb:cn-north-1:111122223333:table/sdfleet-tasks"
    assert task_table.api_task_table_statements(arn)[0]["Resource"] == arn
