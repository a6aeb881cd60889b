"""EventFanout: the input and output topics, one queue (+ DLQ) per runtime, and the output
bucket. Tasks are routed by their ``runtime`` message attribute."""

import json
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from sdfleet.components._bucket import secure_bucket
from sdfleet.components._inputs import as_args, none_means_default
from sdfleet.components.builders import fanout as fb
from sdfleet.components.builders import s3 as s3b
from sdfleet.components.config_model import (
    OutputsConfig,
    QueuesConfig,
    config_default,
)

# AWS-managed SNS key: publishers in the account need no key policy changes.
SNS_KMS_KEY = "alias/aws/sns"
QUEUE_RETENTION_SECONDS = 4 * 24 * 3600


@dataclass
class EventFanoutArgs:
    """Inputs of EventFanout: the runtimes to route tasks to, and the queues' and output
    bucket's settings. Defaults are the stack configuration's (``sdfleet:queues``,
    ``sdfleet:outputs``)."""

    runtime_names: list[str]
    """Runtime names (DNS labels); each gets a queue and dead-letter queue fed with the tasks
    whose ``runtime`` message attribute is that name."""
    max_receive_count: int | None = config_default(QueuesConfig, "max_receive_count")
    """Receives of one task before SQS moves it to the runtime's dead-letter queue (1-1000)."""
    visibility_timeout_seconds: int | None = config_default(
        QueuesConfig, "visibility_timeout_seconds"
    )
    """Seconds a received task stays hidden before another agent may take it (30-43200); the
    agent extends it while the task runs."""
    output_expire_after_days: int | None = config_default(OutputsConfig, "expire_after_days")
    """Days after which results in the output bucket are deleted (1-3650)."""
    output_force_destroy: bool | None = config_default(OutputsConfig, "force_destroy")
    """Let ``pulumi destroy`` delete the output bucket with the results still in it."""
    tracing: bool | None = True
    """X-Ray active tracing on both topics, with the X-Ray resource policy that lets SNS put
    their segments; off: SNS still passes trace headers through."""

    def __post_init__(self) -> None:
        none_means_default(self)


