"""The stream worker: faust wiring around :class:`~streams.batch_handler.BatchHandler`.

The agent consumes ``generations`` (and the OpenTelemetry Collector's export topics, decoded by
:mod:`streams.otlp`) in batches (``noack_take``: up to ``batch_size`` events or
``batch_timeout_s``), hands each batch to the handler (decode → dead-letter → pipeline →
dead-letter what was refused) and acknowledges it only when the handler says so, so faust
commits offsets only of events that are stored or dead-lettered. The pipeline runs on one
executor thread, off the event loop, so heartbeats keep flowing while torch and ClickHouse work.
The next batch is taken while one is stored: faust fills batch k+1's buffer (fetching, its
per-message work) during batch k's model and writes, and k+1 is handed to the handler as soon
as k is acknowledged. Batches are still decoded, stored and acknowledged one at a time and in
the order taken (at most two are held); one taken ahead but not started when the shutdown
begins, or when consumption stops, is left unacknowledged and delivered again. The texts of
the batch taken ahead go to the model at once (``TELLTALE_WORKER_EMBED_AHEAD``,
:mod:`signals.ahead`), so the model embeds k+1 while k is scored and written; the handler
reuses that decode of k+1 (:mod:`streams.decoded_once`).

When storage is unavailable the batch is retried with bounded exponential back-off and nothing
is acknowledged: on restart the uncommitted events are delivered again and, because writes are
idempotent on ``event_id``, stored once. When storage is misconfigured (a missing table,
authentication) the worker stops consuming and :class:`~streams.batch_handler.WorkerHealth`
reports the failure.

On SIGTERM the worker stops fetching, lets the batch in flight finish (write, ack, commit) for
up to ``shutdown_timeout_s`` and then exits (a batch taken ahead is not started). If storage
is failing at that moment it stops retrying instead and leaves the batch unacknowledged, to be
delivered again after a restart.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from streams.batch_handler import (
    AcceptFeedback,
    AcceptSignal,
    BatchHandler,
    Decoder,
    Outcome,
    Record,
    WorkerHealth,
    json_decoder,
    pipeline_process,
)
from streams.batch_io import plain_events
from streams.dead_letter import DeadLetter
from streams.decoded_once import DecodedOnce
from streams.errors import InvalidEvent, PartlyInvalid
from streams.events import GenerationEvent
from streams.feedback import Feedback
from streams.metrics import WorkerMetrics, consumer_offsets, counting_decoder
from streams.otlp import OtlpConfig, decode_otlp, otlp_kind_of_topic
from streams.overload import LoadShedding, OverloadConfig, load_shedding
from streams.pipeline import Pipeline
from streams.retry import RetryPolicy
from streams.sampling import Sampler
from streams.settings import KafkaConfig, WorkerConfig

__all__ = ["build_app"]

log = logging.getLogger(__name__)

_T = TypeVar("_T")
_A = TypeVar("_A")


def otlp_decoders(
    topics: Sequence[str], mapping: OtlpConfig, max_payload_bytes: int
) -> dict[str, Decoder]:
    """A decoder per OTLP topic: the generations of one export record (``streams.otlp``).

    A record whose items partly fail validation yields its valid events and raises
    :class:`~streams.errors.PartlyInvalid` with them, so the handler stores the good ones and
    dead-letters the record with the reasons of the bad ones.
    """

    def decoder(topic: str) -> Decoder:
        kind = otlp_kind_of_topic(topic)

        def decode(raw: bytes) -> Sequence[GenerationEvent]:
            if len(raw) > max_payload_bytes:
                raise InvalidEvent(f"OTLP record of {len(raw)} bytes exceeds the limit of "
                                   f"{max_payload_bytes} bytes")  # fmt: skip
            decoded = decode_otlp(raw, kind, mapping)
            if decoded.skipped:
                log.debug("%s: skipped %s", topic, dict(decoded.skipped))
            if decoded.invalid:
                reasons = "; ".join(f"{what}: {why}" for what, why in decoded.invalid[:5])
                raise PartlyInvalid(
                    decoded.events,
                    f"{len(decoded.invalid)} of {decoded.items} OTLP items invalid: {reasons}",
                )
            return decoded.events

        return decode

    return {topic: decoder(topic) for topic in topics}


def _record(event: Any) -> Record:
    message = event.message
    return Record(message.topic, message.partition, message.offset, message.value, message.key)


class _Runtime:
    """What the agents of one worker share: the pipeline thread, the batch handler, the
    batches in flight and the shutdown flag. Each agent is one method; faust only calls them."""

    def __init__(
        self,
        config: WorkerConfig,
        pipeline_factory: Callable[[], Pipeline],
        send_dead_letter: Callable[[bytes | None, bytes], Awaitable[None]],
        record_dead_letters: Callable[[list[DeadLetter]], None] | None,
        decoders: Mapping[str, Decoder] | None,
        health: WorkerHealth | None,
        redact_payload: Callable[[str], str] | None = None,
        metrics: WorkerMetrics | None = None,
    ) -> None:
        self.config = config
        self._metrics = metrics
        self._factory = pipeline_factory
        self._pipeline: Pipeline | None = None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="telltale-pipeline")
        self.in_flight: set[asyncio.Future[Outcome]] = set()
        self.retry = RetryPolicy(config.retry_initial_s, config.retry_max_s)
        # a batch is decoded as it is taken (to embed it ahead) and its handler reuses that
        self.decoded = DecodedOnce()
        self._ahead_decoders, (decoders, default_decoder) = self.decoded.split(
            decoders or {}, json_decoder(config.max_payload_bytes))  # fmt: skip
        if metrics is not None:  # events seen are counted once, as the handler decodes them
            counters = metrics.counters
            decoders = {t: counting_decoder(d, counters) for t, d in decoders.items()}
            default_decoder = counting_decoder(default_decoder, counters)
        self.handler = BatchHandler(
            process=pipeline_process(self.pipeline),
            send_dead_letter=send_dead_letter,
            run_blocking=self.run_blocking,
            record_dead_letters=record_dead_letters,
            decoders=decoders,
            default_decoder=default_decoder,
            retry=self.retry,
            health=health,
            redact_payload=redact_payload,
            on_dead_letter=None if metrics is None else metrics.dead_letter,
        )
        self.stopping = self.handler.stopping

    def pipeline(self) -> Pipeline:
        # Only ever called on the executor's single thread, so the model is built once.
        if self._pipeline is None:
            self._pipeline = self._factory()
        return self._pipeline

    async def run_blocking(self, call: Callable[[], _T]) -> _T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, call)

    async def consume(self, stream: Any) -> None:
        config = self.config
        previous: asyncio.Future[Outcome] | None = None
        async for batch in stream.noack_take(config.batch_size, within=config.batch_timeout_s):
            if self.stopping.is_set():
                continue  # taken after the shutdown began: unacked, delivered again later
            self.embed_ahead(batch)
            task = asyncio.ensure_future(self._handle_and_ack(stream, batch, previous))
            self.in_flight.add(task)
            task.add_done_callback(self.in_flight.discard)
            # Batch k+1 is taken (faust fills its buffer) while batch k is stored; it starts
            # once k is acknowledged (`_handle_and_ack`), so at most two are held at a time.
            # Shielded: stopping the agent cancels this await, not the batch; `drain` awaits it.
            if previous is not None and await asyncio.shield(previous) is Outcome.HALT:
                await self.stopping.wait()  # consumption stopped for good: take nothing more
            previous = task

    def embed_ahead(self, batch: Sequence[Any]) -> None:
        """Queue the texts of a batch just taken for the model, so they are embedded while
        the batch before is scored and written (:mod:`signals.ahead`). Best effort: records
        that do not decode, or carry vectors, are left to the batch's own handling."""
        pipeline = self._pipeline
        if pipeline is None or pipeline.ahead is None or not self.config.embed_ahead:
            return  # not built yet, or built without it (serve --all): nothing decoded ahead
        by_topic, default = self._ahead_decoders
        values = ((e.message.topic, e.message.value or b"") for e in batch)
        try:
            queued = pipeline.embed_ahead(plain_events(values, by_topic, default))
        except Exception:  # the batch embeds its texts itself
            log.warning("embedding ahead failed; the batch embeds its own texts", exc_info=True)
            return
        if self._metrics is not None:
            self._metrics.ahead(queued, pipeline.ahead.answered)

    async def _handle_and_ack(
        self, stream: Any, batch: Sequence[Any], previous: asyncio.Future[Outcome] | None = None
    ) -> Outcome:
        if previous is not None:  # batches are stored and acknowledged in the order taken
            outcome = await asyncio.shield(previous)
            if outcome is Outcome.HALT:
                return outcome  # consumption stopped for good: unacknowledged
            if self.stopping.is_set():  # not started before the shutdown: not in flight
                log.info("stopping before a batch of %d taken ahead was started; its events "
                         "are delivered again after a restart", len(batch))  # fmt: skip
                return Outcome.HOLD
        outcome = await self.handler.handle([_record(event) for event in batch])
        if outcome is Outcome.ACKNOWLEDGE:
            for event in batch:  # only now may faust commit these offsets
                await stream.ack(event)
        return outcome

    async def drain(self) -> None:
        """Once faust has stopped fetching, before the agents are cancelled and before the
        consumer commits acked offsets for the last time: let the batch in flight finish."""
        self.stopping.set()
        if self._pipeline is not None and self._pipeline.ahead is not None:
            self._pipeline.ahead.close()  # the batch taken ahead is not started: drop its job
        self.decoded.clear()
        if not self.in_flight:
            return
        log.info("finishing the batch in flight before stopping")
        timeout = self.config.shutdown_timeout_s
        _, pending = await asyncio.wait(set(self.in_flight), timeout=timeout)
        if pending:
            log.warning("batch still running after %.0fs; stopping without committing it (its "
                        "events are delivered again after a restart)", timeout)  # fmt: skip

    async def read_signals(self, stream: Any, accept_signal: AcceptSignal) -> None:
        """Store each published signal through the batch handler (same retry policy, shutdown
        and health; an unstorable signal is dead-lettered); ack once handled."""
        async for batch in stream.noack_take(1, within=self.config.batch_timeout_s):
            await self._handle_other(stream, batch, self.handler.handle_signals, accept_signal)

    async def read_feedback(self, stream: Any, accept_feedback: AcceptFeedback) -> None:
        """Store delayed feedback in batches through the batch handler (invalid or refused
        records are dead-lettered); ack once handled."""
        config = self.config
        async for batch in stream.noack_take(config.batch_size, within=config.batch_timeout_s):
            await self._handle_other(stream, batch, self.handler.handle_feedback, accept_feedback)

    async def _handle_other(
        self,
        stream: Any,
        batch: Sequence[Any],
        handle: Callable[[Sequence[Record], _A], Awaitable[Outcome]],
        accept: _A,
    ) -> None:
        if self.stopping.is_set():
            return  # unacked: read again after a restart
        outcome = await handle([_record(event) for event in batch], accept)
        if outcome is Outcome.ACKNOWLEDGE:
            for event in batch:
                await stream.ack(event)
        elif outcome is Outcome.HALT:
            await self.stopping.wait()  # consumption stopped for good: take nothing more

    async def maintain(self, maintenance: Callable[[], None]) -> None:
        if self.stopping.is_set() or not self.handler.health.ok:
            return
        try:
            await self.run_blocking(maintenance)
        except Exception as exc:  # storage trouble shows in the batches; try again later
            log.warning("signal maintenance failed, tried again in %.0fs: %s",
                        self.config.maintenance_interval_s, exc)  # fmt: skip

    async def measure_lag(
        self,
        app: Any,
        topics: Sequence[str],
        metrics: WorkerMetrics | None,
        shedding: LoadShedding | None = None,
    ) -> None:
        """The consumer lag, for ``/metrics`` and for the overload control (``shedding``),
        which holds while the worker waits out storage or the broker."""
        try:
            offsets = await consumer_offsets(app, topics)
        except Exception as exc:  # not assigned yet, or the broker is away: measured next time
            log.debug("consumer lag not measured: %s", exc)
            offsets = None
        if metrics is not None and offsets is not None:
            metrics.set_lag({key: end - done for key, (end, done) in offsets.items()})
        if shedding is not None:
            health = self.handler.health
            if offsets is None or self.stopping.is_set() or not health.ok or health.waiting:
                shedding.hold()
            else:
                shedding.update(offsets)

    async def refresh_metrics(self, refresh: Callable[[], None]) -> None:
        """Read the gauges that come from storage, on the pipeline thread between batches."""
        if self.stopping.is_set() or not self.handler.health.ok:
            return
        try:
            await self.run_blocking(refresh)
        except Exception as exc:  # storage trouble shows in the batches; try again later
            log.warning("metrics refresh failed, tried again in %.0fs: %s",
                        self.config.metrics_refresh_s, exc)  # fmt: skip

    async def warm_up(self) -> None:
        # Load the model before the first batch arrives, without blocking the event loop.
        # A failure here is left to the first batch, which types it and retries or halts.
        try:
            await self.run_blocking(self.pipeline)
        except Exception as exc:
            log.warning("warm-up failed, the first batch will retry: %s", exc)


