"""SdPipeline: the whole sdfleet pipeline from one validated configuration."""

import re
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import pulumi
import pulumi_aws as aws

from sdfleet.components._inputs import as_args
from sdfleet.components.agent_image import AgentImage, AgentImageArgs
from sdfleet.components.api_ingress import ApiIngress, ApiIngressArgs
from sdfleet.components.builders.trace_collector import NAMESPACE as TELEMETRY_NAMESPACE
from sdfleet.components.config import StackConfig
from sdfleet.components.config_model import Arch, NatGateways, QuotaPeriod
from sdfleet.components.container_image import ContainerImage, runtime_images
from sdfleet.components.eks_cluster import EksCluster, EksClusterArgs
from sdfleet.components.event_fanout import EventFanout, EventFanoutArgs
from sdfleet.components.gpu_node_pool import GpuNodePool
from sdfleet.components.karpenter import Karpenter, KarpenterArgs
from sdfleet.components.keda import Keda, KedaArgs
from sdfleet.components.model_store import ModelStore, ModelStoreArgs
from sdfleet.components.network import Network, NetworkArgs
from sdfleet.components.observability import Observability, ObservabilityArgs, ObservedRuntime
from sdfleet.components.pipeline_args import SdPipelineArgs, gpu_pool_args, runtime_catalogue
from sdfleet.components.pipeline_outputs import stack_outputs
from sdfleet.components.sd_runtime import SdRuntime, runtime_args
from sdfleet.components.task_events_component import TaskEvents, TaskEventsArgs
from sdfleet.components.trace_collector import TraceCollector, TraceCollectorArgs

# Stack output -> SdPipeline attribute where it is not the snake_case of the key.
_OUTPUT_ATTRS = {"agentImage": "agent_image_ref"}


def _snake(key: str) -> str:
    return re.sub(r"(?<!^)([A-Z])", r"_\1", key).lower()


def _promise() -> tuple[pulumi.Output[str], Callable[[pulumi.Output[str]], None]]:
    """An output resolved later (a component created afterwards provides it)."""
    return pulumi.deferred_output()


