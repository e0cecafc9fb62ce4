"""``telltale serve``: the guardrail API over HTTP (FastAPI on uvicorn).

``POST /v1/score`` takes one generation event (``event_id`` and ``timestamp`` optional) and
returns every applied signal's score and flag with a verdict; concurrent requests share model
calls through :class:`~streams.guardrail.MicroBatcher`. ``?record=true`` also stores the scored
event with its vectors (straight to storage, or through Kafka to the worker). ``/healthz``,
``/readyz``, ``/metrics`` (Prometheus) and ``/openapi.json`` come with it.

Why FastAPI: the request and response models are the pydantic models the rest of telltale
already uses, the OpenAPI schema that schemathesis tests against is generated from them, and it
runs on uvicorn, whose graceful shutdown drains requests in flight on SIGTERM. Litestar would
do the same; FastAPI's wider use (and its test client, dependency injection for the API key)
tipped it.

The scoring core knows nothing of HTTP (:mod:`streams.guardrail`); this module adds the edge:
size limits, authentication, error mapping, metrics. ``telltale serve --all`` adds the worker,
the monitor and the live report (:mod:`telltale.serve_all`).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import hmac
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any, Literal

from fastapi import Depends, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from signals import ImagePolicy
from streams import (
    GenerationEvent,
    GuardrailClosed,
    InvalidEvent,
    JsonTooDeep,
    MicroBatcher,
    Recorder,
    Rejected,
    Scored,
    Scorer,
    ScoreRequest,
    parse_json,
    validate_event,
)
from telltale import wiring
from telltale.settings import ImagesSettings

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

    from signals import Embedder, EmbeddingCache, FieldEmbedders, SignalBank
    from telltale.settings import ServeSettings

__all__ = [
    "MAINTENANCE_INTERVAL_S",
    "ApiError",
    "GuardrailService",
    "ScoreResponse",
    "SignalScore",
    "create_app",
    "request_body_schema",
]

log = logging.getLogger(__name__)

MAINTENANCE_INTERVAL_S = 10.0
"""How often the API alone (``telltale serve`` without ``--all``) retrains stale signals, as the
worker does between its batches (``TELLTALE_WORKER_MAINTENANCE_INTERVAL_S`` in ``serve``)."""


class MatchedSpan(BaseModel):
    start: int = Field(ge=0, description="offset of the first character, in code points")
    end: int = Field(ge=0, description="offset after the last character")
    label: str = Field(description="the PII entity type, or the pattern or keyword that matched")
    score: float = Field(ge=0, le=1)


class SignalScore(BaseModel):
    name: str
    version: int
    field: str = Field(description="the embedding field the signal reads, e.g. output.text")
    score: float = Field(ge=0, le=1, description="probability of the failure mode")
    flagged: bool = Field(description="score reached the signal's threshold")
    action: Literal["block", "flag", "log"] = Field(description="the spec's action when flagged")
    matches: list[MatchedSpan] = Field(
        default_factory=list,
        description="pattern and pii kinds: the spans of the field's text that matched",
    )


class ScoreResponse(BaseModel):
    event_id: str
    verdict: Literal["block", "flag", "pass"] = Field(
        description="block if a flagged signal's action is block, flag if one's is flag"
    )
    signals: list[SignalScore]
    embedder_id: str
    recorded: bool = Field(description="stored for monitoring (record=true and it worked)")
    record_error: str | None = None


class ApiError(BaseModel):
    detail: str


class Readiness(BaseModel):
    ready: bool
    signals: int
    detail: str = ""


_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ApiError, "description": text}
    for code, text in (
        (400, "the body is not a JSON object"),
        (401, "missing or wrong API key"),
        (413, "the body is larger than the limit"),
        (415, "the body is not declared as application/json"),
        (422, "the event is invalid; detail says why"),
        (503, "scoring is unavailable (starting, stopping, or storage down)"),
    )
}


def request_body_schema() -> tuple[dict[str, Any], dict[str, Any]]:
    """The event contract as the API takes it: ``event_id`` and ``timestamp`` optional, and
    unknown top-level members allowed (they are kept in ``attributes``).

    Returns the schema and the definitions it refers to (for ``components/schemas``).
    """
    schema = GenerationEvent.model_json_schema(ref_template="#/components/schemas/{model}")
    definitions = schema.pop("$defs", {})
    optional = ("event_id", "timestamp")
    schema["required"] = [r for r in schema.get("required", []) if r not in optional]
    schema.pop("additionalProperties", None)
    schema["title"] = "ScoreRequest"
    schema["properties"]["timestamp"]["description"] = "RFC 3339; default: the time of the request"
    schema["properties"]["event_id"]["description"] = "unique id; default: a random one"
    return schema, definitions


class _Metrics:
    """Prometheus metrics of one app (its own registry, so several apps can live in a test)."""

    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry: CollectorRegistry = CollectorRegistry()
        latency_buckets = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
        self.latency = Histogram("telltale_serve_request_seconds", "POST /v1/score latency",
                                 ["status"], buckets=latency_buckets,
                                 registry=self.registry)  # fmt: skip
        self.in_flight = Gauge("telltale_serve_in_flight", "POST /v1/score requests being served",
                               registry=self.registry)  # fmt: skip
        self.batch_size = Histogram("telltale_serve_batch_size", "events per model call",
                                    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256),
                                    registry=self.registry)  # fmt: skip
        self.batch_seconds = Histogram("telltale_serve_batch_seconds", "time of one model call",
                                       buckets=latency_buckets, registry=self.registry)  # fmt: skip
        self.cache_hits = Counter("telltale_serve_embedding_cache_hits",
                                  "texts whose vectors came from the embedding cache",
                                  registry=self.registry)  # fmt: skip
        self.embedded = Counter("telltale_serve_embedded_fields",
                                "fields embedded (cache hits included)",
                                registry=self.registry)  # fmt: skip
        self.flags = Counter("telltale_serve_signal_flags", "events a signal flagged",
                             ["signal", "action"], registry=self.registry)  # fmt: skip
        self.verdicts = Counter("telltale_serve_verdicts", "verdicts returned", ["verdict"],
                                registry=self.registry)  # fmt: skip
        self.record_failures = Counter("telltale_serve_record_failures",
                                       "record=true events that could not be stored",
                                       registry=self.registry)  # fmt: skip

    def observe_batch(self, size: int, seconds: float) -> None:
        self.batch_size.observe(size)
        self.batch_seconds.observe(seconds)

    def observe(self, scored: Scored) -> None:
        self.verdicts.labels(scored.verdict).inc()
        self.embedded.inc(len({s.field for s in scored.signals} | set(scored.vectors)))
        for s in scored.signals:
            if s.flagged:
                self.flags.labels(s.name, s.action).inc()


class GuardrailService:
    """Scorer + micro-batcher + optional recorder, and the state the endpoints report.

    ``recorder`` is called on the scoring thread with the batch's ``record=true`` events; if it
    raises, those responses say ``recorded: false`` with the reason (the verdict still stands).
    ``maintenance`` (retraining signals of another embedder,
    :meth:`~signals.live.LiveSignals.retrain_stale`) runs on the scoring thread at start and
    every ``maintenance_interval_s``: between batches, never inside one, as in the worker.
    """

    def __init__(
        self,
        embedder: Embedder | FieldEmbedders,
        bank: Callable[[], SignalBank],
        settings: ServeSettings,
        *,
        recorder: Recorder | None = None,
        cache: EmbeddingCache | None = None,
        image_policy: ImagePolicy | None = None,
        maintenance: Callable[[], object] | None = None,
        maintenance_interval_s: float = MAINTENANCE_INTERVAL_S,
    ) -> None:
        self.settings = settings
        self._maintenance = maintenance
        self._maintenance_interval_s = maintenance_interval_s
        self._maintainer: asyncio.Task[None] | None = None
        if image_policy is None:  # the API's policy under the TELLTALE_IMAGES_* settings
            image_policy = wiring.image_policy(ImagesSettings(), api=True)
        self.scorer = Scorer(embedder, bank, image_policy, cache)
        self.metrics = _Metrics()
        self._recorder = recorder
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="telltale-score")
        self.batcher: MicroBatcher[ScoreRequest, Scored | Rejected] = MicroBatcher(
            self._run, self._executor, max_batch=settings.batch_max_size,
            max_wait_s=settings.batch_max_wait_ms / 1000, on_batch=self.metrics.observe_batch,
        )  # fmt: skip
        self.ready = False

    def _run(self, requests: list[ScoreRequest]) -> list[Scored | Rejected]:
        saved = self.scorer.cache_counts().saved
        results = self.scorer.score(requests)
        self.metrics.cache_hits.inc(self.scorer.cache_counts().saved - saved)
        wanted = {
            i: result for i, (request, result) in enumerate(zip(requests, results, strict=True))
            if request.record and isinstance(result, Scored)
        }  # fmt: skip
        if not wanted:
            return results
        error = "recording is not configured"
        if self._recorder is not None:
            try:
                self._recorder(list(wanted.values()))
                error = ""
            except Exception as exc:
                error = f"{type(exc).__name__}: {exc}"
        if error:
            log.error("recording %d scored events failed: %s", len(wanted), error)
            self.metrics.record_failures.inc(len(wanted))
        for i, scored in wanted.items():
            results[i] = replace(scored, recorded=not error, record_error=error)
        return results

    async def start(self) -> None:
        """Load the model's signals off the loop, then take requests."""
        bank = await asyncio.get_running_loop().run_in_executor(self._executor, self.scorer.signals)
        self.batcher.start()
        if self._maintenance is not None:
            self._maintainer = asyncio.create_task(self._maintain(self._maintenance))
        self.ready = True
        log.info("guardrail ready: %d signals on %s", len(bank), self.scorer.embedder_id)

    async def _maintain(self, maintenance: Callable[[], object]) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                await loop.run_in_executor(self._executor, maintenance)
            except Exception as exc:  # storage trouble: the next round tries again
                log.warning("signal maintenance failed, tried again in %.0f s: %s",
                            self._maintenance_interval_s, exc)  # fmt: skip
            await asyncio.sleep(self._maintenance_interval_s)

    async def stop(self) -> None:
        """Finish every queued request, then release the scoring thread."""
        self.ready = False
        if self._maintainer is not None:
            self._maintainer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._maintainer
        await self.batcher.stop()
        self._executor.shutdown(wait=True)
        stats = self.batcher.stats
        log.info("guardrail stopped after %d requests in %d batches", stats.items, stats.batches)

    @property
    def signal_count(self) -> int:
        return self.scorer.signal_count

    async def score(self, event: GenerationEvent, record: bool) -> Scored | Rejected:
        result = await self.batcher.submit(ScoreRequest(event, record))
        if isinstance(result, Scored):
            self.metrics.observe(result)
        return result


