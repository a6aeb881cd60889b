"""The task API's infrastructure pieces for task records (issue 11): the Lambda's and the
agent's table statements, the presigning grant, the status route's permission and the
deployment trigger, and the bounds ApiIngressArgs enforces."""

from __future__ import annotations

import pytest

from sdfleet.agent.contract import COMFYUI, RuntimeInfo
from sdfleet.components.api_ingress import ApiIngressArgs
from sdfleet.components.builders import api as apib
from sdfleet.components.builders import iam, s3

TABLE = "arn:aws:dynamodb:us-east-1:123456789012:table/sdfleet-api-task-table"
BUCKET = "arn:aws:s3:::sdfleet-outputs"
LOGS = "arn:aws:logs:us-east-1:123456789012:log-group:fn"
TOPIC = "arn:aws:sns:us-east-1:123456789012:input"
QUEUE = "arn:aws:sqs:us-east-1:123456789012:sd15"


def _grants(doc: dict) -> dict[str, tuple[list[str] | str, list[str] | str]]:
    return {s["Sid"]: (s["Action"], s["Resource"]) for s in doc["Statement"]}


def test_the_lambda_may_record_read_and_presign_results_only() -> None:
    doc = iam.task_api_lambda_policy(
        input_topic_arn=TOPIC, output_bucket_arn=BUCKET, log_group_arn=LOGS, task_table_arn=TABLE
    )
    grants = _grants(doc)
    assert grants["RecordAndReadTasks"] == (["dynamodb:PutItem", "dynamodb:GetItem"], TABLE)
    assert grants["PresignResults"] == (
        "s3:GetObject",
        [f"{BUCKET}/*{suffix}" for suffix in s3.OUTPUT_SUFFIXES],
    )
    # Never the offloaded requests (user content) through the presigning grant.
    assert not [r for r in grants["PresignResults"][1] if "request" in r]
    without = iam.task_api_lambda_policy(
        input_topic_arn=TOPIC, output_bucket_arn=BUCKET, log_group_arn=LOGS
    )
    assert set(grants) - set(_grants(without)) == {"RecordAndReadTasks", "PresignResults"}


def test_the_agent_gets_its_table_statement_only_when_given_the_table() -> None:
    kwargs = {"queue_arn": QUEUE, "output_bucket_arn": BUCKET, "output_topic_arn": TOPIC}
    with_table = _grants(iam.runtime_pod_policy(**kwargs, task_table_arn=TABLE))
    assert with_table["AdvanceTaskState"] == (["dynamodb:UpdateItem", "dynamodb:GetItem"], TABLE)
    assert "AdvanceTaskState" not in _grants(iam.runtime_pod_policy(**kwargs))


@pytest.mark.parametrize("arn", ["*", f"{TABLE}/index/*", "arn:aws:s3:::bucket"])
def test_a_bad_table_arn_is_refused(arn: str) -> None:
    with pytest.raises(ValueError, match="table_arn"):
        iam.task_api_lambda_policy(
            input_topic_arn=TOPIC, output_bucket_arn=BUCKET, log_group_arn=LOGS, task_table_arn=arn
        )


def test_the_status_route_permission_and_the_redeploy_trigger() -> None:
    execution = "arn:aws:execute-api:us-east-1:123456789012:abc123"
    assert apib.status_source_arn(execution) == f"{execution}/*/GET/v1alpha2/tasks/*"
    assert apib.STATUS_PATH_PARTS == ("tasks", "{id}")
    assert apib.STATUS_PATH_PARAMETER == "method.request.path.id"
    # The trigger is stable and covers the status route (adding it redeployed the stage).
    assert apib.routes_fingerprint() == apib.routes_fingerprint()
    assert len(apib.routes_fingerprint()) == 64


def _args(**kw: object) -> ApiIngressArgs:
    return ApiIngressArgs(
        input_topic_arn=TOPIC,
        output_bucket_name="sdfleet-outputs",
        output_bucket_arn=BUCKET,
        runtimes=[RuntimeInfo("flux", COMFYUI)],
        **kw,  # type: ignore[arg-type]
    )


def test_args_defaults_and_bounds() -> None:
    args = _args(task_ttl_days=None, status_url_expiry_seconds=None)
    assert (args.task_ttl_days, args.status_url_expiry_seconds) == (7, 900)
    assert args.task_point_in_time_recovery is False
    for bad in ({"task_ttl_days": 0}, {"task_ttl_days": 366}, {"status_url_expiry_seconds": 59},
                {"status_url_expiry_seconds": 43201}):  # fmt: skip
        with pytest.raises(ValueError, match=next(iter(bad))):
            _args(**bad)
