"""TaskEvents under Pulumi's mocks: the webhook queues and subscription, the secret, both
Lambdas with their least-privilege policies, the schedule, the trigger and the alarm; and the
pure policy builders."""

from __future__ import annotations

import json
from typing import Any

import pulumi
import pytest

from sdfleet.agent.webhooks_sign import parse_secrets
from sdfleet.components.builders import iam
from sdfleet.components.builders import task_events as teb
from sdfleet.components.task_events_component import TaskEvents, TaskEventsArgs
from sdfleet.mocking import Recorded, Recorder, run_program

ACCOUNT = "123456789012"
TOPIC = f"arn:aws:sns:us-east-1:{ACCOUNT}:sdfleet-output"
TABLE = f"arn:aws:dynamodb:us-east-1:{ACCOUNT}:table/sdfleet-tasks"
DLQS = {rt: f"arn:aws:sqs:us-east-1:{ACCOUNT}:{rt}-dlq" for rt in ("sd15", "flux")}
DLQ_URLS = {rt: f"https://sqs.us-east-1.amazonaws.com/{ACCOUNT}/{rt}-dlq" for rt in DLQS}
ALARMS = f"arn:aws:sns:us-east-1:{ACCOUNT}:alarms"
LOGS = f"arn:aws:logs:us-east-1:{ACCOUNT}:log-group:fn"


def _args(**kw: Any) -> TaskEventsArgs:
    kw.setdefault("dlq_urls", dict(DLQ_URLS))
    kw.setdefault("dlq_arns", dict(DLQS))
    return TaskEventsArgs(
        output_topic_arn=TOPIC,
        task_table_name="sdfleet-tasks",
        task_table_arn=TABLE,
        **kw,
    )


@pytest.fixture(scope="module")
def graph() -> Recorder:
    def program() -> None:
        events = TaskEvents("ev", _args(alarm_topic_arn=ALARMS))
        pulumi.export("secret", events.webhook_secret_arn)
        # As SdPipeline wires it: the DLQ URLs derived from their ARNs (Outputs).
        TaskEvents(
            "derived",
            _args(
                dlq_urls=None, dlq_arns={rt: pulumi.Output.from_input(a) for rt, a in DLQS.items()}
            ),
        )

    return run_program(program)


def _statements(recorded: Recorded) -> dict[str, tuple[Any, Any]]:
    doc = json.loads(recorded.inputs["policy"])
    return {s["Sid"]: (s["Action"], s["Resource"]) for s in doc["Statement"]}


def test_the_webhook_queue_listens_for_callbacks_only(graph: Recorder) -> None:
    sub = graph.one("aws:sns/topicSubscription:TopicSubscription", "ev-webhook-subscription")
    assert sub.inputs["topic"] == TOPIC and sub.inputs["protocol"] == "sqs"
    assert sub.inputs["rawMessageDelivery"] is False
    assert sub.inputs["filterPolicyScope"] == "MessageBody"
    assert json.loads(sub.inputs["filterPolicy"]) == {"callback": {"url": [{"exists": True}]}}
    queue = graph.one("aws:sqs/queue:Queue", "ev-webhook-queue")
    dlq = graph.one("aws:sqs/queue:Queue", "ev-webhook-dlq")
    assert queue.inputs["sqsManagedSseEnabled"] and dlq.inputs["sqsManagedSseEnabled"]
    assert queue.inputs["visibilityTimeoutSeconds"] == 6 * teb.WEBHOOK_TIMEOUT_SECONDS
    assert json.loads(queue.inputs["redrivePolicy"]) == {
        "deadLetterTargetArn": dlq.state["arn"],
        "maxReceiveCount": teb.WEBHOOK_MAX_RECEIVE_COUNT,
    }
    policy = json.loads(graph.one("aws:sqs/queuePolicy:QueuePolicy", "ev-webhook-queue-policy")
                        .inputs["policy"])  # fmt: skip
    allow = policy["Statement"][0]
    assert allow["Condition"] == {"ArnEquals": {"aws:SourceArn": TOPIC}}
    assert allow["Principal"] == {"Service": "sns.amazonaws.com"}


def test_the_secret_starts_with_a_generated_signing_key(graph: Recorder) -> None:
    version = graph.one(
        "aws:secretsmanager/secretVersion:SecretVersion", "ev-webhook-secret-initial"
    )
    wrapped = version.inputs["secretString"]
    # Sent to the engine as a secret (Pulumi's secret signature), never in plain state.
    assert wrapped["4dabf18193072939515e22adb298388d"] == "1b47061264138c4ac30d75fd1eb44270"
    (secret,) = parse_secrets(wrapped["value"])
    assert len(secret.encoded()) > 40
    assert graph.one("aws:secretsmanager/secret:Secret", "ev-webhook-secret").parent == "ev"


