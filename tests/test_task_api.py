"""The task API Lambda handler, called as a function against moto's in-process AWS with the real
SNS -> SQS fan-out (filter policies and subscription settings from ``fanout``)."""

from __future__ import annotations

import base64
import json
import logging
import os
import random
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws

from sdfleet.agent import contract
from sdfleet.agent.contract_log import SERVICE_TASK_API, JsonFormatter
from sdfleet.components.builders import fanout, task_table
from sdfleet.components.task_api import handler as task_api
from sdfleet.components.task_api import settings as task_settings
from sdfleet.components.task_api import submit

ROOT = Path(__file__).resolve().parent.parent
REGION = "us-east-1"
BUCKET = "sdfleet-outputs-test"
API_KEY = "K3y-0f-the-cl1ent-do-not-log"
# API Gateway's id of that key (requestContext.identity.apiKeyId): the tasks' owner.
API_KEY_ID = "a1b2c3d4e5"
TABLE = "sdfleet-tasks-test"
PROMPT = "a secret prompt about a lighthouse, user data 7f3a"
SD15_MODEL = "v1-5-pruned-emaonly.safetensors"

RUNTIMES = (
    contract.RuntimeInfo("sd15", contract.SDWEBUI, model_filename=SD15_MODEL),
    contract.RuntimeInfo("sdxl-dyn", contract.SDWEBUI, dynamic_model=True),
    contract.RuntimeInfo("flux", contract.COMFYUI),
)
BY_NAME = {r.name: r for r in RUNTIMES}
IMAGE_B64 = base64.b64encode(b"\x89PNG fake image bytes").decode()


@dataclass
class Fanout:
    topic_arn: str
    queues: dict[str, str]  # runtime name -> queue URL
    dlqs: dict[str, str]
    sqs: Any
    sns: Any
    s3: Any
    dynamodb: Any

    def drain(self, url: str) -> list[dict[str, Any]]:
        """Receive and delete every message (moto delivers SNS -> SQS within publish)."""
        messages: list[dict[str, Any]] = []
        while True:
            got = self.sqs.receive_message(
                QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=0
            ).get("Messages", [])
            if not got:
                return messages
            messages.extend(got)
            self.sqs.delete_message_batch(
                QueueUrl=url,
                Entries=[
                    {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(got)
                ],
            )

    def drain_all(self) -> dict[str, list[dict[str, Any]]]:
        return {name: self.drain(url) for name, url in self.queues.items()}

    def assert_nothing_published(self) -> None:
        for url in [*self.queues.values(), *self.dlqs.values()]:
            assert self.drain(url) == [], url
        assert self.s3.list_objects_v2(Bucket=BUCKET).get("KeyCount", 0) == 0


def _set_env(monkeypatch: pytest.MonkeyPatch, topic_arn: str, runtimes: Any = RUNTIMES) -> None:
    monkeypatch.setenv("INPUT_TOPIC_ARN", topic_arn)
    monkeypatch.setenv("OUTPUT_BUCKET", BUCKET)
    monkeypatch.setenv("RUNTIMES", json.dumps([r.to_json() for r in runtimes]))
    monkeypatch.setenv("TASK_TABLE_NAME", TABLE)
    task_api.reset()


FAKE_AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": REGION,
    "AWS_REGION": REGION,
}


@contextmanager
def fanout_world(*, configure: bool = False) -> Iterator[Fanout]:
    """moto and the fan-out, for a whole module (setup is most of the cost). ``configure``:
    also the handler's environment for the module (hypothesis tests cannot use the
    function-scoped ``monkeypatch``)."""
    with pytest.MonkeyPatch.context() as mp:
        for name, value in FAKE_AWS_ENV.items():
            mp.setenv(name, value)
        with mock_aws():
            built = _build_fanout()
            if configure:
                _set_env(mp, built.topic_arn)
            yield built
    task_api.reset()


@pytest.fixture(scope="module")
def world() -> Iterator[Fanout]:
    """The ``fan`` fixture empties every queue and the bucket after each test."""
    with fanout_world() as built:
        yield built


def empty(world: Fanout) -> None:
    """Drain every queue (PurgeQueue is limited to once a minute) and empty the bucket."""
    for url in [*world.queues.values(), *world.dlqs.values()]:
        world.drain(url)
    for obj in world.s3.list_objects_v2(Bucket=BUCKET).get("Contents", []):
        world.s3.delete_object(Bucket=BUCKET, Key=obj["Key"])
    for item in world.dynamodb.scan(TableName=TABLE).get("Items", []):
        world.dynamodb.delete_item(TableName=TABLE, Key={"task_id": item["task_id"]})


