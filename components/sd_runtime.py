"""SdRuntime: one inference runtime on the GPU plane.

A namespace and service account whose pods get a least-privilege AWS role through EKS Pod
Identity; the model bucket mounted read-only through the Mountpoint S3 CSI driver (a static
PersistentVolume per runtime and its claim); a Deployment whose pods run the inference server
as a native sidecar and the queue agent as the main container; a KEDA ScaledObject that
scales the Deployment between 0 and ``max_replicas`` on the runtime's SQS queue; and the
CloudWatch log group the agents ship their EMF metrics to (traces go to the trace collector
when ``otlp_traces_endpoint`` is set).

Everything it needs comes in as IDs, ARNs, URLs and a Kubernetes provider, so it works against a
cluster this stack does not manage ("bring your own cluster").
"""

import json
from collections.abc import Callable, Mapping
from typing import Any

import pulumi
import pulumi_aws as aws
import pulumi_kubernetes as k8s

from sdfleet.components import _opts
from sdfleet.components._iam import pod_identity_role
from sdfleet.components._inputs import as_args
from sdfleet.components.builders import keda as kb
from sdfleet.components.builders.enums import ImagePullPolicy, RuntimeType
from sdfleet.components.builders.runtime_manifests import runtime_manifests
from sdfleet.components.builders.runtime_plan import (
    DEFAULT_MODEL_CACHE_SIZE,
    MODEL_CACHE_OFF,
    PART_OF_LABEL,
    SKIP_AWAIT,
    WIRED,
    RuntimeNames,
    known_values,
    metrics_log_group_name,
    metrics_log_retention_days,
    pod_policy,
)
from sdfleet.components.sd_runtime_plan import (
    SdRuntimeArgs,
    known_task_table,
    known_telemetry,
    runtime_args,
    task_table_wiring,
    telemetry_wiring,
)

__all__ = [
    "DEFAULT_MODEL_CACHE_SIZE",
    "MODEL_CACHE_OFF",
    "PART_OF_LABEL",
    "SKIP_AWAIT",
    "ImagePullPolicy",
    "RuntimeNames",
    "RuntimeType",
    "SdRuntime",
    "SdRuntimeArgs",
    "runtime_args",
]


def _part(manifests: pulumi.Output[dict[str, dict[str, Any]]], kind: str, key: str) -> Any:
    """One field of one manifest as a resource input (``Any``: the manifest dicts are
    camelCase, as the provider sends them)."""
    return manifests.apply(lambda m: m[kind][key])


def _checked_plan(args: SdRuntimeArgs) -> tuple[str, dict[str, dict[str, Any]]]:
    """The metrics log group's name and the manifests built from placeholders for Outputs: a
    bad value fails here, before any resource is registered."""
    log_group_name = metrics_log_group_name(
        pulumi.get_project(), pulumi.get_stack(), args.runtime_name
    )
    known = {
        **known_values(args),
        **known_task_table(args),
        **known_telemetry(args, log_group_name),
    }
    plain = runtime_manifests(args, known)
    pod_policy(args, known)
    metrics_log_retention_days(args)
    return log_group_name, plain


# The component's outputs (attributes of the same names).
_OUTPUTS = (
    "namespace",
    "service_account",
    "role_arn",
    "deployment_name",
    "scaled_object_name",
    "metrics_log_group_name",
    "metrics_log_group_arn",
)


def _named(resource: pulumi.CustomResource, value: str) -> pulumi.Output[str]:
    """A name we chose, as an Output that depends on the resource carrying it."""
    return resource.urn.apply(lambda _: value)