def test_the_sweeper_peeks_the_dlqs_marks_and_publishes_only(graph: Recorder) -> None:
    grants = _statements(graph.one("aws:iam/rolePolicy:RolePolicy", "ev-sweeper-policy"))
    logs = graph.one("aws:cloudwatch/logGroup:LogGroup", "ev-sweeper-logs")
    assert grants == {
        "PeekDeadLetterQueues": (
            ["sqs:ReceiveMessage", "sqs:ChangeMessageVisibility"],
            sorted(DLQS.values()),
        ),
        "FailDeadLetteredTasks": (["dynamodb:UpdateItem", "dynamodb:GetItem"], TABLE),
        "PublishFinalWord": ("sns:Publish", TOPIC),
        "WriteLogs": (["logs:CreateLogStream", "logs:PutLogEvents"], f"{logs.state['arn']}:*"),
        "Tracing": (["xray:PutTelemetryRecords", "xray:PutTraceSegments"], "*"),
    }
    fn = graph.one("aws:lambda/function:Function", "ev-sweeper")
    assert fn.inputs["tracingConfig"] == {"mode": "Active"}
    assert fn.inputs["handler"] == teb.SWEEPER_HANDLER
    assert (fn.inputs["runtime"], fn.inputs["architectures"]) == ("python3.13", ["arm64"])
    env = fn.inputs["environment"]["variables"]
    assert json.loads(env["DLQ_URLS"]) == DLQ_URLS
    assert (env["OUTPUT_TOPIC_ARN"], env["TASK_TABLE_NAME"]) == (TOPIC, "sdfleet-tasks")
    assert env["TASK_TTL_SECONDS"] == str(7 * 86400) and env["MAX_MESSAGES"] == "200"
    assert logs.inputs["retentionInDays"] == 30
    rule = graph.one("aws:cloudwatch/eventRule:EventRule", "ev-sweeper-schedule")
    assert rule.inputs["scheduleExpression"] == "rate(1 minute)"
    target = graph.one("aws:cloudwatch/eventTarget:EventTarget", "ev-sweeper-target")
    assert target.inputs["arn"] == fn.state["arn"]
    permission = graph.one("aws:lambda/permission:Permission", "ev-sweeper-invoke")
    assert permission.inputs["principal"] == "events.amazonaws.com"
    assert permission.inputs["sourceArn"] == rule.state["arn"]


def test_the_webhook_function_reads_its_secret_and_queue_only(graph: Recorder) -> None:
    grants = _statements(graph.one("aws:iam/rolePolicy:RolePolicy", "ev-webhook-policy"))
    queue = graph.one("aws:sqs/queue:Queue", "ev-webhook-queue").state["arn"]
    dlq = graph.one("aws:sqs/queue:Queue", "ev-webhook-dlq").state["arn"]
    secret = graph.one("aws:secretsmanager/secret:Secret", "ev-webhook-secret").state["arn"]
    assert grants["ConsumeWebhookQueue"] == (list(iam.events.WEBHOOK_QUEUE_ACTIONS), queue)
    assert grants["DeadLetterDeliveries"] == ("sqs:SendMessage", dlq)
    assert grants["ReadSigningSecret"] == ("secretsmanager:GetSecretValue", secret)
    assert grants["RecordWebhookAttempts"] == (["dynamodb:UpdateItem"], TABLE)
    assert grants["Tracing"] == (["xray:PutTelemetryRecords", "xray:PutTraceSegments"], "*")
    assert set(grants) == {"ConsumeWebhookQueue", "DeadLetterDeliveries", "ReadSigningSecret",
                           "RecordWebhookAttempts", "WriteLogs", "Tracing"}  # fmt: skip
    fn = graph.one("aws:lambda/function:Function", "ev-webhook")
    assert fn.inputs["tracingConfig"] == {"mode": "Active"}
    env = fn.inputs["environment"]["variables"]
    assert env["WEBHOOK_SECRET_ARN"] == secret and env["TASK_TABLE_NAME"] == "sdfleet-tasks"
    mapping = graph.one("aws:lambda/eventSourceMapping:EventSourceMapping", "ev-webhook-trigger")
    assert mapping.inputs["eventSourceArn"] == queue
    assert mapping.inputs["functionResponseTypes"] == ["ReportBatchItemFailures"]
    alarm = graph.one("aws:cloudwatch/metricAlarm:MetricAlarm", "ev-webhook-dlq-not-empty")
    assert alarm.inputs["dimensions"] == {
        "QueueName": graph.one("aws:sqs/queue:Queue", "ev-webhook-dlq").state["name"]
    }
    assert alarm.inputs["alarmActions"] == [ALARMS] and alarm.inputs["threshold"] == 0


