"""SdPipeline: the whole sdfleet pipeline from one validated configuration."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi

from agent.contract import RuntimeInfo
from components.api_ingress import ApiIngress, ApiIngressArgs
from components.config import StackConfig
from components.event_fanout import EventFanout, EventFanoutArgs
from components.model_store import ModelStore, ModelStoreArgs
from components.observability import Observability, ObservabilityArgs


@dataclass
class SdPipelineArgs:
    config: StackConfig


def runtime_catalogue(config: StackConfig) -> list[RuntimeInfo]:
    return [
        RuntimeInfo(
            name=rt.name,
            type=rt.type,
            model_filename=rt.model_filename,
            dynamic_model=rt.dynamic_model,
        )
        for rt in config.runtimes
    ]


class SdPipeline(pulumi.ComponentResource):
    models: ModelStore
    fanout: EventFanout
    ingress: ApiIngress
    observability: Observability
    outputs: dict[str, pulumi.Output]

    def __init__(
        self, name: str, args: SdPipelineArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("sdfleet:index:SdPipeline", name, None, opts)
        cfg = args.config
        child = pulumi.ResourceOptions(parent=self)

        self.models = ModelStore(
            f"{name}-models", ModelStoreArgs(existing_bucket_name=cfg.models.bucket_name), child
        )
        self.fanout = EventFanout(
            f"{name}-events",
            EventFanoutArgs(
                runtime_names=[rt.name for rt in cfg.runtimes],
                max_receive_count=cfg.queues.max_receive_count,
                visibility_timeout_seconds=cfg.queues.visibility_timeout_seconds,
                output_expire_after_days=cfg.outputs.expire_after_days,
            ),
            child,
        )
        api = cfg.api
        self.ingress = ApiIngress(
            f"{name}-api",
            ApiIngressArgs(
                input_topic_arn=self.fanout.input_topic_arn,
                output_bucket_name=self.fanout.output_bucket_name,
                output_bucket_arn=self.fanout.output_bucket_arn,
                runtimes=runtime_catalogue(cfg),
                stage_name=api.stage_name,
                rate_limit=api.throttle.rate_limit,
                burst_limit=api.throttle.burst_limit,
                quota_limit=api.quota.limit if api.quota else None,
                quota_period=api.quota.period if api.quota else "DAY",
                reserved_concurrency=api.reserved_concurrency,
                log_retention_days=cfg.observability.log_retention_days,
                manage_account_log_role=api.manage_account_log_role,
            ),
            child,
        )
        self.observability = Observability(
            f"{name}-observability",
            ObservabilityArgs(
                runtime_queues={
                    rt.name: (self.fanout.queue_names[rt.name], self.fanout.dlq_names[rt.name])
                    for rt in cfg.runtimes
                },
                unrouted_queue_name=self.fanout.unrouted_queue_name,
                function_name=self.ingress.function_name,
                api_name=self.ingress.rest_api_name,
                stage_name=self.ingress.stage_name,
                alarm_email=cfg.observability.alarm_email,
            ),
            child,
        )

        self.outputs = {
            "apiUrl": self.ingress.api_url,
            "apiKey": self.ingress.api_key,
            "inputTopicArn": self.fanout.input_topic_arn,
            "outputTopicArn": self.fanout.output_topic_arn,
            "outputBucket": self.fanout.output_bucket_name,
            "modelBucket": self.models.bucket_name,
            "queueUrls": pulumi.Output.all(**self.fanout.queue_urls),
            "queueArns": pulumi.Output.all(**self.fanout.queue_arns),
            "dlqArns": pulumi.Output.all(**self.fanout.dlq_arns),
            "unroutedQueueUrl": self.fanout.unrouted_queue_url,
            "alarmTopicArn": self.observability.alarm_topic_arn,
            "dashboard": self.observability.dashboard_name,
        }
        self.register_outputs(self.outputs)
