"""Prometheus metrics of ``telltale serve`` (``GET /metrics``).

Besides the API's own (latency, batches, verdicts), the per-signal counters the worker has too
(:class:`streams.SignalCounters`, prefix ``telltale_serve``: events seen and scored per model and
version, events scored and flagged per signal), with the same cap on versions.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from streams import SignalCounters, VersionCap

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

    from streams import Scored

__all__ = ["ServeMetrics"]


class ServeMetrics:
    """Prometheus metrics of one app (its own registry, so several apps can live in a test)."""

    def __init__(self, cap: VersionCap | None = None) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry: CollectorRegistry = CollectorRegistry()
        self.counters = SignalCounters(self.registry, "telltale_serve", cap or VersionCap(),
                                       "the API")  # fmt: skip
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
        self.counters.scored(scored)
        self.embedded.inc(len({s.field for s in scored.signals} | set(scored.vectors)))
        for s in scored.signals:
            if s.flagged:
                self.flags.labels(s.name, s.action).inc()
