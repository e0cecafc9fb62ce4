"""The FastAPI app of ``telltale serve``: lifespan, error bodies, the OpenAPI document, the score
route and the operational routes (``/healthz``, ``/readyz``, ``/metrics``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from telltale.serving.auth import Auth, api_key_check
from telltale.serving.models import Readiness, request_body_schema
from telltale.serving.score import add_score_route

if TYPE_CHECKING:
    from telltale.serving.service import GuardrailService

__all__ = ["create_app"]


def create_app(
    service: GuardrailService,
    *,
    extra: Callable[[FastAPI, Auth], None] | None = None,
    on_startup: Callable[[], Awaitable[None]] | None = None,
    on_shutdown: Callable[[], Awaitable[None]] | None = None,
) -> FastAPI:
    """The FastAPI app around ``service``.

    ``extra(app, auth)`` adds routes (``--all`` adds the report, rates and detections);
    ``on_startup``/``on_shutdown`` start and stop what runs beside the API (worker, monitor),
    after the service started and after it drained.
    """
    settings = service.settings
    auth = api_key_check(settings.key_list())
    ops_auth = auth if settings.protect_ops else api_key_check([])

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

    add_score_route(app, service, auth, body_schema)
    _add_ops_routes(app, service, ops_auth)
    if extra is not None:
        extra(app, auth)
    return app


def _add_ops_routes(app: FastAPI, service: GuardrailService, ops_auth: Auth) -> None:
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
