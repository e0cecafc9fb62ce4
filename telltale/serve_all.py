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
import logging
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Annotated, Any, Literal, cast

from fastapi import Depends, FastAPI, Query, Request
from fastapi.responses import HTMLResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

from storage import ClickHouseWriter, SerializedClient, redact_dsn
from streams import Pipeline, Recorder, kafka_recorder, storage_recorder
from telltale.serve import GuardrailService, create_app
from telltale.serve_protocol import header_deadline_protocol
from telltale.settings import Settings
from telltale.trust import release_instrument
from telltale.wiring import (
    Parts,
    content_policy,
    image_policy,
    make_client,
    make_parts,
    make_worker_app,
    pseudonyms,
)

if TYPE_CHECKING:
    from clickhouse_connect.driver.client import Client

    from alerts import Monitor
    from storage import WriteBatch

__all__ = ["RANGES", "build_server", "serve"]

log = logging.getLogger(__name__)

RANGES: dict[str, timedelta] = {
    "15m": timedelta(minutes=15),
    "1h": timedelta(hours=1),
    "6h": timedelta(hours=6),
    "24h": timedelta(hours=24),
    "7d": timedelta(days=7),
    "30d": timedelta(days=30),
}
"""Choices of the report's time range picker."""


class _WatchedWriter(ClickHouseWriter):
    """A writer that reports the earliest event time of every write (for the monitor)."""

    def __init__(self, client: Any, on_written: Callable[[datetime], None]) -> None:
        super().__init__(client)
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
        return storage_recorder(Pipeline(parts.embedders, parts.signals, writer,
                                         pseudonyms=pseudonyms(settings),
                                         content=content_policy(settings)))  # fmt: skip
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
    # Alone, the API retrains signals of another embedder itself; with --all the worker does.
    service = GuardrailService(
        parts.embedders, parts.signals, settings.serve, recorder=recorder,
        cache=parts.pipeline.cache, image_policy=image_policy(settings.images, api=True),
        maintenance=None if all_in_one else parts.signals.retrain_stale,
        maintenance_interval_s=settings.worker.maintenance_interval_s,
    )  # fmt: skip
    if not all_in_one:

        async def close() -> None:
            client.close()

        return create_app(service, on_shutdown=close)

    worker: dict[str, Any] = {}

    async def start_all() -> None:
        from alerts import Monitor, WebhookNotifier

        # The worker's own pipeline shares model, signals and client, with its own writer.
        shared = Parts(
            client, parts.embedders, parts.signals,
            Pipeline(parts.embedders, parts.signals,
                     _WatchedWriter(client, monitored.saw_events_at),
                     pseudonyms=pseudonyms(settings), content=content_policy(settings)),
        )  # fmt: skip
        app = make_worker_app(settings, build=lambda: shared)
        await app.start()
        worker["app"] = app
        monitor_settings, notify = settings.monitor, settings.notify
        stop = threading.Event()
        notifier = WebhookNotifier(notify, sleep=stop.wait) if notify.enabled else None
        audit = settings.audit
        instrument = release_instrument(client, min_version_labels=audit.min_version_labels,
                                        include_judge=audit.use_judge_labels)  # fmt: skip
        monitored.monitor = Monitor(client, monitor_settings, notifier, notify,
                                    instrument=instrument)  # fmt: skip
        monitored.stop = stop
        monitored.thread = threading.Thread(
            target=monitored.monitor.run, args=(stop,), name="telltale-monitor", daemon=True
        )
        monitored.thread.start()
        log.info(
            "worker on %s (topic %s), monitor every %g s, report at /",
            settings.kafka.bootstrap, settings.kafka.topic, monitor_settings.interval_s,
        )  # fmt: skip

    async def stop_all() -> None:
        if monitored.stop is not None:
            monitored.stop.set()
        if "app" in worker:
            await worker["app"].stop()
        if monitored.thread is not None:
            await asyncio.get_running_loop().run_in_executor(None, monitored.thread.join, 60)
        client.close()

    def routes(app: FastAPI, auth: Callable[[Request], Awaitable[None]]) -> None:
        _live_routes(app, auth, client, redact_dsn(settings.clickhouse.dsn),
                     settings.privacy.min_slice_users)  # fmt: skip

    return create_app(service, extra=routes, on_startup=start_all, on_shutdown=stop_all)


