"""``sdfleet load``: an open-loop load generator for the task API (replaces the reference's locust
file).

Open loop: task ``i`` is scheduled at ``start + i / rate`` whatever happened to the earlier ones;
sends run on a bounded pool (``senders``) so a slow answer never delays the schedule. A
saturated pool shows up as send lag, and latency is measured from the *scheduled* time, so a
slow generator cannot hide latency (no coordinated omission).

Completion: accepted tasks go on one due-time heap that ``pollers`` threads (bounded, however
many tasks are in flight) read from, each ``GET`` rescheduling its task ``poll_interval``
later until it is completed or failed or ``drain`` seconds after the last send have passed.
End-to-end latency is from the scheduled send to the poll that saw the task final (so it is
at most ``poll_interval`` late); the server's own ``timings.total_ms`` (accepted to finished)
is reported beside it.
"""

from __future__ import annotations

import argparse
import copy
import heapq
import json
import math
import sys
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sdfleet.client import ApiError, Client, ClientError, TaskStatus, text_to_image
from sdfleet.load_report import LoadReport

__all__ = ["LoadConfig", "LoadReport", "run_load"]


@dataclass(frozen=True)
class LoadConfig:
    rate: float  # tasks per second
    duration: float  # seconds of sending
    drain: float = 600.0  # seconds to wait for completions after the last send
    poll_interval: float = 1.0
    senders: int = 32
    pollers: int = 8

    def __post_init__(self) -> None:
        if self.rate <= 0 or self.duration <= 0:
            raise ValueError("rate and duration must be positive")
        if self.senders < 1 or self.pollers < 1 or self.poll_interval <= 0 or self.drain < 0:
            raise ValueError("senders, pollers and poll_interval must be positive")

    @property
    def count(self) -> int:
        return max(1, round(self.rate * self.duration))


