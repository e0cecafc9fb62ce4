"""Prometheus metrics of the stream side: per-signal counters with bounded labels.

Labels are ``signal``, ``model`` and ``model_version`` only: never an event, user or session
id. ``model_version`` is capped per model (:class:`VersionCap`): past ``max_versions`` distinct
values of one model, further versions are counted under ``other``, so a product that ships a
version per deploy cannot grow the series without bound. Dead letters are counted by a reason
class from a fixed set (:data:`DEAD_LETTER_CLASSES`), never by the reason's text.

:class:`SignalCounters` is shared by the Kafka worker (prefix ``telltale_worker``: events
decoded, and the events and score rows stored) and the guardrail API (prefix
``telltale_serve``: events scored by ``POST /v1/score``). :class:`WorkerMetrics` adds what only
the worker knows: dead letters, consumer lag per topic and partition, and the sampling rate
in effect (1.0 until the worker samples). Every metric lives in the registry it is given, so
``telltale serve --all`` puts the worker's and the API's metrics on one ``/metrics``.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from storage import ClickHouseWriter
from streams.batch_io import Carrying, Decoder
from streams.errors import PartlyInvalid
from streams.events import GenerationEvent

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

    from storage import WriteBatch
    from streams.scoring import Scored

__all__ = [
    "DEAD_LETTER_CLASSES",
    "DEFAULT_MAX_VERSIONS",
    "OTHER",
    "MeteredWriter",
    "SignalCounters",
    "VersionCap",
    "WorkerMetrics",
    "consumer_lag",
    "consumer_offsets",
    "counting_decoder",
    "dead_letter_class",
]

OTHER = "other"
"""The ``model_version`` label of versions past a model's cap."""

DEFAULT_MAX_VERSIONS = 20

DEAD_LETTER_CLASSES = (
    "invalid",  # the record failed validation (schema, size, an image that did not load)
    "decoding_failed",  # the decoder itself failed on the record
    "database_rejected",  # the database refused the event's rows
    "database_overloaded",  # too large for the database, alone and after retries
    "processing_failed",  # the pipeline failed on the event alone (the embedder, a signal)
)
"""The ``reason`` label of ``telltale_worker_dead_letters_total``: a bounded set."""

_REASON_PREFIXES = (
    ("rejected by the database", "database_rejected"),
    ("too large for the database", "database_overloaded"),
    ("processing failed", "processing_failed"),
    ("decoding failed", "decoding_failed"),
)


def dead_letter_class(reason: str) -> str:
    """The class of a dead letter's reason (one of :data:`DEAD_LETTER_CLASSES`)."""
    for prefix, name in _REASON_PREFIXES:
        if reason.startswith(prefix):
            return name
    return "invalid"


class VersionCap:
    """The ``model_version`` label: the version itself for the first ``max_versions`` distinct
    versions seen of each model, :data:`OTHER` for any later one (thread-safe)."""

    def __init__(self, max_versions: int = DEFAULT_MAX_VERSIONS) -> None:
        if max_versions < 1:
            raise ValueError("max_versions must be at least 1")
        self.max_versions = max_versions
        self._seen: dict[str, set[str]] = {}
        self._lock = threading.Lock()

    def label(self, model: str, version: str) -> str:
        with self._lock:
            seen = self._seen.setdefault(model, set())
            if version in seen:
                return version
            if len(seen) < self.max_versions:
                seen.add(version)
                return version
            return OTHER


