"""What a component reads from its ``pulumi.ResourceOptions``: the Kubernetes provider and the
resources its Kubernetes children must wait for. Pulumi users pass both as options, not Args.

Children inherit a component's providers but not its ``depends_on``, so the components hand
both to their Kubernetes children explicitly.
"""

from collections.abc import Mapping, Sequence

import pulumi


def k8s_provider(opts: pulumi.ResourceOptions | None) -> pulumi.ProviderResource | None:
    """The Kubernetes provider given as ``provider`` or in ``providers``; None: inherited."""
    if opts is None:
        return None
    candidates: list[pulumi.ProviderResource] = []
    if isinstance(opts.provider, pulumi.ProviderResource):
        candidates.append(opts.provider)
    if isinstance(opts.providers, Mapping):
        candidates.extend(opts.providers.values())
    elif isinstance(opts.providers, Sequence):
        candidates.extend(opts.providers)
    for provider in candidates:
        if provider.package == "kubernetes":
            return provider
    return None


def depends_on(opts: pulumi.ResourceOptions | None) -> list[pulumi.Resource]:
    """``opts.depends_on`` as a list of resources (a single resource or a plain list)."""
    deps = None if opts is None else opts.depends_on
    if deps is None:
        return []
    if isinstance(deps, pulumi.Resource):
        return [deps]
    if isinstance(deps, Sequence):
        resources = [d for d in deps if isinstance(d, pulumi.Resource)]
        if len(resources) == len(deps):
            return resources
    raise TypeError(
        f"ResourceOptions.depends_on: {deps!r} is not a resource or a list of resources"
    )
