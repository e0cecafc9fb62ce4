"""Run ``telltale serve``: the guardrail API alone, or with ``--all`` the whole job in one process.

``--all`` runs, over one ClickHouse client:

* the Kafka worker (the same faust app as ``telltale worker``, started on the server's event
  loop, sharing the API's model and live signals);
* the monitor loop (``telltale monitor``) on a thread;
* the guardrail API, plus a live report at ``/`` (the static report rendered on request, with
  a time range picker), ``/v1/rates`` and ``/v1/detections``.

With the embedded chDB (one process per data path, a synchronous client) that is the only way to
have streaming, alerts and dashboards at once: every database call goes through one
:class:`~storage.serialized.SerializedClient`, so they take turns; the model runs outside the
lock. Events the worker stores after their minute was already processed (a backlog, a replay of
old logs) make the monitor rebuild its detectors from storage on its next cycle.

SIGTERM: uvicorn stops accepting, finishes the requests in flight (up to
``TELLTALE_SERVE_SHUTDOWN_TIMEOUT_S``), then the guardrail drains its queue, the worker finishes
and commits its batch in flight, and the monitor stops after its cycle.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, cast

from storage import ClickHouseWriter, SerializedClient, redact_dsn
from streams import (
    MeteredWriter,
    Pipeline,
    Recorder,
    SignalCounters,
    VersionCap,
    WorkerMetrics,
    kafka_recorder,
    storage_recorder,
)
from telltale.serving.app import create_app
from telltale.serving.metrics import ServeMetrics
from telltale.serving.protocol import header_deadline_protocol
from telltale.serving.reads import add_read_routes
from telltale.serving.service import GuardrailService
from telltale.settings import Settings
from telltale.storage_gauges import StorageGauges
from telltale.trust import release_instrument
from telltale.wiring import (
    Parts,
    content_policy,
    image_policy,
    make_client,
    make_notifier,
    make_parts,
    make_sampler,
    make_worker_app,
    pseudonyms,
)

if TYPE_CHECKING:
    from clickhouse_connect.driver.client import Client
    from fastapi import FastAPI

    from alerts import Monitor
    from storage import WriteBatch
    from telltale.serving.auth import Auth

__all__ = ["build_server", "serve"]

log = logging.getLogger(__name__)


class _WatchedWriter(MeteredWriter):
    """A writer that reports the earliest event time of every write (for the monitor), and
    counts what it stored for ``/metrics`` when given ``counters`` (the worker's)."""

    def __init__(
        self,
        client: Any,
        on_written: Callable[[datetime], None],
        counters: SignalCounters | None = None,
    ) -> None:
        super().__init__(client, counters)
        self._on_written = on_written

    def write(self, batch: WriteBatch) -> int:
        written = super().write(batch)
        if batch.events:
            self._on_written(min(e.timestamp for e in batch.events))
        return written


@dataclass
class _Monitored:
    """The monitor of ``--all`` and its thread."""

    monitor: Monitor | None = None
    thread: threading.Thread | None = None
    stop: threading.Event | None = None

    def saw_events_at(self, earliest: datetime) -> None:
        monitor = self.monitor
        position = monitor.position if monitor is not None else None
        if monitor is not None and position is not None and earliest < position:
            monitor.request_rewind()


def _recorder(settings: Settings, parts: Parts, writer: ClickHouseWriter) -> Recorder:
    """Where ``record=true`` events go (see ``TELLTALE_SERVE_RECORD_TO``)."""
    target = settings.serve.record_to
    if target == "auto":
        target = "storage" if settings.clickhouse.dsn.startswith("chdb:") else "kafka"
    if target == "storage":
        # Its own pipeline and writer: the worker's are used on the worker's thread.
        export = parts.exporter.offer if parts.exporter is not None else None
        return storage_recorder(Pipeline(parts.embedders, parts.signals, writer,
                                         pseudonyms=pseudonyms(settings),
                                         content=content_policy(settings),
                                         export=export))  # fmt: skip
    state: dict[str, Recorder] = {}

    def record(scored: Any) -> None:
        if "recorder" not in state:  # connect on first use: a broker that is down fails here
            from streams import Emitter

            state["recorder"] = kafka_recorder(
                Emitter(settings.kafka.bootstrap, settings.kafka.topic)
            )
        state["recorder"](scored)

    return record


def build_server(settings: Settings, *, all_in_one: bool = False) -> FastAPI:
    """Build the model, signals and storage, and the app (``all_in_one``: with the worker,
    the monitor and the live report)."""
    # Typed as the client it wraps: it has the same methods, each one holding the lock.
    client = cast("Client", SerializedClient(make_client(settings.clickhouse)))
    monitored = _Monitored()
    parts = make_parts(settings, client)
    writer = _WatchedWriter(client, monitored.saw_events_at)
    recorder = _recorder(settings, parts, writer)
    cap = VersionCap(settings.worker.metrics_max_versions)
    metrics = ServeMetrics(cap)
    gauges = _GaugeRefresher(
        StorageGauges(metrics.registry, cap, settings.audit, settings.worker.metrics_rate_window_s),
        client, settings.worker.metrics_refresh_s,
    )  # fmt: skip
    # Alone, the API retrains signals of another embedder itself; with --all the worker does.
    service = GuardrailService(
        parts.embedders, parts.signals, settings.serve, recorder=recorder,
        cache=parts.pipeline.cache, image_policy=image_policy(settings.images, api=True),
        maintenance=None if all_in_one else parts.signals.retrain_stale,
        maintenance_interval_s=settings.worker.maintenance_interval_s, metrics=metrics,
    )  # fmt: skip
    if not all_in_one:

        async def close() -> None:
            await gauges.stop()
            client.close()

        return create_app(service, on_startup=gauges.start, on_shutdown=close)

    worker_metrics = WorkerMetrics(metrics.registry, cap)
    beside = _WorkerAndMonitor(settings, client, parts, monitored, worker_metrics, gauges)

    def routes(app: FastAPI, auth: Auth) -> None:
        add_read_routes(app, auth, client, redact_dsn(settings.clickhouse.dsn),
                        settings.privacy.min_slice_users, settings.usage.prices)  # fmt: skip

    return create_app(service, extra=routes, on_startup=beside.start, on_shutdown=beside.stop)


class _WorkerAndMonitor:
    """What ``--all`` runs beside the API: the Kafka worker on the server's loop (sharing the
    API's model, signals and client, with its own pipeline and writer) and the monitor on a
    thread. Started after the API's service, stopped after it drained; closes the client."""

    def __init__(
        self,
        settings: Settings,
        client: Client,
        parts: Parts,
        monitored: _Monitored,
        metrics: WorkerMetrics,
        gauges: _GaugeRefresher,
    ) -> None:
        self._metrics = metrics
        self._gauges = gauges
        self._settings = settings
        self._client = client
        self._parts = parts
        self._monitored = monitored
        self._worker: Any = None

    async def start(self) -> None:
        from alerts import Monitor

        settings, client, parts, monitored = (self._settings, self._client, self._parts,
                                              self._monitored)  # fmt: skip
        export = parts.exporter.offer if parts.exporter is not None else None
        sampler = make_sampler(settings.sampling)  # the worker's pipeline's, and its control's
        shared = Parts(
            client, parts.embedders, parts.signals,
            Pipeline(parts.embedders, parts.signals,
                     _WatchedWriter(client, monitored.saw_events_at, self._metrics.counters),
                     pseudonyms=pseudonyms(settings), content=content_policy(settings),
                     export=export, sampler=sampler),
            parts.exporter,
        )  # fmt: skip
        app = make_worker_app(settings, build=lambda: shared, metrics=self._metrics,
                              sampler=sampler)  # fmt: skip
        await app.start()
        await self._gauges.start()
        self._worker = app
        monitor_settings, notify = settings.monitor, settings.notify
        stop = threading.Event()
        notifier = make_notifier(settings, client, stop.wait)
        audit = settings.audit
        instrument = release_instrument(client, min_version_labels=audit.min_version_labels,
                                        include_judge=audit.use_judge_labels)  # fmt: skip
        monitored.monitor = Monitor(client, monitor_settings, notifier, notify,
                                    instrument=instrument,
                                    prices=settings.usage.prices)  # fmt: skip
        monitored.stop = stop
        monitored.thread = threading.Thread(
            target=monitored.monitor.run, args=(stop,), name="telltale-monitor", daemon=True
        )
        monitored.thread.start()
        log.info(
            "worker on %s (topic %s), monitor every %g s, report at /",
            settings.kafka.bootstrap, settings.kafka.topic, monitor_settings.interval_s,
        )  # fmt: skip

    async def stop(self) -> None:
        await self._gauges.stop()
        monitored = self._monitored
        if monitored.stop is not None:
            monitored.stop.set()
        if self._worker is not None:
            await self._worker.stop()
        if monitored.thread is not None:
            await asyncio.get_running_loop().run_in_executor(None, monitored.thread.join, 60)
        self._client.close()


class _GaugeRefresher:
    """Refreshes the storage gauges of ``/metrics`` every ``interval_s`` on a thread of the
    loop's default executor (the client takes turns with everyone else's calls)."""

    def __init__(self, gauges: StorageGauges, client: Any, interval_s: float) -> None:
        self._gauges = gauges
        self._client = client
        self._interval_s = interval_s
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                await loop.run_in_executor(None, self._gauges.refresh, self._client)
            except Exception as exc:  # storage trouble: the next round tries again
                log.warning("metrics refresh failed, tried again in %.0f s: %s",
                            self._interval_s, exc)  # fmt: skip
            await asyncio.sleep(self._interval_s)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None


def serve(settings: Settings, *, all_in_one: bool = False) -> None:
    """Build everything, then serve until SIGTERM/SIGINT (draining requests in flight)."""
    import uvicorn

    app = build_server(settings, all_in_one=all_in_one)
    config = uvicorn.Config(
        app, host=settings.serve.host, port=settings.serve.port, log_config=None,
        access_log=False, timeout_graceful_shutdown=int(settings.serve.shutdown_timeout_s),
        lifespan="on", http=header_deadline_protocol(settings.serve.header_timeout_s),
    )  # fmt: skip
    if not settings.serve.key_list():
        log.warning("no API keys configured (TELLTALE_SERVE_API_KEYS): the API is open to "
                    "anyone who can reach %s", settings.serve.host)  # fmt: skip
        if settings.serve.protect_ops:
            log.warning("TELLTALE_SERVE_PROTECT_OPS has no effect without API keys")
    log.info("serving on http://%s:%d", settings.serve.host, settings.serve.port)
    uvicorn.Server(config).run()