def _api_key_check(keys: Sequence[bytes]) -> Callable[[Request], Awaitable[None]]:
    """A dependency that accepts ``Authorization: Bearer KEY``, ``X-API-Key: KEY`` or basic
    auth with KEY as the password; every configured key is compared in constant time."""

    def presented(request: Request) -> bytes | None:
        header = request.headers.get("x-api-key")
        if header:
            return header.encode()
        scheme, _, value = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() == "bearer" and value:
            return value.strip().encode()
        if scheme.lower() == "basic" and value:
            try:
                decoded = base64.b64decode(value.strip(), validate=True)
            except (binascii.Error, ValueError):
                return None
            return decoded.partition(b":")[2]
        return None

    async def check(request: Request) -> None:
        if not keys:
            return
        given = presented(request)
        matched = False
        for key in keys:  # no early exit: the time taken does not depend on which key matched
            matched |= given is not None and hmac.compare_digest(given, key)
        if not matched:
            raise StarletteHTTPException(
                401,
                "missing or wrong API key" if given is None or given else "empty API key",
                headers={"WWW-Authenticate": 'Bearer, Basic realm="telltale"'},
            )

    return check


CLIENT_CLOSED_REQUEST = 499
"""The status recorded in metrics for a client that went away before its body arrived (nginx's
convention; nothing is sent)."""