def _build_fanout() -> Fanout:
    sns = boto3.client("sns", region_name=REGION)
    sqs = boto3.client("sqs", region_name=REGION)
    s3 = boto3.client("s3", region_name=REGION)
    s3.create_bucket(Bucket=BUCKET)
    dynamodb = boto3.client("dynamodb", region_name=REGION)
    dynamodb.create_table(**task_table.create_table_request(TABLE))
    dynamodb.update_time_to_live(**task_table.ttl_request(TABLE))
    topic_arn = sns.create_topic(Name="sdfleet-input")["TopicArn"]
    queues: dict[str, str] = {}
    dlqs: dict[str, str] = {}
    for runtime in RUNTIMES:
        dlq_url = sqs.create_queue(QueueName=f"{runtime.name}-dlq")["QueueUrl"]
        dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])[
            "Attributes"
        ]["QueueArn"]
        url = sqs.create_queue(
            QueueName=runtime.name,
            Attributes={
                "VisibilityTimeout": str(fanout.DEFAULT_VISIBILITY_TIMEOUT_SECONDS),
                "RedrivePolicy": fanout.redrive_policy(dlq_arn, fanout.DEFAULT_MAX_RECEIVE_COUNT),
                "SqsManagedSseEnabled": "true",
            },
        )["QueueUrl"]
        arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"][
            "QueueArn"
        ]
        sqs.set_queue_attributes(
            QueueUrl=url, Attributes={"Policy": json.dumps(fanout.queue_policy(arn, topic_arn))}
        )
        sns.subscribe(
            TopicArn=topic_arn,
            Protocol="sqs",
            Endpoint=arn,
            Attributes={
                "FilterPolicy": fanout.runtime_filter_policy_json(runtime.name),
                "FilterPolicyScope": fanout.FILTER_POLICY_SCOPE,
                "RawMessageDelivery": str(fanout.RAW_MESSAGE_DELIVERY).lower(),
            },
        )
        queues[runtime.name] = url
        dlqs[runtime.name] = dlq_url
    return Fanout(topic_arn, queues, dlqs, sqs, sns, s3, dynamodb)


@pytest.fixture
def fan(world: Fanout, monkeypatch: pytest.MonkeyPatch) -> Iterator[Fanout]:
    _set_env(monkeypatch, world.topic_arn)
    yield world
    task_api.reset()
    empty(world)


def make_event(
    body: Any,
    *,
    path: str = "/v1alpha2",
    method: str = "POST",
    b64: bool = False,
    raw: bool = False,
    encoded: bool = False,
    request_id: str | None = None,
    api_key_id: str = API_KEY_ID,
) -> dict[str, Any]:
    """An API Gateway REST proxy event; ``body`` is JSON-encoded unless ``raw``; bytes are
    always sent base64-encoded, as API Gateway does for binary media types. ``encoded``: the
    body is sent as is with the base64 flag set."""
    text = body if raw else json.dumps(body)
    if isinstance(text, bytes):
        text, b64 = base64.b64encode(text).decode(), True
    elif encoded:
        b64 = True
    elif b64 and isinstance(text, str):
        text = base64.b64encode(text.encode()).decode()
    return {
        "resource": path,
        "path": path,
        "httpMethod": method,
        "headers": {"x-api-key": API_KEY, "content-type": "application/json"},
        "multiValueHeaders": {"x-api-key": [API_KEY]},
        "requestContext": {
            "stage": "v1",
            "identity": {"apiKey": API_KEY, "apiKeyId": api_key_id},
            **({"requestId": request_id} if request_id is not None else {}),
        },
        "body": text,
        "isBase64Encoded": b64,
    }


class FakeContext:
    aws_request_id = "req-0001"


