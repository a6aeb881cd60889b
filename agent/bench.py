"""Agent benchmarks: ``python -m sdfleet.agent.bench`` (not a test; needs the dev extra).

Pipelining (SD WebUI), ComfyUI pipelining (``sdfleet.agent.bench_comfy``: the next prompt queued on
ComfyUI while one runs), then recovery (``sdfleet.agent.bench_recovery``: kill -9 recovery, duplicate
GPU runs for long tasks, GPU runs under transient S3/SNS failures). ``--only
pipeline|comfyui|recovery`` runs one.

Pipelining:
N tasks go through a moto server (real SNS->SQS fan-out, S3, SNS notifications) and the fake SD
WebUI with a fixed inference time, processed by ``python -m sdfleet.agent`` in its own process (as in a
pod). It prints the makespan, the GPU busy fraction (server busy time over the span of its
calls), the idle gap between server calls (p50/p95), the per-task overhead and the agent's peak
RSS. Targets at 200 ms: busy fraction >= 0.97 and idle-gap p50 < 10 ms. Telemetry is on, as
deployed (``sdfleet.agent.bench_telemetry``: EMF to a moto log group, spans to a local OTLP
receiver); ``--no-telemetry`` turns it off.
"""

from __future__ import annotations

import argparse
import itertools
import os
import platform
import resource
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from sdfleet.agent import settings


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def deployed_env(fleet: Any, api_base_url: str, **extra: str) -> dict[str, str]:
    """The agent's environment with its own defaults (``Fleet.agent_env`` speeds them up for
    tests) and quiet logs."""
    return fleet.agent_env(
        api_base_url,
        HEARTBEAT_SECONDS=str(settings.default("HEARTBEAT_SECONDS")),
        VISIBILITY_EXTENSION_SECONDS=str(settings.default("VISIBILITY_EXTENSION_SECONDS")),
        HEARTBEAT_TIMEOUT_SECONDS=str(settings.default("HEARTBEAT_TIMEOUT_SECONDS")),
        LOGLEVEL="WARNING",
        **extra,
    )


def run(tasks: int, inference_seconds: float, size: int, telemetry: bool = True) -> dict[str, Any]:
    # sdfleet.fakes (moto, the fake servers) is not in the agent image: imported here only.
    from sdfleet.fakes.agents import subprocess_env
    from sdfleet.fakes.fleet import Fleet, MotoProcess
    from sdfleet.fakes.sdwebui import FakeSdWebUI

    # The fake server shares this process with boto3 calls: keep its handler threads from
    # waiting the default 5 ms for the GIL (the agent does the same for its GPU thread).
    sys.setswitchinterval(0.001)
    moto = MotoProcess().start()
    sinks: Any = None
    try:
        fleet = Fleet(moto.endpoint, visibility_timeout=60)
        if telemetry:
            from sdfleet.agent.bench_telemetry import Telemetry

            sinks = Telemetry(moto.endpoint, fleet.runtime_name)
        with FakeSdWebUI(inference_seconds=inference_seconds, image_size=(size, size)) as srv:
            for _ in range(tasks):
                # A fixed seed keeps the fake's PNG encoding out of the measurement (cached).
                fleet.publish(fleet.task({"prompt": "bench", "seed": 1234, "steps": 20}))
            env = deployed_env(fleet, srv.url, **(sinks.env if sinks is not None else {}))
            log_path = os.environ.get("BENCH_AGENT_LOG")  # keep the agent's log for analysis
            with open(log_path or os.devnull, "w") as agent_log:
                started = time.monotonic()
                proc = subprocess.Popen(
                    [sys.executable, "-m", "sdfleet.agent"],
                    env=subprocess_env(env),
                    stdout=agent_log,
                )
                try:
                    # Wait on the fake (a condition variable) rather than polling SQS meanwhile,
                    # so the benchmark's own boto3 calls do not steal the fake server's GIL.
                    srv.wait_for_jobs(tasks, timeout=60 + tasks * (inference_seconds + 1))
                    notes = fleet.notifications(tasks, timeout=60)
                    makespan = time.monotonic() - started
                finally:
                    proc.send_signal(signal.SIGTERM)
                    proc.wait(60)
                    # Only the agent has been waited for so far (moto is reaped later).
                    rss_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
            calls = [c for c in srv.generation_calls() if c.ended is not None]
        shipped = sinks.stats() if sinks is not None else {}
    finally:
        moto.stop()
    return _summary(tasks, inference_seconds, size, calls, notes, makespan, rss_kb) | {
        "telemetry": "on (EMF to CloudWatch Logs, OTLP spans)" if telemetry else "off",
        **shipped,
        "machine": f"{os.cpu_count()} cores, {cpu_model()}, Python {platform.python_version()}",
    }