def _require_json(request: Request) -> None:
    """415 unless the body is declared ``application/json`` (or a ``+json`` type): a form or
    text body is never taken for an event, and browsers cannot send one cross-site without a
    preflight."""
    declared = request.headers.get("content-type", "")
    media = declared.partition(";")[0].strip().lower()
    if media == "application/json" or (
        media.startswith("application/") and media.endswith("+json")
    ):
        return
    raise StarletteHTTPException(
        415, f"Content-Type must be application/json, got {declared[:80] or 'none'}"
    )


async def _read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise StarletteHTTPException(413, f"body of {declared} bytes exceeds {limit} bytes")
    chunks, size = [], 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise StarletteHTTPException(413, f"body exceeds {limit} bytes")
            chunks.append(chunk)
    except ClientDisconnect as exc:
        raise StarletteHTTPException(CLIENT_CLOSED_REQUEST, "client closed the request") from exc
    return b"".join(chunks)


def parse_score_body(body: bytes) -> GenerationEvent:
    """The event of a request body; ``event_id`` and ``timestamp`` get defaults.

    Raises ``HTTPException`` 400 (not a JSON object) or 422 (not a valid event), with the same
    reasons the worker writes into dead letters.
    """
    try:
        data = parse_json(body.decode("utf-8"), finite=True)
    except JsonTooDeep as exc:  # the same reason at every depth, before json.loads recurses
        raise StarletteHTTPException(400, f"body is not valid JSON: {exc.reason}") from exc
    except (UnicodeDecodeError, ValueError) as exc:
        raise StarletteHTTPException(400, f"body is not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise StarletteHTTPException(400, f"body must be a JSON object, got {type(data).__name__}")
    if data.get("event_id") is None:
        data["event_id"] = uuid.uuid4().hex
    if data.get("timestamp") is None:
        data["timestamp"] = datetime.now(UTC).isoformat()
    try:
        return validate_event(data)
    except InvalidEvent as exc:
        raise StarletteHTTPException(422, exc.reason) from exc


def create_app(
    service: GuardrailService,
    *,
    extra: Callable[[FastAPI, Callable[[Request], Awaitable[None]]], None] | None = None,
    on_startup: Callable[[], Awaitable[None]] | None = None,
    on_shutdown: Callable[[], Awaitable[None]] | None = None,
) -> FastAPI:
    """The FastAPI app around ``service``.

    ``extra(app, auth)`` adds routes (``--all`` adds the report, rates and detections);
    ``on_startup``/``on_shutdown`` start and stop what runs beside the API (worker, monitor),
    after the service started and after it drained.
    """
    settings = service.settings
    auth = _api_key_check(settings.key_list())
    ops_auth = auth if settings.protect_ops else _api_key_check([])

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await service.start()
        if on_startup is not None:
            await on_startup()
        try:
            yield
        finally:
            # uvicorn has stopped accepting and finished the requests in flight by now.
            await service.stop()
            if on_shutdown is not None:
                await on_shutdown()

    app = FastAPI(
        title="telltale",
        version="1",
        summary="Quality signals per request: score a generation, get a verdict.",
        lifespan=lifespan,
        # Swagger UI and ReDoc load their scripts from a public CDN: off unless asked for.
        docs_url="/docs" if settings.docs else None,
        redoc_url="/redoc" if settings.docs else None,
    )

    body_schema, definitions = request_body_schema()
    generate_openapi = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = generate_openapi()
            document.setdefault("components", {}).setdefault("schemas", {}).update(definitions)
        return app.openapi_schema or {}

    app.openapi = openapi  # type: ignore[method-assign]

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> Response:
        return JSONResponse(
            {"detail": str(exc.detail)}, status_code=exc.status_code, headers=exc.headers
        )

    @app.exception_handler(RequestValidationError)
    async def invalid_parameters(_: Request, exc: RequestValidationError) -> Response:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err.get('loc', ()))}: {err.get('msg', 'invalid')}"
            for err in exc.errors()
        )
        return JSONResponse({"detail": problems or "invalid request"}, status_code=422)

    @app.post(
        "/v1/score",
        response_model=ScoreResponse,
        responses=_ERRORS,
        dependencies=[Depends(auth)],
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": body_schema}},
            }
        },
    )
    async def score(
        request: Request,
        record: Annotated[
            bool, Query(description="also store the event (with its vectors)")
        ] = False,
    ) -> ScoreResponse | JSONResponse:
        """Score one generation event with every live signal; return scores and a verdict."""
        started = time.perf_counter()
        status = 200
        service.metrics.in_flight.inc()
        try:
            _require_json(request)
            event = parse_score_body(await _read_body(request, settings.max_body_bytes))
            try:
                result = await service.score(event, record)
            except GuardrailClosed as exc:
                raise StarletteHTTPException(503, str(exc)) from exc
            except Exception as exc:
                log.exception("scoring failed")
                raise StarletteHTTPException(
                    503, f"scoring failed: {type(exc).__name__}: {exc}"
                ) from exc
            if isinstance(result, Rejected):
                raise StarletteHTTPException(422, result.reason)
            return ScoreResponse(
                event_id=result.event.event_id,
                verdict=result.verdict,
                signals=[
                    SignalScore(
                        name=s.name,
                        version=s.version,
                        field=s.field,
                        score=s.score,
                        flagged=s.flagged,
                        action=s.action,
                        matches=[
                            MatchedSpan(start=m.start, end=m.end, label=m.label, score=m.score)
                            for m in s.matches
                        ],
                    )
                    for s in result.signals
                ],
                embedder_id=result.embedder_id,
                recorded=result.recorded,
                record_error=result.record_error or None,
            )
        except StarletteHTTPException as exc:
            status = exc.status_code
            raise
        except Exception:
            status = 500  # what the server error middleware answers
            raise
        finally:
            service.metrics.in_flight.dec()
            service.metrics.latency.labels(str(status)).observe(time.perf_counter() - started)

    @app.get("/healthz", response_model=dict[str, str])
    async def healthz() -> dict[str, str]:
        """Liveness: the process answers."""
        return {"status": "ok"}

    @app.get("/readyz", response_model=Readiness, responses={503: {"model": Readiness}},
             dependencies=[Depends(ops_auth)])  # fmt: skip
    async def readyz() -> Response:
        """Readiness: the model and signals are loaded and the server is not stopping."""
        body = Readiness(ready=service.ready, signals=service.signal_count,
                         detail="" if service.ready else "starting or stopping")  # fmt: skip
        return JSONResponse(body.model_dump(), status_code=200 if service.ready else 503)

    @app.get("/metrics", response_class=PlainTextResponse, dependencies=[Depends(ops_auth)])
    async def metrics() -> Response:
        """Prometheus metrics (text exposition format)."""
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return Response(generate_latest(service.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    if extra is not None:
        extra(app, auth)
    return app