def call(event: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    response = task_api.handler(event, FakeContext())
    assert response["headers"]["Content-Type"] == "application/json"
    return response["statusCode"], json.loads(response["body"])


def v2(runtime: str, tasktype: str, content: Any, **meta: Any) -> dict[str, Any]:
    return {
        "task": {"metadata": {"runtime": runtime, "tasktype": tasktype, **meta}, "content": content}
    }


def comfy_workflow() -> dict[str, Any]:
    return {
        "prompt": {
            "3": {"class_type": "KSampler", "inputs": {"seed": 1, "model": ["4", 0]}},
            "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "flux.sft"}},
            "6": {"class_type": "CLIPTextEncode", "inputs": {"text": PROMPT, "clip": ["4", 1]}},
        }
    }


# --------------------------------------------------------------------------------------------
# The fan-out itself


def test_moto_applies_the_runtime_filter_policy(fan: Fanout) -> None:
    """Sanity: without this, the routing tests below would prove nothing."""
    fan.sns.publish(
        TopicArn=fan.topic_arn,
        Message="{}",
        MessageAttributes={"runtime": {"DataType": "String", "StringValue": "flux"}},
    )
    fan.sns.publish(TopicArn=fan.topic_arn, Message="{}")  # no attribute: no queue
    got = fan.drain_all()
    assert [len(got[name]) for name in ("sd15", "sdxl-dyn", "flux")] == [0, 0, 1]
    envelope = json.loads(got["flux"][0]["Body"])
    assert envelope["Type"] == "Notification"  # raw delivery is off


# --------------------------------------------------------------------------------------------
# Every request shape reaches exactly its runtime's queue


ROUTED: list[tuple[str, str, dict[str, Any], str, str]] = [
    # (case, path, body, runtime, tasktype)
    (
        "text-to-image",
        "/v1alpha2",
        v2("sd15", "text-to-image", {"prompt": PROMPT, "steps": 20}, id="t2i-1", prefix="/a//b/"),
        "sd15",
        "text-to-image",
    ),
    (
        "image-to-image",
        "/v1alpha2",
        v2(
            "sdxl-dyn",
            "image-to-image",
            {
                "prompt": PROMPT,
                "init_images": [IMAGE_B64],
                "override_settings": {"sd_model_checkpoint": "sdxl.safetensors"},
            },
            context={"user": 7},
        ),
        "sdxl-dyn",
        "image-to-image",
    ),
    (
        "extra-single-image",
        "/v1alpha2",
        v2("sd15", "extra-single-image", {"image": IMAGE_B64, "upscaling_resize": 2}),
        "sd15",
        "extra-single-image",
    ),
    (
        "extra-batch-images",
        "/v1alpha2",
        v2("sdxl-dyn", "extra-batch-images", {"imageList": [{"data": IMAGE_B64, "name": "a"}]}),
        "sdxl-dyn",
        "extra-batch-images",
    ),
    ("comfyui-pipeline", "/v1alpha2", v2("flux", "pipeline", comfy_workflow()), "flux", "pipeline"),
    (
        "v1alpha1-static-checkpoint",
        "/v1alpha1",
        {
            "prompt": PROMPT,
            "steps": 16,
            "alwayson_scripts": {
                "task": "text-to-image",
                "sd_model_checkpoint": SD15_MODEL,
                "id_task": "legacy-1",
                "uid": "user-1",
                "save_dir": "outputs",
            },
        },
        "sd15",
        "text-to-image",
    ),
    (
        "v1alpha1-dynamic-checkpoint",
        "/v1alpha1",
        {
            "prompt": PROMPT,
            "alwayson_scripts": {"task": "text-to-image", "sd_model_checkpoint": "dreamshaper_8"},
        },
        "sdxl-dyn",
        "text-to-image",
    ),
]


@pytest.mark.parametrize(
    ("path", "body", "runtime", "tasktype"),
    [case[1:] for case in ROUTED],
    ids=[case[0] for case in ROUTED],
)
def test_request_is_delivered_only_to_its_runtime(
    fan: Fanout, path: str, body: dict[str, Any], runtime: str, tasktype: str
) -> None:
    status, response = call(make_event(body, path=path))
    assert status == 200, response
    got = fan.drain_all()
    assert {name: len(msgs) for name, msgs in got.items()} == {
        name: int(name == runtime) for name in fan.queues
    }
    for dlq in fan.dlqs.values():
        assert fan.drain(dlq) == []
    sqs_body = got[runtime][0]["Body"]
    envelope = json.loads(sqs_body)
    assert envelope["Type"] == "Notification"
    assert envelope["TopicArn"] == fan.topic_arn
    assert envelope["MessageAttributes"] == {
        "runtime": {"Type": "String", "Value": runtime},
        "tasktype": {"Type": "String", "Value": tasktype},
    }
    parsed = contract.parse_queue_message(sqs_body, BY_NAME[runtime])
    assert parsed.envelope is True
    assert parsed.published_at == envelope["Timestamp"]
    task = parsed.task
    assert (task.metadata.runtime, task.metadata.tasktype) == (runtime, tasktype)
    assert task.content_ref is None
    assert fan.s3.list_objects_v2(Bucket=BUCKET).get("KeyCount", 0) == 0  # not offloaded
    location = contract.output_location(BUCKET, task.metadata.prefix, task.metadata.id)
    if path == "/v1alpha2":
        assert response == {
            "id": task.metadata.id,
            "runtime": runtime,
            "output_location": location,
            "status": "queued",
        }
        meta = body["task"]["metadata"]
        assert task.content == body["task"]["content"]
        assert task.metadata.context == meta.get("context")
        if "id" in meta:
            assert task.metadata.id == meta["id"]
        else:
            assert contract.ID_PATTERN.match(task.metadata.id)
    else:
        scripts = body["alwayson_scripts"]
        assert response == {
            "id_task": task.metadata.id,
            "sd_model_checkpoint": scripts["sd_model_checkpoint"],
            "output_location": location,
        }
        assert task.content is not None
        assert task.content["prompt"] == PROMPT
        # Routing keys are gone (A1111 rejects unknown always-on scripts); the model is kept.
        assert task.content["alwayson_scripts"] == {}
        assert (
            task.content["override_settings"]["sd_model_checkpoint"]
            == (scripts["sd_model_checkpoint"])
        )
        assert task.metadata.id == scripts.get("id_task", task.metadata.id)
        assert task.metadata.context == scripts.get("uid")


def test_prefix_is_normalised_into_the_output_location(fan: Fanout) -> None:
    body = v2("sd15", "text-to-image", {"prompt": "x"}, id="p1", prefix="/team//a/b/")
    status, response = call(make_event(body))
    assert status == 200
    assert response["output_location"] == f"s3://{BUCKET}/team/a/b/p1"


@pytest.mark.parametrize("path", ["/v1/v1alpha2", "/v1alpha2/", "/base/v1/v1alpha2"])
def test_a_stage_or_base_path_prefix_does_not_matter(fan: Fanout, path: str) -> None:
    status, _ = call(make_event(v2("flux", "pipeline", comfy_workflow()), path=path))
    assert status == 200
    assert len(fan.drain(fan.queues["flux"])) == 1


def test_a_base64_encoded_body_is_decoded(fan: Fanout) -> None:
    status, response = call(make_event(v2("flux", "pipeline", comfy_workflow()), b64=True))
    assert status == 200, response
    assert len(fan.drain(fan.queues["flux"])) == 1


def test_duplicate_keys_last_one_wins_and_routing_agrees(fan: Fanout) -> None:
    """Documented behaviour: JSON duplicate keys resolve to the last value (json.loads). The
    task is re-serialised, so the SNS attribute and the agent both see that same value."""
    raw = (
        '{"task": {"metadata": {"runtime": "flux", "tasktype": "text-to-image", '
        '"runtime": "sd15"}, "content": {"prompt": "x"}}}'
    )
    status, response = call(make_event(raw, raw=True))
    assert status == 200, response
    assert response["runtime"] == "sd15"
    got = fan.drain_all()
    assert [len(got[n]) for n in ("sd15", "sdxl-dyn", "flux")] == [1, 0, 0]
    message = json.loads(json.loads(got["sd15"][0]["Body"])["Message"])
    assert message["metadata"]["runtime"] == "sd15"


def test_moderately_nested_json_is_accepted(fan: Fanout) -> None:
    """The nesting cap (MAX_JSON_DEPTH) leaves room for real requests."""
    nested: Any = "leaf"
    for _ in range(contract.MAX_JSON_DEPTH - 5):
        nested = [nested]
    body = v2("sd15", "text-to-image", {"prompt": "x"}, context=nested)
    status, response = call(make_event(body))
    assert status == 200, response
    assert len(fan.drain(fan.queues["sd15"])) == 1


# --------------------------------------------------------------------------------------------
# Malformed and hostile bodies: the right 4xx, and nothing published anywhere


def _deep(levels: int) -> str:
    return "[" * levels + "]" * levels


T2I = {"prompt": PROMPT}
BAD: list[tuple[str, dict[str, Any], int, str, str | None]] = [
    # (case, make_event kwargs, status, code, field)
    ("invalid-json", {"body": '{"task": ', "raw": True}, 400, "invalid_json", None),
    ("empty-body", {"body": "", "raw": True}, 400, "invalid_json", None),
    ("no-body", {"body": None, "raw": True}, 400, "invalid_json", None),
    ("whitespace-body", {"body": " \n\t", "raw": True}, 400, "invalid_json", None),
    ("top-level-array", {"body": [1, 2]}, 400, "invalid_type", None),
    ("top-level-string", {"body": "task"}, 400, "invalid_type", None),
    ("top-level-null", {"body": None}, 400, "invalid_type", None),
    ("missing-task", {"body": {"tasks": {}}}, 400, "missing_field", "task"),
    ("task-not-object", {"body": {"task": [1]}}, 400, "invalid_type", "task"),
    ("task-null", {"body": {"task": None}}, 400, "missing_field", "task"),
    (
        "missing-metadata",
        {"body": {"task": {"content": T2I}}},
        400,
        "missing_field",
        "task.metadata",
    ),
    (
        "metadata-not-object",
        {"body": {"task": {"metadata": "sd15", "content": T2I}}},
        400,
        "invalid_type",
        "task.metadata",
    ),
    (
        "missing-runtime",
        {"body": {"task": {"metadata": {"tasktype": "text-to-image"}, "content": T2I}}},
        400,
        "missing_field",
        "task.metadata.runtime",
    ),
    (
        "unknown-runtime",
        {"body": v2("sd21", "text-to-image", T2I)},
        400,
        "unknown_runtime",
        "task.metadata.runtime",
    ),
    (
        "runtime-wrong-type",
        {"body": v2(["sd15"], "text-to-image", T2I)},  # type: ignore[arg-type]
        400,
        "invalid_type",
        "task.metadata.runtime",
    ),
    (
        "comfyui-tasktype-on-sdwebui",
        {"body": v2("sd15", "pipeline", comfy_workflow())},
        400,
        "invalid_tasktype",
        "task.metadata.tasktype",
    ),
    (
        "sdwebui-tasktype-on-comfyui",
        {"body": v2("flux", "text-to-image", T2I)},
        400,
        "invalid_tasktype",
        "task.metadata.tasktype",
    ),
    (
        "missing-tasktype",
        {"body": {"task": {"metadata": {"runtime": "sd15"}, "content": T2I}}},
        400,
        "missing_field",
        "task.metadata.tasktype",
    ),
    (
        "id-too-long",
        {"body": v2("sd15", "text-to-image", T2I, id="a" * 65)},
        400,
        "invalid_id",
        "task.metadata.id",
    ),
    (
        "id-bad-chars",
        {"body": v2("sd15", "text-to-image", T2I, id="../etc/passwd")},
        400,
        "invalid_id",
        "task.metadata.id",
    ),
    (
        "id-trailing-newline",
        {"body": v2("sd15", "text-to-image", T2I, id="abc\n")},
        400,
        "invalid_id",
        "task.metadata.id",
    ),
    (
        "id-not-string",
        {"body": v2("sd15", "text-to-image", T2I, id=12)},
        400,
        "invalid_type",
        "task.metadata.id",
    ),
    (
        "prefix-dotdot",
        {"body": v2("sd15", "text-to-image", T2I, prefix="a/../../other-tenant")},
        400,
        "invalid_prefix",
        "task.metadata.prefix",
    ),
    (
        "prefix-too-long",
        {"body": v2("sd15", "text-to-image", T2I, prefix="p" * 513)},
        400,
        "invalid_prefix",
        "task.metadata.prefix",
    ),
    (
        "prefix-too-many-utf8-bytes",
        {"body": v2("sd15", "text-to-image", T2I, prefix="\u00e9" * 300)},
        400,
        "invalid_prefix",
        "task.metadata.prefix",
    ),
    (
        "prefix-control-chars",
        {"body": v2("sd15", "text-to-image", T2I, prefix="a/\x00b\r\n")},
        400,
        "invalid_prefix",
        "task.metadata.prefix",
    ),
    (
        "prefix-not-string",
        {"body": v2("sd15", "text-to-image", T2I, prefix=["a"])},
        400,
        "invalid_type",
        "task.metadata.prefix",
    ),
    (
        "content-missing",
        {"body": {"task": {"metadata": {"runtime": "sd15", "tasktype": "text-to-image"}}}},
        400,
        "missing_field",
        "task.content",
    ),
    (
        "content-not-object",
        {"body": v2("sd15", "text-to-image", "a prompt")},
        400,
        "invalid_type",
        "task.content",
    ),
    (
        "client-content-ref",
        {
            "body": {
                "task": {
                    "metadata": {"runtime": "sd15", "tasktype": "text-to-image"},
                    "content_ref": "s3://someone-elses-bucket/secret.json",
                }
            }
        },
        400,
        "unknown_field",
        "task.content_ref",
    ),
    (
        "img2img-without-init-images",
        {"body": v2("sd15", "image-to-image", T2I)},
        400,
        "missing_field",
        "task.content.init_images",
    ),
    (
        "init-images-not-list",
        {"body": v2("sd15", "image-to-image", {"init_images": IMAGE_B64})},
        400,
        "missing_field",
        "task.content.init_images",
    ),
    (
        "init-image-not-string",
        {"body": v2("sd15", "image-to-image", {"init_images": [IMAGE_B64, 5]})},
        400,
        "invalid_type",
        "task.content.init_images[1]",
    ),
    (
        "prompt-not-string",
        {"body": v2("sd15", "text-to-image", {"prompt": ["a", "b"]})},
        400,
        "invalid_type",
        "task.content.prompt",
    ),
    (
        "model-not-served-by-static-runtime",
        {
            "body": v2(
                "sd15",
                "text-to-image",
                {"prompt": "x", "override_settings": {"sd_model_checkpoint": "sdxl.safetensors"}},
            )
        },
        400,
        "model_not_served",
        "task.content.override_settings.sd_model_checkpoint",
    ),
    (
        "comfyui-without-prompt",
        {"body": v2("flux", "pipeline", {"workflow": {}})},
        400,
        "missing_field",
        "task.content.prompt",
    ),
    (
        "comfyui-node-without-class-type",
        {"body": v2("flux", "pipeline", {"prompt": {"3": {"inputs": {}}}})},
        400,
        "missing_field",
        'task.content.prompt["3"].class_type',
    ),
    (
        "unknown-metadata-field",
        {"body": v2("sd15", "text-to-image", T2I, priority=1)},
        400,
        "unknown_field",
        "task.metadata.priority",
    ),
    (
        "oversized-body",
        {"body": '{"pad": "' + "a" * contract.MAX_BODY_BYTES + '"}', "raw": True},
        413,
        "payload_too_large",
        None,
    ),
    (
        "oversized-base64-body",
        {"body": '{"pad": "' + "a" * contract.MAX_BODY_BYTES + '"}', "raw": True, "b64": True},
        413,
        "payload_too_large",
        None,
    ),
    (
        "invalid-base64",
        {"body": "not base64!!", "raw": True, "encoded": True},
        400,
        "invalid_encoding",
        None,
    ),
    (
        "base64-of-invalid-utf8",
        {"body": b'{"task": "\xff\xfe"}', "raw": True},
        400,
        "invalid_json",
        None,
    ),
    (
        "v1alpha1-without-alwayson-scripts",
        {"body": {"prompt": PROMPT}, "path": "/v1alpha1"},
        400,
        "missing_field",
        "alwayson_scripts",
    ),
    (
        "v1alpha1-without-checkpoint",
        {
            "body": {"prompt": PROMPT, "alwayson_scripts": {"task": "text-to-image"}},
            "path": "/v1alpha1",
        },
        400,
        "missing_field",
        "alwayson_scripts.sd_model_checkpoint",
    ),
    (
        "v1alpha1-comfyui-tasktype",
        {
            "body": {"alwayson_scripts": {"task": "pipeline", "sd_model_checkpoint": SD15_MODEL}},
            "path": "/v1alpha1",
        },
        400,
        "invalid_tasktype",
        "alwayson_scripts.task",
    ),
    (
        "v1alpha1-img2img-without-image",
        {
            "body": {
                "alwayson_scripts": {"task": "image-to-image", "sd_model_checkpoint": SD15_MODEL}
            },
            "path": "/v1alpha1",
        },
        400,
        "missing_field",
        "init_images",
    ),
    (
        "v1alpha1-top-level-array",
        {"body": [], "path": "/v1alpha1"},
        400,
        "invalid_type",
        None,
    ),
    ("deeply-nested-100k", {"body": _deep(100_000), "raw": True}, 400, "invalid_json", None),
    (
        "nested-past-the-cap",
        {"body": v2("sd15", "text-to-image", T2I, context=json.loads(_deep(70)))},
        400,
        "invalid_json",
        None,
    ),
    ("float-overflow", {"body": '{"task": {"x": 1e999}}', "raw": True}, 400, "invalid_json", None),
    (
        "int-too-many-digits",
        {"body": '{"task": ' + "9" * 5000 + "}", "raw": True},
        400,
        "invalid_json",
        None,
    ),
    ("nan-literal", {"body": '{"task": NaN}', "raw": True}, 400, "invalid_json", None),
    ("infinity-literal", {"body": '{"task": -Infinity}', "raw": True}, 400, "invalid_json", None),
    (
        "lone-surrogate-in-prefix",
        {
            "body": '{"task": {"metadata": {"runtime": "sd15", "tasktype": "text-to-image", "prefix": "\\ud800"}, "content": {}}}',
            "raw": True,
        },
        400,
        "invalid_prefix",
        "task.metadata.prefix",
    ),
    (
        "unknown-path",
        {"body": v2("sd15", "text-to-image", T2I), "path": "/v1alpha3"},
        404,
        "not_found",
        None,
    ),
    ("root-path", {"body": v2("sd15", "text-to-image", T2I), "path": "/"}, 404, "not_found", None),
    (
        "get-method",
        {"body": None, "raw": True, "method": "GET"},
        405,
        "method_not_allowed",
        None,
    ),
    (
        "put-method",
        {"body": v2("sd15", "text-to-image", T2I), "method": "PUT", "path": "/v1alpha1"},
        405,
        "method_not_allowed",
        None,
    ),
]


@pytest.mark.parametrize(
    ("kwargs", "status", "code", "field"), [c[1:] for c in BAD], ids=[c[0] for c in BAD]
)
def test_bad_request_is_rejected_and_nothing_is_published(
    fan: Fanout, kwargs: dict[str, Any], status: int, code: str, field: str | None
) -> None:
    kwargs = dict(kwargs)
    event = make_event(kwargs.pop("body"), **kwargs)
    got_status, response = call(event)
    assert (got_status, response["error"]["code"], response["error"]["field"]) == (
        status,
        code,
        field,
    ), response
    assert set(response) == {"error"}
    assert response["error"]["message"]
    fan.assert_nothing_published()


def test_method_not_allowed_names_post(fan: Fanout) -> None:
    response = task_api.handler(make_event(None, raw=True, method="DELETE"), FakeContext())
    assert response["statusCode"] == 405
    assert response["headers"]["Allow"] == "POST"


def test_unknown_runtime_lists_the_known_names(fan: Fanout) -> None:
    _, response = call(make_event(v2("sd21", "text-to-image", T2I)))
    assert "'sd21'" in response["error"]["message"]
    for name in BY_NAME:
        assert name in response["error"]["message"]


def test_unserved_checkpoint_without_dynamic_runtime_is_400(
    fan: Fanout, monkeypatch: pytest.MonkeyPatch
) -> None:
    _set_env(monkeypatch, fan.topic_arn, [BY_NAME["sd15"], BY_NAME["flux"]])
    body = {"prompt": PROMPT, "alwayson_scripts": {"sd_model_checkpoint": "sdxl.safetensors"}}
    status, response = call(make_event(body, path="/v1alpha1"))
    assert status == 400
    assert response["error"]["code"] == "unknown_model"
    assert response["error"]["field"] == "alwayson_scripts.sd_model_checkpoint"
    assert SD15_MODEL in response["error"]["message"]
    fan.assert_nothing_published()


def test_hostile_value_echo_is_cut(fan: Fanout) -> None:
    status, response = call(make_event(v2("x" * 100_000, "text-to-image", T2I)))
    assert status == 400
    assert len(response["error"]["message"]) < 400


def test_fuzzed_bodies_never_get_a_5xx(fan: Fanout) -> None:
    """Structure-aware mutations of valid requests plus byte-level corruption. Every answer is
    200 (then the task is routed), a 4xx error naming a code, or 409 for a seed's fixed id
    that an earlier mutation already used (then nothing is routed); never a 5xx."""
    rng = random.Random(20261125)
    pool: list[Any] = [
        None, 0, -1, 2**70, 1.5, True, "", "x" * 300, "../..", "\x00", [], {}, [None],
        {"class_type": 3}, {"a": {"b": []}}, "sd15", "pipeline", "image-to-image",
    ]  # fmt: skip
    seeds = [body for _, _, body, _, _ in ROUTED]
    paths = {id(body): path for _, path, body, _, _ in ROUTED}
    statuses: dict[int, int] = {}
    for i in range(300):
        seed = rng.choice(seeds)
        body = json.loads(json.dumps(seed))
        # Walk to a random container and replace, add or delete one entry.
        node: Any = body
        for _ in range(rng.randint(0, 4)):
            children = list(node.values()) if isinstance(node, dict) else node
            children = [c for c in children if isinstance(c, (dict, list)) and c]
            if not children:
                break
            node = rng.choice(children)
        if isinstance(node, dict) and node:
            key = rng.choice([*node.keys(), "extra"])
            if rng.random() < 0.25:
                node.pop(key, None)
            else:
                node[key] = rng.choice(pool)
        elif isinstance(node, list) and node:
            node[rng.randrange(len(node))] = rng.choice(pool)
        text = json.dumps(body)
        if i % 5 == 0:  # byte-level: cut or splice garbage
            cut = rng.randrange(len(text))
            text = (
                text[:cut] + rng.choice(["", "\x00", "}", "]]", '"', "\\u", "NaN"]) + text[cut:][1:]
            )
        status, response = call(make_event(text, raw=True, path=paths[id(seed)]))
        statuses[status] = statuses.get(status, 0) + 1
        assert status in (200, 400, 409), (status, response, text[:300])
        if status == 409:
            assert response["error"]["code"] == "task_exists"
        if status == 400:
            assert isinstance(response["error"]["code"], str)
            assert response["error"]["field"] is None or isinstance(response["error"]["field"], str)
    # The mutations exercise both outcomes.
    assert statuses.get(200, 0) > 10 and statuses.get(400, 0) > 10, statuses
    routed = fan.drain_all()
    assert sum(len(m) for m in routed.values()) == statuses[200]


# --------------------------------------------------------------------------------------------
# Offloading large tasks to S3


def test_large_task_is_offloaded_and_resolves_to_the_original(fan: Fanout) -> None:
    big = base64.b64encode(random.Random(1).randbytes(750_000)).decode()  # ~1 MB of base64
    content = {"prompt": PROMPT, "init_images": [big], "denoising_strength": 0.5}
    body = v2("sd15", "image-to-image", content, id="big-1", prefix="tenant-a")
    rid = "c6af9ac6-7b61-11e6-9a41-93e8deadbeef"
    status, response = call(make_event(body, request_id=rid))
    assert status == 200, response
    assert response["output_location"] == f"s3://{BUCKET}/tenant-a/big-1"
    got = fan.drain_all()
    assert [len(got[n]) for n in ("sd15", "sdxl-dyn", "flux")] == [1, 0, 0]
    sqs_body = got["sd15"][0]["Body"]
    assert len(sqs_body) < 256 * 1024
    task = contract.parse_queue_message(sqs_body, BY_NAME["sd15"]).task
    key = contract.request_key("tenant-a", "big-1", rid)
    assert key == f"tenant-a/big-1/{rid}.request.json"
    assert task.content is None
    assert task.content_ref == f"s3://{BUCKET}/{key}"
    assert contract.parse_s3_uri(task.content_ref) == (BUCKET, key)
    obj = fan.s3.get_object(Bucket=BUCKET, Key=key)
    assert obj["ContentType"] == "application/json"
    assert obj["ServerSideEncryption"] == "AES256"
    assert json.loads(obj["Body"].read()) == content


def _body_of_message_size(target: int) -> dict[str, Any]:
    """A v1alpha2 body whose published message is exactly ``target`` bytes (base64 filler
    needs no escaping, so one more character is one more byte)."""

    def body(n: int) -> dict[str, Any]:
        return v2("sd15", "image-to-image", {"init_images": ["A" * n]}, id="edge-1")

    base = contract.message_size(contract.parse_v1alpha2(body(1), RUNTIMES).to_message())
    result = body(1 + target - base)
    size = contract.message_size(contract.parse_v1alpha2(result, RUNTIMES).to_message())
    assert size == target
    return result


@pytest.mark.parametrize(
    ("size", "offloaded"),
    [(contract.OFFLOAD_THRESHOLD_BYTES, False), (contract.OFFLOAD_THRESHOLD_BYTES + 1, True)],
    ids=["at-threshold-inline", "one-byte-over-offloaded"],
)
def test_offload_threshold_edge(fan: Fanout, size: int, offloaded: bool) -> None:
    body = _body_of_message_size(size)
    status, _ = call(make_event(body))
    assert status == 200
    task = contract.parse_queue_message(
        fan.drain(fan.queues["sd15"])[0]["Body"], BY_NAME["sd15"]
    ).task
    assert (task.content_ref is not None) is offloaded
    assert (fan.s3.list_objects_v2(Bucket=BUCKET).get("KeyCount", 0) == 1) is offloaded
    if not offloaded:
        assert task.content == body["task"]["content"]


# --------------------------------------------------------------------------------------------
# Server-side failures: 5xx, logged, never blamed on the client


class _FailingSns:
    def __init__(self, code: str) -> None:
        self.code = code

    def publish(self, **_: Any) -> None:
        raise ClientError({"Error": {"Code": self.code, "Message": "nope"}}, "Publish")


@pytest.mark.parametrize(
    ("aws_code", "status"),
    [("Throttled", 503), ("KMSThrottling", 503), ("AuthorizationError", 502), ("KMSDisabled", 502)],
)
def test_publish_failure_is_a_server_error(
    fan: Fanout,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    aws_code: str,
    status: int,
) -> None:
    monkeypatch.setattr(task_settings, "sns", lambda settings: _FailingSns(aws_code))
    with caplog.at_level(logging.INFO, logger="sdfleet.task_api"):
        got, response = call(make_event(v2("sd15", "text-to-image", T2I)))
    assert got == status
    assert response["error"]["code"] == "publish_failed"
    line = logged(caplog.records[-1])
    assert line["aws_error"] == aws_code
    assert caplog.records[-1].levelno == logging.ERROR
    fan.assert_nothing_published()


def test_missing_topic_is_502_from_real_moto_error(
    fan: Fanout, monkeypatch: pytest.MonkeyPatch
) -> None:
    _set_env(monkeypatch, fan.topic_arn.replace("sdfleet-input", "gone"))
    status, response = call(make_event(v2("sd15", "text-to-image", T2I)))
    assert (status, response["error"]["code"]) == (502, "publish_failed")


def test_offload_failure_publishes_nothing(fan: Fanout, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OUTPUT_BUCKET", "no-such-bucket")
    task_api.reset()
    content = {"init_images": ["A" * (contract.OFFLOAD_THRESHOLD_BYTES + 10)]}
    status, response = call(make_event(v2("sd15", "image-to-image", content)))
    assert (status, response["error"]["code"]) == (502, "publish_failed")
    fan.assert_nothing_published()


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("RUNTIMES", "not json"),
        ("RUNTIMES", "[]"),
        ("RUNTIMES", '[{"name": "a", "type": "comfy"}]'),
        ("INPUT_TOPIC_ARN", ""),
        ("OUTPUT_BUCKET", ""),
    ],
)
def test_broken_environment_is_a_generic_500(
    fan: Fanout,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    name: str,
    value: str,
) -> None:
    monkeypatch.setenv(name, value)
    task_api.reset()
    with caplog.at_level(logging.INFO, logger="sdfleet.task_api"):
        status, response = call(make_event(v2("sd15", "text-to-image", T2I)))
    assert (status, response["error"]["code"]) == (500, "internal_error")
    assert name not in response["error"]["message"]  # nothing about the deployment leaks
    assert name in logged(caplog.records[-1])["config_error"]
    fan.assert_nothing_published()


