"""``POST /v1/score``: the edge around the guardrail service (content type, size limit, JSON
parsing, error mapping, latency metrics).

A body is parsed with the same strict JSON and event validation the worker applies, so a
request is refused for the reasons the worker writes into dead letters.
"""

from __future__ import annotations

import logging
import time
import uuid
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import Depends, FastAPI, Query, Request
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from streams import GenerationEvent, InvalidEvent, JsonTooDeep, Rejected, parse_json, validate_event
from telltale.serving.batcher import GuardrailClosed
from telltale.serving.models import ERRORS, ScoreResponse, score_response

if TYPE_CHECKING:
    from telltale.serving.auth import Auth
    from telltale.serving.service import GuardrailService

__all__ = ["CLIENT_CLOSED_REQUEST", "add_score_route", "parse_score_body"]

log = logging.getLogger(__name__)

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


def add_score_route(
    app: FastAPI, service: GuardrailService, auth: Auth, body_schema: dict[str, Any]
) -> None:
    """Add ``POST /v1/score`` to ``app``; ``body_schema`` documents the request body."""
    settings = service.settings

    @app.post(
        "/v1/score",
        response_model=ScoreResponse,
        responses=ERRORS,
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
            return score_response(result)
        except StarletteHTTPException as exc:
            status = exc.status_code
            raise
        except Exception:
            status = 500  # what the server error middleware answers
            raise
        finally:
            service.metrics.in_flight.dec()
            service.metrics.latency.labels(str(status)).observe(time.perf_counter() - started)
