"""Wiring: build the parts of telltale from settings. The only place that knows all packages."""

from __future__ import annotations

import atexit
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from signals import (
    EmbedAhead,
    Embedder,
    EmbedderConfig,
    EmbeddingCache,
    FieldEmbedders,
    ImagePolicy,
    LazyOpenClipEmbedder,
    LiveSignals,
    LruVectorCache,
    OpenClipEmbedder,
    PublishedSignal,
    Redactor,
    SignalGroup,
    TextEmbedderConfig,
    load_groups,
    retrainer,
)
from storage import (
    ClickHouseVectorCache,
    ClickHouseWriter,
    DeadLetterRow,
    FeedbackRow,
    GroupRow,
    connect,
    migrate,
    record_dead_letters,
    record_feedback,
    save_group_rows,
    top_slice_values,
)
from streams import (
    ContentPolicy,
    DeadLetter,
    EvaluationExporter,
    Feedback,
    KafkaConfig,
    KafkaSecurity,
    MeteredWriter,
    Pipeline,
    Pseudonyms,
    Sampler,
    SamplingConfig,
    SliceConfig,
    Slicer,
    VersionCap,
    WorkerHealth,
    WorkerMetrics,
    build_app,
    build_exporter,
    check_credentials,
    check_export,
)
from telltale.settings import (
    ClickHouseSettings,
    EmbeddingCacheSettings,
    GroupSettings,
    ImagesSettings,
    Settings,
)
from telltale.signal_store import ClickHouseSignalStore, stored_examples
from telltale.storage_gauges import StorageGauges

if TYPE_CHECKING:
    from clickhouse_connect.driver.client import Client

    from alerts import Notifier

__all__ = [
    "Parts",
    "feedback_rows",
    "image_policy",
    "kafka_security",
    "make_cache",
    "make_client",
    "make_embedder",
    "make_embedders",
    "make_exporter",
    "make_groups",
    "make_notifier",
    "make_parts",
    "make_pipeline",
    "make_slicer",
    "make_worker_app",
]


def kafka_security(settings: KafkaConfig) -> KafkaSecurity:
    """How every Kafka client of these settings authenticates."""
    return settings.security


def image_policy(
    settings: ImagesSettings, *, worker: bool = False, api: bool = False
) -> ImagePolicy:
    """The image policy of one door, from the same ``TELLTALE_IMAGES_*`` settings everywhere.

    * the Kafka worker (``worker=True``): local paths only if
      ``TELLTALE_IMAGES_WORKER_LOCAL_FILES``;
    * replay and the CLI (the default): local paths if ``TELLTALE_IMAGES_LOCAL_FILES``;
    * the guardrail API (``api=True``): inline images (base64, ``data:``) and allow-listed
      https only: a client never makes the server read its disk or its object stores (the
      server's credentials are not the client's).

    Sizes, hosts, time limits and the decoded-pixel bound mean the same at every door.
    """
    stores = frozenset(s.lower() for s in settings.object_stores)
    if api:
        schemes, local_files = frozenset({"data", "https"}), False
    else:
        schemes = frozenset({"file", "data", "https"}) | stores
        local_files = settings.worker_local_files if worker else settings.local_files
    return ImagePolicy(
        max_bytes=settings.max_bytes,
        max_decoded_pixels=settings.max_decoded_pixels,
        allowed_schemes=schemes,
        allowed_hosts=frozenset(h.lower() for h in settings.allowed_hosts),
        fetch_timeout_s=settings.fetch_timeout_s,
        allow_local_files=local_files,
        allowed_buckets=frozenset(settings.buckets),
        storage_options=(
            {"s3": {"endpoint_url": settings.s3_endpoint_url}} if settings.s3_endpoint_url else {}
        ),
    )


def feedback_rows(
    records: list[Feedback],
    ids: Pseudonyms | None = None,
    comments: Callable[[str], str] | None = None,
) -> list[FeedbackRow]:
    """Storage rows of feedback; the rater's id pseudonymised when ``ids`` is given (and the
    record id too: derived from the rater's id, it would let a guess at the id be checked),
    comments stored as ``comments`` (the free-text policy) says."""
    return [
        FeedbackRow(ids(r.feedback_id) if ids is not None else r.feedback_id, r.event_id,
                    r.score, r.rating, r.kind,
                    ids(r.user_id) if ids is not None else r.user_id, r.timestamp,
                    comments(r.comment) if comments is not None else r.comment)
        for r in records
    ]  # fmt: skip