def test_unexpected_error_is_a_logged_500_without_content(
    fan: Fanout, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(*args: Any) -> None:
        raise RuntimeError(f"bug while handling {PROMPT}")

    monkeypatch.setattr(submit, "publish", broken)
    with caplog.at_level(logging.INFO, logger="sdfleet.task_api"):
        status, response = call(make_event(v2("sd15", "text-to-image", T2I)))
    assert (status, response["error"]["code"]) == (500, "internal_error")
    line = logged(caplog.records[-1])
    assert line["unexpected"] == "RuntimeError" and "_handle" in line["trace"]
    assert PROMPT not in caplog.text


def test_a_validation_gap_is_still_a_400(fan: Fanout, monkeypatch: pytest.MonkeyPatch) -> None:
    """If the contract ever lets a TypeError through, the client still gets a 4xx."""

    def gap(body: Any, runtimes: Any) -> None:
        raise TypeError("unhashable type")

    monkeypatch.setattr(contract, "parse_v1alpha2", gap)
    status, response = call(make_event(v2("sd15", "text-to-image", T2I)))
    assert (status, response["error"]["code"]) == (400, "invalid_request")
    fan.assert_nothing_published()


def test_settings_and_clients_are_cached(fan: Fanout) -> None:
    call(make_event(v2("sd15", "text-to-image", T2I)))
    client = task_settings._clients["sns"]
    call(make_event(v2("flux", "pipeline", comfy_workflow())))
    assert task_settings._clients["sns"] is client
    assert sum(len(m) for m in fan.drain_all().values()) == 2


def test_import_makes_no_aws_calls() -> None:
    """In a fresh interpreter, so the module under test is not reloaded under other tests."""
    code = (
        "import boto3\n"
        "def boom(*a, **k): raise SystemExit('AWS client created at import time')\n"
        "boto3.client = boto3.resource = boto3.Session = boom\n"
        "import sdfleet.components.task_api.handler\n"
        "import sdfleet.components.task_api.settings as s\n"
        "assert s._clients == {} and s._settings is None\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr


# --------------------------------------------------------------------------------------------
# Logs: one JSON line per request, never the API key or the request content


def logged(record: logging.LogRecord) -> dict[str, Any]:
    """A task API log record as the Lambda writes it (docs/logging.md)."""
    return dict(json.loads(JsonFormatter(SERVICE_TASK_API).format(record)))


def test_logs_hold_neither_the_api_key_nor_the_content(
    fan: Fanout, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    big = "B" * (contract.OFFLOAD_THRESHOLD_BYTES + 1)
    events = [
        make_event(v2("sd15", "text-to-image", T2I, id="log-1")),  # 200
        make_event(
            v2("sd15", "image-to-image", {"prompt": PROMPT, "init_images": [big]})
        ),  # offload
        make_event(v2("sd21", "text-to-image", T2I)),  # 400
        make_event(v2("sd15", "image-to-image", {"prompt": PROMPT, "init_images": PROMPT})),
        make_event(
            v2("flux", "pipeline", {"prompt": {PROMPT: {"inputs": {}}}})
        ),  # field w/ node id
        make_event('{"task": {"prompt": "' + PROMPT + '"', raw=True),  # invalid json
        make_event(v2("sd15", "text-to-image", T2I), b64=True),
    ]
    with caplog.at_level(logging.INFO):  # the Lambda level; botocore DEBUG would dump requests
        statuses = [task_api.handler(event, FakeContext())["statusCode"] for event in events]
        monkeypatch.setattr(task_settings, "sns", lambda settings: _FailingSns("Throttling"))
        retry = make_event(v2("sd15", "text-to-image", T2I, id="log-2"))
        statuses.append(task_api.handler(retry, FakeContext())["statusCode"])
    assert statuses == [200, 200, 400, 400, 400, 400, 200, 503]
    records = [r for r in caplog.records if r.name == "sdfleet.task_api"]
    assert len(records) == len(events) + 1  # one line per request
    lines = [logged(r) for r in records]
    assert [line["status"] for line in lines] == statuses
    assert lines[0]["task_id"] == "log-1"
    assert lines[0]["runtime"] == "sd15" and lines[0]["tasktype"] == "text-to-image"
    assert [line["offloaded"] for line in lines[:2]] == [False, True]
    assert lines[2]["error_code"] == "unknown_runtime"
    for line in lines:
        assert {"status", "latency_ms", "offloaded"} <= set(line)
    everything = caplog.text + "".join(map(json.dumps, lines))
    assert API_KEY not in everything
    assert API_KEY_ID not in everything
    assert PROMPT not in everything
    assert "lighthouse" not in everything