def test_every_resource_is_a_child_of_the_component(graph: Recorder) -> None:
    top = [r for r in graph.resources if r.parent is None]
    assert [(r.type, r.name) for r in top] == [
        ("sdfleet:index:TaskEvents", "ev"),
        ("sdfleet:index:TaskEvents", "derived"),
    ]


def test_dlq_urls_default_to_the_urls_of_their_arns(graph: Recorder) -> None:
    fn = graph.one("aws:lambda/function:Function", "derived-sweeper")
    assert json.loads(fn.inputs["environment"]["variables"]["DLQ_URLS"]) == DLQ_URLS
    assert teb.queue_url_from_arn("arn:aws-cn:sqs:cn-north-1:123456789012:q") == (
        "https://sqs.cn-north-1.amazonaws.com.cn/123456789012/q"
    )
    with pytest.raises(ValueError, match="not an SQS queue ARN"):
        teb.queue_url_from_arn("arn:aws:sns:us-east-1:123456789012:t")


def test_args_are_checked() -> None:
    with pytest.raises(ValueError, match="same runtimes"):
        _args(dlq_urls={"sd15": DLQ_URLS["sd15"]})
    with pytest.raises(ValueError, match="sweep_max_messages"):
        _args(sweep_max_messages=0)
    assert _args(sweep_max_messages=None, log_retention_days=None).sweep_max_messages == 200


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"dlq_arns": []}, "dlq_arns"),
        ({"dlq_arns": ["*"]}, "dlq_arns[0]"),
        ({"task_table_arn": f"{TABLE}/index/x"}, "table_arn"),
        ({"output_topic_arn": "arn:aws:sqs:us-east-1:1:q"}, "output_topic_arn"),
    ],
)
def test_the_sweeper_policy_refuses_bad_arns(kwargs: dict[str, Any], field: str) -> None:
    base: dict[str, Any] = {"dlq_arns": list(DLQS.values()), "output_topic_arn": TOPIC,
                            "task_table_arn": TABLE, "log_group_arn": LOGS}  # fmt: skip
    with pytest.raises(ValueError, match=field.replace("[", r"\[").replace("]", r"\]")):
        iam.sweeper_lambda_policy(**(base | kwargs))


def test_the_webhook_policy_without_a_table_and_with_bad_arns() -> None:
    base: dict[str, Any] = {
        "queue_arn": DLQS["sd15"],
        "dead_letter_queue_arn": DLQS["flux"],
        "secret_arn": f"arn:aws:secretsmanager:us-east-1:{ACCOUNT}:secret:hooks-AbCdEf",
        "log_group_arn": LOGS,
    }
    sids = {s["Sid"] for s in iam.webhook_lambda_policy(**base)["Statement"]}
    assert "RecordWebhookAttempts" not in sids
    with pytest.raises(ValueError, match="task_table_arn"):
        iam.webhook_lambda_policy(**base, task_table_arn=f"{TABLE}/index/by-key")
    with pytest.raises(ValueError, match="secret_arn"):
        iam.webhook_lambda_policy(**(base | {"secret_arn": "*"}))
    kms = f"arn:aws:kms:us-east-1:{ACCOUNT}:key/k-1"
    doc = iam.webhook_lambda_policy(**base, kms_key_arns=[kms])
    assert doc["Statement"][-1]["Resource"] == [kms]


def test_a_component_host_mapping_builds_the_args() -> None:
    from sdfleet.components._inputs import as_args

    args = as_args(
        TaskEventsArgs,
        {
            "output_topic_arn": TOPIC,
            "dlq_arns": dict(DLQS),
            "dlq_urls": dict(DLQ_URLS),
            "task_table_name": "sdfleet-tasks",
            "task_table_arn": TABLE,
            "task_ttl_days": 3,
        },
    )
    assert isinstance(args, TaskEventsArgs) and args.task_ttl_days == 3
    assert args.sweep_max_messages == teb.SWEEP_MAX_MESSAGES