def make_client(settings: ClickHouseSettings, *, migrated: bool = True) -> Client:
    client = connect(settings.dsn, settings.password, settings.database)
    if migrated:
        migrate(client, cluster=settings.cluster)
    return client


def make_notifier(
    settings: Settings, client: Client, sleep: Callable[[float], object]
) -> Notifier | None:
    """The notifiers ``TELLTALE_NOTIFY_*`` turns on (webhook, PagerDuty, Slack; several fan out),
    or None. Signal groups page at their own severity (``signal_groups``); pages link the
    runbook page the alert rules link (``TELLTALE_GRAFANA_RUNBOOK_BASE_URL``). ``sleep`` is the
    back-off wait: a stop event's ``wait``, so shutdown never waits out a retry delay."""
    from alerts import build_notifier
    from storage import load_group_rows

    notify = settings.notify
    if not notify.any_enabled:
        return None
    return build_notifier(
        notify, sleep=sleep, severities={g.name: g.severity for g in load_group_rows(client)},
        runbook_base_url=settings.grafana.runbook_base_url,
    )  # fmt: skip


def make_embedder(settings: EmbedderConfig) -> OpenClipEmbedder:
    return OpenClipEmbedder(settings)


def make_slicer(settings: SliceConfig, client: Client) -> Slicer:
    """The slicer, its cap seeded with each key's most frequent stored values."""
    return Slicer(settings, top_slice_values(client, list(settings.keys), settings.max_values))


def make_groups(settings: GroupSettings, client: Client | None = None) -> tuple[SignalGroup, ...]:
    """The configured signal groups; recorded in ``signal_groups`` when ``client`` is given."""
    if settings.groups_file is None:
        return ()
    groups = load_groups(settings.groups_file)
    if client is not None:
        save_group_rows(client, [GroupRow(g.name, g.members, g.severity, g.description)
                                 for g in groups])  # fmt: skip
    return groups


def make_embedders(
    image: EmbedderConfig, text: TextEmbedderConfig, *, lazy_image: bool = False
) -> FieldEmbedders:
    """open_clip for images; the text model for text fields (or CLIP's text tower).

    ``lazy_image`` builds open_clip on first use: the signal commands, which often train a text
    signal only, then never load CLIP's weights. Long-running processes load it at start, so a
    missing checkpoint stops them at once instead of at the first image.
    """
    clip: Embedder = LazyOpenClipEmbedder(image) if lazy_image else make_embedder(image)
    if text.uses_open_clip:
        return FieldEmbedders(clip)
    from signals import SentenceEmbedder

    return FieldEmbedders(clip, SentenceEmbedder(text))


def make_cache(settings: EmbeddingCacheSettings, client: Client | None) -> EmbeddingCache | None:
    """The embedding cache: an LRU, and the shared ClickHouse table when ``client`` is given."""
    if not settings.enabled:
        return None
    shared = ClickHouseVectorCache(client) if settings.shared and client is not None else None
    return EmbeddingCache(LruVectorCache(settings.memory_entries), shared)


def make_pipeline(
    settings: Settings, client: Client | None = None, *, worker: bool = False
) -> Pipeline:
    """The in-process pipeline; signals of another embedder are retrained first, once.

    ``worker``: the Kafka worker's image policy (local paths refused unless configured).
    """
    parts = make_parts(settings, client or make_client(settings.clickhouse), worker=worker)
    parts.signals.retrain_stale()
    return parts.pipeline


@dataclass(frozen=True)
class Parts:
    """The models, the live signals and a pipeline over one client: built once per process and
    shared (``telltale serve --all`` gives the same ones to the worker and the API)."""

    client: Client
    embedders: FieldEmbedders
    signals: LiveSignals
    pipeline: Pipeline
    exporter: EvaluationExporter | None = None  # TELLTALE_OTEL_EXPORT; None when off