class RateOut(BaseModel):
    signal: str
    model: str
    model_version: str
    bucket: str | None
    events: int
    failures: int
    rate: float


class RatesResponse(BaseModel):
    rates: list[RateOut]


class DetectionsResponse(BaseModel):
    detections: list[dict[str, Any]]


def _utc(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _window(
    range_: str | None, since: datetime | None, until: datetime | None
) -> tuple[datetime, datetime]:
    end = _utc(until) or datetime.now(UTC)
    if since is not None:
        start = _utc(since)
        assert start is not None
    else:
        start = end - RANGES.get(range_ or "24h", RANGES["24h"])
    if start >= end:
        raise StarletteHTTPException(422, "since must be before until")
    return start, end


def _picker(chosen: str | None, start: datetime, end: datetime) -> str:
    options = "".join(
        f'<option value="{name}"{" selected" if name == chosen else ""}>last {name}</option>'
        for name in RANGES
    )
    value = "%Y-%m-%dT%H:%M"
    window = (
        '<form method="get" action="/" style="display:inline;margin-left:16px">'
        f'<input type="datetime-local" name="since" value="{start:{value}}"> – '
        f'<input type="datetime-local" name="until" value="{end:{value}}"> UTC '
        '<button type="submit">apply</button></form>'
    )
    return (
        '<div style="margin-top:8px"><form method="get" action="/" style="display:inline">'
        f'<label>range <select name="range">{options}</select></label> '
        f'<button type="submit">show</button></form>{window}'
        ' &nbsp; <a href="/v1/detections" style="color:#9cf">detections (JSON)</a>'
        ' · <a href="/v1/rates" style="color:#9cf">rates (JSON)</a></div>'
    )


def _live_routes(
    app: FastAPI,
    auth: Callable[[Request], Awaitable[None]],
    client: Any,
    source: str,
    min_slice_users: int = 0,
) -> None:
    @app.get("/", response_class=HTMLResponse, dependencies=[Depends(auth)])
    def report(
        range_: Annotated[
            Literal["15m", "1h", "6h", "24h", "7d", "30d"] | None,
            Query(alias="range", description="a window ending now (default 24h)"),
        ] = None,
        since: Annotated[datetime | None, Query(description="start (UTC); overrides range")] = None,
        until: Annotated[datetime | None, Query(description="end (UTC); default now")] = None,
    ) -> HTMLResponse:
        """The report of every dashboard panel, rendered now from the live database."""
        from dashboards import QueryContext, build_dashboards, build_report, interval_for, view

        start, end = _window(range_, since, until)
        dashboards = build_dashboards(min_slice_users)
        ctx = QueryContext(
            start=start, end=end, interval_s=interval_for(start, end),
            variables={"app": None, "model": None, "version": None, "signal": None,
                       "slice_key": None},
        )  # fmt: skip
        chosen = range_ if since is None else None
        result = build_report(
            client, [view(d) for d in dashboards], ctx, source=source,
            generated_at=datetime.now(UTC), controls=_picker(chosen, start, end),
        )  # fmt: skip
        return HTMLResponse(result.html)

    @app.get("/v1/rates", response_model=RatesResponse, dependencies=[Depends(auth)])
    def rates(
        signal: str | None = None,
        model: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        bucket: Literal["total", "minute", "hour", "day"] = "total",
    ) -> RatesResponse:
        """Failure rates per signal, model and version (optionally per time bucket)."""
        from storage import failure_rates

        rows = failure_rates(client, signal=signal, model=model, since=_utc(since),
                             until=_utc(until), bucket=bucket)  # fmt: skip
        return RatesResponse(rates=[RateOut(**r.as_dict()) for r in rows])

    @app.get("/v1/detections", response_model=DetectionsResponse, dependencies=[Depends(auth)])
    def detections(
        state: Literal["open", "resolved", "all"] = "all",
        detector: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: Annotated[int, Query(ge=1, le=10_000)] = 100,
    ) -> DetectionsResponse:
        """Detections the monitor opened, newest first."""
        from storage import list_detections

        rows = list_detections(client, state=state, detector=detector, since=_utc(since),
                               until=_utc(until), limit=limit)  # fmt: skip
        return DetectionsResponse(detections=[r.as_dict() for r in rows])


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
