"""Recording guardrail traffic: scored events stored with the vectors they were scored with.

A :data:`Recorder` stores the events the API scored with ``record=true``, so the guardrail's
traffic is monitored like the worker's, and nothing is embedded twice: straight to storage
through :class:`~streams.pipeline.Pipeline` with the vectors as ``precomputed``
(:func:`storage_recorder`), or to the worker's Kafka topic with an ``embeddings`` member the
worker uses (:func:`kafka_recorder`, :func:`envelope`).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from streams.events import encode_event

if TYPE_CHECKING:
    from streams.emitter import Emitter
    from streams.pipeline import Pipeline
    from streams.scoring import Scored

__all__ = ["Recorder", "envelope", "kafka_recorder", "storage_recorder"]

Recorder = Callable[[Sequence["Scored"]], None]
"""Stores scored events (with their vectors) so guardrail traffic is monitored too."""


def storage_recorder(pipeline: Pipeline) -> Recorder:
    """Write straight to storage (embedded mode): the pipeline reuses the scored vectors.

    Idempotent on ``event_id`` like every pipeline write. The pipeline must use the scorer's
    embedder (the vectors are stored under its id).
    """

    def record(scored: Sequence[Scored]) -> None:
        if not scored:
            return
        precomputed = {s.event.event_id: s.precomputed() for s in scored}
        result = pipeline.process([s.event for s in scored], precomputed)
        if result.rejected:
            reasons = "; ".join(f"{e.event_id}: {reason}" for e, reason in result.rejected)
            raise ValueError(f"not stored: {reasons}")

    return record


def kafka_recorder(emitter: Emitter) -> Recorder:
    """Send to the worker's topic; the payload carries the vectors under ``embeddings``
    (``{"embedder_id": ..., "output.text": [...]}``), which a worker on the same embedder uses
    instead of embedding the event again."""

    def record(scored: Sequence[Scored]) -> None:
        for s in scored:
            emitter.emit_raw(envelope(s), key=s.event.event_id)
        emitter.flush()

    return record


def envelope(scored: Scored) -> bytes:
    """The event's wire form plus its vectors under ``embeddings``."""
    document = json.loads(encode_event(scored.event))
    document["embeddings"] = {"embedder_id": scored.embedder_id, **scored.precomputed()}
    return json.dumps(document, separators=(",", ":")).encode()
