"""ComfyUI pipelining benchmark (part of ``python -m sdfleet.agent.bench``; needs the dev extra).

N pipeline tasks go through a moto server (SNS->SQS fan-out, S3, SNS notifications) and the fake
ComfyUI (one prompt at a time from its own queue, ``execution_seconds`` in each sampler), run by
``python -m sdfleet.agent`` in its own process. The GPU busy fraction is the fake's execution
time over the span from the first prompt's start to the last one's end; the idle gap is the time
between one prompt's end and the next one's start. Target at 200 ms: busy fraction >= 0.97.
The agent queues the next prompt on ComfyUI while one runs, so the gap is the fake's own
hand-over from one queued prompt to the next.
"""

from __future__ import annotations

import itertools
import os
import platform
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from sdfleet.agent.bench import deployed_env
from sdfleet.agent.contract import COMFYUI

TARGET_BUSY = 0.97


def graph(seed: int, size: int) -> dict[str, Any]:
    """A text-to-image workflow; each task has its own seed so ComfyUI's cache never skips the
    sampler (the loaders and prompts are cached, as on a real server)."""
    return {
        "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "v1-5-pruned-emaonly.safetensors"}},
        "5": {"class_type": "EmptyLatentImage", "inputs": {"width": size, "height": size, "batch_size": 1}},
        "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "bench", "clip": ["4", 1]}},
        "7": {"class_type": "CLIPTextEncode", "inputs": {"text": "", "clip": ["4", 1]}},
        "3": {"class_type": "KSampler", "inputs": {
            "model": ["4", 0], "seed": seed, "steps": 20, "cfg": 7.0, "sampler_name": "euler",
            "scheduler": "normal", "positive": ["6", 0], "negative": ["7", 0],
            "latent_image": ["5", 0], "denoise": 1.0}},
        "8": {"class_type": "VAEDecode", "inputs": {"samples": ["3", 0], "vae": ["4", 2]}},
        "9": {"class_type": "SaveImage", "inputs": {"filename_prefix": "bench", "images": ["8", 0]}},
    }  # fmt: skip


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def _peak_rss_kb(pid: int) -> int:
    """The agent's peak RSS so far (``VmHWM``): RUSAGE_CHILDREN would report the largest child
    reaped yet, which after the SD WebUI run is that run's moto process."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss


def run(tasks: int, inference_seconds: float, size: int) -> dict[str, Any]:
    # sdfleet.fakes (moto, the fake servers) is not in the agent image: imported here only.
    from sdfleet.agent.bench import cpu_model
    from sdfleet.fakes.agents import subprocess_env
    from sdfleet.fakes.comfyui import FakeComfyUI
    from sdfleet.fakes.fleet import Fleet, MotoProcess

    sys.setswitchinterval(0.001)  # as in the SD WebUI run: the fake shares this process
    moto = MotoProcess().start()
    try:
        fleet = Fleet(
            moto.endpoint, runtime_name="comfy", runtime_type=COMFYUI, visibility_timeout=60
        )
        with FakeComfyUI(execution_seconds=inference_seconds) as srv:
            for n in range(tasks):
                task = fleet.task({"prompt": graph(1000 + n, size)}, tasktype="pipeline")
                fleet.publish(task)
            env = deployed_env(fleet, srv.url)
            log_path = os.environ.get("BENCH_AGENT_LOG")
            with open(log_path or os.devnull, "w") as agent_log:
                started = time.monotonic()
                proc = subprocess.Popen(
                    [sys.executable, "-m", "sdfleet.agent"],
                    env=subprocess_env(env),
                    stdout=agent_log,
                )
                try:
                    runs = srv.wait_for_executions(
                        tasks, timeout=60 + tasks * (inference_seconds + 1)
                    )
                    notes = fleet.notifications(tasks, timeout=60)
                    makespan = time.monotonic() - started
                finally:
                    rss_kb = _peak_rss_kb(proc.pid)
                    proc.send_signal(signal.SIGTERM)
                    proc.wait(60)
    finally:
        moto.stop()
    intervals = sorted((r.started, r.ended) for r in runs if r.ended is not None)
    busy = sum(end - start for start, end in intervals)
    span = intervals[-1][1] - intervals[0][0]
    gaps = [max(0.0, b[0] - a[1]) for a, b in itertools.pairwise(intervals)]
    ahead = [b.submitted < (a.ended or 0.0) for a, b in itertools.pairwise(runs)]
    return {
        "tasks": tasks,
        "completed": sum(1 for n in notes if n["status"] == "completed"),
        "prompts_run": len(runs),
        "inference_ms": inference_seconds * 1000,
        "image": f"{size}x{size} PNG",
        "makespan_s": makespan,
        "busy_fraction": busy / span if span else float("nan"),
        "idle_gap_p50_ms": _percentile(gaps, 0.5) * 1000,
        "idle_gap_p95_ms": _percentile(gaps, 0.95) * 1000,
        "idle_gap_max_ms": max(gaps, default=0.0) * 1000,
        # Prompts submitted while the previous one still ran (queued ahead on ComfyUI).
        "queued_ahead": f"{sum(ahead)}/{len(ahead)}",
        # The prompts (0-based) that were submitted only after the previous one ended.
        "not_queued_ahead": [i + 1 for i, queued in enumerate(ahead) if not queued],
        "steady_overhead_ms": (span / len(intervals) - inference_seconds) * 1000,
        "agent_peak_rss_mib": rss_kb / 1024,
        "machine": f"{os.cpu_count()} cores, {cpu_model()}, Python {platform.python_version()}",
    }


def targets_met(result: dict[str, Any]) -> bool:
    return bool(
        result["busy_fraction"] >= TARGET_BUSY
        and result["completed"] == result["tasks"] == result["prompts_run"]
    )
