"""The exporter: scores in, ``gen_ai.evaluation.result`` records out, never in the worker's way.

:meth:`EvaluationExporter.offer` is what the pipeline calls once a batch is stored: it turns the
score rows into plain :class:`~streams.otel_export.records.Evaluation` values and appends them
to a bounded buffer, without waiting and without raising. A background thread takes up to
``export_batch_size`` of them (or what is there after ``export_batch_timeout_s``), encodes one
OTLP request and hands it to a :class:`~streams.otel_export.senders.Sender`, retrying failures
that may pass with a bounded back-off. Records that do not fit in the buffer, and the records
of a request that still fails (or fails for good), are dropped and counted in :attr:`dropped`;
delivered ones in :attr:`sent`. :meth:`close` sends what is queued for at most a time limit.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from streams.otel_export.records import RESPONSE_ID_ATTRIBUTE, Evaluation, evaluation_request
from streams.otel_export.records import span_ids as _span_ids
from streams.otel_export.senders import Sender, SendFailed

if TYPE_CHECKING:
    from storage import ScoreRow
    from streams.events import GenerationEvent

__all__ = ["EvaluationExporter", "ExportTuning"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ExportTuning:
    """The buffer, batching, retry and shutdown limits (from :class:`OtelExportConfig`)."""

    queue_size: int = 10_000
    batch_size: int = 512
    batch_timeout_s: float = 2.0
    retries: int = 3
    retry_initial_s: float = 0.5
    retry_max_s: float = 5.0
    shutdown_timeout_s: float = 5.0
    request_timeout_s: float = 5.0  # how long close waits, past its deadline, for a send


class EvaluationExporter:
    """Sends scores as OTLP log records from a background thread; counts what it drops.

    Counters (read by health and metrics): :attr:`offered` (records handed in), :attr:`sent`
    (delivered), :attr:`dropped` (buffer full, delivery failed, or left at shutdown),
    :attr:`failed_requests` (requests given up), :attr:`queued` (waiting now).
    """

    def __init__(self, sender: Sender, tuning: ExportTuning | None = None) -> None:
        self._sender = sender
        self._tuning = tuning or ExportTuning()
        self._buffer: deque[Evaluation] = deque()
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._closing = threading.Event()
        self._deadline = float("inf")  # monotonic time after which close stops sending
        self.offered = 0
        self.sent = 0
        self.dropped = 0
        self.failed_requests = 0
        self._last_error = ""
        self._thread = threading.Thread(target=self._run, name="otel-export", daemon=True)
        self._thread.start()

    @property
    def queued(self) -> int:
        with self._lock:
            return len(self._buffer)

    @property
    def last_error(self) -> str:
        """Why the last request failed ('' while none has): for a health endpoint."""
        return self._last_error

    def offer(self, events: Sequence[GenerationEvent], scores: Sequence[ScoreRow]) -> None:
        """Queue one record per score row of stored ``events``; never blocks, never raises.

        Rows whose event is not in ``events`` are skipped (nothing to link them to).
        """
        try:
            evaluations = _evaluations(events, scores)
        except Exception:  # a bug here must not fail a batch that is already stored
            log.exception("scores could not be turned into evaluation records; dropped")
            with self._lock:
                self.dropped += len(scores)
            return
        with self._wake:
            self.offered += len(evaluations)
            if self._closing.is_set():
                self.dropped += len(evaluations)
                return
            room = max(self._tuning.queue_size - len(self._buffer), 0)
            self._buffer.extend(evaluations[:room])
            self.dropped += len(evaluations) - min(room, len(evaluations))
            if len(self._buffer) >= self._tuning.batch_size:
                self._wake.notify()

    def close(self, timeout_s: float | None = None) -> None:
        """Send what is queued for at most ``timeout_s`` (default: the shutdown timeout), then
        stop; records still queued are counted as dropped. Safe to call twice."""
        wait_s = self._tuning.shutdown_timeout_s if timeout_s is None else timeout_s
        with self._wake:
            if not self._closing.is_set():
                self._deadline = time.monotonic() + wait_s
                self._closing.set()
            self._wake.notify()
        # a request under way when the deadline passes is waited for (its records are then
        # counted as sent or dropped): the counters are final once close returns
        self._thread.join(max(self._deadline - time.monotonic(), 0.0)
                          + self._tuning.request_timeout_s + 1.0)  # fmt: skip
        with self._lock:
            left = len(self._buffer)
            self._buffer.clear()
            self.dropped += left
        if left:
            log.warning("%d evaluation records not exported at shutdown (time limit %.1fs)",
                        left, wait_s)  # fmt: skip
        try:
            self._sender.close()
        except Exception:
            log.warning("closing the evaluation export failed", exc_info=True)

    def _run(self) -> None:
        while True:
            batch = self._next_batch()
            if batch is None:
                return
            if batch:
                self._deliver(batch)

    def _next_batch(self) -> list[Evaluation] | None:
        """Up to ``batch_size`` records once there are that many, the wait is over or we are
        closing; None when closing with nothing left (or past the close deadline)."""
        size = self._tuning.batch_size
        with self._wake:
            waited_until = time.monotonic() + self._tuning.batch_timeout_s
            while len(self._buffer) < size and not self._closing.is_set():
                left = waited_until - time.monotonic()
                if left <= 0:
                    break
                self._wake.wait(left)
            if self._closing.is_set() and (not self._buffer or self._past_deadline()):
                return None
            return [self._buffer.popleft() for _ in range(min(size, len(self._buffer)))]

    def _past_deadline(self) -> bool:
        return time.monotonic() >= self._deadline

    def _deliver(self, batch: list[Evaluation]) -> None:
        payload = evaluation_request(batch).SerializeToString()
        delay = self._tuning.retry_initial_s
        for attempt in range(self._tuning.retries + 1):
            try:
                self._sender.send(payload)
            except SendFailed as exc:
                self._last_error = str(exc)[:500]
                last = attempt == self._tuning.retries or not exc.retryable
                if last or self._pause(delay):
                    break
                delay = min(delay * 2, self._tuning.retry_max_s)
                continue
            except Exception as exc:  # a sender's own bug: drop the batch, keep the thread
                self._last_error = f"{type(exc).__name__}: {exc}"[:500]
                log.exception("evaluation export failed unexpectedly")
                break
            with self._lock:
                self.sent += len(batch)
            return
        with self._lock:
            self.dropped += len(batch)
            self.failed_requests += 1
        log.warning("dropped %d evaluation records: %s", len(batch), self._last_error)

    def _pause(self, delay: float) -> bool:
        """Wait ``delay`` before a retry; True when closing leaves no time for it (a close
        cuts a long back-off short: the retry then runs at once, until the close deadline)."""
        if not self._closing.is_set():
            self._closing.wait(delay)
            return False
        left = self._deadline - time.monotonic()
        if left <= 0:
            return True
        time.sleep(min(delay, left))
        return False


def _evaluations(events: Sequence[GenerationEvent], scores: Sequence[ScoreRow]) -> list[Evaluation]:
    now = time.time_ns()
    by_id = {e.event_id: e for e in events}
    links = {e.event_id: _span_ids(e.attributes) for e in events}
    out: list[Evaluation] = []
    for row in scores:
        event = by_id.get(row.event_id)
        if event is None:
            continue
        trace_id, span_id = links[row.event_id]
        out.append(Evaluation(
            row.event_id, row.signal, row.signal_version, float(row.score), bool(row.flagged),
            row.model, row.model_version, now, trace_id, span_id,
            event.attributes.get(RESPONSE_ID_ATTRIBUTE, ""),
        ))  # fmt: skip
    return out