def make_parts(
    settings: Settings,
    client: Client,
    writer: ClickHouseWriter | None = None,
    *,
    worker: bool = False,
    sampler: Sampler | None = None,
    embed_ahead: bool | None = None,
) -> Parts:
    """The parts over ``client``. ``worker``: the Kafka worker's image policy and sampler
    (``sampler`` if given: the one its overload control and health pages read).
    ``embed_ahead``: the text embedder is an :class:`~signals.EmbedAhead`, so the caller can
    have the next batch's texts embedded while it stores this one; None: the worker's
    ``TELLTALE_WORKER_EMBED_AHEAD`` for the worker, off otherwise (``telltale replay`` passes
    that setting itself)."""
    embedders = make_embedders(settings.embedder, settings.text_embedder)
    if embed_ahead is None:
        embed_ahead = worker and settings.worker.embed_ahead
    if embed_ahead:  # the caller embeds the next batch's texts ahead
        embedders = FieldEmbedders(embedders.image, EmbedAhead(embedders.text))
    store = ClickHouseSignalStore(client)
    signals = LiveSignals(
        store, embedders.ids, settings.worker.signal_refresh_s,
        retrain=retrainer(store, embedders, stored_examples(client)),
        retrain_cooldown_s=settings.worker.retrain_cooldown_s,
    )  # fmt: skip
    exporter = make_exporter(settings)
    if sampler is None and worker:
        sampler = make_sampler(settings.sampling)
    pipeline = Pipeline(
        embedders, signals, writer or ClickHouseWriter(client),
        image_policy(settings.images, worker=worker), cache=make_cache(settings.cache, client),
        slicer=make_slicer(settings.slices, client), groups=make_groups(settings.groups, client),
        pseudonyms=pseudonyms(settings), content=content_policy(settings, load=worker),
        export=exporter.offer if exporter is not None else None, sampler=sampler,
    )  # fmt: skip
    return Parts(client, embedders, signals, pipeline, exporter)


def make_sampler(settings: SamplingConfig) -> Sampler:
    """The worker's sampler (``TELLTALE_SAMPLE_*``; at the defaults it draws every event, and
    the overload control can still lower its load factor). Only the Kafka worker samples:
    replay and the guardrail API score every event."""
    return Sampler(settings)


def make_exporter(settings: Settings) -> EvaluationExporter | None:
    """The OpenTelemetry export of scores (``TELLTALE_OTEL_EXPORT``), or None when off.

    Its thread lives as long as the process: what is queued is sent at exit, for at most
    ``TELLTALE_OTEL_EXPORT_SHUTDOWN_TIMEOUT_S`` (the worker, ``serve`` and ``replay`` all end
    by exiting, so none of them needs to know about the exporter).
    """
    exporter = build_exporter(settings.otel_export, settings.kafka)
    if exporter is not None:
        atexit.register(exporter.close)
    return exporter


def content_policy(settings: Settings, *, load: bool = False) -> ContentPolicy:
    """What of prompts, answers and attribute values is stored (``TELLTALE_PRIVACY_*``).
    ``load``: a policy that redacts loads its recognizers now (the worker, before its first
    batch) instead of on the first text that may hold personal data."""
    privacy = settings.privacy
    redactor = Redactor(privacy.entities)
    policy = ContentPolicy(
        prompt_text=privacy.prompt_text, output_text=privacy.output_text,
        attributes=privacy.attributes, raw_attribute_keys=frozenset(privacy.raw_attributes),
        redact=redactor, store_windows=privacy.store_windows,
    )  # fmt: skip
    if load and not policy.is_raw:
        redactor.load()
    return policy


def free_text_policy(settings: Settings) -> Callable[[str], str] | None:
    """How free text that may hold anything (dead letters, rejected lines, feedback comments)
    is stored: None when every content field is stored raw."""
    policy = content_policy(settings)
    return None if policy.is_raw else policy.free_text


def pseudonyms(settings: Settings) -> Pseudonyms | None:
    """The keyed id hashes of ``TELLTALE_PRIVACY_ID_KEY``; None (ids stored as sent) without."""
    key = settings.privacy.id_key
    return Pseudonyms(key) if key is not None else None