class SignalCounters:
    """Events seen and scored per ``(model, model_version)``; score rows and flags per
    ``(signal, model, model_version)``. Names start with ``prefix``."""

    def __init__(
        self, registry: CollectorRegistry, prefix: str, cap: VersionCap, what: str
    ) -> None:
        from prometheus_client import Counter

        self.cap = cap
        version = ["model", "model_version"]
        per_signal = ["signal", *version]
        self.events_seen = Counter(f"{prefix}_events_seen", f"events {what} received",
                                   version, registry=registry)  # fmt: skip
        self.events_scored = Counter(f"{prefix}_events_scored", f"events {what} scored",
                                     version, registry=registry)  # fmt: skip
        self.signal_scored = Counter(f"{prefix}_signal_scored",
                                     f"events a signal scored ({what})", per_signal,
                                     registry=registry)  # fmt: skip
        self.signal_flagged = Counter(f"{prefix}_signal_flagged",
                                      f"events a signal flagged ({what})", per_signal,
                                      registry=registry)  # fmt: skip

    def _version(self, model: str, version: str) -> tuple[str, str]:
        return model, self.cap.label(model, version)

    def seen(self, events: Iterable[tuple[str, str]]) -> None:
        """Count events received, given as ``(model, model_version)`` pairs."""
        for (model, version), n in _tally(events).items():
            self.events_seen.labels(*self._version(model, version)).inc(n)

    def written(self, batch: WriteBatch) -> None:
        """Count the events and score rows of a batch the database has stored (events the
        sampler left out are stored but not scored: they were counted as seen)."""
        scored = ((e.model, e.model_version) for e in batch.events
                  if e.event_id not in batch.unsampled)  # fmt: skip
        for (model, version), n in _tally(scored).items():
            self.events_scored.labels(*self._version(model, version)).inc(n)
        self._signals((s.signal, s.model, s.model_version, s.flagged) for s in batch.scores)

    def scored(self, scored: Scored) -> None:
        """Count one event the guardrail API scored."""
        event = scored.event
        self.events_seen.labels(*self._version(event.model, event.model_version)).inc()
        self.events_scored.labels(*self._version(event.model, event.model_version)).inc()
        self._signals((s.name, event.model, event.model_version, s.flagged)
                      for s in scored.signals)  # fmt: skip

    def _signals(self, rows: Iterable[tuple[str, str, str, bool]]) -> None:
        scored: dict[tuple[str, str, str], int] = {}
        flagged: dict[tuple[str, str, str], int] = {}
        for signal, model, version, is_flagged in rows:
            key = (signal, *self._version(model, version))
            scored[key] = scored.get(key, 0) + 1
            if is_flagged:
                flagged[key] = flagged.get(key, 0) + 1
        for key, n in scored.items():
            self.signal_scored.labels(*key).inc(n)
            # created at 0 with its first score, so a rate over it exists before the first flag
            self.signal_flagged.labels(*key).inc(flagged.get(key, 0))


def _tally(pairs: Iterable[tuple[str, str]]) -> dict[tuple[str, str], int]:
    counts: dict[tuple[str, str], int] = {}
    for pair in pairs:
        counts[pair] = counts.get(pair, 0) + 1
    return counts


