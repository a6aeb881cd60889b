"""The dev stack's resource graph under the recording mocks (foundation and event plane)."""

from __future__ import annotations

import json
from typing import Any

import pulumi
import pytest

from sdfleet.agent.contract import load_runtimes
from sdfleet.components.api_ingress import CONTRACT_FILE, HANDLER_FILE
from sdfleet.components.builders import api as apib
from sdfleet.components.builders import fanout as fb
from sdfleet.components.builders import s3 as s3b
from sdfleet.invariants import check_all
from sdfleet.mocking import Recorded, Recorder


def doc(rec: Recorded, key: str = "policy") -> dict[str, Any]:
    value = rec.inputs[key]
    return json.loads(value) if isinstance(value, str) else value


def by_name(graph: Recorder, type_: str, name: str) -> Recorded:
    return graph.one(type_, name)


def test_components_and_parents(dev_graph: Recorder) -> None:
    components = {r.name: r for r in dev_graph.resources if r.type.startswith("sdfleet:index:")}
    assert {r.type for r in components.values()} >= {
        "sdfleet:index:SdPipeline",
        "sdfleet:index:ModelStore",
        "sdfleet:index:EventFanout",
        "sdfleet:index:ApiIngress",
        "sdfleet:index:Observability",
    }
    for child in ("sdfleet-models", "sdfleet-events", "sdfleet-api", "sdfleet-observability"):
        assert components[child].parent == "sdfleet"
    # Every non-component resource hangs under a component, never loose in the stack.
    loose = [r.name for r in dev_graph.resources if r.parent is None and r.name != "sdfleet"]
    assert loose == []


@pytest.mark.parametrize("runtime", ["sd15", "flux"])
def test_runtime_queue_dlq_and_subscription(dev_graph: Recorder, runtime: str) -> None:
    queue = by_name(dev_graph, "aws:sqs/queue:Queue", f"sdfleet-events-{runtime}-queue")
    dlq = by_name(dev_graph, "aws:sqs/queue:Queue", f"sdfleet-events-{runtime}-dlq")
    assert queue.parent == dlq.parent == "sdfleet-events"
    assert queue.inputs["sqsManagedSseEnabled"] is True
    assert dlq.inputs["sqsManagedSseEnabled"] is True
    assert queue.inputs["visibilityTimeoutSeconds"] == 60
    assert queue.inputs["receiveWaitTimeSeconds"] == 20
    assert json.loads(queue.inputs["redrivePolicy"]) == {
        "deadLetterTargetArn": dlq.state["arn"],
        "maxReceiveCount": 3,
    }
    assert dlq.inputs["messageRetentionSeconds"] == 14 * 24 * 3600

    allow = by_name(
        dev_graph,
        "aws:sqs/redriveAllowPolicy:RedriveAllowPolicy",
        f"sdfleet-events-{runtime}-dlq-allow",
    )
    assert json.loads(allow.inputs["redriveAllowPolicy"]) == {
        "redrivePermission": "byQueue",
        "sourceQueueArns": [queue.state["arn"]],
    }

    sub = by_name(
        dev_graph,
        "aws:sns/topicSubscription:TopicSubscription",
        f"sdfleet-events-{runtime}-subscription",
    )
    topic = by_name(dev_graph, "aws:sns/topic:Topic", "sdfleet-events-input")
    assert sub.inputs["topic"] == topic.state["arn"]
    assert sub.inputs["protocol"] == "sqs"
    assert sub.inputs["endpoint"] == queue.state["arn"]
    assert json.loads(sub.inputs["filterPolicy"]) == {"runtime": [runtime]}
    assert sub.inputs["filterPolicyScope"] == "MessageAttributes"
    assert sub.inputs["rawMessageDelivery"] is False
    assert json.loads(sub.inputs["redrivePolicy"]) == {"deadLetterTargetArn": dlq.state["arn"]}


@pytest.mark.parametrize("runtime", ["sd15", "flux"])
def test_queue_policy_only_input_topic(dev_graph: Recorder, runtime: str) -> None:
    queue = by_name(dev_graph, "aws:sqs/queue:Queue", f"sdfleet-events-{runtime}-queue")
    topic = by_name(dev_graph, "aws:sns/topic:Topic", "sdfleet-events-input")
    policy = by_name(
        dev_graph, "aws:sqs/queuePolicy:QueuePolicy", f"sdfleet-events-{runtime}-queue-policy"
    )
    assert policy.inputs["queueUrl"] == queue.state["url"]
    allows = [s for s in doc(policy)["Statement"] if s["Effect"] == "Allow"]
    assert allows == [
        {
            "Sid": "AllowInputTopic",
            "Effect": "Allow",
            "Principal": {"Service": "sns.amazonaws.com"},
            "Action": "sqs:SendMessage",
            "Resource": queue.state["arn"],
            "Condition": {"ArnEquals": {"aws:SourceArn": topic.state["arn"]}},
        }
    ]


