"""The stream worker: a faust-streaming agent that consumes ``generations`` in batches.

For each batch (``noack_take``: up to ``batch_size`` events or ``batch_timeout_s``):

1. decode and validate every payload; invalid ones go to the dead-letter topic with the reason,
   the original bytes and their topic/partition/offset;
2. run the :class:`~streams.pipeline.Pipeline` (embed → score → write) in an executor thread,
   off the event loop, so heartbeats keep flowing while torch and ClickHouse work;
3. only then acknowledge the events, so faust commits their offsets.

When storage is unavailable the batch is retried with bounded exponential back-off and nothing
is acknowledged: on restart the uncommitted events are delivered again and, because writes are
idempotent on ``event_id``, stored once.

On SIGTERM the worker stops fetching, lets the batch in flight finish (write, ack, commit) for
up to ``shutdown_timeout_s`` and then exits. If storage is failing at that moment it stops
retrying instead and leaves the batch unacknowledged, to be delivered again after a restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from typing import Any, TypeVar

from storage.errors import StorageUnavailable
from streams.dead_letter import DeadLetter
from streams.errors import InvalidEvent
from streams.events import GenerationEvent, decode_event
from streams.feedback import Feedback, decode_feedback
from streams.kafka_security import KafkaSecurity
from streams.otlp import OtlpMapping, decode_otlp, otlp_kind_of_topic
from streams.pipeline import BatchResult, Pipeline

__all__ = ["WorkerConfig", "build_app"]

log = logging.getLogger(__name__)

_T = TypeVar("_T")


@dataclass(frozen=True)
class WorkerConfig:
    bootstrap: str
    topic: str = "generations"
    dlq_topic: str = "generations.dlq"
    group_id: str = "telltale-worker"
    partitions: int = 3
    batch_size: int = 256
    batch_timeout_s: float = 1.0
    session_timeout_s: float = 30.0
    commit_interval_s: float = 1.0
    max_payload_bytes: int = 4 * 1024 * 1024
    retry_initial_s: float = 0.5
    retry_max_s: float = 30.0
    control_topic: str = "telltale.signals"
    shutdown_timeout_s: float = 30.0
    otlp_topics: tuple[str, ...] = ()  # the OpenTelemetry Collector's Kafka exporter topics
    otlp_mapping: OtlpMapping = field(default_factory=OtlpMapping)
    feedback_topic: str | None = None
    security: KafkaSecurity = field(default_factory=KafkaSecurity)


def _decoder(config: WorkerConfig) -> Callable[[str, bytes], list[GenerationEvent]]:
    """Per topic: one native event per record, or the events of one OTLP export batch.

    An OTLP record whose spans partly fail validation yields its valid events and raises
    :class:`InvalidEvent` afterwards for the rest (``_PartlyInvalid``), so the caller stores
    the good ones and dead-letters the record with the reasons of the bad ones.
    """
    kinds = {topic: otlp_kind_of_topic(topic) for topic in config.otlp_topics}

    def decode(topic: str, raw: bytes) -> list[GenerationEvent]:
        if topic not in kinds:
            return [decode_event(raw, config.max_payload_bytes)]
        if len(raw) > config.max_payload_bytes:
            raise InvalidEvent(
                f"OTLP record of {len(raw)} bytes exceeds the limit of "
                f"{config.max_payload_bytes} bytes"
            )
        decoded = decode_otlp(raw, kinds[topic], config.otlp_mapping)
        if decoded.skipped:
            log.debug("%s: skipped %s", topic, dict(decoded.skipped))
        if decoded.invalid:
            reasons = "; ".join(f"{what}: {why}" for what, why in decoded.invalid[:5])
            raise _PartlyInvalid(
                decoded.events,
                f"{len(decoded.invalid)} of {decoded.items} OTLP items invalid: {reasons}",
            )
        return decoded.events

    return decode


class _PartlyInvalid(InvalidEvent):
    """Some of an OTLP record's generations are invalid; ``events`` holds the valid ones."""

    def __init__(self, events: list[GenerationEvent], reason: str) -> None:
        super().__init__(reason)
        self.events = events


class _ShuttingDown(Exception):
    """The worker is stopping while storage is unavailable: leave the batch unacknowledged."""