def _summary(
    tasks: int,
    inference_seconds: float,
    size: int,
    calls: list[Any],
    notes: list[dict[str, Any]],
    makespan: float,
    rss_kb: int,
) -> dict[str, Any]:
    """The figures of one run, from the fake server's calls and the notifications."""
    calls.sort(key=lambda c: c.started)
    intervals = [(c.started, c.ended) for c in calls if c.ended is not None]
    busy = sum(end - start for start, end in intervals)
    span = intervals[-1][1] - intervals[0][0]
    gaps = [max(0.0, b[0] - a[1]) for a, b in itertools.pairwise(intervals)]
    completed = sum(1 for n in notes if n["status"] == "completed")
    overhead = [
        n["timings"]["total_ms"] - n["timings"]["inference_ms"] for n in notes if n["timings"]
    ]
    return {
        "tasks": tasks,
        "completed": completed,
        "inference_ms": inference_seconds * 1000,
        "image": f"{size}x{size} PNG",
        "makespan_s": makespan,
        "busy_fraction": busy / span if span else float("nan"),
        "idle_gap_p50_ms": _percentile(gaps, 0.5) * 1000,
        "idle_gap_p95_ms": _percentile(gaps, 0.95) * 1000,
        "idle_gap_max_ms": max(gaps, default=0.0) * 1000,
        # Includes the agent's start-up (imports, readiness) spread over the tasks.
        "per_task_overhead_ms": (makespan / tasks - inference_seconds) * 1000,
        # Steady state: server-call span per task minus the inference time.
        "steady_overhead_ms": (span / len(intervals) - inference_seconds) * 1000,
        # Receive to notification minus inference: includes the wait in the prefetch slot.
        "outside_gpu_ms_p50": statistics.median(overhead) if overhead else float("nan"),
        "upload_ms_p50": statistics.median(n["timings"]["upload_ms"] for n in notes),
        "upload_ms_p95": _percentile([float(n["timings"]["upload_ms"]) for n in notes], 0.95),
        "agent_peak_rss_mib": rss_kb / 1024,
    }


def _print(result: dict[str, Any]) -> int:
    width = max(len(k) for k in result)
    for key, value in result.items():
        shown = f"{value:.3f}" if isinstance(value, float) else str(value)
        print(f"{key:<{width}}  {shown}")
    return width


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=100)
    parser.add_argument("--inference-ms", type=float, default=200.0)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument(
        "--no-telemetry",
        action="store_true",
        help="pipelining without metrics shipping and span export (telemetry is on when deployed)",
    )
    parser.add_argument(
        "--only",
        choices=("pipeline", "comfyui", "recovery"),
        help="run one of the benchmarks",
    )
    args = parser.parse_args(argv)
    ok = True
    if args.only in (None, "pipeline"):
        print("== pipelining")
        result = run(args.tasks, args.inference_ms / 1000, args.size, not args.no_telemetry)
        width = _print(result)
        met = result["busy_fraction"] >= 0.97 and result["idle_gap_p50_ms"] < 10
        print(
            f"{'targets':<{width}}  {'met' if met else 'NOT met'} (busy >= 0.97, idle p50 < 10 ms)"
        )
        ok = ok and met
    if args.only in (None, "comfyui"):
        from sdfleet.agent import bench_comfy

        print("== pipelining, ComfyUI (the next prompt queued on the server while one runs)")
        comfy = bench_comfy.run(args.tasks, args.inference_ms / 1000, args.size)
        width = _print(comfy)
        met = bench_comfy.targets_met(comfy)
        print(
            f"{'targets':<{width}}  {'met' if met else 'NOT met'} "
            f"(busy >= {bench_comfy.TARGET_BUSY}, every task completed, one prompt each)"
        )
        ok = ok and met
    if args.only in (None, "recovery"):
        from sdfleet.agent import bench_recovery

        print("== recovery (default heartbeat and visibility extension)")
        recovery = bench_recovery.run()
        width = _print(recovery)
        met = bench_recovery.targets_met(recovery)
        print(
            f"{'targets':<{width}}  {'met' if met else 'NOT met'} (kill -9 recovery <= 20 s, "
            "0 duplicate GPU runs, GPU runs == tasks with transient output failures)"
        )
        ok = ok and met
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
