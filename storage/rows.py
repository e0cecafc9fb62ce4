"""Plain row types the writer accepts. Vectors are sequences of floats: storage knows no torch."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

__all__ = [
    "FIELD_COLUMNS",
    "TEXT_COLUMNS",
    "CacheStatsRow",
    "EmbeddingRow",
    "EventRow",
    "ScoreRow",
    "WriteBatch",
]


FIELD_COLUMNS = {"prompt.text": "prompt_text", "output.text": "output_text",
                 "output.image": "output_image"}  # fmt: skip
"""The ``events`` column holding each embedded field's content (the fields of
``signals.FIELDS``; storage sits beside signals, so a test checks the two agree)."""
TEXT_COLUMNS = {f: c for f, c in FIELD_COLUMNS.items() if f.endswith(".text")}


@dataclass(frozen=True)
class EventRow:
    event_id: str
    timestamp: datetime
    model: str
    model_version: str
    app: str = ""
    release: str = ""
    prompt_text: str = ""
    output_text: str = ""
    output_image: str = ""
    latency_ms: float | None = None
    feedback: int | None = None
    attributes: dict[str, str] = field(default_factory=dict)
    embedder_id: str = ""
    user_id: str = ""
    session_id: str = ""
    input_tokens: int | None = None
    output_tokens: int | None = None
    inclusion_probability: float = 1.0
    """The probability with which the event was drawn to be scored (1: every event is)."""

    COLUMNS = (
        "event_id", "timestamp", "model", "model_version", "app", "release", "prompt_text",
        "output_text", "output_image", "latency_ms", "feedback", "attributes", "embedder_id",
        "user_id", "session_id", "input_tokens", "output_tokens", "inclusion_probability",
    )  # fmt: skip

    def values(self) -> list[object]:
        return [getattr(self, name) for name in self.COLUMNS]


@dataclass(frozen=True)
class EmbeddingRow:
    event_id: str
    field: str
    embedder_id: str
    timestamp: datetime
    model: str
    model_version: str
    vector: Sequence[float]
    windows: Sequence[Sequence[float]] = ()  # only for a text of several windows

    COLUMNS = (
        "event_id", "field", "embedder_id", "timestamp", "model", "model_version", "vector",
        "windows",
    )  # fmt: skip

    def values(self) -> list[object]:
        return [getattr(self, name) for name in self.COLUMNS]


@dataclass(frozen=True)
class ScoreRow:
    event_id: str
    signal: str
    signal_version: int
    timestamp: datetime
    model: str
    model_version: str
    score: float
    flagged: bool
    slices: dict[str, str] = field(default_factory=dict)
    """The event's slice values (key -> value, already capped); one rate row per key."""
    inclusion_probability: float = 1.0
    """The event's (``EventRow.inclusion_probability``): its weight in a rate is its inverse."""

    COLUMNS = (
        "event_id", "signal", "signal_version", "timestamp", "model", "model_version", "score",
        "flagged", "slices", "inclusion_probability",
    )  # fmt: skip

    def values(self) -> list[object]:
        return [getattr(self, name) for name in self.COLUMNS]


@dataclass(frozen=True)
class CacheStatsRow:
    """Where one batch's vectors of one field came from (the embedding cache's hit rate)."""

    at: datetime
    field: str
    embedder_id: str
    lookups: int
    memory_hits: int
    shared_hits: int
    batch_repeats: int
    model_texts: int

    COLUMNS = (
        "at", "field", "embedder_id", "lookups", "memory_hits", "shared_hits", "batch_repeats",
        "model_texts",
    )  # fmt: skip

    def values(self) -> list[object]:
        return [getattr(self, name) for name in self.COLUMNS]


@dataclass
class WriteBatch:
    """Everything one pipeline batch writes. Events are written last: see ``writer``."""

    events: list[EventRow] = field(default_factory=list)
    embeddings: list[EmbeddingRow] = field(default_factory=list)
    scores: list[ScoreRow] = field(default_factory=list)
    cache_stats: list[CacheStatsRow] = field(default_factory=list)
    unsampled: set[str] = field(default_factory=set)
    """Ids of ``events`` stored but not drawn by the sampler: no embeddings, no scores."""

    def extend(self, other: WriteBatch) -> None:
        self.events.extend(other.events)
        self.embeddings.extend(other.embeddings)
        self.scores.extend(other.scores)
        self.cache_stats.extend(other.cache_stats)
        self.unsampled |= other.unsampled

    def __len__(self) -> int:
        return len(self.events) + len(self.embeddings) + len(self.scores)
