"""Ships the agent's EMF lines to CloudWatch Logs, where they become metrics.

``LogShipper.put`` is the ``sink`` of ``sdfleet.agent.metrics.Metrics``: it only appends the line
to a bounded in-memory buffer and never blocks on the network. A background thread sends the
buffer with ``PutLogEvents`` every ``flush_seconds``, sooner when a full batch is waiting, and
``close()`` sends what is left (bounded in time). Every request carries the header
``x-amzn-logs-format: json/emf``, which makes CloudWatch extract the metrics.

Failures never lose lines silently: throttling, network errors and missing permissions keep the
lines for the next flush; a deleted log stream is created again; when the buffer is full the
oldest lines are dropped and a warning says how many. One stream per pod (``POD_NAME``).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

log = logging.getLogger("agent.metrics_sink")

# PutLogEvents limits (CloudWatch Logs quotas).
EVENT_OVERHEAD_BYTES = 26  # counted per event on top of its UTF-8 message
BATCH_MAX_BYTES = 1_048_576
BATCH_MAX_EVENTS = 10_000
BATCH_MAX_SPAN_MS = 24 * 3600 * 1000  # a batch must span less than 24 hours
EVENT_MAX_BYTES = 262_144 - EVENT_OVERHEAD_BYTES  # the long-standing event limit: safe everywhere
EMF_HEADER = ("x-amzn-logs-format", "json/emf")
MIB = 1024 * 1024


@dataclass(frozen=True)
class _Event:
    timestamp: int  # epoch ms, never decreasing (a batch must be in time order)
    message: str
    size: int  # UTF-8 bytes + the per-event overhead


def _add_emf_header(request: Any, **_: Any) -> None:
    request.headers[EMF_HEADER[0]] = EMF_HEADER[1]


class LogShipper:
    def __init__(
        self,
        client: Any,
        log_group: str,
        log_stream: str,
        *,
        flush_seconds: float = 10.0,
        max_events: int = 20_000,
        max_bytes: int = 8 * MIB,
        close_timeout_seconds: float = 5.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """``client``: a boto3 CloudWatch Logs client. ``max_events``/``max_bytes`` bound the
        buffer of unsent lines (one batch being sent comes on top)."""
        self.client = client
        self.log_group = log_group
        self.log_stream = log_stream
        self.flush_seconds = flush_seconds
        self.max_events = max_events
        self.max_bytes = max_bytes
        self.close_timeout_seconds = close_timeout_seconds
        self.clock = clock
        self.sent = 0  # lines CloudWatch accepted
        self.dropped = 0  # lines lost: buffer full, refused, or emitted after close
        self.requests = 0  # PutLogEvents calls
        client.meta.events.register(
            "before-sign.logs.PutLogEvents", _add_emf_header, unique_id="sdfleet-emf-header"
        )
        self._buffer: deque[_Event] = deque()
        self._bytes = 0
        self._last_ts = 0
        self._unreported_drops = 0
        self._stream_ready = False
        self._problem: str | None = None
        self._cond = threading.Condition()
        self._closing = False
        self._flush_now = False
        self._retry_after = 0.0  # monotonic; no early (batch-full) flush before this
        self._cycles = 0  # flush cycles completed (flush() waits on it)
        self._in_cycle = False
        self._thread = threading.Thread(target=self._run, name="metrics-shipper", daemon=True)
        self._thread.start()

    # -- the emitting side: never blocks on the network ----------------------------------------
    def put(self, line: str) -> None:
        size = len(line.encode()) + EVENT_OVERHEAD_BYTES
        with self._cond:
            refused = self._closing or size > EVENT_MAX_BYTES + EVENT_OVERHEAD_BYTES
            if refused:
                self.dropped += 1
            else:
                stamp = max(int(self.clock() * 1000), self._last_ts)
                self._last_ts = stamp
                self._buffer.append(_Event(stamp, line, size))
                self._bytes += size
                self._evict()
                if time.monotonic() >= self._retry_after and self._batch_full():
                    self._cond.notify_all()
        if refused:
            why = "after shutdown" if self._closing else f"of {size} bytes, over the event limit"
            log.warning(f"metrics: an EMF line {why} was dropped", extra=self._fields())

    def flush(self, timeout: float = 10.0) -> bool:
        """Send everything buffered now; True once the buffer is empty."""
        end = time.monotonic() + timeout
        with self._cond:
            # A cycle under way may have taken its batches before this call's lines came.
            target = self._cycles + (2 if self._in_cycle else 1)
            self._flush_now = True
            self._cond.notify_all()
            while self._cycles < target and not self._thread_done():
                left = end - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(left)
            return not self._buffer

    def close(self) -> None:
        """Send what is left (for at most ``close_timeout_seconds``) and stop."""
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        self._thread.join(self.close_timeout_seconds + 1.0)
        self._report_drops()
        with self._cond:
            left = len(self._buffer)
        if left:
            log.warning(
                f"metrics: {left} EMF lines not shipped at shutdown (CloudWatch Logs unreachable)",
                extra={"fields": {"log_group": self.log_group, "unsent": left}},
            )

    # -- the buffer (_evict, _drop, _take, _put_back: called with the lock held) ----------
    def _evict(self) -> None:
        while self._buffer and (
            len(self._buffer) > self.max_events or self._bytes > self.max_bytes
        ):
            self._bytes -= self._buffer.popleft().size
            self._drop(1)

    def _drop(self, count: int) -> None:
        self.dropped += count
        self._unreported_drops += count

    def _batch_full(self) -> bool:
        return len(self._buffer) >= BATCH_MAX_EVENTS or self._bytes >= BATCH_MAX_BYTES

    def _take(self) -> list[_Event]:
        """The oldest lines that fit one PutLogEvents request, removed from the buffer."""
        batch: list[_Event] = []
        size = 0
        while self._buffer and len(batch) < BATCH_MAX_EVENTS:
            event = self._buffer[0]
            if size + event.size > BATCH_MAX_BYTES:
                break
            if batch and event.timestamp - batch[0].timestamp >= BATCH_MAX_SPAN_MS:
                break
            batch.append(self._buffer.popleft())
            size += event.size
        self._bytes -= size
        return batch

    def _put_back(self, batch: list[_Event]) -> None:
        self._buffer.extendleft(reversed(batch))
        self._bytes += sum(e.size for e in batch)
        self._evict()  # a full buffer drops the oldest: these

    def _report_drops(self) -> None:
        """Warn about the lines the full buffer dropped since the last warning (not under the
        lock: ``put`` callers must not wait for a log write)."""
        with self._cond:
            count, self._unreported_drops = self._unreported_drops, 0
            total = self.dropped
        if count:
            log.warning(
                f"metrics: dropped {count} EMF lines (the buffer was full while CloudWatch Logs "
                "could not be reached; the oldest go first)",
                extra=self._fields(dropped=count, total_dropped=total),
            )

    def _thread_done(self) -> bool:
        return self._closing and not self._thread.is_alive()

    # -- the background thread -----------------------------------------------------------------
    def _run(self) -> None:
        next_flush = time.monotonic() + self.flush_seconds
        while True:
            with self._cond:
                while not (self._closing or self._flush_now):
                    now = time.monotonic()
                    if now >= next_flush or (now >= self._retry_after and self._batch_full()):
                        break
                    self._cond.wait(next_flush - now)
                closing, self._flush_now = self._closing, False
                self._in_cycle = True
            if closing:
                self._drain(time.monotonic() + self.close_timeout_seconds)
                return
            ok = self._flush_all()
            next_flush = time.monotonic() + self.flush_seconds
            with self._cond:
                self._retry_after = 0.0 if ok else next_flush
                self._cycles += 1
                self._in_cycle = False
                self._cond.notify_all()

    def _drain(self, deadline: float) -> None:
        while not self._flush_all(deadline) and time.monotonic() < deadline:
            with self._cond:  # a short pause before the next attempt (nothing notifies)
                self._cond.wait(min(0.5, max(0.0, deadline - time.monotonic())))
        with self._cond:
            self._cycles += 1
            self._in_cycle = False
            self._cond.notify_all()

    def _flush_all(self, deadline: float | None = None) -> bool:
        """Send batches until the buffer is empty (True) or a send fails (False)."""
        self._report_drops()
        while deadline is None or time.monotonic() < deadline:
            with self._cond:
                batch = self._take()
            if not batch:
                return True
            if not self._send(batch):
                with self._cond:
                    self._put_back(batch)
                self._report_drops()
                return False
        return False

    def _send(self, batch: list[_Event]) -> bool:
        """True when the batch is done with (sent, or refused for good); False to keep it."""
        if not self._stream_ready and not self._create_stream():
            return False
        events = [{"timestamp": e.timestamp, "message": e.message} for e in batch]
        for attempt in (1, 2):
            self.requests += 1
            try:
                response = self.client.put_log_events(
                    logGroupName=self.log_group, logStreamName=self.log_stream, logEvents=events
                )
            except ClientError as exc:
                code = exc.response.get("Error", {}).get("Code", "")
                if code == "ResourceNotFoundException" and attempt == 1:
                    self._stream_ready = False  # the stream was deleted: create it again
                    if self._create_stream():
                        continue
                    return False
                if code == "InvalidParameterException":
                    self._refused(len(batch), str(exc))
                    return True
                self._failed(code or "ClientError", str(exc))
                return False
            except Exception as exc:  # network (BotoCoreError) or anything else: keep the lines
                self._failed(type(exc).__name__, str(exc))
                return False
            self._accepted(len(batch), response.get("rejectedLogEventsInfo") or {})
            return True
        return False

    def _create_stream(self) -> bool:
        try:
            self.client.create_log_stream(
                logGroupName=self.log_group, logStreamName=self.log_stream
            )
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if code == "ResourceNotFoundException":
                self._failed(
                    "no-log-group",
                    f"log group {self.log_group} does not exist: check METRICS_LOG_GROUP (the "
                    "stack creates one per runtime)",
                )
                return False
            if code != "ResourceAlreadyExistsException":
                self._failed(code or "ClientError", str(exc))
                return False
        except BotoCoreError as exc:
            self._failed(type(exc).__name__, str(exc))
            return False
        self._stream_ready = True
        return True

    def _accepted(self, count: int, rejected: dict[str, int]) -> None:
        self.sent += count
        if self._problem is not None:
            log.info("metrics: shipping to CloudWatch Logs again", extra=self._fields())
            self._problem = None
        if rejected:
            # AWS: tooOld/expired end indexes are exclusive, the tooNew start index inclusive.
            old = max(
                rejected.get("tooOldLogEventEndIndex", 0),
                rejected.get("expiredLogEventEndIndex", 0),
            )
            new = rejected.get("tooNewLogEventStartIndex")
            lost = max(1, old + (count - new if new is not None else 0))
            log.warning(
                f"metrics: CloudWatch Logs rejected {lost} EMF lines (timestamps too old or too "
                "new: is the clock right?)",
                extra=self._fields(rejected=rejected),
            )

    def _refused(self, count: int, text: str) -> None:
        with self._cond:
            self.dropped += count
        log.error(
            f"metrics: CloudWatch Logs refused a batch of {count} EMF lines; dropped",
            extra=self._fields(response=text[:300]),
        )

    def _failed(self, kind: str, text: str) -> None:
        """Logged once per kind of failure: a retry every flush must not flood the log."""
        if kind == self._problem:
            return
        self._problem = kind
        hint = " (the pod role needs logs:CreateLogStream and logs:PutLogEvents)"
        log.warning(
            f"metrics: shipping to CloudWatch Logs failed ({kind}: {text[:200]}); lines are "
            "kept and retried"
            + (hint if kind in ("AccessDeniedException", "UnauthorizedOperation") else ""),
            extra=self._fields(status=kind, response=text[:300]),
        )

    def _fields(self, **more: object) -> dict[str, Any]:
        return {"fields": {"log_group": self.log_group, "log_stream": self.log_stream, **more}}