class _Tracker:
    """Accepted tasks by next poll time, shared by the poller threads."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self.clock = clock
        self.cond = threading.Condition()
        self.heap: list[tuple[float, int, str, float]] = []  # (due, seq, id, scheduled)
        self.seq = 0
        self.sending = True
        self.active = 0  # taken by a poller, not yet back
        self.deadline = math.inf

    def add(self, task_id: str, scheduled: float, due: float) -> None:
        with self.cond:
            self.seq += 1
            heapq.heappush(self.heap, (due, self.seq, task_id, scheduled))
            self.cond.notify()

    def take(self) -> tuple[str, float] | None:
        """The next due task, or None when nothing is left to poll (or the drain is over)."""
        with self.cond:
            while True:
                now = self.clock()
                if now >= self.deadline:
                    return None
                if self.heap and self.heap[0][0] <= now:
                    _, _, task_id, scheduled = heapq.heappop(self.heap)
                    self.active += 1
                    return task_id, scheduled
                if not self.heap and not self.sending and not self.active:
                    return None
                wait = self.deadline - now
                if self.heap:
                    wait = min(wait, self.heap[0][0] - now)
                self.cond.wait(None if wait == math.inf else wait)

    def done(self, task_id: str, scheduled: float, again_at: float | None) -> None:
        """A taken task was polled: back on the heap at ``again_at``, or finished (None)."""
        with self.cond:
            self.active -= 1
            if again_at is not None:
                self.seq += 1
                heapq.heappush(self.heap, (again_at, self.seq, task_id, scheduled))
            self.cond.notify_all()

    def finish_sending(self, deadline: float) -> None:
        with self.cond:
            self.sending = False
            self.deadline = deadline
            self.cond.notify_all()

    def leftover(self) -> int:
        with self.cond:
            return len(self.heap)


def _record_final(
    report: LoadReport, lock: threading.Lock, status: TaskStatus, latency: float
) -> None:
    with lock:
        if status.state == "completed":
            report.completed += 1
            report.latencies_s.append(latency)
            total = status.timings.get("total_ms")
            if isinstance(total, (int, float)):
                report.server_total_ms.append(float(total))
        else:
            report.failed[status.error_code or "unknown"] += 1


def run_load(
    client: Client,
    body: Callable[[int], Mapping[str, Any]],
    config: LoadConfig,
    *,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> LoadReport:
    """Send ``config.count`` tasks (``body(i)``) on the open-loop schedule and follow them."""
    report = LoadReport(rate=config.rate, duration_s=config.duration, scheduled=config.count)
    lock = threading.Lock()
    tracker = _Tracker(clock)

    def send(i: int, scheduled: float) -> None:
        started = clock()
        with lock:
            report.sent += 1
            report.send_lag_s.append(max(0.0, started - scheduled))
        try:
            sent = client.submit(body(i))
        except ApiError as err:
            with lock:
                report.rejected[str(err.status)] += 1
            return
        except ClientError:
            with lock:
                report.rejected["network"] += 1
            return
        with lock:
            report.accepted += 1
        tracker.add(sent.id, scheduled, clock() + config.poll_interval)

    def poll() -> None:
        while (item := tracker.take()) is not None:
            task_id, scheduled = item
            again: float | None = clock() + config.poll_interval
            try:
                status = client.get(task_id)
            except ClientError:  # throttled or unreachable: poll again later
                status = None
            if status is not None and status.final:
                _record_final(report, lock, status, clock() - scheduled)
                again = None
            tracker.done(task_id, scheduled, again)

    begin = clock()
    pollers = [threading.Thread(target=poll, daemon=True) for _ in range(config.pollers)]
    for thread in pollers:
        thread.start()
    with ThreadPoolExecutor(config.senders, thread_name_prefix="sdfleet-load") as pool:
        for i in range(config.count):
            scheduled = begin + i / config.rate
            delay = scheduled - clock()
            if delay > 0:
                sleep(delay)
            pool.submit(send, i, scheduled)
    tracker.finish_sending(clock() + config.drain)
    for thread in pollers:
        thread.join()
    report.unfinished = tracker.leftover()
    report.wall_s = clock() - begin
    return report


# --------------------------------------------------------------------------------------------
# sdfleet load


def add_parser(sub: Any, common: Any, factory: Callable[[Any], Client]) -> None:
    p = sub.add_parser(
        "load",
        parents=[common],
        help="open-loop load test: a fixed arrival rate, latency to completion",
        description=__doc__.split("\n\n")[1] if __doc__ else None,
    )
    p.add_argument("--rate", type=float, required=True, help="tasks per second")
    p.add_argument("--duration", type=float, required=True, help="seconds of sending")
    p.add_argument("--runtime", help="runtime of the generated tasks (or the file's)")
    p.add_argument("--prompt", default="a lighthouse at dusk, sdfleet load test")
    p.add_argument("--steps", type=int)
    p.add_argument("--width", type=int)
    p.add_argument("--height", type=int)
    p.add_argument("--file", type=Path, help="a task JSON file sent as is (its id is dropped)")
    p.add_argument("--drain", type=float, default=600.0, help="s to wait after the last send")
    p.add_argument("--poll-interval", type=float, default=1.0)
    p.add_argument("--senders", type=int, default=32, help="concurrent submissions at most")
    p.add_argument("--pollers", type=int, default=8, help="status polling threads")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(func=lambda a: _cli(a, factory))


def _template(args: Any) -> dict[str, Any]:
    """The task every load request sends: the file's (runtime overridable) or a txt2img."""
    from sdfleet.cli_tasks import UsageError, task_body

    if args.file is not None:
        file_args = argparse.Namespace(
            file=args.file, prompt=None, runtime=args.runtime, task_id=None
        )
        body = task_body(file_args)
    elif not args.runtime:
        raise UsageError("--runtime is required without --file")
    else:
        body = text_to_image(
            args.runtime, args.prompt, steps=args.steps, width=args.width, height=args.height
        )
    body["task"].setdefault("metadata", {}).pop("id", None)  # one id per task: the API's
    return body


def _cli(args: Any, factory: Callable[[Any], Client]) -> int:
    from sdfleet.cli_tasks import EXIT_OK, run

    def command(args: Any, client: Client) -> int:
        template = _template(args)
        config = LoadConfig(
            rate=args.rate,
            duration=args.duration,
            drain=args.drain,
            poll_interval=args.poll_interval,
            senders=args.senders,
            pollers=args.pollers,
        )
        print(
            f"sdfleet load: {config.count} tasks at {config.rate:g}/s to {client.api_url}",
            file=sys.stderr,
        )
        report = run_load(client, lambda _: copy.deepcopy(template), config)
        print(json.dumps(report.to_json(), indent=2) if args.json else report.table())
        return EXIT_OK

    try:
        return run(command, args, factory)
    except ValueError as err:  # LoadConfig's bounds
        print(f"sdfleet load: {err}", file=sys.stderr)
        return 2