class SdRuntime(pulumi.ComponentResource):
    """One inference runtime on the GPU plane: namespace, service account with a Pod Identity
    role, the model bucket mounted read-only, a Deployment (inference server sidecar plus queue
    agent) and a KEDA ScaledObject on the runtime's queue. The Kubernetes provider and
    ``depends_on`` (KEDA, the addons, the NodePools) come through ResourceOptions."""

    names: RuntimeNames
    """The Kubernetes object names of the runtime (Deployment, ServiceAccount, PV, ...)."""
    namespace: pulumi.Output[str]
    """The runtime's namespace (once created, when the component creates it)."""
    service_account: pulumi.Output[str]
    """The pods' ServiceAccount, associated with ``role_arn`` through Pod Identity."""
    role_arn: pulumi.Output[str]
    """ARN of the pods' IAM role (queue, results bucket and topic, input buckets)."""
    deployment_name: pulumi.Output[str]
    """The Deployment running the inference server and the queue agent."""
    scaled_object_name: pulumi.Output[str]
    """KEDA's ScaledObject that scales the Deployment on the queue."""
    manifests: pulumi.Output[list[dict[str, Any]]]
    """The plain manifests applied, in apply order (for synth and validation)."""
    metrics_log_group_name: pulumi.Output[str]
    """The log group the agents ship their EMF metrics to, one stream per pod
    (``/sdfleet/<project>-<stack>/<runtime>/agent-metrics``)."""
    metrics_log_group_arn: pulumi.Output[str]
    """ARN of the same log group."""

    def __init__(
        self, name: str, args: SdRuntimeArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("sdfleet:index:SdRuntime", name, None, opts)
        # Pulumi's provider host passes a mapping (TypeScript, Go, YAML programs).
        args = as_args(SdRuntimeArgs, args)
        log_group_name, plain = _checked_plan(args)
        self.names = names = RuntimeNames.of(args.runtime_name, args.namespace)
        metrics_logs = aws.cloudwatch.LogGroup(
            f"{name}-agent-metrics",
            name=log_group_name,
            retention_in_days=metrics_log_retention_days(args),
            opts=pulumi.ResourceOptions(parent=self),
        )
        # The task table's name and ARN join the wiring only when set (older stacks have none),
        # the collector's URL only with tracing on.
        wired = pulumi.Output.all(
            **{key: getattr(args, key) for key in WIRED},
            **task_table_wiring(args),
            **telemetry_wiring(args),
            metrics_log_group_name=metrics_logs.name,
            metrics_log_group_arn=metrics_logs.arn,
        )
        manifests = wired.apply(lambda w: runtime_manifests(args, w))

        role, role_policy, association = self._identity(name, args, wired)

        provider, deps = _opts.k8s_provider(opts), _opts.depends_on(opts)

        def k8s_opts(*extra: pulumi.Resource) -> pulumi.ResourceOptions:
            return pulumi.ResourceOptions(
                parent=self, provider=provider, depends_on=[*deps, *extra]
            )

        namespace_deps = self._namespace(name, plain, k8s_opts())
        sa = k8s.core.v1.ServiceAccount(
            f"{name}-sa",
            metadata=plain["service_account"]["metadata"],
            opts=k8s_opts(*namespace_deps),
        )
        pv = k8s.core.v1.PersistentVolume(
            f"{name}-models-pv",
            metadata=plain["volume"]["metadata"],
            spec=_part(manifests, "volume", "spec"),
            opts=k8s_opts(),
        )
        pvc = k8s.core.v1.PersistentVolumeClaim(
            f"{name}-models-pvc",
            metadata=plain["claim"]["metadata"],
            spec=plain["claim"]["spec"],
            opts=k8s_opts(pv, *namespace_deps),
        )
        fences = self._isolation(name, plain, k8s_opts(sa, *namespace_deps))
        # Pods get their AWS credentials at admission: the association (and its permissions)
        # must exist before the first pod is created; the fences too, so no pod runs without.
        deployment = k8s.apps.v1.Deployment(
            f"{name}-deployment",
            metadata=plain["deployment"]["metadata"],
            spec=_part(manifests, "deployment", "spec"),
            opts=k8s_opts(
                sa, pvc, association, role_policy, metrics_logs, *fences, *namespace_deps
            ),
        )
        scaled = self._keda(name, plain, manifests, k8s_opts, deployment, namespace_deps)

        self.service_account = _named(sa, names.service_account)
        self.role_arn = role.arn
        self.deployment_name = _named(deployment, names.deployment)
        self.scaled_object_name = _named(scaled, names.scaled_object)
        self.manifests = manifests.apply(lambda m: list(m.values()))
        self.metrics_log_group_name = metrics_logs.name
        self.metrics_log_group_arn = metrics_logs.arn
        self.register_outputs({key: getattr(self, key) for key in _OUTPUTS})

    def _namespace(
        self, name: str, plain: Mapping[str, dict[str, Any]], opts: pulumi.ResourceOptions
    ) -> list[pulumi.Resource]:
        """The Namespace when the component creates it (what the namespaced objects wait for)."""
        if "namespace" not in plain:
            self.namespace = pulumi.Output.from_input(self.names.namespace)
            return []
        ns = k8s.core.v1.Namespace(
            f"{name}-namespace", metadata=plain["namespace"]["metadata"], opts=opts
        )
        self.namespace = _named(ns, self.names.namespace)
        return [ns]

    def _keda(
        self,
        name: str,
        plain: Mapping[str, dict[str, Any]],
        manifests: pulumi.Output[dict[str, dict[str, Any]]],
        k8s_opts: Callable[..., pulumi.ResourceOptions],
        deployment: pulumi.Resource,
        namespace_deps: list[pulumi.Resource],
    ) -> pulumi.CustomResource:
        """KEDA's TriggerAuthentication and the ScaledObject on the Deployment."""
        trigger_auth = k8s.apiextensions.CustomResource(
            f"{name}-trigger-auth",
            api_version=kb.API_VERSION,
            kind="TriggerAuthentication",
            metadata=plain["trigger_authentication"]["metadata"],
            spec=plain["trigger_authentication"]["spec"],
            opts=k8s_opts(*namespace_deps),
        )
        return k8s.apiextensions.CustomResource(
            f"{name}-scaled-object",
            api_version=kb.API_VERSION,
            kind="ScaledObject",
            metadata=plain["scaled_object"]["metadata"],
            spec=_part(manifests, "scaled_object", "spec"),
            opts=k8s_opts(deployment, trigger_auth),
        )

    def _isolation(
        self, name: str, plain: Mapping[str, dict[str, Any]], opts: pulumi.ResourceOptions
    ) -> list[pulumi.Resource]:
        """NetworkPolicy, the Role and RoleBinding for the pod-deletion-cost annotation, and
        the ClusterRole and binding for reading Node objects (the node's capacity type)."""
        policy = k8s.networking.v1.NetworkPolicy(
            f"{name}-network-policy",
            metadata=plain["network_policy"]["metadata"],
            spec=plain["network_policy"]["spec"],
            opts=opts,
        )
        # Roles are namespaced, ClusterRoles not: the same pair of objects otherwise.
        rbac = k8s.rbac.v1
        deletion_cost = _bound_role(
            f"{name}-deletion-cost", plain["role"], plain["role_binding"], rbac.Role,
            rbac.RoleBinding, opts,
        )  # fmt: skip
        node_reader = _bound_role(
            f"{name}-node-reader", plain["node_reader_role"], plain["node_reader_binding"],
            rbac.ClusterRole, rbac.ClusterRoleBinding, opts,
        )  # fmt: skip
        return [policy, *deletion_cost, *node_reader]

    def _identity(
        self, name: str, args: SdRuntimeArgs, wired: pulumi.Output[dict[str, Any]]
    ) -> tuple[aws.iam.Role, aws.iam.RolePolicy, aws.eks.PodIdentityAssociation]:
        """The pods' role (trusting Pod Identity in this account only), its inline policy and
        the association with the runtime's service account."""
        role = pod_identity_role(
            f"{name}-role",
            self,
            description=f"sdfleet runtime {args.runtime_name}: queue agent pods (Pod Identity)",
        )
        role_policy = aws.iam.RolePolicy(
            f"{name}-policy",
            role=role.id,
            policy=wired.apply(lambda w: json.dumps(pod_policy(args, w))),
            opts=pulumi.ResourceOptions(parent=role),
        )
        association = aws.eks.PodIdentityAssociation(
            f"{name}-pod-identity",
            cluster_name=args.cluster_name,
            namespace=args.namespace,
            service_account=self.names.service_account,
            role_arn=role.arn,
            opts=pulumi.ResourceOptions(parent=self),
        )
        return role, role_policy, association


def _bound_role(
    name: str,
    role: Mapping[str, Any],
    binding: Mapping[str, Any],
    role_type: Any,
    binding_type: Any,
    opts: pulumi.ResourceOptions,
) -> list[pulumi.Resource]:
    """A (Cluster)Role and its (Cluster)RoleBinding, the binding after the role."""
    created = role_type(f"{name}-role", metadata=role["metadata"], rules=role["rules"], opts=opts)
    bound = binding_type(
        f"{name}-binding",
        metadata=binding["metadata"],
        role_ref=binding["roleRef"],
        subjects=binding["subjects"],
        opts=pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(depends_on=[created])),
    )
    return [created, bound]
