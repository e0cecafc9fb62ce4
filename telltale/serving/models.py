"""The request and response models of ``telltale serve``: the OpenAPI schema is built from them.

The request body is the event contract itself (:func:`request_body_schema`); the responses are
the pydantic models below, and every error answers :class:`ApiError`.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from signals import Action, GuardrailDecision
from streams import GenerationEvent, Scored

__all__ = [
    "ERRORS",
    "ApiError",
    "DetectionsResponse",
    "MatchedSpan",
    "RateOut",
    "RatesResponse",
    "Readiness",
    "ScoreResponse",
    "SignalScore",
    "request_body_schema",
    "score_response",
]


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
    action: Action = Field(description="the spec's action when flagged")
    matches: list[MatchedSpan] = Field(
        default_factory=list,
        description="pattern and pii kinds: the spans of the field's text that matched",
    )


class ScoreResponse(BaseModel):
    event_id: str
    verdict: GuardrailDecision = Field(
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


ERRORS: dict[int | str, dict[str, Any]] = {
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
"""The documented error responses of ``POST /v1/score``."""


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


def score_response(scored: Scored) -> ScoreResponse:
    """The answer to a scored request."""
    return ScoreResponse(
        event_id=scored.event.event_id,
        verdict=scored.verdict,
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
            for s in scored.signals
        ],
        embedder_id=scored.embedder_id,
        recorded=scored.recorded,
        record_error=scored.record_error or None,
    )