class EventFanout(pulumi.ComponentResource):
    """The task bus: an input SNS topic, one SQS queue (and dead-letter queue) per runtime fed by
    a subscription filtered on the runtime name, a queue for unrouted tasks, the output SNS
    topic and the output bucket."""

    input_topic_arn: pulumi.Output[str]
    """ARN of the SNS topic tasks are published to, with a ``runtime`` message attribute."""
    output_topic_arn: pulumi.Output[str]
    """ARN of the SNS topic task results and status changes are published to."""
    queue_urls: dict[str, pulumi.Output[str]]
    """Runtime name -> URL of its task queue."""
    queue_arns: dict[str, pulumi.Output[str]]
    """Runtime name -> ARN of its task queue."""
    queue_names: dict[str, pulumi.Output[str]]
    """Runtime name -> name of its task queue."""
    dlq_arns: dict[str, pulumi.Output[str]]
    """Runtime name -> ARN of its dead-letter queue."""
    dlq_names: dict[str, pulumi.Output[str]]
    """Runtime name -> name of its dead-letter queue."""
    unrouted_queue_url: pulumi.Output[str]
    """URL of the queue that keeps tasks naming no configured runtime."""
    unrouted_queue_name: pulumi.Output[str]
    """Name of that queue."""
    output_bucket_name: pulumi.Output[str]
    """Name of the bucket results are written to."""
    output_bucket_arn: pulumi.Output[str]
    """ARN of the output bucket."""

    def __init__(
        self, name: str, args: EventFanoutArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("sdfleet:index:EventFanout", name, None, opts)
        args = as_args(EventFanoutArgs, args)
        child = pulumi.ResourceOptions(parent=self)

        tracing = fb.TOPIC_TRACING if args.tracing else None
        input_topic = aws.sns.Topic(
            f"{name}-input", kms_master_key_id=SNS_KMS_KEY, tracing_config=tracing, opts=child
        )
        output_topic = aws.sns.Topic(
            f"{name}-output", kms_master_key_id=SNS_KMS_KEY, tracing_config=tracing, opts=child
        )
        if args.tracing:
            self._tracing_policy(name, [input_topic, output_topic])

        self.queue_urls, self.queue_arns, self.queue_names = {}, {}, {}
        self.dlq_arns, self.dlq_names = {}, {}
        for runtime in args.runtime_names:
            queue, dlq = self._runtime_queue(name, runtime, args, input_topic)
            self.queue_urls[runtime] = queue.url
            self.queue_arns[runtime] = queue.arn
            self.queue_names[runtime] = queue.name
            self.dlq_arns[runtime] = dlq.arn
            self.dlq_names[runtime] = dlq.name

        unrouted = self._unrouted_queue(name, args.runtime_names, input_topic)
        expire_days = args.output_expire_after_days
        assert expire_days is not None  # __post_init__ gives every None its default

        bucket = secure_bucket(
            f"{name}-outputs",
            self,
            lifecycle_rules=[s3b.output_lifecycle_rule(expire_days)],
            force_destroy=bool(args.output_force_destroy),
        )

        self.input_topic_arn = input_topic.arn
        self.output_topic_arn = output_topic.arn
        self.unrouted_queue_url = unrouted.url
        self.unrouted_queue_name = unrouted.name
        self.output_bucket_name = bucket.bucket
        self.output_bucket_arn = bucket.arn
        self.register_outputs(
            {
                "input_topic_arn": self.input_topic_arn,
                "output_topic_arn": self.output_topic_arn,
                "queue_urls": self.queue_urls,
                "queue_arns": self.queue_arns,
                "dlq_arns": self.dlq_arns,
                "unrouted_queue_url": self.unrouted_queue_url,
                "output_bucket_name": self.output_bucket_name,
            }
        )

    def _tracing_policy(self, name: str, topics: list[aws.sns.Topic]) -> aws.xray.ResourcePolicy:
        """The account's X-Ray resource policy entry that lets SNS put these topics' segments
        (without it, active tracing sends nothing)."""
        account = aws.get_caller_identity_output(
            opts=pulumi.InvokeOutputOptions(parent=self)
        ).account_id
        return aws.xray.ResourcePolicy(
            f"{name}-sns-tracing",
            policy_name=fb.tracing_policy_name(pulumi.get_project(), pulumi.get_stack(), name),
            policy_document=pulumi.Output.all(account, *(t.arn for t in topics)).apply(
                lambda v: fb.tracing_policy_json(v[0], v[1:])
            ),
            opts=pulumi.ResourceOptions(parent=self),
        )

    def _allow_topic(
        self, name: str, queue: aws.sqs.Queue, topic: aws.sns.Topic
    ) -> aws.sqs.QueuePolicy:
        return aws.sqs.QueuePolicy(
            name,
            queue_url=queue.url,
            policy=pulumi.Output.all(queue.arn, topic.arn).apply(
                lambda a: json.dumps(fb.queue_policy(a[0], a[1]))
            ),
            opts=pulumi.ResourceOptions(parent=queue),
        )

    def _runtime_queue(
        self, name: str, runtime: str, args: EventFanoutArgs, topic: aws.sns.Topic
    ) -> tuple[aws.sqs.Queue, aws.sqs.Queue]:
        child = pulumi.ResourceOptions(parent=self)
        base = f"{name}-{runtime}"
        max_receive = args.max_receive_count
        assert max_receive is not None  # __post_init__ gives every None its default
        dlq = aws.sqs.Queue(
            f"{base}-dlq",
            message_retention_seconds=fb.DLQ_RETENTION_SECONDS,
            sqs_managed_sse_enabled=True,
            opts=child,
        )
        queue = aws.sqs.Queue(
            f"{base}-queue",
            visibility_timeout_seconds=args.visibility_timeout_seconds,
            receive_wait_time_seconds=fb.RECEIVE_WAIT_SECONDS,
            message_retention_seconds=QUEUE_RETENTION_SECONDS,
            sqs_managed_sse_enabled=True,
            redrive_policy=dlq.arn.apply(lambda arn: fb.redrive_policy(arn, max_receive)),
            opts=child,
        )
        aws.sqs.RedriveAllowPolicy(
            f"{base}-dlq-allow",
            queue_url=dlq.url,
            redrive_allow_policy=queue.arn.apply(fb.redrive_allow_policy),
            opts=pulumi.ResourceOptions(parent=dlq),
        )
        queue_policy = self._allow_topic(f"{base}-queue-policy", queue, topic)
        # SNS parks messages it cannot deliver (e.g. a broken policy) in the DLQ, not /dev/null.
        dlq_policy = self._allow_topic(f"{base}-dlq-policy", dlq, topic)
        aws.sns.TopicSubscription(
            f"{base}-subscription",
            topic=topic.arn,
            protocol="sqs",
            endpoint=queue.arn,
            filter_policy=fb.runtime_filter_policy_json(runtime),
            filter_policy_scope=fb.FILTER_POLICY_SCOPE,
            raw_message_delivery=fb.RAW_MESSAGE_DELIVERY,
            redrive_policy=dlq.arn.apply(lambda arn: json.dumps({"deadLetterTargetArn": arn})),
            opts=pulumi.ResourceOptions(parent=self, depends_on=[queue_policy, dlq_policy]),
        )
        return queue, dlq

    def _unrouted_queue(
        self, name: str, runtime_names: list[str], topic: aws.sns.Topic
    ) -> aws.sqs.Queue:
        """Catch tasks published straight to SNS for a runtime that does not exist (or with no
        runtime attribute), which SNS would otherwise drop without a trace."""
        queue = aws.sqs.Queue(
            f"{name}-unrouted",
            message_retention_seconds=fb.DLQ_RETENTION_SECONDS,
            sqs_managed_sse_enabled=True,
            tags={"sdfleet:sink": "unrouted tasks wait here for inspection"},
            opts=pulumi.ResourceOptions(parent=self),
        )
        policy = self._allow_topic(f"{name}-unrouted-policy", queue, topic)
        aws.sns.TopicSubscription(
            f"{name}-unrouted-subscription",
            topic=topic.arn,
            protocol="sqs",
            endpoint=queue.arn,
            filter_policy=fb.unrouted_filter_policy_json(runtime_names),
            filter_policy_scope=fb.FILTER_POLICY_SCOPE,
            raw_message_delivery=fb.RAW_MESSAGE_DELIVERY,
            opts=pulumi.ResourceOptions(parent=self, depends_on=[policy]),
        )
        return queue