class SdPipeline(pulumi.ComponentResource):
    """The whole sdfleet pipeline from one validated stack configuration: network, EKS cluster,
    Karpenter, KEDA, the event fan-out, the task API, the model store, the agent image, one GPU
    node pool and SdRuntime per runtime, and observability. Its outputs are the stack's."""

    # Class-level annotations are the package schema's outputs (the stack outputs); the child
    # components are declared in __init__ so the schema analyzer does not take them as outputs.
    api_url: pulumi.Output[str]
    """The task API URL (``<apiUrl>/<route>``)."""
    api_key: pulumi.Output[str]
    """The API key clients send in the x-api-key header (secret)."""
    input_topic_arn: pulumi.Output[str]
    """ARN of the SNS topic tasks may also be published to directly."""
    output_topic_arn: pulumi.Output[str]
    """ARN of the SNS topic results and status changes are published to."""
    output_bucket: pulumi.Output[str]
    """Bucket results are written to."""
    model_bucket: pulumi.Output[str]
    """Bucket the runtimes read models from."""
    queue_urls: pulumi.Output[dict[str, str]]
    """Runtime name -> URL of its task queue."""
    queue_arns: pulumi.Output[dict[str, str]]
    """Runtime name -> ARN of its task queue."""
    dlq_arns: pulumi.Output[dict[str, str]]
    """Runtime name -> ARN of its dead-letter queue."""
    unrouted_queue_url: pulumi.Output[str]
    """URL of the queue keeping tasks that name no configured runtime."""
    alarm_topic_arn: pulumi.Output[str]
    """ARN of the SNS topic the alarms notify."""
    dashboard: pulumi.Output[str]
    """Name of the CloudWatch dashboard."""
    agent_image_ref: pulumi.Output[str]
    """The digest-pinned agent image the runtime pods run."""
    runtime_namespaces: pulumi.Output[dict[str, str]]
    """Runtime name -> its Kubernetes namespace."""
    runtime_images: pulumi.Output[dict[str, str]]
    """Runtime name -> the server image its pods run: the one built from
    ``runtimes/<type>/`` (by digest) or the runtime's ``image``."""
    cluster_name: pulumi.Output[str]
    """Name of the EKS cluster."""
    kubeconfig: pulumi.Output[str]
    """Kubeconfig for the cluster (JSON; uses the aws CLI for tokens)."""
    update_kubeconfig_command: pulumi.Output[str]
    """The aws CLI command that adds the cluster to ~/.kube/config."""
    subscribe_example: pulumi.Output[str]
    """An aws CLI command subscribing a queue of yours to the results."""
    task_table_name: pulumi.Output[str]
    """Name of the DynamoDB task table the status API reads (stack output taskTableName)."""
    task_table_arn: pulumi.Output[str]
    """ARN of the task table, for the agents' and the DLQ sweeper's policies."""

    def __init__(
        self, name: str, args: SdPipelineArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("sdfleet:index:SdPipeline", name, None, opts)
        args = as_args(SdPipelineArgs, args)
        self.models: ModelStore
        self.fanout: EventFanout
        self.ingress: ApiIngress
        self.observability: Observability
        self.task_events: TaskEvents
        self.network: Network
        self.cluster: EksCluster
        self.karpenter: Karpenter
        self.keda: Keda
        self.trace_collector: TraceCollector | None
        self.gpu_pools: dict[str, GpuNodePool]
        self.agent_image: AgentImage
        self.server_images: dict[str, ContainerImage]
        self.server_image_refs: dict[str, pulumi.Input[str]]
        self.runtimes: dict[str, SdRuntime]
        self.outputs: dict[str, pulumi.Output[Any]]
        cfg = args.validated

        self._event_plane(name, cfg)
        self.task_table_arn = self.ingress.task_table_arn
        self._compute_plane(name, cfg)
        self._watch(name, cfg)
        region = aws.get_region_output(opts=pulumi.InvokeOutputOptions(parent=self)).region

        self.outputs = stack_outputs(self, region)
        for key, value in self.outputs.items():
            setattr(self, _OUTPUT_ATTRS.get(key, _snake(key)), value)
        self.register_outputs(self.outputs)

    def _event_plane(self, name: str, cfg: StackConfig) -> None:
        """The model store, the event fan-out and the task API."""
        child = pulumi.ResourceOptions(parent=self)
        self.models = ModelStore(
            f"{name}-models",
            ModelStoreArgs(
                existing_bucket_name=cfg.models.bucket_name,
                force_destroy=cfg.models.force_destroy,
            ),
            child,
        )
        self.fanout = EventFanout(
            f"{name}-events",
            EventFanoutArgs(
                runtime_names=[rt.name for rt in cfg.runtimes],
                max_receive_count=cfg.queues.max_receive_count,
                visibility_timeout_seconds=cfg.queues.visibility_timeout_seconds,
                output_expire_after_days=cfg.outputs.expire_after_days,
                output_force_destroy=cfg.outputs.force_destroy,
                tracing=cfg.observability.tracing and cfg.observability.sns_active_tracing,
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
                quota_period=QuotaPeriod(api.quota.period) if api.quota else None,
                reserved_concurrency=api.reserved_concurrency,
                log_retention_days=cfg.observability.log_retention_days,
                manage_account_log_role=api.manage_account_log_role,
                status_url_expiry_seconds=api.status_url_expiry_seconds,
                trace_sample_rate=cfg.observability.trace_sample_rate,
                task_ttl_days=cfg.tasks.ttl_days,
                task_point_in_time_recovery=cfg.tasks.point_in_time_recovery,
            ),
            child,
        )

    def _watch(self, name: str, cfg: StackConfig) -> None:
        """Alarms, dashboard and saved queries over everything above, then the task events
        (DLQ sweeper, webhooks) that notify the alarm topic."""
        child = pulumi.ResourceOptions(parent=self)
        # TaskEvents notifies the alarm topic, and the dashboard and queries watch TaskEvents:
        # its names are promised here and resolved once it exists.
        webhook_fn, resolve_webhook_fn = _promise()
        webhook_dlq, resolve_webhook_dlq = _promise()
        sweeper_logs, resolve_sweeper_logs = _promise()
        webhook_logs, resolve_webhook_logs = _promise()
        obs = cfg.observability
        self.observability = Observability(
            f"{name}-observability",
            ObservabilityArgs(
                runtimes={
                    rt.name: ObservedRuntime(
                        queue_name=self.fanout.queue_names[rt.name],
                        dlq_name=self.fanout.dlq_names[rt.name],
                        namespace=self.runtimes[rt.name].namespace,
                        deployment_name=self.runtimes[rt.name].deployment_name,
                        metrics_log_group_name=self.runtimes[rt.name].metrics_log_group_name,
                    )
                    for rt in cfg.runtimes
                },
                unrouted_queue_name=self.fanout.unrouted_queue_name,
                function_name=self.ingress.function_name,
                function_log_group_name=self.ingress.function_log_group_name,
                api_name=self.ingress.rest_api_name,
                stage_name=self.ingress.stage_name,
                cluster_name=self.cluster.cluster_name,
                container_insights=obs.container_insights,
                spot_interruption_rule_name=self.karpenter.spot_interruption_rule_name,
                webhook_dlq_name=webhook_dlq,
                webhook_function_name=webhook_fn,
                extra_log_group_names=[sweeper_logs, webhook_logs],
                oldest_message_alarm_seconds=obs.oldest_message_alarm_seconds,
                gpu_idle_alarm_minutes=obs.gpu_idle_alarm_minutes,
                spot_interruptions_alarm_per_hour=obs.spot_interruptions_alarm_per_hour,
                alarm_email=obs.alarm_email,
            ),
            child,
        )
        # Every task's final word (DLQ sweeper) and signed webhook deliveries.
        self.task_events = TaskEvents(
            f"{name}-task-events",
            TaskEventsArgs(
                output_topic_arn=self.fanout.output_topic_arn,
                dlq_arns=dict(self.fanout.dlq_arns),
                task_table_name=self.ingress.task_table_name,
                task_table_arn=self.ingress.task_table_arn,
                task_ttl_days=cfg.tasks.ttl_days,
                log_retention_days=cfg.observability.log_retention_days,
                alarm_topic_arn=self.observability.alarm_topic_arn,
            ),
            child,
        )
        events = self.task_events
        resolve_webhook_fn(events.webhook_function_name)
        resolve_webhook_dlq(events.webhook_dead_letter_queue_name)
        resolve_sweeper_logs(events.sweeper_log_group_name)
        resolve_webhook_logs(events.webhook_log_group_name)

    def _compute_plane(self, name: str, cfg: StackConfig) -> None:
        """The network, the cluster, Karpenter, KEDA, a GPU node pool per runtime, then the
        runtimes on them."""
        cluster_name = cfg.cluster.name or f"sdfleet-{pulumi.get_stack()}"
        self._cluster(name, cfg, cluster_name)
        provider = self.cluster.k8s_provider
        k8s_child = pulumi.ResourceOptions(
            parent=self, provider=provider, depends_on=self.cluster.addons
        )
        self.karpenter = Karpenter(
            f"{name}-karpenter",
            KarpenterArgs(
                cluster_name=cluster_name,
                system_node_selector=self.cluster.system_node_selector,
                create_spot_service_linked_role=cfg.cluster.create_spot_service_linked_role,
            ),
            k8s_child,
        )
        self.keda = Keda(
            f"{name}-keda",
            KedaArgs(
                cluster_name=cluster_name,
                queue_arns=[self.fanout.queue_arns[rt.name] for rt in cfg.runtimes],
                system_node_selector=self.cluster.system_node_selector,
            ),
            k8s_child,
        )
        self.trace_collector = None
        if cfg.observability.tracing:
            self.trace_collector = TraceCollector(
                f"{name}-traces",
                TraceCollectorArgs(
                    cluster_name=cluster_name,
                    system_node_selector=self.cluster.system_node_selector,
                ),
                k8s_child,
            )
        self.gpu_pools = {}
        for rt in cfg.runtimes:
            self.gpu_pools[rt.name] = GpuNodePool(
                f"{name}-{rt.name}-gpu",
                gpu_pool_args(cfg, rt, cluster_name, self.karpenter.node_role_name),
                # Karpenter's CRDs must exist first.
                pulumi.ResourceOptions(
                    parent=self, provider=provider, depends_on=[self.karpenter.release]
                ),
            )
        self._runtimes(name, cfg, cluster_name)

    def _telemetry_wiring(self, cfg: StackConfig) -> dict[str, Any]:
        """What each runtime's pods need to send traces (when tracing is on) and metrics."""
        wiring: dict[str, Any] = {
            "metrics_log_retention_days": cfg.observability.log_retention_days
        }
        if self.trace_collector is not None:
            wiring["otlp_traces_endpoint"] = self.trace_collector.otlp_traces_endpoint
            wiring["telemetry_namespace"] = TELEMETRY_NAMESPACE
        return wiring

    def _cluster(self, name: str, cfg: StackConfig, cluster_name: str) -> None:
        """The network (created or brought) and the EKS cluster in it."""
        child = pulumi.ResourceOptions(parent=self)
        net = cfg.network
        self.network = Network(
            f"{name}-network",
            NetworkArgs(
                cluster_name=cluster_name,
                vpc_id=net.vpc_id,
                private_subnet_ids=net.private_subnet_ids,
                public_subnet_ids=net.public_subnet_ids,
                cidr_block=net.cidr_block,
                availability_zones=net.availability_zones,
                nat_gateways=NatGateways(net.nat_gateways),
                s3_gateway_endpoint=net.s3_gateway_endpoint,
            ),
            child,
        )
        cl = cfg.cluster
        system = cl.system_nodes
        self.cluster = EksCluster(
            f"{name}-cluster",
            EksClusterArgs(
                cluster_name=cluster_name,
                vpc_id=self.network.vpc_id,
                private_subnet_ids=self.network.private_subnet_ids,
                public_subnet_ids=self.network.public_subnet_ids,
                model_bucket_arn=self.models.bucket_arn,
                kubernetes_version=cl.version,
                endpoint_public_access=cl.endpoint_public_access,
                endpoint_private_access=cl.endpoint_private_access,
                public_access_cidrs=cl.public_access_cidrs,
                system_instance_types=system.instance_types,
                system_arch=Arch(system.arch),
                system_min_size=system.min_size,
                system_desired_size=system.desired_size,
                system_max_size=system.max_size,
                container_insights=cfg.observability.container_insights,
                log_retention_days=cfg.observability.log_retention_days,
            ),
            child,
        )

    def _runtimes(self, name: str, cfg: StackConfig, cluster_name: str) -> None:
        child = pulumi.ResourceOptions(parent=self)
        self.agent_image = AgentImage(
            f"{name}-agent",
            AgentImageArgs(
                image_ref=cfg.agent.image_ref,
                keep_images=cfg.agent.keep_images,
                force_delete=cfg.agent.force_destroy,
            ),
            child,
        )
        # One server image per runtime type that has a runtime without `image`.
        self.server_images = runtime_images(
            name,
            [(rt.type, rt.image) for rt in cfg.runtimes],
            keep_images=cfg.agent.keep_images,
            force_delete=cfg.agent.force_destroy,
            opts=child,
        )
        # A runtime's own `image`, else the build for its type, by digest.
        self.server_image_refs = {
            rt.name: rt.image if rt.image is not None else self.server_images[rt.type].ref
            for rt in cfg.runtimes
        }
        region = aws.get_region_output(opts=pulumi.InvokeOutputOptions(parent=self)).region
        self.runtimes = {}
        for rt in cfg.runtimes:
            pool = self.gpu_pools[rt.name]
            self.runtimes[rt.name] = SdRuntime(
                f"{name}-{rt.name}",
                replace(
                    runtime_args(
                        rt,
                        cluster_name=cluster_name,
                        region=region,
                        queue_url=self.fanout.queue_urls[rt.name],
                        queue_arn=self.fanout.queue_arns[rt.name],
                        output_topic_arn=self.fanout.output_topic_arn,
                        output_bucket_name=self.fanout.output_bucket_name,
                        output_bucket_arn=self.fanout.output_bucket_arn,
                        model_bucket_name=self.models.bucket_name,
                        agent_image=self.agent_image.ref,
                        scheduling=pool.scheduling,
                        input_s3_buckets=tuple(cfg.inputs.s3_buckets),
                        task_table_name=self.ingress.task_table_name,
                        task_table_arn=self.ingress.task_table_arn,
                        task_ttl_seconds=cfg.tasks.ttl_days * 86400,
                        **self._telemetry_wiring(cfg),
                    ),
                    server_image=self.server_image_refs[rt.name],
                ),
                # KEDA's CRDs, the Mountpoint and Pod Identity addons, and the runtime's
                # NodePools for its pods to land anywhere.
                pulumi.ResourceOptions(
                    parent=self,
                    provider=self.cluster.k8s_provider,
                    depends_on=[self.keda.release, *self.cluster.addons, pool],
                ),
            )
