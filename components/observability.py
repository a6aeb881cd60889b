"""Observability: alarms that name the cause of a stuck task, an alarm topic, the stack's
dashboard and its saved Logs Insights queries. Takes plain names, never other components."""

import json
from dataclasses import dataclass, field

import pulumi
import pulumi_aws as aws

from sdfleet.components._inputs import as_args, none_means_default
from sdfleet.components.builders import alarms as al
from sdfleet.components.builders import dashboard as db
from sdfleet.components.builders import log_queries as lq
from sdfleet.components.builders import observability as ob
from sdfleet.components.config_model import ObservabilityConfig, config_default


@dataclass
class ObservedRuntime:
    """The names of one runtime's resources that get alarms, widgets and queries."""

    queue_name: pulumi.Input[str]
    """The runtime's task queue."""
    dlq_name: pulumi.Input[str]
    """Its dead-letter queue."""
    namespace: pulumi.Input[str]
    """The Kubernetes namespace its pods run in."""
    deployment_name: pulumi.Input[str]
    """Its Deployment (Container Insights' PodName dimension)."""
    metrics_log_group_name: pulumi.Input[str]
    """The log group its agents ship EMF metric documents to."""


@dataclass
class ObservabilityArgs:
    """Inputs of Observability: the names of what to watch, thresholds, and who gets alarms."""

    runtimes: dict[str, ObservedRuntime]
    """Runtime name -> the names of its queues, namespace, Deployment and metrics log group."""
    unrouted_queue_name: pulumi.Input[str]
    """Name of the queue keeping tasks that name no configured runtime."""
    function_name: pulumi.Input[str]
    """Name of the task Lambda."""
    function_log_group_name: pulumi.Input[str]
    """The task Lambda's log group (saved queries)."""
    api_name: pulumi.Input[str]
    """Name of the REST API."""
    stage_name: pulumi.Input[str]
    """The REST API's stage."""
    cluster_name: pulumi.Input[str]
    """The EKS cluster (Container Insights' ClusterName dimension and application log group)."""
    container_insights: bool | None = config_default(ObservabilityConfig, "container_insights")
    """Container Insights is installed: GPU widgets and the GPU-idle alarm."""
    spot_interruption_rule_name: pulumi.Input[str] | None = None
    """The EventBridge rule of spot interruption warnings (Karpenter); unset: no spot alarm."""
    webhook_dlq_name: pulumi.Input[str] | None = None
    """The webhook dead-letter queue (dashboard); unset: not shown."""
    webhook_function_name: pulumi.Input[str] | None = None
    """The webhook delivery Lambda (dashboard); unset: not shown."""
    extra_log_group_names: list[pulumi.Input[str]] | None = field(default_factory=list)
    """More Lambda log groups the saved queries read (the DLQ sweeper's, the webhooks')."""
    oldest_message_alarm_seconds: int | None = config_default(
        ObservabilityConfig, "oldest_message_alarm_seconds"
    )
    """Age of the oldest waiting task that raises <runtime>-oldest-message-age, seconds."""
    gpu_idle_alarm_minutes: int | None = config_default(
        ObservabilityConfig, "gpu_idle_alarm_minutes"
    )
    """Minutes of backlog with idle GPUs that raise <runtime>-gpu-idle-with-backlog."""
    spot_interruptions_alarm_per_hour: int | None = config_default(
        ObservabilityConfig, "spot_interruptions_alarm_per_hour"
    )
    """Spot interruption warnings per hour above which spot-interruptions fires."""
    alarm_email: str | None = config_default(ObservabilityConfig, "alarm_email")
    """An e-mail address subscribed to the alarm topic (it must confirm); unset for none."""

    def __post_init__(self) -> None:
        none_means_default(self)


def _metric_query(
    ref: al.MetricRef, roles: dict[str, pulumi.Input[str]]
) -> aws.cloudwatch.MetricAlarmMetricQueryArgs:
    return aws.cloudwatch.MetricAlarmMetricQueryArgs(
        id=ref.id,
        return_data=False,
        metric=aws.cloudwatch.MetricAlarmMetricQueryMetricArgs(
            namespace=ref.namespace,
            metric_name=ref.metric,
            dimensions={dim: roles[role] for dim, role in ref.dimensions.items()},
            stat=ref.stat,
            period=ref.period,
        ),
    )


