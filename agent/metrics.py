"""CloudWatch metrics as Embedded Metric Format (EMF) JSON lines on stdout.

Each line is a complete EMF document; the CloudWatch agent / Fluent Bit (or Container Insights
with EMF enabled) turns it into metrics in the ``sdfleet/agent`` namespace, dimensioned by runtime.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from collections.abc import Mapping
from typing import TextIO

NAMESPACE = "sdfleet/agent"
UNITS = {
    "TasksCompleted": "Count",
    "TasksFailed": "Count",
    "InferenceMs": "Milliseconds",
    "QueueWaitMs": "Milliseconds",
    "GpuIdleGapMs": "Milliseconds",
}


class Metrics:
    def __init__(self, runtime: str, stream: TextIO | None = None, enabled: bool = True) -> None:
        self.runtime = runtime
        self.stream = stream
        self.enabled = enabled
        self._lock = threading.Lock()

    def emit(self, values: Mapping[str, float], **properties: object) -> None:
        if not self.enabled or not values:
            return
        document: dict[str, object] = {
            "_aws": {
                "Timestamp": int(time.time() * 1000),
                "CloudWatchMetrics": [
                    {
                        "Namespace": NAMESPACE,
                        "Dimensions": [["Runtime"]],
                        "Metrics": [
                            {"Name": name, "Unit": UNITS.get(name, "None")} for name in values
                        ],
                    }
                ],
            },
            "Runtime": self.runtime,
            **{name: value for name, value in values.items()},
            **properties,
        }
        line = json.dumps(document, default=str, separators=(",", ":"))
        with self._lock:
            stream = self.stream or sys.stdout
            stream.write(line + "\n")
            stream.flush()