def test_unrouted_tasks_are_kept(dev_graph: Recorder) -> None:
    sub = by_name(
        dev_graph,
        "aws:sns/topicSubscription:TopicSubscription",
        "sdfleet-events-unrouted-subscription",
    )
    assert json.loads(sub.inputs["filterPolicy"]) == fb.unrouted_filter_policy(["sd15", "flux"])
    queue = by_name(dev_graph, "aws:sqs/queue:Queue", "sdfleet-events-unrouted")
    assert sub.inputs["endpoint"] == queue.state["arn"]


def test_topics_encrypted(dev_graph: Recorder) -> None:
    topics = dev_graph.of_type("aws:sns/topic:Topic")
    assert {t.name for t in topics} >= {"sdfleet-events-input", "sdfleet-events-output"}
    assert all(t.inputs.get("kmsMasterKeyId") for t in topics)


@pytest.mark.parametrize("bucket", ["sdfleet-events-outputs", "sdfleet-models-models"])
def test_buckets_private_encrypted_tls_only(dev_graph: Recorder, bucket: str) -> None:
    b = by_name(dev_graph, "aws:s3/bucket:Bucket", bucket)
    bid = b.state["id"]
    bpa = by_name(
        dev_graph, "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock", f"{bucket}-bpa"
    )
    assert bpa.inputs["bucket"] == bid
    assert all(
        bpa.inputs[k] is True
        for k in (
            "blockPublicAcls",
            "blockPublicPolicy",
            "ignorePublicAcls",
            "restrictPublicBuckets",
        )
    )
    sse = by_name(
        dev_graph,
        "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration",
        f"{bucket}-sse",
    )
    rule = sse.inputs["rules"][0]
    assert rule["applyServerSideEncryptionByDefault"]["sseAlgorithm"] == "AES256"
    policy = doc(by_name(dev_graph, "aws:s3/bucketPolicy:BucketPolicy", f"{bucket}-policy"))
    deny = policy["Statement"][0]
    assert deny["Effect"] == "Deny"
    assert deny["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    assert deny["Resource"] == [b.state["arn"], f"{b.state['arn']}/*"]
    owner = by_name(
        dev_graph, "aws:s3/bucketOwnershipControls:BucketOwnershipControls", f"{bucket}-ownership"
    )
    assert owner.inputs["rule"]["objectOwnership"] == "BucketOwnerEnforced"


def test_output_lifecycle_and_model_versioning(dev_graph: Recorder) -> None:
    lifecycle = by_name(
        dev_graph,
        "aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration",
        "sdfleet-events-outputs-lifecycle",
    )
    rule = lifecycle.inputs["rules"][0]
    assert rule["expiration"]["days"] == 30
    assert rule["status"] == "Enabled"
    versioning = by_name(
        dev_graph, "aws:s3/bucketVersioning:BucketVersioning", "sdfleet-models-models-versioning"
    )
    assert versioning.inputs["versioningConfiguration"]["status"] == "Enabled"


def test_api_key_required_on_every_method(dev_graph: Recorder) -> None:
    methods = dev_graph.of_type("aws:apigateway/method:Method")
    assert len(methods) == len(apib.API_PATHS) + 1 == 3  # the POST routes and the status GET
    for method in methods:
        assert method.inputs["apiKeyRequired"] is True
    assert sorted(m.inputs["httpMethod"] for m in methods) == ["GET", "POST", "POST"]
    [get] = [m for m in methods if m.inputs["httpMethod"] == "GET"]
    assert get.inputs["requestParameters"] == {apib.STATUS_PATH_PARAMETER: True}
    paths = {r.inputs["pathPart"] for r in dev_graph.of_type("aws:apigateway/resource:Resource")}
    assert paths == {"v1alpha2", "v1alpha1", "tasks", "{id}"}
    for integration in dev_graph.of_type("aws:apigateway/integration:Integration"):
        assert integration.inputs["type"] == "AWS_PROXY"


def test_usage_plan_stage_and_key(dev_graph: Recorder) -> None:
    plan = by_name(dev_graph, "aws:apigateway/usagePlan:UsagePlan", "sdfleet-api-usage-plan")
    assert plan.inputs["throttleSettings"] == {"rateLimit": 30, "burstLimit": 50}
    assert plan.inputs["quotaSettings"] == {"limit": 100000, "period": "DAY"}
    stage = by_name(dev_graph, "aws:apigateway/stage:Stage", "sdfleet-api-stage")
    assert plan.inputs["apiStages"][0]["stage"] == stage.inputs["stageName"] == "v1"
    assert stage.inputs["xrayTracingEnabled"] is True
    log_format = json.loads(stage.inputs["accessLogSettings"]["format"])
    assert "$context.identity.apiKey" not in log_format.values()
    assert not any("body" in k.lower() for k in log_format)
    key = by_name(
        dev_graph, "aws:apigateway/usagePlanKey:UsagePlanKey", "sdfleet-api-usage-plan-key"
    )
    assert key.inputs["keyType"] == "API_KEY"
    logs = by_name(dev_graph, "aws:cloudwatch/logGroup:LogGroup", "sdfleet-api-access-logs")
    assert logs.inputs["retentionInDays"] == 30


def test_lambda_settings_and_runtime_catalogue(dev_graph: Recorder) -> None:
    fn = by_name(dev_graph, "aws:lambda/function:Function", "sdfleet-api-task-fn")
    assert fn.inputs["runtime"] == "python3.13"
    assert fn.inputs["architectures"] == ["arm64"]
    assert fn.inputs["tracingConfig"] == {"mode": "Active"}
    assert "reservedConcurrentExecutions" not in fn.inputs
    env = fn.inputs["environment"]["variables"]
    topic = by_name(dev_graph, "aws:sns/topic:Topic", "sdfleet-events-input")
    bucket = by_name(dev_graph, "aws:s3/bucket:Bucket", "sdfleet-events-outputs")
    assert env["INPUT_TOPIC_ARN"] == topic.state["arn"]
    assert env["OUTPUT_BUCKET"] == bucket.state["bucket"]
    assert json.loads(env["RUNTIMES"]) == [
        {
            "name": "sd15",
            "type": "sdwebui",
            "modelFilename": "v1-5-pruned-emaonly.safetensors",
            "dynamicModel": False,
            "limits": {"maxSteps": 150, "maxPixels": 4194304, "maxImages": 8, "maxInputs": 8},
        },
        {
            "name": "flux",
            "type": "comfyui",
            "modelFilename": None,
            "dynamicModel": False,
            "limits": {"maxSteps": 150, "maxPixels": 4194304, "maxImages": 8, "maxInputs": 8},
        },
    ]
    assert [r.name for r in load_runtimes(env["RUNTIMES"])] == ["sd15", "flux"]
    archive = fn.inputs["code"]
    assert isinstance(archive, pulumi.AssetArchive)
    assert sorted(archive.assets) == sorted(
        [*apib.LAMBDA_PACKAGE_INITS, *apib.lambda_files(HANDLER_FILE, CONTRACT_FILE.parent)]
    )
    assert fn.inputs["handler"] == "task_api.handler"


def test_lambda_role_least_privilege(dev_graph: Recorder) -> None:
    policy = doc(by_name(dev_graph, "aws:iam/rolePolicy:RolePolicy", "sdfleet-api-task-fn-policy"))
    topic = by_name(dev_graph, "aws:sns/topic:Topic", "sdfleet-events-input")
    bucket = by_name(dev_graph, "aws:s3/bucket:Bucket", "sdfleet-events-outputs")
    logs = by_name(dev_graph, "aws:cloudwatch/logGroup:LogGroup", "sdfleet-api-task-fn-logs")
    table = by_name(dev_graph, "aws:dynamodb/table:Table", "sdfleet-api-task-table")

    def _t(value: str | list[str]) -> tuple[str, ...]:
        return (value,) if isinstance(value, str) else tuple(value)

    grants = {(_t(s["Action"]), _t(s["Resource"])) for s in policy["Statement"]}
    assert grants == {
        (("sns:Publish",), (topic.state["arn"],)),
        (("s3:PutObject", "s3:DeleteObject"), (f"{bucket.state['arn']}/*request.json",)),
        (("logs:CreateLogStream", "logs:PutLogEvents"), (f"{logs.state['arn']}:*",)),
        (("xray:PutTelemetryRecords", "xray:PutTraceSegments"), ("*",)),
        (("dynamodb:PutItem", "dynamodb:GetItem"), (table.state["arn"],)),
        (
            ("s3:GetObject",),
            tuple(f"{bucket.state['arn']}/*{suffix}" for suffix in s3b.OUTPUT_SUFFIXES),
        ),
    }


def test_alarms_cover_dlqs_and_unrouted(dev_graph: Recorder) -> None:
    alarms = {a.name: a for a in dev_graph.of_type("aws:cloudwatch/metricAlarm:MetricAlarm")}
    for runtime in ("sd15", "flux"):
        dlq = by_name(dev_graph, "aws:sqs/queue:Queue", f"sdfleet-events-{runtime}-dlq")
        alarm = alarms[f"sdfleet-observability-{runtime}-dlq-not-empty"]
        assert alarm.inputs["dimensions"] == {"QueueName": dlq.state["name"]}
    unrouted = by_name(dev_graph, "aws:sqs/queue:Queue", "sdfleet-events-unrouted")
    assert alarms["sdfleet-observability-unrouted-tasks"].inputs["dimensions"] == {
        "QueueName": unrouted.state["name"]
    }
    topic = by_name(dev_graph, "aws:sns/topic:Topic", "sdfleet-observability-alarms")
    assert all(a.inputs["alarmActions"] == [topic.state["arn"]] for a in alarms.values())


def test_security_invariants_hold(dev_graph: Recorder) -> None:
    assert check_all(dev_graph) == []


def test_invariants_catch_violations(dev_graph: Recorder) -> None:
    """The check is not vacuous: break each rule on a copy and watch it fail."""
    broken = dev_graph.clone()
    role_policy = broken.one("aws:iam/rolePolicy:RolePolicy", "sdfleet-api-task-fn-policy")
    role_policy.inputs["policy"] = json.dumps(
        {
            "Statement": [
                {"Effect": "Allow", "Action": "s3:*", "Resource": "arn:aws:s3:::x/*"},
                {"Effect": "Allow", "Action": ["sqs:SendMessage"], "Resource": "*"},
            ]
        }
    )
    broken.one("aws:sqs/queue:Queue", "sdfleet-events-sd15-queue").inputs.pop("redrivePolicy")
    broken.one("aws:sns/topic:Topic", "sdfleet-events-output").inputs.pop("kmsMasterKeyId")
    bpa = broken.one(
        "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock", "sdfleet-events-outputs-bpa"
    )
    bpa.inputs["restrictPublicBuckets"] = False
    problems = check_all(broken)
    assert any("wildcard action 's3:*'" in p for p in problems)
    assert any("Resource '*' for ['sqs:SendMessage']" in p for p in problems)
    assert any("sdfleet-events-sd15-queue: no dead-letter queue" in p for p in problems)
    assert any("sdfleet-events-output: not encrypted" in p for p in problems)
    assert any("sdfleet-events-outputs: no block-public-access" in p for p in problems)


def test_imported_model_bucket_is_never_modified(synth: Any, dev_config: dict[str, Any]) -> None:
    dev_config["sdfleet:models"] = {"bucketName": "team-models"}
    graph = synth(dev_config)
    buckets = [b.name for b in graph.of_type("aws:s3/bucket:Bucket")]
    assert buckets == ["sdfleet-events-outputs"]
    touching = [
        r.name
        for r in graph.resources
        if r.type.startswith("aws:s3/") and r.inputs.get("bucket") == "team-models"
    ]
    assert touching == []
    assert ("aws:s3/getBucket:getBucket", {"bucket": "team-models"}) in graph.invokes
    assert check_all(graph) == []


def test_invalid_config_creates_nothing(synth: Any, dev_config: dict[str, Any]) -> None:
    dev_config["sdfleet:runtimes"][1]["type"] = "comfy"
    dev_config["sdfleet:spotRatio"] = 3
    recorder = Recorder()
    with pytest.raises(pulumi.RunError) as info:
        synth(dev_config, recorder=recorder)
    text = str(info.value)
    assert "sdfleet:runtimes[1].type: 'comfy' is not one of sdwebui, comfyui" in text
    # Scalars reach the program as strings, as `pulumi config set` stores them.
    assert "sdfleet:spotRatio: '3' must be between 0 and 1" in text
    assert recorder.resources == []


def test_reserved_concurrency_and_no_quota(synth: Any, dev_config: dict[str, Any]) -> None:
    dev_config["sdfleet:api"] = {"reservedConcurrency": 20, "stageName": "prod"}
    graph = synth(dev_config)
    fn = graph.one("aws:lambda/function:Function", "sdfleet-api-task-fn")
    assert fn.inputs["reservedConcurrentExecutions"] == 20
    plan = graph.one("aws:apigateway/usagePlan:UsagePlan", "sdfleet-api-usage-plan")
    assert "quotaSettings" not in plan.inputs
    assert (
        graph.one("aws:apigateway/stage:Stage", "sdfleet-api-stage").inputs["stageName"] == "prod"
    )
