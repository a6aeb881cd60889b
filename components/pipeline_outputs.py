"""SdPipeline's stack outputs, keyed as the stack file names them."""

from __future__ import annotations

import json
import shlex
from typing import TYPE_CHECKING, Any

import pulumi

if TYPE_CHECKING:
    from sdfleet.components.pipeline import SdPipeline


def stack_outputs(p: SdPipeline, region: pulumi.Output[str]) -> dict[str, pulumi.Output[Any]]:
    """The stack outputs, keyed as the stack file names them."""
    return {
        "apiUrl": p.ingress.api_url,
        "apiKey": p.ingress.api_key,
        "inputTopicArn": p.fanout.input_topic_arn,
        "outputTopicArn": p.fanout.output_topic_arn,
        "outputBucket": p.fanout.output_bucket_name,
        "taskTableName": p.ingress.task_table_name,
        "webhookSecretArn": p.task_events.webhook_secret_arn,
        "webhookQueueUrl": p.task_events.webhook_queue_url,
        "webhookDeadLetterQueueUrl": p.task_events.webhook_dead_letter_queue_url,
        "modelBucket": p.models.bucket_name,
        "queueUrls": pulumi.Output.all(**p.fanout.queue_urls),
        "queueArns": pulumi.Output.all(**p.fanout.queue_arns),
        "dlqArns": pulumi.Output.all(**p.fanout.dlq_arns),
        "unroutedQueueUrl": p.fanout.unrouted_queue_url,
        "alarmTopicArn": p.observability.alarm_topic_arn,
        "dashboard": p.observability.dashboard_name,
        "agentImage": p.agent_image.ref,
        "runtimeNamespaces": pulumi.Output.all(**{rt: r.namespace for rt, r in p.runtimes.items()}),
        "runtimeImages": pulumi.Output.all(**p.server_image_refs),
        "clusterName": p.cluster.cluster_name,
        "kubeconfig": p.cluster.kubeconfig_json,
        "updateKubeconfigCommand": pulumi.Output.concat(
            "aws eks update-kubeconfig --name ", p.cluster.cluster_name, " --region ", region
        ),
        "subscribeExample": pulumi.Output.concat(
            "aws sns subscribe --region ",
            region,
            " --topic-arn ",
            p.fanout.output_topic_arn,
            " --protocol sqs --notification-endpoint <your-queue-arn>",
            " --attributes ",
            shlex.quote(
                json.dumps(
                    {
                        "RawMessageDelivery": "true",
                        "FilterPolicyScope": "MessageAttributes",
                        "FilterPolicy": json.dumps({"status": ["completed", "failed"]}),
                    }
                )
            ),
        ),
    }