class Observability(pulumi.ComponentResource):
    """Alarms on every place a task can get stuck (each naming its likely cause and runbook), an
    SNS alarm topic with optional e-mail subscription, a dashboard and saved queries."""

    alarm_topic_arn: pulumi.Output[str]
    """ARN of the SNS topic the alarms notify."""
    dashboard_name: pulumi.Output[str]
    """Name of the CloudWatch dashboard."""
    alarm_names: list[pulumi.Output[str]]
    """Names of every alarm created."""
    query_definition_names: list[str]
    """Names of the saved Logs Insights queries (sdfleet/<stack>/...)."""

    def __init__(
        self, name: str, args: ObservabilityArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("sdfleet:index:Observability", name, None, opts)
        args = as_args(ObservabilityArgs, args)
        topic = self._topic(name, args)
        self.alarm_topic_arn = topic.arn
        self.alarm_names = self._alarms(name, args, topic)
        self.dashboard_name = self._dashboard(name, args)
        self.query_definition_names = self._queries(name, args)
        self.register_outputs(
            {
                "alarm_topic_arn": self.alarm_topic_arn,
                "dashboard_name": self.dashboard_name,
                "alarm_names": self.alarm_names,
                "query_definition_names": self.query_definition_names,
            }
        )

    def _topic(self, name: str, args: ObservabilityArgs) -> aws.sns.Topic:
        identity = aws.get_caller_identity_output(opts=pulumi.InvokeOutputOptions(parent=self))
        key = aws.kms.Key(
            f"{name}-alarm-key",
            description="sdfleet alarm topic",
            enable_key_rotation=True,
            policy=identity.account_id.apply(lambda a: json.dumps(ob.alarm_topic_key_policy(a))),
            opts=pulumi.ResourceOptions(parent=self),
        )
        topic = aws.sns.Topic(
            f"{name}-alarms", kms_master_key_id=key.arn, opts=pulumi.ResourceOptions(parent=self)
        )
        if args.alarm_email:
            aws.sns.TopicSubscription(
                f"{name}-alarm-email",
                topic=topic.arn,
                protocol="email",
                endpoint=args.alarm_email,
                opts=pulumi.ResourceOptions(parent=topic),
            )
        return topic

    def _alarms(
        self, name: str, args: ObservabilityArgs, topic: aws.sns.Topic
    ) -> list[pulumi.Output[str]]:
        thresholds = al.AlarmThresholds(
            oldest_message_seconds=int(args.oldest_message_alarm_seconds or 0),
            gpu_idle_minutes=int(args.gpu_idle_alarm_minutes or 0),
            spot_interruptions_per_hour=int(args.spot_interruptions_alarm_per_hour or 0),
        )
        platform: dict[str, pulumi.Input[str]] = {
            "unrouted": args.unrouted_queue_name,
            "function": args.function_name,
            "api": args.api_name,
            "stage": args.stage_name,
            "cluster": args.cluster_name,
        }
        if args.spot_interruption_rule_name is not None:
            platform["spot_rule"] = args.spot_interruption_rule_name
        names = [
            self._alarm(name, topic, spec, platform)
            for spec in al.platform_alarms(
                thresholds, spot_rule=args.spot_interruption_rule_name is not None
            )
        ]
        for runtime, rt in args.runtimes.items():
            roles: dict[str, pulumi.Input[str]] = {
                **platform,
                "runtime": runtime,
                "queue": rt.queue_name,
                "dlq": rt.dlq_name,
                "namespace": rt.namespace,
                "deployment": rt.deployment_name,
            }
            specs = al.runtime_alarms(
                runtime, thresholds, container_insights=bool(args.container_insights)
            )
            names += [self._alarm(name, topic, spec, roles) for spec in specs]
        return names

    def _alarm(
        self,
        name: str,
        topic: aws.sns.Topic,
        spec: al.AlarmSpec,
        roles: dict[str, pulumi.Input[str]],
    ) -> pulumi.Output[str]:
        # A single metric is named on the alarm; metric math lists its metrics as queries.
        single = spec.metrics[0] if spec.expression is None else None
        queries = None
        if single is None:
            queries = [_metric_query(ref, roles) for ref in spec.metrics]
            queries.append(
                aws.cloudwatch.MetricAlarmMetricQueryArgs(
                    id="cause", expression=spec.expression, label=spec.name, return_data=True
                )
            )
        alarm = aws.cloudwatch.MetricAlarm(
            f"{name}-{spec.name}",
            alarm_description=spec.description,
            namespace=single.namespace if single else None,
            metric_name=single.metric if single else None,
            dimensions={d: roles[r] for d, r in single.dimensions.items()} if single else None,
            statistic=single.stat if single else None,
            period=single.period if single else None,
            metric_queries=queries,
            threshold=spec.threshold,
            comparison_operator=spec.comparison,
            evaluation_periods=spec.evaluation_periods,
            datapoints_to_alarm=spec.evaluation_periods,
            treat_missing_data=spec.treat_missing_data,
            alarm_actions=[topic.arn],
            ok_actions=[topic.arn],
            opts=pulumi.ResourceOptions(parent=self),
        )
        return alarm.name

    def _dashboard(self, name: str, args: ObservabilityArgs) -> pulumi.Output[str]:
        region = aws.get_region_output(opts=pulumi.InvokeOutputOptions(parent=self)).region
        runtimes = {
            rt: pulumi.Output.all(
                r.queue_name, r.dlq_name, r.namespace, r.deployment_name, r.metrics_log_group_name
            ).apply(lambda v: db.RuntimeNames(*v))
            for rt, r in args.runtimes.items()
        }
        title = f"{pulumi.get_project()}-{pulumi.get_stack()}"
        body = pulumi.Output.all(
            region=region,
            runtimes=pulumi.Output.all(**runtimes),
            unrouted=args.unrouted_queue_name,
            function=args.function_name,
            api=args.api_name,
            stage=args.stage_name,
            cluster=args.cluster_name,
            webhook_dlq=args.webhook_dlq_name,
            webhook_function=args.webhook_function_name,
        ).apply(
            lambda v: db.dashboard_body(
                db.DashboardInputs(
                    title=title,
                    region=v["region"],
                    runtimes=v["runtimes"],
                    unrouted_queue=v["unrouted"],
                    function_name=v["function"],
                    api_name=v["api"],
                    stage_name=v["stage"],
                    cluster_name=v["cluster"],
                    container_insights=bool(args.container_insights),
                    webhook_dlq=v["webhook_dlq"],
                    webhook_function=v["webhook_function"],
                )
            )
        )
        dashboard = aws.cloudwatch.Dashboard(
            f"{name}-dashboard",
            dashboard_name=title,
            dashboard_body=body,
            opts=pulumi.ResourceOptions(parent=self),
        )
        return dashboard.dashboard_name

    def _queries(self, name: str, args: ObservabilityArgs) -> list[str]:
        application = pulumi.Output.from_input(args.cluster_name).apply(lq.application_log_group)
        sources: dict[str, list[pulumi.Input[str]]] = {
            "agent-metrics": [r.metrics_log_group_name for r in args.runtimes.values()],
            # Agent log lines reach CloudWatch through Container Insights' Fluent Bit only.
            "application": [application] if args.container_insights else [],
            "lambdas": [args.function_log_group_name, *(args.extra_log_group_names or [])],
        }
        stack = pulumi.get_stack()
        names = []
        for query in lq.SAVED_QUERIES:
            query_name = lq.query_name(stack, query)
            aws.cloudwatch.QueryDefinition(
                f"{name}-query-{query.name}",
                name=query_name,
                query_string=query.query,
                log_group_names=[g for s in query.sources for g in sources[s]],
                opts=pulumi.ResourceOptions(parent=self),
            )
            names.append(query_name)
        return names