class _WorkerParts:
    """What one worker process builds once, on its pipeline thread: client, model, signals.

    ``build`` replaces the default (a client from settings, then :func:`make_parts`).
    """

    def __init__(
        self,
        settings: Settings,
        build: Callable[[], Parts] | None = None,
        metrics: WorkerMetrics | None = None,
        sampler: Sampler | None = None,
    ) -> None:
        self._settings = settings
        self._sampler = sampler
        self._build = build
        self._metrics = metrics
        self._pipeline: Pipeline | None = None
        self._client: Client | None = None
        self._signals: LiveSignals | None = None
        # built once: a redactor loads Presidio's recognizers on first use
        self._ids = pseudonyms(settings)
        self._comments = free_text_policy(settings)

    def pipeline(self) -> Pipeline:
        if self._pipeline is None:
            parts = self._build() if self._build is not None else self._own_parts()
            # Signals of another embedder are retrained before the first batch (this runs on
            # the pipeline thread, ahead of any batch); later ones by `maintain`, between batches.
            parts.signals.retrain_stale()
            self._client, self._signals = parts.client, parts.signals
            self._pipeline = parts.pipeline
        return self._pipeline

    def _own_parts(self) -> Parts:
        client = make_client(self._settings.clickhouse)
        counters = None if self._metrics is None else self._metrics.counters
        return make_parts(self._settings, client, MeteredWriter(client, counters), worker=True,
                          sampler=self._sampler)  # fmt: skip

    def refresh_gauges(self, gauges: StorageGauges) -> None:
        """Read the storage gauges of ``/metrics`` (on the pipeline thread, between batches)."""
        self.pipeline()
        assert self._client is not None
        gauges.refresh(self._client)

    def record_dead_letters(self, letters: list[DeadLetter]) -> None:
        """Store where and why payloads were dead-lettered (the payloads stay in Kafka)."""
        self.pipeline()
        assert self._client is not None
        record_dead_letters(self._client, [
            DeadLetterRow(d.topic, d.partition, d.offset, d.reason, max(d.payload_bytes, 0),
                          datetime.fromisoformat(d.failed_at))
            for d in letters
        ])  # fmt: skip

    def maintain(self) -> None:
        """Between batches: retrain signals of another embedder (one version per retrain)."""
        self.pipeline()
        assert self._signals is not None
        self._signals.retrain_stale()

    def accept_feedback(self, records: list[Feedback]) -> int:
        """Store delayed feedback; join it with its events where they are stored."""
        self.pipeline()
        assert self._client is not None
        rows = feedback_rows(records, self._ids, self._comments)
        return record_feedback(self._client, rows)

    def accept_signal(self, payload: bytes) -> str:
        """Store a signal published on the control topic; apply it from the next batch."""
        self.pipeline()
        assert self._signals is not None
        published = PublishedSignal.from_json(payload)
        stored = self._signals.add(published.fitted, author=published.author)
        return f"{stored.name} v{stored.version}"


def make_worker_app(
    settings: Settings,
    build: Callable[[], Parts] | None = None,
    health: WorkerHealth | None = None,
    metrics: WorkerMetrics | None = None,
    sampler: Sampler | None = None,
) -> Any:
    """The faust worker app.

    ``build`` supplies shared parts instead of building its own (``serve --all``: their writer
    counts for ``metrics``, and the server refreshes the storage gauges); ``health`` fails when
    storage is misconfigured (for a health endpoint). Without ``metrics`` and with a health
    port, the worker has its own registry, with the storage gauges
    (:mod:`telltale.storage_gauges`), on ``/metrics`` there; without either, no metrics.
    ``sampler`` is the one the worker's pipeline draws with (by default :func:`make_sampler`'s,
    given to the pipeline this function builds; with ``build``, the caller's, or none): its rate
    is on the health pages and the overload control (``TELLTALE_SAMPLE_MAX_LAG_S``) sets its
    load factor.
    """
    kafka = settings.kafka
    # A wrong password stops the worker here, before it joins the group: nothing is consumed.
    check_credentials(kafka.bootstrap, kafka.security)
    check_export(settings.otel_export, kafka)  # so does an export onto the worker's own topics
    worker = settings.worker
    if sampler is None and build is None:
        sampler = make_sampler(settings.sampling)
    refresh: Callable[[], None] | None = None
    if metrics is None and worker.health_port:
        metrics = WorkerMetrics(cap=VersionCap(worker.metrics_max_versions))
        parts = _WorkerParts(settings, build, metrics, sampler)
        gauges = StorageGauges(metrics.registry, metrics.counters.cap, settings.audit,
                               worker.metrics_rate_window_s)  # fmt: skip

        def refresh_gauges() -> None:
            parts.refresh_gauges(gauges)

        refresh = refresh_gauges
    else:
        parts = _WorkerParts(settings, build, metrics, sampler)
    return build_app(
        kafka,
        worker,
        parts.pipeline,
        parts.accept_signal,
        parts.record_dead_letters,
        health=health,
        maintenance=parts.maintain,
        accept_feedback=parts.accept_feedback,
        otlp_mapping=settings.otlp,
        redact_payload=free_text_policy(settings),
        metrics=metrics,
        refresh_metrics=refresh,
        sampler=sampler,
        overload=settings.overload,
    )
