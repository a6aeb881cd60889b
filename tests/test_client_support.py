"""A moto-backed stack for the client, CLI, load and DLQ tests: a moto server on loopback (real
HTTP, so presigned URLs download), the SNS -> SQS fan-out with its filter policies and DLQs, the
output bucket and the task table, and ``sdfleet.local_api`` serving the real Lambda handler.

Completion is driven the way the agent does it: ``TaskStore.mark_*`` on the table and the PNG
put in the output bucket under ``contract.image_key``. No tests live here.
"""

from __future__ import annotations

import json
import logging
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import boto3
import pytest
from moto.server import ThreadedMotoServer

from sdfleet.agent import contract
from sdfleet.agent.task_state import TaskStore
from sdfleet.components.builders import fanout, task_table
from sdfleet.components.task_api import handler as task_api
from sdfleet.local_api import LocalApi

REGION = "us-east-1"
BUCKET = "sdfleet-outputs-client"
TABLE = "sdfleet-tasks-client"
API_KEY = "cl1ent-K3y-n3ver-printed-9c1d"
KEY_ID = "key-id-client"
OTHER_KEY = "0ther-K3y-n3ver-printed-77aa"
SD15_MODEL = "v1-5-pruned-emaonly.safetensors"
RUNTIMES = (
    contract.RuntimeInfo("sd15", contract.SDWEBUI, model_filename=SD15_MODEL),
    contract.RuntimeInfo("flux", contract.COMFYUI),
)
PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4


@dataclass
class Stack:
    endpoint: str
    api: LocalApi
    topic_arn: str
    queues: dict[str, str]
    queue_arns: dict[str, str]
    dlqs: dict[str, str]
    dlq_arns: dict[str, str]
    sqs: Any
    s3: Any
    store: TaskStore

    @property
    def url(self) -> str:
        return self.api.url

    def receive(self, runtime: str) -> list[dict[str, Any]]:
        """Take every queued task message of a runtime (the agent's receive)."""
        out: list[dict[str, Any]] = []
        while got := self.sqs.receive_message(
            QueueUrl=self.queues[runtime], MaxNumberOfMessages=10
        ).get("Messages", []):
            for message in got:
                out.append(json.loads(json.loads(message["Body"])["Message"]))
                self.sqs.delete_message(
                    QueueUrl=self.queues[runtime], ReceiptHandle=message["ReceiptHandle"]
                )
        return out

    def complete(self, task_id: str, runtime: str = "sd15", images: int = 1) -> list[str]:
        """What the agent does for a finished task: images in the bucket, then the record."""
        self.store.mark_running(task_id, runtime)
        keys = [contract.image_key("", task_id, i, "png") for i in range(images)]
        for i, key in enumerate(keys):
            self.s3.put_object(Bucket=BUCKET, Key=key, Body=PNG + bytes([i]))
        self.store.mark_completed(task_id, runtime, keys, output_bucket=BUCKET)
        return keys

    def fail(self, task_id: str, code: str, message: str, runtime: str = "sd15") -> None:
        self.store.mark_running(task_id, runtime)
        self.store.mark_failed(task_id, runtime, code, message)


def _queues(sqs: Any, sns: Any, topic_arn: str) -> tuple[dict[str, str], ...]:
    queues, arns, dlqs, dlq_arns = {}, {}, {}, {}
    for runtime in RUNTIMES:
        dlq_url = sqs.create_queue(QueueName=f"{runtime.name}-dlq")["QueueUrl"]
        dlq_arn = _arn(sqs, dlq_url)
        url = sqs.create_queue(
            QueueName=runtime.name,
            Attributes={
                "RedrivePolicy": fanout.redrive_policy(dlq_arn, fanout.DEFAULT_MAX_RECEIVE_COUNT)
            },
        )["QueueUrl"]
        arn = _arn(sqs, url)
        sns.subscribe(
            TopicArn=topic_arn,
            Protocol="sqs",
            Endpoint=arn,
            Attributes={
                "FilterPolicy": fanout.runtime_filter_policy_json(runtime.name),
                "FilterPolicyScope": fanout.FILTER_POLICY_SCOPE,
            },
        )
        queues[runtime.name], arns[runtime.name] = url, arn
        dlqs[runtime.name], dlq_arns[runtime.name] = dlq_url, dlq_arn
    return queues, arns, dlqs, dlq_arns


def _arn(sqs: Any, url: str) -> str:
    attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])
    return str(attrs["Attributes"]["QueueArn"])


@contextmanager
def moto_stack() -> Iterator[Stack]:
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one line per moto request
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    # moto's backends are per process: start from nothing whatever ran before.
    urllib.request.urlopen(urllib.request.Request(f"{endpoint}/moto-api/reset", method="POST"))
    env = {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": REGION,
        "AWS_REGION": REGION,
        "AWS_ENDPOINT_URL": endpoint,
    }
    try:
        with pytest.MonkeyPatch.context() as mp:
            for name, value in env.items():
                mp.setenv(name, value)
            sns, sqs = boto3.client("sns"), boto3.client("sqs")
            s3, ddb = boto3.client("s3"), boto3.client("dynamodb")
            s3.create_bucket(Bucket=BUCKET)
            ddb.create_table(**task_table.create_table_request(TABLE))
            topic_arn = sns.create_topic(Name="sdfleet-input")["TopicArn"]
            queues, arns, dlqs, dlq_arns = _queues(sqs, sns, topic_arn)
            mp.setenv("INPUT_TOPIC_ARN", topic_arn)
            mp.setenv("OUTPUT_BUCKET", BUCKET)
            mp.setenv("TASK_TABLE_NAME", TABLE)
            mp.setenv("RUNTIMES", json.dumps([r.to_json() for r in RUNTIMES]))
            task_api.reset()
            with LocalApi({API_KEY: KEY_ID, OTHER_KEY: "key-id-other"}) as api:
                yield Stack(
                    endpoint, api, topic_arn, queues, arns, dlqs, dlq_arns, sqs, s3,
                    TaskStore(ddb, TABLE),
                )  # fmt: skip
    finally:
        urllib.request.urlopen(urllib.request.Request(f"{endpoint}/moto-api/reset", method="POST"))
        server.stop()
        task_api.reset()
