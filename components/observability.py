"""Observability: alarms on every place a task can get stuck, an alarm topic, a dashboard."""

import json
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from sdfleet.components._inputs import as_args
from sdfleet.components.builders import observability as ob
from sdfleet.components.config_model import ObservabilityConfig, config_default


@dataclass
class RuntimeQueueNames:
    """The two queues of one runtime that get alarms and dashboard widgets."""

    queue_name: pulumi.Input[str]
    """The runtime's task queue."""
    dlq_name: pulumi.Input[str]
    """Its dead-letter queue."""


@dataclass
class ObservabilityArgs:
    """Inputs of Observability: the queues, function and API stage to watch, and who gets
    the alarms."""

    runtime_queues: dict[str, RuntimeQueueNames]
    """Runtime name -> the names of its task queue and dead-letter queue."""
    unrouted_queue_name: pulumi.Input[str]
    """Name of the queue keeping tasks that name no configured runtime."""
    function_name: pulumi.Input[str]
    """Name of the task Lambda."""
    api_name: pulumi.Input[str]
    """Name of the REST API."""
    stage_name: pulumi.Input[str]
    """The REST API's stage."""
    alarm_email: str | None = config_default(ObservabilityConfig, "alarm_email")
    """An e-mail address subscribed to the alarm topic (it must confirm); unset for none."""


class Observability(pulumi.ComponentResource):
    """Alarms on every place a task can get stuck (queues, DLQs, the unrouted queue, the API and
    its function), an SNS alarm topic with optional e-mail subscription, and a dashboard."""

    alarm_topic_arn: pulumi.Output[str]
    """ARN of the SNS topic the alarms notify."""
    dashboard_name: pulumi.Output[str]
    """Name of the CloudWatch dashboard."""
    alarm_names: list[pulumi.Output[str]]
    """Names of every alarm created."""

    def __init__(
        self, name: str, args: ObservabilityArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("sdfleet:index:Observability", name, None, opts)
        args = as_args(ObservabilityArgs, args)
        child = pulumi.ResourceOptions(parent=self)
        identity = aws.get_caller_identity_output(opts=pulumi.InvokeOutputOptions(parent=self))
        region = aws.get_region_output(opts=pulumi.InvokeOutputOptions(parent=self))

        key = aws.kms.Key(
            f"{name}-alarm-key",
            description="sdfleet alarm topic",
            enable_key_rotation=True,
            policy=identity.account_id.apply(lambda a: json.dumps(ob.alarm_topic_key_policy(a))),
            opts=child,
        )
        topic = aws.sns.Topic(f"{name}-alarms", kms_master_key_id=key.arn, opts=child)
        if args.alarm_email:
            aws.sns.TopicSubscription(
                f"{name}-alarm-email",
                topic=topic.arn,
                protocol="email",
                endpoint=args.alarm_email,
                opts=pulumi.ResourceOptions(parent=topic),
            )

        self.alarm_names = []
        platform_roles: dict[str, pulumi.Input[str]] = {
            "unrouted": args.unrouted_queue_name,
            "function": args.function_name,
            "api": args.api_name,
            "stage": args.stage_name,
        }
        for spec in ob.platform_alarms():
            self.alarm_names.append(self._alarm(name, topic, spec, platform_roles))
        for runtime, queues in args.runtime_queues.items():
            roles: dict[str, pulumi.Input[str]] = {
                "queue": queues.queue_name,
                "dlq": queues.dlq_name,
            }
            for spec in ob.queue_alarms(runtime):
                self.alarm_names.append(self._alarm(name, topic, spec, roles))

        queue_names = {
            rt: pulumi.Output.all(q.queue_name, q.dlq_name) for rt, q in args.runtime_queues.items()
        }
        dashboard = aws.cloudwatch.Dashboard(
            f"{name}-dashboard",
            dashboard_name=pulumi.Output.concat(pulumi.get_project(), "-", pulumi.get_stack()),
            dashboard_body=pulumi.Output.all(region.region, args.function_name, queue_names).apply(
                lambda v: ob.dashboard_body(
                    region=v[0],
                    function_name=v[1],
                    runtimes={rt: (q[0], q[1]) for rt, q in v[2].items()},
                )
            ),
            opts=child,
        )
        self.alarm_topic_arn = topic.arn
        self.dashboard_name = dashboard.dashboard_name
        self.register_outputs(
            {"alarm_topic_arn": self.alarm_topic_arn, "dashboard_name": self.dashboard_name}
        )

    def _alarm(
        self,
        name: str,
        topic: aws.sns.Topic,
        spec: ob.AlarmSpec,
        roles: dict[str, pulumi.Input[str]],
    ) -> pulumi.Output[str]:
        alarm = aws.cloudwatch.MetricAlarm(
            f"{name}-{spec.name}",
            alarm_description=spec.description,
            namespace=spec.namespace,
            metric_name=spec.metric,
            dimensions={dim: roles[role] for dim, role in spec.dimensions.items()},
            statistic=spec.statistic,
            threshold=spec.threshold,
            comparison_operator=spec.comparison,
            period=spec.period,
            evaluation_periods=spec.evaluation_periods,
            treat_missing_data="notBreaching",
            alarm_actions=[topic.arn],
            ok_actions=[topic.arn],
            opts=pulumi.ResourceOptions(parent=self),
        )
        return alarm.name
