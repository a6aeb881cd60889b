"""The stack's DLQ sweeper (``sdfleet.components.task_events.sweeper``) on a thread: every
dead-lettered task is marked ``failed`` (``dead_lettered``) and announced once, as the
scheduled Lambda does in the cloud, but every ``SWEEP_SECONDS`` instead of every minute."""

from __future__ import annotations

import logging
import threading

from sdfleet.agent.task_state import TaskStore
from sdfleet.components.task_events.sweeper import Sweeper, SweepReport
from sdfleet.fakes.fleet import client
from sdfleet.sandbox.plane import Plane

log = logging.getLogger("sdfleet.sandbox")

SWEEP_SECONDS = 5.0


def sweeper_for(plane: Plane, ttl_seconds: int) -> Sweeper:
    store = TaskStore(client("dynamodb", plane.endpoint), plane.table_name, ttl_seconds=ttl_seconds)
    return Sweeper(
        sqs=client("sqs", plane.endpoint),
        sns=client("sns", plane.endpoint),
        store=store,
        dlq_urls={name: queues.dlq_url for name, queues in plane.queues.items()},
        topic_arn=plane.output_topic_arn,
    )


class SweeperThread:
    """Runs :meth:`Sweeper.run` every ``interval`` seconds until :meth:`stop`."""

    def __init__(self, sweeper: Sweeper, interval: float = SWEEP_SECONDS) -> None:
        self.sweeper = sweeper
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sandbox-sweeper", daemon=True)

    def start(self) -> SweeperThread:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(30)

    def sweep(self) -> SweepReport:
        report = self.sweeper.run()
        for task_id in report.failed:
            log.warning("task %s reached its DLQ: marked failed (dead_lettered)", task_id)
        return report

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.sweep()
            except Exception:  # a failed run is retried at the next interval, as in the cloud
                log.exception("the DLQ sweep failed")