def build_app(
    config: WorkerConfig,
    pipeline_factory: Callable[[], Pipeline],
    accept_signal: Callable[[bytes], str] | None = None,
    record_dead_letters: Callable[[list[DeadLetter]], None] | None = None,
    accept_feedback: Callable[[list[Feedback]], int] | None = None,
) -> Any:
    """Create the faust app with its agents. The pipeline is built when the worker starts.

    With ``accept_signal``, a second agent reads fitted signals published to
    ``config.control_topic`` (``telltale signals add --publish``), stores each as a new
    version and applies it from the next batch: the way to change the signals of a running
    worker that owns its embedded database. With ``record_dead_letters``, the dead letters of
    each batch are also stored (coordinates and reasons, on the pipeline thread) before the
    batch is acknowledged, so the dead-letter rate can be charted and alerted on. With
    ``config.otlp_topics`` the same agent also reads the OpenTelemetry Collector's export
    records (``streams.otlp``); with ``config.feedback_topic`` and ``accept_feedback`` a third
    agent stores delayed user feedback.
    """
    import faust

    app = faust.App(
        config.group_id,
        broker=f"kafka://{config.bootstrap}",
        store="memory://",
        key_serializer="raw",
        value_serializer="raw",
        topic_partitions=config.partitions,
        topic_replication_factor=1,
        consumer_auto_offset_reset="earliest",
        broker_session_timeout=config.session_timeout_s,
        broker_heartbeat_interval=min(3.0, config.session_timeout_s / 3),
        broker_commit_interval=config.commit_interval_s,
        producer_acks=-1,
        web_enabled=False,
        broker_credentials=config.security.faust_credentials(),
        # faust's own drain waits for every taken message to be acked, without a bound: a
        # batch retrying against failed storage would block shutdown forever. `drain` below
        # bounds the wait and lets such a batch go unacknowledged.
        stream_wait_empty=False,
    )
    source = app.topic(config.topic, *config.otlp_topics, partitions=config.partitions)
    decode = _decoder(config)
    dead_letters = app.topic(config.dlq_topic, partitions=config.partitions)
    executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="telltale-pipeline")
    state: dict[str, Pipeline] = {}
    stopping = asyncio.Event()
    in_flight: set[asyncio.Future[None]] = set()

    def pipeline() -> Pipeline:
        # Only ever called on the executor's single thread, so the model is built once.
        if "pipeline" not in state:
            state["pipeline"] = pipeline_factory()
        return state["pipeline"]

    def process_batch(events: Sequence[GenerationEvent]) -> BatchResult:
        return pipeline().process(events)

    async def dead_letter(event: Any, reason: str) -> DeadLetter:
        message = event.message
        record = DeadLetter.of(
            bytes(message.value or b""), reason, message.topic, message.partition, message.offset
        )
        log.warning(  # the record's reason: clipped, so a hostile payload cannot flood the log
            "dead-lettered %s[%d]@%d: %s",
            message.topic,
            message.partition,
            message.offset,
            record.reason,
        )
        key = message.key if message.key is None or len(message.key) <= 1024 else None
        future = await dead_letters.send(key=key, value=record.to_json())
        await future  # delivered before the source offset may be committed
        return record

    async def on_pipeline_thread(call: Callable[[], _T]) -> _T:
        """Run ``call`` on the pipeline thread; retry storage errors with bounded back-off."""
        loop = asyncio.get_running_loop()
        delay = config.retry_initial_s
        while True:
            try:
                return await loop.run_in_executor(executor, call)
            except StorageUnavailable as exc:
                if stopping.is_set():
                    raise _ShuttingDown(str(exc)) from exc
                log.warning("storage unavailable, retrying in %.1fs (offsets held): %s", delay, exc)
                with contextlib.suppress(TimeoutError):  # a shutdown cuts the wait short
                    await asyncio.wait_for(stopping.wait(), delay)
                delay = min(delay * 2, config.retry_max_s)

    async def run_pipeline(events: Sequence[GenerationEvent]) -> BatchResult:
        return await on_pipeline_thread(lambda: process_batch(events))

    async def store_dead_letters(letters: list[DeadLetter]) -> None:
        if letters and record_dead_letters is not None:
            await on_pipeline_thread(lambda: record_dead_letters(letters))

    async def handle(batch: Sequence[Any]) -> None:
        valid: list[tuple[Any, GenerationEvent]] = []
        letters: list[DeadLetter] = []
        for event in batch:
            try:
                parsed: list[GenerationEvent] = decode(
                    event.message.topic, event.message.value or b""
                )
            except _PartlyInvalid as exc:
                parsed = exc.events
                letters.append(await dead_letter(event, exc.reason))
            except InvalidEvent as exc:
                letters.append(await dead_letter(event, exc.reason))
                continue
            valid.extend((event, one) for one in parsed)
        if not valid:
            await store_dead_letters(letters)
            return
        try:
            result = await run_pipeline([e for _, e in valid])
        except _ShuttingDown:
            raise
        except Exception:
            log.exception("batch of %d failed; retrying event by event", len(valid))
            result = await _one_by_one(valid, letters)
        by_id = {one.event_id: raw for raw, one in valid}
        for rejected, reason in result.rejected:
            letters.append(await dead_letter(by_id[rejected.event_id], reason))
        await store_dead_letters(letters)
        log.info(
            "batch: %d written, %d already stored, %d rejected, %d scores",
            result.written,
            result.skipped_existing,
            len(result.rejected),
            result.scores,
        )

    async def _one_by_one(
        valid: list[tuple[Any, GenerationEvent]], letters: list[DeadLetter]
    ) -> BatchResult:
        total = BatchResult()
        for raw, parsed in valid:
            try:
                one = await run_pipeline([parsed])
            except _ShuttingDown:
                raise
            except Exception as exc:
                reason = f"processing failed: {type(exc).__name__}: {exc}"
                letters.append(await dead_letter(raw, reason))
                continue
            total.written += one.written
            total.skipped_existing += one.skipped_existing
            total.scores += one.scores
            total.rejected.extend(one.rejected)
        return total

    async def handle_and_ack(stream: Any, batch: Sequence[Any]) -> None:
        try:
            await handle(batch)
        except _ShuttingDown as exc:
            log.warning(
                "stopping with a batch of %d events not stored (%s); their offsets are not "
                "committed, so they are delivered again after a restart",
                len(batch),
                exc,
            )
            return
        for event in batch:  # only now may faust commit these offsets
            await stream.ack(event)

    @app.agent(source)
    async def process(stream: Any) -> None:
        async for batch in stream.noack_take(config.batch_size, within=config.batch_timeout_s):
            if stopping.is_set():
                continue  # taken after the shutdown began: unacked, delivered again later
            task = asyncio.ensure_future(handle_and_ack(stream, batch))
            in_flight.add(task)
            task.add_done_callback(in_flight.discard)
            # Shielded: stopping the agent cancels this await, not the batch; `drain` awaits it.
            await asyncio.shield(task)

    @app.on_before_shutdown.connect  # type: ignore[arg-type]  # mode's stubs reject async defs
    async def drain(sender: Any, *args: Any, signal: Any, **kwargs: Any) -> None:
        # Runs once faust has stopped fetching, before the agents are cancelled and before the
        # consumer commits acked offsets for the last time.
        stopping.set()
        if not in_flight:
            return
        log.info("finishing the batch in flight before stopping")
        _, pending = await asyncio.wait(set(in_flight), timeout=config.shutdown_timeout_s)
        if pending:
            log.warning(
                "batch still running after %.0fs; stopping without committing it (its events "
                "are delivered again after a restart)",
                config.shutdown_timeout_s,
            )

    if accept_signal is not None:
        control = app.topic(config.control_topic, partitions=1)

        @app.agent(control)
        async def signals(stream: Any) -> None:
            loop = asyncio.get_running_loop()
            async for payload in stream:
                delay = config.retry_initial_s
                while True:
                    try:
                        outcome = await loop.run_in_executor(executor, accept_signal, payload)
                    except StorageUnavailable as exc:
                        log.warning("storage unavailable, retrying signal in %.1fs: %s",
                                    delay, exc)  # fmt: skip
                        await asyncio.sleep(delay)
                        delay = min(delay * 2, config.retry_max_s)
                        continue
                    except Exception:
                        log.exception("a published signal is invalid and was skipped")
                        break
                    log.info("published signal stored: %s", outcome)
                    break

    if config.feedback_topic and accept_feedback is not None:
        feedback_source = app.topic(config.feedback_topic, partitions=config.partitions)

        @app.agent(feedback_source)
        async def feedback(stream: Any) -> None:
            async for batch in stream.noack_take(config.batch_size, within=config.batch_timeout_s):
                records: list[Feedback] = []
                letters: list[DeadLetter] = []
                for event in batch:
                    try:
                        records.append(decode_feedback(event.message.value or b""))
                    except InvalidEvent as exc:
                        letters.append(await dead_letter(event, exc.reason))
                try:
                    if records:
                        stored = await on_pipeline_thread(partial(accept_feedback, records))
                        log.info("feedback: %d records stored", stored)
                    await store_dead_letters(letters)
                except _ShuttingDown:
                    continue  # unacknowledged: delivered again after a restart
                for event in batch:
                    await stream.ack(event)

    @app.task  # type: ignore[untyped-decorator]
    async def warm_up() -> None:
        # Load the model before the first batch arrives, without blocking the event loop.
        await asyncio.get_running_loop().run_in_executor(executor, pipeline)

    return app