class WorkerMetrics:
    """The Kafka worker's metrics, in ``registry`` (a new one when None)."""

    PREFIX = "telltale_worker"

    def __init__(
        self, registry: CollectorRegistry | None = None, cap: VersionCap | None = None
    ) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge

        self.registry = registry if registry is not None else CollectorRegistry()
        prefix = self.PREFIX
        self.counters = SignalCounters(self.registry, prefix, cap or VersionCap(),
                                       "the worker")  # fmt: skip
        self.dead_letters = Counter(f"{prefix}_dead_letters", "records sent to the dead-letter "
                                    "topic, by reason class", ["reason"],
                                    registry=self.registry)  # fmt: skip
        for reason in DEAD_LETTER_CLASSES:
            self.dead_letters.labels(reason)
        self.consumer_lag = Gauge(f"{prefix}_consumer_lag", "records of a partition not yet "
                                  "committed by the worker's group (end offset - committed)",
                                  ["topic", "partition"], registry=self.registry)  # fmt: skip
        self.sampling_rate = Gauge(f"{prefix}_sampling_rate", "share of received events the "
                                   "worker embeds and scores (1: every event)",
                                   registry=self.registry)  # fmt: skip
        self.sampling_rate.set(1.0)
        self.ahead_texts = Counter(f"{prefix}_ahead_texts", "texts embedded ahead of their "
                                   "batch (queued) and those a batch then took from them "
                                   "(used); queued - used is model time spent for nothing",
                                   ["outcome"], registry=self.registry)  # fmt: skip
        self._ahead_used = 0

    def ahead(self, queued: int, used_total: int) -> None:
        """Count texts queued ahead, and the texts used from them so far (a running total)."""
        self.ahead_texts.labels("queued").inc(queued)
        self.ahead_texts.labels("used").inc(max(0, used_total - self._ahead_used))
        self._ahead_used = max(self._ahead_used, used_total)

    def dead_letter(self, reason: str) -> None:
        self.dead_letters.labels(dead_letter_class(reason)).inc()

    def set_lag(self, lag: Mapping[tuple[str, int], int]) -> None:
        """Replace the lag series by ``lag`` (partitions no longer assigned disappear)."""
        self.consumer_lag.clear()
        for (topic, partition), value in sorted(lag.items()):
            self.consumer_lag.labels(topic, str(partition)).set(max(value, 0))

    def set_sampling_rate(self, rate: float) -> None:
        """The share of events scored (issue 24's sampling sets it; 1.0 until then)."""
        if not 0.0 <= rate <= 1.0:
            raise ValueError(f"sampling rate {rate} is not within [0, 1]")
        self.sampling_rate.set(rate)


class MeteredWriter(ClickHouseWriter):
    """A writer that counts what it stored (events and score rows) once the write succeeded
    (a write that fails is retried whole and counted once; nothing counted without
    ``counters``)."""

    def __init__(self, client: Any, counters: SignalCounters | None) -> None:
        super().__init__(client)
        self._counters = counters

    def write(self, batch: WriteBatch) -> int:
        written = super().write(batch)
        if self._counters is not None:
            self._counters.written(batch)
        return written


async def consumer_lag(app: Any, topics: Iterable[str]) -> dict[tuple[str, int], int]:
    """Per assigned partition of ``topics``: end offset minus the group's committed offset
    (the first offset not yet committed; the earliest offset before any commit)."""
    return {key: end - committed for key, (end, committed) in
            (await consumer_offsets(app, topics)).items()}  # fmt: skip


async def consumer_offsets(
    app: Any, topics: Iterable[str]
) -> dict[tuple[str, int], tuple[int, int]]:
    """Per assigned partition of ``topics``: its end offset and the group's committed offset
    (the earliest offset before any commit)."""
    consumer = app.consumer
    wanted = set(topics)
    assigned = [tp for tp in consumer.assignment() if tp.topic in wanted]
    if not assigned:
        return {}
    ends = await consumer.highwaters(*assigned)
    committed: dict[Any, int | None] = dict(getattr(consumer, "_committed_offset", {}) or {})
    committed.update(app.monitor.tp_committed_offsets or {})
    missing = [tp for tp in assigned if committed.get(tp) is None]
    if missing:
        committed.update(await consumer.earliest_offsets(*missing))
    return {
        (tp.topic, tp.partition): (int(ends[tp]), int(committed.get(tp) or 0))
        for tp in assigned
        if ends.get(tp) is not None
    }


def counting_decoder(decode: Decoder, counters: SignalCounters) -> Decoder:
    """``decode``, counting the events it yields as seen (the valid part of a partly invalid
    record too; a record that fails whole is counted as a dead letter instead)."""

    def decode_and_count(raw: bytes) -> Sequence[GenerationEvent | Carrying]:
        try:
            items = decode(raw)
        except PartlyInvalid as exc:
            counters.seen(_model_version(e) for e in exc.events)
            raise
        counters.seen(_model_version(item) for item in items)
        return items

    return decode_and_count


def _model_version(item: GenerationEvent | Carrying) -> tuple[str, str]:
    event = item.event if isinstance(item, Carrying) else item
    return event.model, event.model_version
