"""TraceCollector: an ADOT collector Deployment that receives the agents' OTLP/HTTP spans and
sends them to X-Ray, with a Pod Identity role that may only put traces.

No ``from __future__ import annotations`` here: Pulumi's component analyzer reads the Args'
annotations at runtime (sdfleet/provider.py serves this component)."""

import json
from dataclasses import dataclass, field
from typing import Any

import pulumi
import pulumi_aws as aws
import pulumi_kubernetes as k8s

from sdfleet.components import _opts, versions
from sdfleet.components._iam import pod_identity_role
from sdfleet.components._inputs import as_args, none_means_default
from sdfleet.components.builders import iam
from sdfleet.components.builders import trace_collector as tcb


@dataclass
class TraceCollectorArgs:
    """Inputs of TraceCollector: the cluster, where the collector runs and how many replicas.
    The X-Ray region is the AWS provider's."""

    cluster_name: pulumi.Input[str]
    """The EKS cluster (for the collector's Pod Identity association)."""
    system_node_selector: dict[str, str] | None = field(default_factory=dict)
    """Node labels the collector's pods are pinned to (the system nodes); empty for any node."""
    replicas: int | None = tcb.DEFAULT_REPLICAS
    """Collector pods (1-10); at most one per node, spread over zones."""
    otlp_grpc: bool | None = False
    """Also accept OTLP over gRPC on port 4317 (the agents use OTLP/HTTP on 4318)."""

    def __post_init__(self) -> None:
        none_means_default(self)


def _manifests(args: TraceCollectorArgs, region: str) -> dict[str, dict[str, Any]]:
    return tcb.collector_manifests(
        region=region,
        image=versions.ADOT_COLLECTOR_IMAGE,
        node_selector=args.system_node_selector,
        replicas=args.replicas if args.replicas is not None else tcb.DEFAULT_REPLICAS,
        otlp_grpc=bool(args.otlp_grpc),
    )


class TraceCollector(pulumi.ComponentResource):
    """The OTLP trace collector of the runtimes' agents (ADOT, ``awsxray`` exporter) in the
    ``sdfleet-telemetry`` namespace, reachable from namespaces labelled
    ``sdfleet.io/runtime-namespace=true`` only. The Kubernetes provider and ``depends_on``
    (the Pod Identity agent addon, the system nodes) come through ResourceOptions."""

    otlp_traces_endpoint: pulumi.Output[str]
    """The in-cluster OTLP/HTTP traces URL the agents export to."""
    namespace: pulumi.Output[str]
    """The collector's namespace (once created)."""
    role_arn: pulumi.Output[str]
    """ARN of the collector's IAM role (xray:PutTraceSegments and PutTelemetryRecords only)."""

    def __init__(
        self, name: str, args: TraceCollectorArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("sdfleet:index:TraceCollector", name, None, opts)
        args = as_args(TraceCollectorArgs, args)
        provider, deps = _opts.k8s_provider(opts), _opts.depends_on(opts)
        region = aws.get_region_output(opts=pulumi.InvokeOutputOptions(parent=self))
        # Built once with a placeholder region first: a bad value fails before any resource.
        plain = _manifests(args, "us-east-1")
        manifests = region.region.apply(lambda r: _manifests(args, r))

        role, identity = self._identity(name, args, deps)
        ns, service = self._workload(name, plain, manifests, provider, deps, identity)

        self.otlp_traces_endpoint = service.metadata.apply(lambda _: tcb.OTLP_TRACES_URL)
        self.namespace = ns.metadata.apply(lambda _: tcb.NAMESPACE)
        self.role_arn = role.arn
        self.register_outputs(
            {
                "otlp_traces_endpoint": self.otlp_traces_endpoint,
                "namespace": self.namespace,
                "role_arn": self.role_arn,
            }
        )

    def _identity(
        self, name: str, args: TraceCollectorArgs, deps: list[pulumi.Resource]
    ) -> tuple[aws.iam.Role, list[pulumi.Resource]]:
        """The collector's role (X-Ray put only) and its Pod Identity association; the pods
        get their credentials at admission, so both come before the Deployment."""
        role = pod_identity_role(
            f"{name}-role", self, description="sdfleet trace collector (Pod Identity): X-Ray"
        )
        policy = aws.iam.RolePolicy(
            f"{name}-put-traces",
            role=role.id,
            policy=json.dumps(iam.trace_collector_policy()),
            opts=pulumi.ResourceOptions(parent=role),
        )
        association = aws.eks.PodIdentityAssociation(
            f"{name}-pod-identity",
            cluster_name=args.cluster_name,
            namespace=tcb.NAMESPACE,
            service_account=tcb.SERVICE_ACCOUNT,
            role_arn=role.arn,
            opts=pulumi.ResourceOptions(parent=self, depends_on=deps),
        )
        return role, [association, policy]

    def _workload(
        self,
        name: str,
        plain: dict[str, dict[str, Any]],
        manifests: pulumi.Output[dict[str, dict[str, Any]]],
        provider: pulumi.ProviderResource | None,
        deps: list[pulumi.Resource],
        identity: list[pulumi.Resource],
    ) -> tuple[k8s.core.v1.Namespace, k8s.core.v1.Service]:
        """The namespace, service account, config, fence, Deployment, Service and PDB."""

        def k8s_opts(*extra: pulumi.Resource) -> pulumi.ResourceOptions:
            return pulumi.ResourceOptions(
                parent=self, provider=provider, depends_on=[*deps, *extra]
            )

        ns = k8s.core.v1.Namespace(
            f"{name}-namespace", metadata=plain["namespace"]["metadata"], opts=k8s_opts()
        )
        sa = k8s.core.v1.ServiceAccount(
            f"{name}-sa",
            metadata=plain["service_account"]["metadata"],
            automount_service_account_token=False,
            opts=k8s_opts(ns),
        )
        config = k8s.core.v1.ConfigMap(
            f"{name}-config",
            metadata=plain["config_map"]["metadata"],
            data=manifests.apply(lambda m: m["config_map"]["data"]),
            opts=k8s_opts(ns),
        )
        fence = k8s.networking.v1.NetworkPolicy(
            f"{name}-network-policy",
            metadata=plain["network_policy"]["metadata"],
            spec=plain["network_policy"]["spec"],
            opts=k8s_opts(ns),
        )
        # Pods get their AWS credentials at admission: the association and its policy first.
        k8s.apps.v1.Deployment(
            f"{name}-deployment",
            metadata=plain["deployment"]["metadata"],
            spec=manifests.apply(lambda m: m["deployment"]["spec"]),
            opts=k8s_opts(ns, sa, config, fence, *identity),
        )
        service = k8s.core.v1.Service(
            f"{name}-service",
            metadata=plain["service"]["metadata"],
            spec=plain["service"]["spec"],
            opts=k8s_opts(ns),
        )
        k8s.policy.v1.PodDisruptionBudget(
            f"{name}-pdb",
            metadata=plain["pod_disruption_budget"]["metadata"],
            spec=plain["pod_disruption_budget"]["spec"],
            opts=k8s_opts(ns),
        )
        return ns, service