def build_app(
    kafka: KafkaConfig,
    config: WorkerConfig,
    pipeline_factory: Callable[[], Pipeline],
    accept_signal: Callable[[bytes], str] | None = None,
    record_dead_letters: Callable[[list[DeadLetter]], None] | None = None,
    *,
    decoders: Mapping[str, Decoder] | None = None,
    health: WorkerHealth | None = None,
    maintenance: Callable[[], None] | None = None,
    accept_feedback: Callable[[list[Feedback]], int] | None = None,
    otlp_mapping: OtlpConfig | None = None,
    redact_payload: Callable[[str], str] | None = None,
    metrics: WorkerMetrics | None = None,
    refresh_metrics: Callable[[], None] | None = None,
    sampler: Sampler | None = None,
    overload: OverloadConfig | None = None,
) -> Any:
    """Create the faust app with its agents. The pipeline is built when the worker starts.

    With ``accept_signal``, a second agent reads fitted signals published to
    ``kafka.control_topic`` (``telltale signals add --publish``), stores each as a new
    version and applies it from the next batch: the way to change the signals of a running
    worker that owns its embedded database. With ``record_dead_letters``, the dead letters of
    each batch are also stored (coordinates and reasons, on the pipeline thread) before the
    batch is acknowledged, so the dead-letter rate can be charted and alerted on.
    ``decoders`` maps a source topic to its decoder (JSON generation events by default);
    ``health`` turns failing when storage is misconfigured and consumption stops; with
    ``config.health_port`` faust's web server serves it (:func:`_health_pages`).
    ``maintenance`` (retraining signals of another embedder) runs on the pipeline thread every
    ``maintenance_interval_s``, between batches and never inside one. With
    ``kafka.otlp_topics`` the same agent also reads the OpenTelemetry Collector's export
    records (``streams.otlp``, mapped by ``otlp_mapping``); with ``kafka.feedback_topic`` and
    ``accept_feedback`` another agent stores delayed user feedback. With ``metrics``
    (:mod:`streams.metrics`) the worker counts events and dead letters, measures its consumer
    lag every ``metrics_lag_interval_s`` and serves ``/metrics`` beside the health pages;
    ``refresh_metrics`` (gauges read from storage) runs on the pipeline thread every
    ``metrics_refresh_s``. ``sampler`` is the pipeline's (:mod:`streams.sampling`): its rate is
    on the health pages and the ``telltale_worker_sampling_rate`` gauge; with ``overload``
    enabled (:mod:`streams.overload`) the lag is measured every ``overload.lag_interval_s`` (or
    ``metrics_lag_interval_s`` if shorter) and the sampler's load factor follows it.
    """
    import faust

    app = faust.App(
        kafka.group_id,
        broker=f"kafka://{kafka.bootstrap}",
        store="memory://",
        key_serializer="raw",
        value_serializer="raw",
        topic_partitions=kafka.partitions,
        topic_replication_factor=1,
        consumer_auto_offset_reset="earliest",
        broker_session_timeout=kafka.session_timeout_s,
        broker_heartbeat_interval=min(3.0, kafka.session_timeout_s / 3),
        broker_commit_interval=config.commit_interval_s,
        producer_acks=-1,
        web_enabled=bool(config.health_port),
        web_port=config.health_port or 6066,
        web_bind=config.health_host,
        web_host=config.health_host,
        broker_credentials=kafka.security.faust_credentials(),
        # faust's own drain waits for every taken message to be acked, without a bound: a
        # batch retrying against failed storage would block shutdown forever. `drain` below
        # bounds the wait and lets such a batch go unacknowledged.
        stream_wait_empty=False,
    )
    dead_letters = app.topic(kafka.dlq_topic, partitions=kafka.partitions)

    async def send_dead_letter(key: bytes | None, value: bytes) -> None:
        await (await dead_letters.send(key=key, value=value))  # delivered before the ack

    otlp = otlp_decoders(kafka.otlp_topics, otlp_mapping or OtlpConfig(), config.max_payload_bytes)
    decoders = {**otlp, **(decoders or {})}
    health = health if health is not None else WorkerHealth()
    runtime = _Runtime(config, pipeline_factory, send_dead_letter, record_dead_letters,
                       decoders, health, redact_payload, metrics)  # fmt: skip
    if config.health_port:
        _health_pages(app, health, sampler)
    source = app.topic(kafka.topic, *kafka.otlp_topics, partitions=kafka.partitions)
    report = None if metrics is None else metrics.set_sampling_rate
    shedding = load_shedding(sampler, overload, report)
    if metrics is not None or shedding is not None:
        _lag_timer(app, runtime, [kafka.topic, *kafka.otlp_topics], metrics, shedding)
    if metrics is not None:
        _metrics(app, runtime, metrics, refresh_metrics)
    app.agent(source, name="consume")(runtime.consume)

    @app.on_before_shutdown.connect  # type: ignore[arg-type]  # mode's stubs reject async defs
    async def drain(sender: Any, *args: Any, signal: Any, **kwargs: Any) -> None:
        await runtime.drain()

    if accept_signal is not None:

        async def signals(stream: Any) -> None:
            await runtime.read_signals(stream, accept_signal)

        app.agent(app.topic(kafka.control_topic, partitions=1), name="signals")(signals)
    if kafka.feedback_topic and accept_feedback is not None:
        feedback_topic = app.topic(kafka.feedback_topic, partitions=kafka.partitions)

        async def feedback(stream: Any) -> None:
            await runtime.read_feedback(stream, accept_feedback)

        app.agent(feedback_topic, name="feedback")(feedback)
    if maintenance is not None:

        async def maintain() -> None:
            await runtime.maintain(maintenance)

        app.timer(config.maintenance_interval_s)(maintain)
    app.task(runtime.warm_up)
    return app


