"""The stack's event plane on the sandbox's moto server, from the builders the Pulumi program
uses (:mod:`sdfleet.components.builders.fanout`, :mod:`~sdfleet.components.builders.task_table`):
the input and output topics, one queue and DLQ per runtime subscribed with the runtime's filter
policy and redrive, the unrouted queue, the output bucket, the task table and each runtime's
agent metrics log group."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sdfleet.components.builders import fanout as fb
from sdfleet.components.builders import task_table
from sdfleet.components.builders.runtime_plan import metrics_log_group_name
from sdfleet.components.config_model import StackConfig
from sdfleet.fakes.fleet import client

PREFIX = "sdfleet-sandbox"


@dataclass(frozen=True)
class RuntimeQueues:
    queue_url: str
    dlq_url: str


@dataclass
class Plane:
    """What was created, by name and URL."""

    endpoint: str
    input_topic_arn: str
    output_topic_arn: str
    bucket: str
    table_name: str
    unrouted_queue_url: str
    queues: dict[str, RuntimeQueues] = field(default_factory=dict)
    # Runtime name -> the log group its agent ships EMF metrics to, as SdRuntime makes it.
    metrics_log_groups: dict[str, str] = field(default_factory=dict)


def _arn(sqs: Any, queue_url: str) -> str:
    attrs = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])
    return str(attrs["Attributes"]["QueueArn"])


def _subscribe(sns: Any, topic_arn: str, queue_arn: str, filter_policy: str) -> None:
    sns.subscribe(
        TopicArn=topic_arn,
        Protocol="sqs",
        Endpoint=queue_arn,
        Attributes={
            "FilterPolicy": filter_policy,
            "FilterPolicyScope": fb.FILTER_POLICY_SCOPE,
            "RawMessageDelivery": "true" if fb.RAW_MESSAGE_DELIVERY else "false",
        },
    )


def _runtime_queues(
    sqs: Any, sns: Any, topic_arn: str, name: str, config: StackConfig
) -> RuntimeQueues:
    """The runtime's DLQ, its queue (redrive to the DLQ, which only it may use) and the
    subscription with the runtime's filter policy, as ``EventFanout`` creates them."""
    dlq_url = sqs.create_queue(
        QueueName=f"{PREFIX}-{name}-dlq",
        Attributes={"MessageRetentionPeriod": str(fb.DLQ_RETENTION_SECONDS)},
    )["QueueUrl"]
    queue_url = sqs.create_queue(
        QueueName=f"{PREFIX}-{name}",
        Attributes={
            "VisibilityTimeout": str(config.queues.visibility_timeout_seconds),
            "ReceiveMessageWaitTimeSeconds": str(fb.RECEIVE_WAIT_SECONDS),
            "RedrivePolicy": fb.redrive_policy(_arn(sqs, dlq_url), config.queues.max_receive_count),
        },
    )["QueueUrl"]
    queue_arn = _arn(sqs, queue_url)
    sqs.set_queue_attributes(
        QueueUrl=dlq_url, Attributes={"RedriveAllowPolicy": fb.redrive_allow_policy(queue_arn)}
    )
    _subscribe(sns, topic_arn, queue_arn, fb.runtime_filter_policy_json(name))
    return RuntimeQueues(queue_url=queue_url, dlq_url=dlq_url)


def build_plane(endpoint: str, config: StackConfig) -> Plane:
    """Create the stack's topics, queues, bucket and table on the moto server at ``endpoint``."""
    sqs, sns = client("sqs", endpoint), client("sns", endpoint)
    s3, dynamodb = client("s3", endpoint), client("dynamodb", endpoint)
    bucket = f"{PREFIX}-outputs"
    s3.create_bucket(Bucket=bucket)
    table_name = f"{PREFIX}-tasks"
    dynamodb.create_table(**task_table.create_table_request(table_name))
    dynamodb.update_time_to_live(**task_table.ttl_request(table_name))
    input_topic = sns.create_topic(Name=f"{PREFIX}-input")["TopicArn"]
    output_topic = sns.create_topic(Name=f"{PREFIX}-output")["TopicArn"]
    names = [rt.name for rt in config.runtimes]
    unrouted_url = sqs.create_queue(
        QueueName=f"{PREFIX}-unrouted",
        Attributes={"MessageRetentionPeriod": str(fb.DLQ_RETENTION_SECONDS)},
    )["QueueUrl"]
    _subscribe(sns, input_topic, _arn(sqs, unrouted_url), fb.unrouted_filter_policy_json(names))
    plane = Plane(
        endpoint=endpoint,
        input_topic_arn=input_topic,
        output_topic_arn=output_topic,
        bucket=bucket,
        table_name=table_name,
        unrouted_queue_url=unrouted_url,
    )
    logs = client("logs", endpoint)
    for name in names:
        plane.queues[name] = _runtime_queues(sqs, sns, input_topic, name, config)
        group = metrics_log_group_name("sdfleet", "sandbox", name)
        logs.create_log_group(logGroupName=group)
        plane.metrics_log_groups[name] = group
    return plane
