"""What the worker does with one batch of Kafka records, without faust.

decode → dead-letter the undecodable → pipeline → dead-letter what the pipeline or the
database refused → record the dead letters → tell the caller whether to acknowledge.

The faust app (:mod:`streams.worker`) only wires this to a topic; tests drive it directly with
real records, a real ClickHouse engine and a real producer for the dead-letter topic.

Storage errors decide the outcome by what they concern (:mod:`storage.errors`):

* :class:`~storage.errors.StorageUnavailable` (transient) is retried with back-off
  (:class:`~streams.retry.RetryPolicy`); offsets are held meanwhile.
* :class:`~storage.errors.RowsRejected`: the batch is bisected until the offending events are
  isolated; those are dead-lettered with the database's error and the rest is stored. Any other
  exception of the pipeline (an event that makes the embedder fail) is bisected the same way.
* :class:`~storage.errors.StorageOverloaded` (a memory limit, a query's time limit): retried
  like an outage, but after :attr:`~streams.retry.RetryPolicy.split_after` retries of the same
  write the batch is bisected instead; a single event that still fails alone is dead-lettered
  with the database's error (one batch of huge rows must not stall the partition forever).
* :class:`~storage.errors.StorageMisconfigured` (a missing table or column, authentication):
  one clear log line, :class:`WorkerHealth` turns failing, nothing is dead-lettered or
  acknowledged, and the caller stops consuming.

The worker's other agents go through the same handler, so they share the retry policy, the
shutdown flag and the health: :meth:`BatchHandler.handle_signals` (the control topic: a signal
that cannot be stored is dead-lettered with the reason, not skipped) and
:meth:`BatchHandler.handle_feedback` (feedback rows the database refuses are bisected out and
dead-lettered like events).

Dead letters are sent to Kafka with the same back-off and shutdown: while the broker refuses
them the batch stays unacknowledged (nothing is lost) and :attr:`WorkerHealth.waiting` says so.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial

from storage import RowsRejected, StorageMisconfigured, StorageOverloaded
from streams.batch_io import (
    AcceptFeedback,
    AcceptSignal,
    Carrying,
    Decoder,
    Outcome,
    Process,
    Record,
    SendDeadLetter,
    WorkerHealth,
    json_decoder,
    pipeline_process,
)
from streams.dead_letter import MAX_RECORD_BYTES, DeadLetter
from streams.errors import InvalidEvent, PartlyInvalid
from streams.events import GenerationEvent
from streams.feedback import Feedback, decode_feedback
from streams.pipeline import BatchResult
from streams.retry import RetryPolicy, ShuttingDown

__all__ = [
    "AcceptFeedback",
    "AcceptSignal",
    "BatchHandler",
    "Carrying",
    "Decoder",
    "Outcome",
    "Process",
    "Record",
    "WorkerHealth",
    "json_decoder",
    "pipeline_process",
]

log = logging.getLogger(__name__)

MAX_DLQ_KEY_BYTES = 1024
MIN_LETTER_BYTES = 8_192
"""Smallest cap a dead letter is shrunk to when the broker refuses it for its size (the reason,
up to 4,000 characters, and the coordinates fit; the payload may be empty)."""

_TOO_LARGE_ERRORS = frozenset({
    "MessageSizeTooLargeError",  # kafka-python and aiokafka (faust): above max_request_size
    "RecordTooLargeError",  # broker: above the topic's max.message.bytes
    "RecordBatchTooLargeError",
})  # fmt: skip


@dataclass
class _Decoded:
    record: Record
    event: GenerationEvent
    carrying: Carrying | None = None


@dataclass
class _Stored:
    result: BatchResult = field(default_factory=BatchResult)
    refused: list[tuple[_Decoded, str]] = field(default_factory=list)
    overloaded: int = 0  # of ``refused``: events that overloaded the database even alone

    def add(self, other: _Stored) -> None:
        self.result.written += other.result.written
        self.result.skipped_existing += other.result.skipped_existing
        self.result.duplicates_in_batch += other.result.duplicates_in_batch
        self.result.scores += other.result.scores
        self.result.unsampled += other.result.unsampled
        self.result.rejected.extend(other.result.rejected)
        self.result.cache.add(other.result.cache)
        self.refused.extend(other.refused)
        self.overloaded += other.overloaded


class BatchHandler:
    """Handles batches of records for one worker.

    ``process`` runs the pipeline on a list of events and ``record_dead_letters`` stores dead
    letters in the database; both are synchronous and run through ``run_blocking`` (the
    worker's pipeline thread). ``decoders`` maps a topic to its :data:`Decoder`; records of
    other topics use ``default_decoder``.
    """

    def __init__(
        self,
        *,
        process: Process,
        send_dead_letter: SendDeadLetter,
        run_blocking: Callable[[Callable[[], object]], Awaitable[object]],
        record_dead_letters: Callable[[list[DeadLetter]], None] | None = None,
        decoders: Mapping[str, Decoder] | None = None,
        default_decoder: Decoder | None = None,
        retry: RetryPolicy | None = None,
        health: WorkerHealth | None = None,
        stopping: asyncio.Event | None = None,
        redact_payload: Callable[[str], str] | None = None,
        on_dead_letter: Callable[[str], None] | None = None,
    ) -> None:
        self._process = process
        self._on_dead_letter = on_dead_letter  # told each letter's reason once it is sent
        self._redact = redact_payload
        self._send = send_dead_letter
        self._run_blocking = run_blocking
        self._record = record_dead_letters
        self._decoders = dict(decoders or {})
        self._default_decoder = default_decoder or json_decoder()
        self._retry = retry or RetryPolicy()
        self.health = health or WorkerHealth()
        self.stopping = stopping or asyncio.Event()

    async def handle(self, batch: Sequence[Record]) -> Outcome:
        """Store or dead-letter every record of ``batch``; say what the caller must do."""
        if not self.health.ok:
            return Outcome.HALT
        try:
            await self._handle(batch)
        except ShuttingDown as exc:
            log.warning(
                "stopping with a batch of %d events not stored (%s); their offsets are not "
                "committed, so they are delivered again after a restart",
                len(batch),
                exc,
            )
            return Outcome.HOLD
        except StorageMisconfigured as exc:
            return self._halt(exc)
        return Outcome.ACKNOWLEDGE

    async def handle_signals(self, batch: Sequence[Record], accept: AcceptSignal) -> Outcome:
        """Store each signal published on the control topic, in order, with the batches' retry
        policy and shutdown. A signal that cannot be stored for a reason of its own (invalid,
        refused by the database, an insert that overloads it beyond ``lone_overload_patience_s``)
        is dead-lettered with that reason instead of being dropped or retried forever."""
        if not self.health.ok:
            return Outcome.HALT
        try:
            for record in batch:
                try:
                    # one record, like a batch of one event: an insert that overloads the
                    # database is waited out for the patience, then dead-lettered
                    stored = await self._blocking(
                        partial(accept, record.value or b""),
                        overload_patience_s=self._retry.lone_overload_patience_s,
                    )
                except (ShuttingDown, StorageMisconfigured):
                    raise
                except Exception as exc:
                    log.warning("a published signal cannot be stored", exc_info=True)
                    await self.dead_letter_records([(record, _reason(exc))])
                    continue
                log.info("published signal stored: %s", stored)
        except ShuttingDown as exc:
            log.warning("stopping with published signals not stored (%s); read again after a "
                        "restart", exc)  # fmt: skip
            return Outcome.HOLD
        except StorageMisconfigured as exc:
            return self._halt(exc)
        return Outcome.ACKNOWLEDGE

    async def handle_feedback(self, batch: Sequence[Record], accept: AcceptFeedback) -> Outcome:
        """Store delayed feedback: invalid records and records whose rows the database refuses
        (found by bisection) are dead-lettered, the rest stored; same retries and shutdown."""
        if not self.health.ok:
            return Outcome.HALT
        decoded: list[tuple[Record, Feedback]] = []
        refused: list[tuple[Record, str]] = []
        for record in batch:
            try:
                decoded.append((record, decode_feedback(record.value or b"")))
            except InvalidEvent as exc:
                refused.append((record, exc.reason))
            except Exception as exc:  # as for events: the record is dead-lettered, not the agent
                refused.append((record, f"decoding failed: {type(exc).__name__}: {exc}"))
        try:
            stored, rejected = await self._store_feedback(decoded, accept) if decoded else (0, [])
            await self.dead_letter_records([*refused, *rejected])
        except ShuttingDown as exc:
            log.warning("stopping with %d feedback records not stored (%s); delivered again "
                        "after a restart", len(batch), exc)  # fmt: skip
            return Outcome.HOLD
        except StorageMisconfigured as exc:
            return self._halt(exc)
        dead = len(refused) + len(rejected)
        log.info("feedback: %d records stored, %d dead-lettered", stored, dead)
        return Outcome.ACKNOWLEDGE

    async def _store_feedback(
        self, decoded: list[tuple[Record, Feedback]], accept: AcceptFeedback
    ) -> tuple[int, list[tuple[Record, str]]]:
        """Store ``decoded``; bisect around the records whose rows the database refuses."""
        feedback = [f for _, f in decoded]
        try:
            stored = await self._blocking(lambda: accept(feedback), split=True)
        except (ShuttingDown, StorageMisconfigured):
            raise
        except Exception as exc:
            if len(decoded) == 1:
                return 0, [(decoded[0][0], _reason(exc))]
            log.warning("feedback batch of %d failed; bisecting: %s", len(decoded), exc)
            half = len(decoded) // 2
            first, first_refused = await self._store_feedback(decoded[:half], accept)
            second, second_refused = await self._store_feedback(decoded[half:], accept)
            return first + second, [*first_refused, *second_refused]
        assert isinstance(stored, int)
        return stored, []

    def _halt(self, exc: StorageMisconfigured) -> Outcome:
        self.health.fail(str(exc))
        log.error(  # one line, no traceback: the cause is the database, not this code
            "storage is misconfigured; consumption stopped, nothing acknowledged or "
            "dead-lettered (run `telltale migrate` or fix the credentials, then restart): %s",
            exc,
        )
        return Outcome.HALT

    async def _handle(self, batch: Sequence[Record]) -> None:
        # Dead letters are sent only once the batch is stored: a batch that is held or halted
        # sends none, so its redelivery does not send them twice.
        decoded: list[_Decoded] = []
        undecodable: list[tuple[Record, str]] = []
        for record in batch:
            decoder = self._decoders.get(record.topic, self._default_decoder)
            try:
                events = decoder(record.value or b"")
            except PartlyInvalid as exc:  # the valid part is stored, the record dead-lettered
                events = exc.events
                undecodable.append((record, exc.reason))
            except InvalidEvent as exc:
                undecodable.append((record, exc.reason))
                continue
            except Exception as exc:  # a decoder's own failure: the record is at fault, not us
                log.warning("decoding %s[%d]@%d failed", record.topic, record.partition,
                            record.offset, exc_info=True)  # fmt: skip
                undecodable.append((record, f"decoding failed: {type(exc).__name__}: {exc}"))
                continue
            for item in events:
                if isinstance(item, Carrying):
                    decoded.append(_Decoded(record, item.event, item))
                else:
                    decoded.append(_Decoded(record, item))
        stored = await self._store_unless_overloaded(decoded) if decoded else _Stored()
        letters = [await self._dead_letter(record, reason) for record, reason in undecodable]
        by_id = {d.event.event_id: d for d in decoded}
        refused = [*stored.refused, *((by_id[e.event_id], r) for e, r in stored.result.rejected)]
        letters.extend(await self._dead_letter_events(refused))
        await self._record_letters(letters)
        result = stored.result
        log.info(
            "batch: %d written, %d already stored, %d rejected, %d scores; "
            "embedding cache %d of %d texts/images (%.0f%%)",
            result.written,
            result.skipped_existing,
            len(refused),
            result.scores,
            result.cache.saved,
            result.cache.lookups,
            100.0 * result.cache.hit_rate,
        )

    async def _store_unless_overloaded(self, decoded: list[_Decoded]) -> _Stored:
        """:meth:`_store`, again and again with back-off while *every* event of a batch of
        several overloads the database even alone: then the database is short of memory or
        time for everyone (a busy server), not too small for these events, and dead-lettering
        the whole batch would set aside good events. One event too large alone among events
        that are stored is dead-lettered by :meth:`_store`. A batch of one record is retried
        for ``lone_overload_patience_s`` before its event is dead-lettered."""
        delay = self._retry.initial_s
        waited_s = 0.0
        lone = len({id(d.record) for d in decoded}) < 2
        while True:
            stored = await self._store(decoded)
            patience_over = lone and waited_s >= self._retry.lone_overload_patience_s
            if stored.overloaded < len(decoded) or patience_over:
                self.health.wait(None)
                return stored
            reason = stored.refused[0][1]
            if self.stopping.is_set():
                raise ShuttingDown(reason)
            log.warning("every event of a batch of %d overloads the database even alone: "
                        "the database is busy, retrying the batch in %.1fs (offsets held): %s",
                        len(decoded), delay, reason)  # fmt: skip
            self.health.wait(f"every event overloads the database: {reason}"[:1000])
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stopping.wait(), delay)
            waited_s += delay
            delay = min(delay * 2, self._retry.max_s)

    async def _store(self, decoded: list[_Decoded]) -> _Stored:
        """Run the pipeline on ``decoded``; bisect around events it or the database refuses."""
        events = [d.event for d in decoded]
        carried = {d.event.event_id: d.carrying for d in decoded if d.carrying is not None}
        try:
            result = await self._blocking(lambda: self._process(events, carried), split=True)
        except (ShuttingDown, StorageMisconfigured):
            raise
        except Exception as exc:
            if len(decoded) == 1:
                overloaded = int(isinstance(exc, StorageOverloaded))
                return _Stored(refused=[(decoded[0], _reason(exc))], overloaded=overloaded)
            if isinstance(exc, StorageOverloaded):
                log.warning("a batch of %d overloads the database; bisecting: %s",
                            len(decoded), exc)  # fmt: skip
            elif not isinstance(exc, RowsRejected):
                log.exception("batch of %d failed; bisecting it", len(decoded))
            else:
                log.warning("database rejected rows of a batch of %d; bisecting: %s",
                            len(decoded), exc)  # fmt: skip
            half = len(decoded) // 2
            stored = await self._store(decoded[:half])
            stored.add(await self._store(decoded[half:]))
            return stored
        assert isinstance(result, BatchResult)
        return _Stored(result=result)

    async def _blocking(
        self,
        call: Callable[[], object],
        *,
        split: bool = False,
        overload_patience_s: float | None = None,
    ) -> object:
        return await self._retry.run(
            lambda: self._run_blocking(call), self.stopping, split=split,
            waiting=self.health.wait, overload_patience_s=overload_patience_s,
        )  # fmt: skip

    async def _dead_letter_events(self, refused: list[tuple[_Decoded, str]]) -> list[DeadLetter]:
        """One dead letter per record, whatever number of its events were refused."""
        reasons: dict[int, tuple[Record, list[tuple[str, str]]]] = {}
        for decoded, reason in refused:
            entry = reasons.setdefault(id(decoded.record), (decoded.record, []))
            entry[1].append((decoded.event.event_id, reason))
        letters = []
        for record, why in reasons.values():
            reason = why[0][1] if len(why) == 1 else "; ".join(f"{i}: {r}" for i, r in why)
            letters.append(await self._dead_letter(record, reason))
        return letters

    async def dead_letter_records(self, refused: Sequence[tuple[Record, str]]) -> None:
        """Dead-letter whole records (and record the letters): for agents beside the batches."""
        letters = [await self._dead_letter(record, reason) for record, reason in refused]
        await self._record_letters(letters)

    async def _record_letters(self, letters: list[DeadLetter]) -> None:
        """Store the dead letters' coordinates and reasons (for charts and alerts), retrying
        outages. Rows the database refuses there are logged, not raised: the letters are
        already on the dead-letter topic, and raising would leave the batch unacknowledged
        and retried forever."""
        if not letters or self._record is None:
            return
        record_letters = self._record
        try:
            await self._blocking(lambda: record_letters(letters))
        except RowsRejected as exc:
            log.warning("%d dead letters are on the topic but not recorded in the database: %s",
                        len(letters), exc)  # fmt: skip

    async def _dead_letter(self, record: Record, reason: str) -> DeadLetter:
        key = record.key if record.key is None or len(record.key) <= MAX_DLQ_KEY_BYTES else None
        max_bytes = MAX_RECORD_BYTES
        while True:
            letter = DeadLetter.of(
                record.value or b"", reason, record.topic, record.partition, record.offset,
                max_bytes=max_bytes, redact=self._redact,
            )  # fmt: skip
            value = letter.to_json()
            try:
                # delivered before the offset may be committed; an outage is waited out
                await self._retry.run_broker(
                    partial(self._send, key, value), self.stopping, "a dead letter",
                    waiting=self.health.wait, fatal=_too_large,
                )  # fmt: skip
            except Exception as exc:
                if not _too_large(exc) or max_bytes <= MIN_LETTER_BYTES:
                    raise
                # The producer or broker takes smaller records than we thought (an operator
                # lowered max.request.size / max.message.bytes): send less of the payload; the
                # original stays at its topic and offset. Retrying the same letter would hold
                # the partition forever.
                log.warning("the dead letter of %s[%d]@%d is too large for the broker "
                            "(%d bytes: %s); sending a shorter copy of its payload",
                            record.topic, record.partition, record.offset, len(value),
                            exc)  # fmt: skip
                max_bytes = max(MIN_LETTER_BYTES, min(max_bytes, len(value)) // 4)
                continue
            break
        if self._on_dead_letter is not None:
            self._on_dead_letter(reason)
        log.warning(  # the record's reason: clipped, so a hostile payload cannot flood the log
            "dead-lettered %s[%d]@%d: %s",
            record.topic,
            record.partition,
            record.offset,
            letter.reason,
        )
        return letter


def _too_large(exc: Exception) -> bool:
    """Whether the producer or the broker refused a record for its size (by the Kafka client's
    error class; kafka-python, aiokafka and the broker's error codes share these names)."""
    return any(cls.__name__ in _TOO_LARGE_ERRORS for cls in type(exc).__mro__)


def _reason(exc: BaseException) -> str:
    if isinstance(exc, RowsRejected):
        return f"rejected by the database: {exc}"
    if isinstance(exc, StorageOverloaded):
        return f"too large for the database, alone and after retries: {exc}"
    return f"processing failed: {type(exc).__name__}: {exc}"