def _lag_timer(
    app: Any,
    runtime: _Runtime,
    topics: Sequence[str],
    metrics: WorkerMetrics | None,
    shedding: LoadShedding | None,
) -> None:
    """Measure the consumer lag: for ``/metrics`` and the overload control, at the shorter of
    their intervals."""
    intervals = [runtime.config.metrics_lag_interval_s] if metrics is not None else []
    if shedding is not None and shedding.control is not None:
        intervals.append(shedding.control.config.lag_interval_s)
    if not intervals:
        return

    async def lag() -> None:
        await runtime.measure_lag(app, topics, metrics, shedding)

    app.timer(min(intervals))(lag)


def _health_pages(app: Any, health: WorkerHealth, sampler: Sampler | None = None) -> None:
    """``/healthz`` (liveness) and ``/readyz`` (readiness) on faust's web server.

    Liveness fails (503) once consumption stopped for good: a misconfigured database, which
    waiting cannot fix, with the reason. Readiness also fails while the worker waits out
    storage or the broker (offsets held, nothing lost), with what it waits on; a probe that
    restarts on readiness would only lose the waiting, so point liveness probes at
    ``/healthz``. The reasons are storage or broker errors; the endpoint binds to
    ``health_host`` (127.0.0.1 unless set). Both report ``sampling_rate``, the share of events
    scored now (1.0 without a sampler).
    """

    def rate() -> float:
        return 1.0 if sampler is None else sampler.rate

    async def healthz(web: Any, request: Any) -> Any:
        body = {"ok": health.ok, "failure": health.failure, "sampling_rate": rate()}
        return web.json(body, status=200 if health.ok else 503)

    async def readyz(web: Any, request: Any) -> Any:
        ready = health.ok and health.waiting is None
        body = {"ready": ready, "failure": health.failure, "waiting": health.waiting,
                "sampling_rate": rate()}  # fmt: skip
        return web.json(body, status=200 if ready else 503)

    app.page("/healthz")(healthz)
    app.page("/readyz")(readyz)


def _metrics(
    app: Any,
    runtime: _Runtime,
    metrics: WorkerMetrics,
    refresh: Callable[[], None] | None,
) -> None:
    """``/metrics`` on faust's web server (with ``health_port``) and the storage gauges' timer
    (the lag's is :func:`_lag_timer`)."""
    config = runtime.config
    if refresh is not None:

        async def storage_gauges() -> None:
            await runtime.refresh_metrics(refresh)

        app.timer(config.metrics_refresh_s)(storage_gauges)
    if not config.health_port:
        return

    async def scrape(web: Any, request: Any) -> Any:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        # aiohttp refuses a charset in content_type; the header carries the whole value
        return web.bytes(generate_latest(metrics.registry),
                         headers={"Content-Type": CONTENT_TYPE_LATEST})  # fmt: skip

    app.page("/metrics")(scrape)
