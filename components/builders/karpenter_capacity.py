"""Karpenter names shared by the GPU capacity builders, the input checks they share, and how a
runtime's capacity is split between spot and on-demand.

Spot ratio
----------
Karpenter has no "70 % spot" knob. We use its documented capacity-spread pattern
(``concepts/scheduling.md``, "On-Demand/Spot Ratio Split"): a made-up node label
``capacity-spread`` gets ``slots`` distinct values ("1".."N"). The on-demand NodePool may only
create nodes labelled with the first O values, the spot NodePool with the other S = N - O
values. The runtime's pods spread over that label with ``maxSkew: 1`` and ``DoNotSchedule``, so
kube-scheduler and Karpenter fill the N "virtual domains" evenly and the share of pods on spot
approximates S / N.

Granularity is 1/N: with the default N = 10, a ratio of 0.7 gives 7 spot slots and 3 on-demand
slots, 0.75 rounds to 8 of 10. Any ratio strictly between 0 and 1 keeps at least one slot on
each side (0.01 gives 1 of 10), so both pools exist whenever the user asked for a mix; the share
stays within 1/N of the ratio. The split is exact only for pod counts that are multiples of N;
with few pods the first ones may all land in either kind of domain (skew 1 allows it).

- ratio 0: one on-demand NodePool, no spread constraint.
- ratio 1: one spot NodePool, no spread constraint; with ``spot_fallback`` also an on-demand
  NodePool with a lower weight, which Karpenter tries when the spot pool cannot launch
  (weights are a preference, not a guarantee).
- in between: the two pools above plus the spread constraint.

When spot capacity is unavailable in the split case there is no automatic fallback: pods that
the skew forces into a spot domain stay Pending until spot capacity appears (``DoNotSchedule``).
The defence is a wide list of instance types/families. Choose ratio 1 with ``spot_fallback``
when availability matters more than the exact mix.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from sdfleet.components.builders.errors import fail
from sdfleet.components.patterns import DURATION as _DURATION

SPREAD_LABEL = "capacity-spread"
RUNTIME_LABEL = "sdfleet.io/runtime"
GPU_TAINT_KEY = "nvidia.com/gpu"
GPU_RESOURCE = "nvidia.com/gpu"
# The Mountpoint S3 CSI node plugin removes this taint once it can serve mounts.
MOUNTPOINT_STARTUP_TAINT_KEY = "s3.csi.aws.com/agent-not-ready"
DISCOVERY_TAG = "karpenter.sh/discovery"
NODE_CLASS_GROUP = "karpenter.k8s.aws"
NODEPOOL_API_VERSION = "karpenter.sh/v1"
NODECLASS_API_VERSION = "karpenter.k8s.aws/v1"

SPOT = "spot"
ON_DEMAND = "on-demand"

DEFAULT_SLOTS = 10
# Primary pools are tried before the on-demand fallback pool.
PRIMARY_WEIGHT = 50
FALLBACK_WEIGHT = 10


def _check_duration(field: str, value: str, allow_never: bool = False) -> None:
    if allow_never and value == "Never":
        return
    if not isinstance(value, str) or not _DURATION.match(value):
        extra = " or 'Never'" if allow_never else ""
        raise fail(field, value, f"a duration such as '30s', '5m', '1h30m'{extra}")


# ------------------------------------------------------------------------------------------
# Spot ratio


@dataclass(frozen=True)
class CapacitySplit:
    """How a runtime's GPU capacity is split between spot and on-demand NodePools."""

    ratio: float
    slots: int
    spot_values: tuple[str, ...]
    on_demand_values: tuple[str, ...]
    on_demand_fallback: bool

    @property
    def spot_slots(self) -> int:
        return len(self.spot_values)

    @property
    def on_demand_slots(self) -> int:
        return len(self.on_demand_values)

    @property
    def uses_spread(self) -> bool:
        """Both kinds of capacity are mixed by the capacity-spread label."""
        return bool(self.spot_values) and bool(self.on_demand_values)

    @property
    def spot_share(self) -> float:
        return self.spot_slots / self.slots


def capacity_split(
    ratio: float, slots: int = DEFAULT_SLOTS, *, spot_fallback: bool = False
) -> CapacitySplit:
    """Split ``slots`` capacity-spread values between spot and on-demand by ``ratio``.

    The spot slot count is ``ratio * slots`` rounded half up, then kept within
    ``1..slots-1`` when 0 < ratio < 1. On-demand gets the values "1".."O", spot the rest.
    ``spot_fallback`` only matters for ratio 1 (adds a lower-weight on-demand pool).
    """
    if isinstance(ratio, bool) or not isinstance(ratio, (int, float)):
        raise fail("spotRatio", ratio, "a number from 0 to 1")
    if math.isnan(ratio) or not 0 <= ratio <= 1:
        raise fail("spotRatio", ratio, "a number from 0 to 1")
    if isinstance(slots, bool) or not isinstance(slots, int) or not 2 <= slots <= 100:
        raise fail("slots", slots, "an integer from 2 to 100")
    if not isinstance(spot_fallback, bool):
        raise fail("spotFallback", spot_fallback, "true or false")
    # The epsilon absorbs float noise such as 0.7 * 10 == 7.000000000000001 or 0.15*10 < 1.5.
    spot = math.floor(ratio * slots + 0.5 + 1e-9)
    if 0 < ratio < 1:
        spot = min(max(spot, 1), slots - 1)
    on_demand = slots - spot
    values = [str(i) for i in range(1, slots + 1)]
    return CapacitySplit(
        ratio=float(ratio),
        slots=slots,
        spot_values=tuple(values[on_demand:]) if spot else (),
        on_demand_values=tuple(values[:on_demand]) if on_demand else (),
        on_demand_fallback=spot_fallback and on_demand == 0,
    )
