"""The load test's outcome: counts by result, latency percentiles, a table and a JSON document."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

PERCENTILES = (50, 95, 99)


def percentile(values: Sequence[float], pct: float) -> float | None:
    """Nearest-rank percentile (an observed value, never an interpolation); None if empty."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(pct / 100 * len(ordered)))
    return ordered[rank - 1]


@dataclass
class LoadReport:
    rate: float
    duration_s: float
    scheduled: int = 0
    sent: int = 0
    accepted: int = 0
    rejected: Counter[str] = field(default_factory=Counter)  # HTTP status (or "network")
    completed: int = 0
    failed: Counter[str] = field(default_factory=Counter)  # the task's error code
    unfinished: int = 0  # accepted, not final when the drain deadline passed
    latencies_s: list[float] = field(default_factory=list)  # send -> completion seen
    server_total_ms: list[float] = field(default_factory=list)  # queued_at -> finished_at
    send_lag_s: list[float] = field(default_factory=list)  # sent later than scheduled
    wall_s: float = 0.0

    def latency(self) -> dict[str, float | None]:
        return _summary(self.latencies_s, 1000.0)

    def server(self) -> dict[str, float | None]:
        return _summary(self.server_total_ms, 1.0)

    def to_json(self) -> dict[str, Any]:
        return {
            "rate_per_s": self.rate,
            "duration_s": self.duration_s,
            "wall_s": round(self.wall_s, 3),
            "scheduled": self.scheduled,
            "sent": self.sent,
            "accepted": self.accepted,
            "rejected": dict(sorted(self.rejected.items())),
            "completed": self.completed,
            "failed": dict(sorted(self.failed.items())),
            "unfinished": self.unfinished,
            "latency_ms": self.latency(),
            "server_total_ms": self.server(),
            "max_send_lag_ms": round(max(self.send_lag_s, default=0.0) * 1000, 1),
        }

    def table(self) -> str:
        doc = self.to_json()
        rows: list[tuple[str, str]] = [
            ("rate", f"{self.rate:g}/s for {self.duration_s:g} s ({doc['wall_s']:g} s wall)"),
            ("sent", f"{self.sent} of {self.scheduled} scheduled"),
            ("accepted", str(self.accepted)),
        ]
        rows += [(f"rejected {code}", str(n)) for code, n in doc["rejected"].items()]
        rows += [("completed", str(self.completed))]
        rows += [(f"failed {code}", str(n)) for code, n in doc["failed"].items()]
        rows += [("unfinished", str(self.unfinished))]
        for title, values in (("latency", doc["latency_ms"]), ("server", doc["server_total_ms"])):
            cells = [f"{k} {_ms(v)}" for k, v in values.items()]
            rows.append((f"{title} ms", "  ".join(cells)))
        rows.append(("max send lag", f"{doc['max_send_lag_ms']:g} ms"))
        width = max(len(name) for name, _ in rows)
        return "\n".join(f"{name:<{width}}  {value}" for name, value in rows)


def _summary(values: Sequence[float], scale: float) -> dict[str, float | None]:
    out: dict[str, float | None] = {}
    for pct in PERCENTILES:
        value = percentile(values, pct)
        out[f"p{pct}"] = None if value is None else round(value * scale, 1)
    out["max"] = round(max(values) * scale, 1) if values else None
    return out


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:g}"
