"""The stream worker: faust wiring around :class:`~streams.batch_handler.BatchHandler`.

The agent consumes ``generations`` in batches (``noack_take``: up to ``batch_size`` events or
``batch_timeout_s``), hands each batch to the handler (decode → dead-letter → pipeline →
dead-letter what was refused) and acknowledges it only when the handler says so, so faust
commits offsets only of events that are stored or dead-lettered. The pipeline runs on one
executor thread, off the event loop, so heartbeats keep flowing while torch and ClickHouse work.

When storage is unavailable the batch is retried with bounded exponential back-off and nothing
is acknowledged: on restart the uncommitted events are delivered again and, because writes are
idempotent on ``event_id``, stored once. When storage is misconfigured (a missing table,
authentication) the worker stops consuming and :class:`~streams.batch_handler.WorkerHealth`
reports the failure.

On SIGTERM the worker stops fetching, lets the batch in flight finish (write, ack, commit) for
up to ``shutdown_timeout_s`` and then exits. If storage is failing at that moment it stops
retrying instead and leaves the batch unacknowledged, to be delivered again after a restart.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from storage.errors import StorageMisconfigured
from streams.batch_handler import (
    BatchHandler,
    Decoder,
    Outcome,
    Record,
    WorkerHealth,
    json_decoder,
)
from streams.dead_letter import DeadLetter
from streams.events import GenerationEvent
from streams.pipeline import BatchResult, Pipeline
from streams.retry import RetryPolicy, ShuttingDown

__all__ = ["WorkerConfig", "build_app"]

log = logging.getLogger(__name__)


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
    maintenance_interval_s: float = 10.0


def _record(event: Any) -> Record:
    message = event.message
    return Record(message.topic, message.partition, message.offset, message.value, message.key)


def build_app(
    config: WorkerConfig,
    pipeline_factory: Callable[[], Pipeline],
    accept_signal: Callable[[bytes], str] | None = None,
    record_dead_letters: Callable[[list[DeadLetter]], None] | None = None,
    *,
    decoders: Mapping[str, Decoder] | None = None,
    health: WorkerHealth | None = None,
    maintenance: Callable[[], None] | None = None,
) -> Any:
    """Create the faust app with its agents. The pipeline is built when the worker starts.

    With ``accept_signal``, a second agent reads fitted signals published to
    ``config.control_topic`` (``telltale signals add --publish``), stores each as a new
    version and applies it from the next batch: the way to change the signals of a running
    worker that owns its embedded database. With ``record_dead_letters``, the dead letters of
    each batch are also stored (coordinates and reasons, on the pipeline thread) before the
    batch is acknowledged, so the dead-letter rate can be charted and alerted on.
    ``decoders`` maps a source topic to its decoder (JSON generation events by default);
    ``health`` turns failing when storage is misconfigured and consumption stops.
    ``maintenance`` (retraining signals of another embedder) runs on the pipeline thread every
    ``maintenance_interval_s``, between batches and never inside one.
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
        # faust's own drain waits for every taken message to be acked, without a bound: a
        # batch retrying against failed storage would block shutdown forever. `drain` below
        # bounds the wait and lets such a batch go unacknowledged.
        stream_wait_empty=False,
    )
    source = app.topic(config.topic, partitions=config.partitions)
    dead_letters = app.topic(config.dlq_topic, partitions=config.partitions)
    executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="telltale-pipeline")
    state: dict[str, Pipeline] = {}
    in_flight: set[asyncio.Future[Outcome]] = set()
    retry = RetryPolicy(config.retry_initial_s, config.retry_max_s)

    def pipeline() -> Pipeline:
        # Only ever called on the executor's single thread, so the model is built once.
        if "pipeline" not in state:
            state["pipeline"] = pipeline_factory()
        return state["pipeline"]

    def process(events: Sequence[GenerationEvent]) -> BatchResult:
        return pipeline().process(events)

    async def run_blocking(call: Callable[[], object]) -> object:
        return await asyncio.get_running_loop().run_in_executor(executor, call)

    async def send_dead_letter(key: bytes | None, value: bytes) -> None:
        future = await dead_letters.send(key=key, value=value)
        await future

    handler = BatchHandler(
        process=process,
        send_dead_letter=send_dead_letter,
        run_blocking=run_blocking,
        record_dead_letters=record_dead_letters,
        decoders=decoders,
        default_decoder=json_decoder(config.max_payload_bytes),
        retry=retry,
        health=health,
    )
    stopping = handler.stopping

    async def halted() -> None:
        """Consumption has stopped for good: wait for the shutdown without taking more."""
        await stopping.wait()

    async def handle_and_ack(stream: Any, batch: Sequence[Any]) -> Outcome:
        outcome = await handler.handle([_record(event) for event in batch])
        if outcome is Outcome.ACKNOWLEDGE:
            for event in batch:  # only now may faust commit these offsets
                await stream.ack(event)
        return outcome

    @app.agent(source)
    async def consume(stream: Any) -> None:
        async for batch in stream.noack_take(config.batch_size, within=config.batch_timeout_s):
            if stopping.is_set():
                continue  # taken after the shutdown began: unacked, delivered again later
            task = asyncio.ensure_future(handle_and_ack(stream, batch))
            in_flight.add(task)
            task.add_done_callback(in_flight.discard)
            # Shielded: stopping the agent cancels this await, not the batch; `drain` awaits it.
            if await asyncio.shield(task) is Outcome.HALT:
                await halted()

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

        async def store_signal(payload: bytes) -> None:
            try:
                outcome = await retry.run(
                    lambda: run_blocking(lambda: accept_signal(payload)), stopping, "signal"
                )
            except (ShuttingDown, StorageMisconfigured):
                raise
            except Exception:
                log.exception("a published signal is invalid and was skipped")
                return
            log.info("published signal stored: %s", outcome)

        @app.agent(control)
        async def signals(stream: Any) -> None:
            async for batch in stream.noack_take(1, within=config.batch_timeout_s):
                if stopping.is_set() or not handler.health.ok:
                    continue  # unacked: read again after a restart
                try:
                    for event in batch:
                        await store_signal(event.value)
                except ShuttingDown:
                    continue
                except StorageMisconfigured as exc:
                    handler.health.fail(str(exc))
                    log.error("storage is misconfigured; published signals are not read: %s", exc)
                    await halted()
                    continue
                for event in batch:
                    await stream.ack(event)

    if maintenance is not None:

        @app.timer(config.maintenance_interval_s)  # type: ignore[untyped-decorator]
        async def maintain() -> None:
            if stopping.is_set() or not handler.health.ok:
                return
            try:
                await run_blocking(maintenance)
            except Exception as exc:  # storage trouble shows in the batches; try again later
                log.warning("signal maintenance failed, tried again in %.0fs: %s",
                            config.maintenance_interval_s, exc)  # fmt: skip

    @app.task  # type: ignore[untyped-decorator]
    async def warm_up() -> None:
        # Load the model before the first batch arrives, without blocking the event loop.
        # A failure here is left to the first batch, which types it and retries or halts.
        try:
            await run_blocking(pipeline)
        except Exception as exc:
            log.warning("warm-up failed, the first batch will retry: %s", exc)

    return app
