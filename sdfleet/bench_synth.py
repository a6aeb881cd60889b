"""Synth time against the number of runtimes: ``python -m sdfleet.bench_synth``.

Builds stack configs with 1, 4 and 16 runtimes (alternating sdwebui and comfyui), synthesizes
each under the mock runtime a few times and prints the median wall time, resources and time per
resource. Synth should grow linearly with the runtimes.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import runpy
import statistics
import time
from pathlib import Path
from typing import Any

from sdfleet.mocking import config_from_stack_file, run_program

MAIN = Path(__file__).resolve().parent.parent / "__main__.py"


def stack_config(runtimes: int) -> dict[str, Any]:
    items: list[dict[str, Any]] = []
    for i in range(runtimes):
        if i % 2 == 0:
            items.append(
                {"name": f"sd{i}", "type": "sdwebui", "modelFilename": f"m{i}.safetensors"}
            )
        else:
            items.append({"name": f"comfy{i}", "type": "comfyui", "spotRatio": 0.3})
    return {"aws:region": "us-east-1", "sdfleet:spotRatio": 0.7, "sdfleet:runtimes": items}


def measure(runtimes: int, repeats: int) -> tuple[float, int]:
    times = []
    count = 0
    for _ in range(repeats):
        start = time.perf_counter()
        recorder = run_program(
            lambda: runpy.run_path(str(MAIN), run_name="__main__"),
            config_from_stack_file(stack_config(runtimes)),
            stack="bench",
        )
        times.append(time.perf_counter() - start)
        count = len(recorder.resources)
    return statistics.median(times), count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", default="1,4,16")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    )
    measure(1, 1)  # warm-up: imports and first-use caches
    print(f"{'runtimes':>8} {'resources':>9} {'median s':>9} {'ms/resource':>11}")
    for size in (int(s) for s in args.sizes.split(",")):
        seconds, count = measure(size, args.repeats)
        print(f"{size:>8} {count:>9} {seconds:>9.2f} {1000 * seconds / count:>11.2f}")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS: {peak:.0f} MiB")


if __name__ == "__main__":
    main()
