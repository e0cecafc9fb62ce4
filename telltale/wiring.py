"""Wiring: build the parts of telltale from settings. The only place that knows all packages."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from signals.cache import EmbeddingCache, LruVectorCache
from signals.embedders import FieldEmbedders
from signals.groups import SignalGroup, load_groups
from signals.images import ImagePolicy
from signals.open_clip_embedder import EmbedderConfig, OpenClipEmbedder
from storage.client import connect
from storage.dead_letters import DeadLetterRow, record_dead_letters
from storage.embedding_cache import ClickHouseVectorCache
from storage.feedback import FeedbackRow, record_feedback
from storage.groups import GroupRow, save_group_rows
from storage.migrate import migrate
from storage.slices import top_slice_values
from storage.writer import ClickHouseWriter
from streams.batch_handler import WorkerHealth
from streams.dead_letter import DeadLetter
from streams.feedback import Feedback
from streams.kafka_security import KafkaSecurity, check_credentials
from streams.otlp import OtlpMapping
from streams.pipeline import Pipeline
from streams.signal_store import LiveSignals, PublishedSignal, retrainer, save_fitted
from streams.slices import SliceConfig, Slicer
from streams.worker import WorkerConfig, build_app
from telltale.settings import (
    ClickHouseSettings,
    EmbedderSettings,
    EmbeddingCacheSettings,
    GroupSettings,
    ImagesSettings,
    KafkaSettings,
    Settings,
    SliceSettings,
    TextEmbedderSettings,
)

if TYPE_CHECKING:
    from clickhouse_connect.driver.client import Client

__all__ = [
    "Parts",
    "feedback_rows",
    "image_policy",
    "kafka_security",
    "make_cache",
    "make_client",
    "make_embedder",
    "make_embedders",
    "make_groups",
    "make_parts",
    "make_pipeline",
    "make_slicer",
    "make_worker_app",
]


def kafka_security(settings: KafkaSettings) -> KafkaSecurity:
    return KafkaSecurity(
        protocol=settings.security_protocol, mechanism=settings.sasl_mechanism,
        username=settings.sasl_username, password=settings.sasl_password,
        cafile=settings.ssl_cafile, certfile=settings.ssl_certfile,
        keyfile=settings.ssl_keyfile, key_password=settings.ssl_key_password,
        check_hostname=settings.ssl_check_hostname,
    )  # fmt: skip


def image_policy(settings: ImagesSettings, *, worker: bool) -> ImagePolicy:
    """The image policy of the Kafka worker (``worker=True``: local paths only if
    ``TELLTALE_IMAGES_WORKER_LOCAL_FILES``) or of replay and the CLI."""
    stores = frozenset(s.lower() for s in settings.object_stores)
    return ImagePolicy(
        max_bytes=settings.max_bytes,
        allowed_schemes=frozenset({"file", "data", "https"}) | stores,
        allowed_hosts=frozenset(h.lower() for h in settings.allowed_hosts),
        fetch_timeout_s=settings.fetch_timeout_s,
        allow_local_files=settings.worker_local_files if worker else settings.local_files,
        allowed_buckets=frozenset(settings.buckets),
        storage_options=(
            {"s3": {"endpoint_url": settings.s3_endpoint_url}} if settings.s3_endpoint_url else {}
        ),
    )


def feedback_rows(records: list[Feedback]) -> list[FeedbackRow]:
    return [
        FeedbackRow(r.feedback_id, r.event_id, r.score, r.rating, r.kind, r.user_id,
                    r.timestamp, r.comment)
        for r in records
    ]  # fmt: skip


def make_client(settings: ClickHouseSettings, *, migrated: bool = True) -> Client:
    client = connect(settings.dsn, settings.password, settings.database)
    if migrated:
        migrate(client, cluster=settings.cluster)
    return client


def make_embedder(settings: EmbedderSettings) -> OpenClipEmbedder:
    return OpenClipEmbedder(EmbedderConfig(
        model_name=settings.model_name, pretrained=settings.pretrained,
        checkpoint_path=settings.checkpoint_path, device=settings.device,
        threads=settings.threads, batch_size=settings.batch_size, seed=settings.seed,
        quantize=settings.quantize,
    ))  # fmt: skip


def make_slicer(settings: SliceSettings, client: Client) -> Slicer:
    """The slicer, its cap seeded with each key's most frequent stored values."""
    config = SliceConfig(keys=settings.keys, max_values=settings.max_values)
    return Slicer(config, top_slice_values(client, list(config.keys), config.max_values))


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
    image: EmbedderSettings, text: TextEmbedderSettings | None = None
) -> FieldEmbedders:
    """open_clip for images; the text model for text fields (or CLIP's text tower)."""
    clip = make_embedder(image)
    text = text or TextEmbedderSettings()
    if text.uses_open_clip:
        return FieldEmbedders(clip)
    from signals.text_embedder import SentenceEmbedder, TextEmbedderConfig

    return FieldEmbedders(clip, SentenceEmbedder(TextEmbedderConfig(
        model=text.model, window_tokens=text.window_tokens, stride_tokens=text.stride_tokens,
        max_windows=text.max_windows, units=text.units, min_unit_tokens=text.min_unit_tokens,
        device=text.device, threads=text.threads,
        batch_size=text.batch_size,
    )))  # fmt: skip


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


def make_parts(
    settings: Settings,
    client: Client,
    writer: ClickHouseWriter | None = None,
    *,
    worker: bool = False,
) -> Parts:
    embedders = make_embedders(settings.embedder, settings.text_embedder)
    signals = LiveSignals(
        client, embedders.ids, settings.worker.signal_refresh_s,
        retrain=retrainer(client, embedders),
    )  # fmt: skip
    pipeline = Pipeline(
        embedders, signals, writer or ClickHouseWriter(client),
        image_policy(settings.images, worker=worker), cache=make_cache(settings.cache, client),
        slicer=make_slicer(settings.slices, client), groups=make_groups(settings.groups, client),
    )  # fmt: skip
    return Parts(client, embedders, signals, pipeline)


class _WorkerParts:
    """What one worker process builds once, on its pipeline thread: client, model, signals.

    ``build`` replaces the default (a client from settings, then :func:`make_parts`).
    """

    def __init__(self, settings: Settings, build: Callable[[], Parts] | None = None) -> None:
        self._settings = settings
        self._build = build
        self._pipeline: Pipeline | None = None
        self._client: Client | None = None
        self._signals: LiveSignals | None = None

    def pipeline(self) -> Pipeline:
        if self._pipeline is None:
            parts = (
                self._build()
                if self._build is not None
                else make_parts(self._settings, make_client(self._settings.clickhouse), worker=True)
            )
            # Signals of another embedder are retrained before the first batch (this runs on
            # the pipeline thread, ahead of any batch); later ones by `maintain`, between batches.
            parts.signals.retrain_stale()
            self._client, self._signals = parts.client, parts.signals
            self._pipeline = parts.pipeline
        return self._pipeline

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
        return record_feedback(self._client, feedback_rows(records))

    def accept_signal(self, payload: bytes) -> str:
        """Store a signal published on the control topic; apply it from the next batch."""
        self.pipeline()
        assert self._client is not None and self._signals is not None
        published = PublishedSignal.from_json(payload)
        stored = save_fitted(self._client, published.fitted, author=published.author)
        self._signals.invalidate()
        return f"{stored.name} v{stored.version}"


def make_worker_app(
    settings: Settings,
    build: Callable[[], Parts] | None = None,
    health: WorkerHealth | None = None,
) -> Any:
    """The faust worker app.

    ``build`` supplies shared parts instead of building its own (``serve --all``); ``health``
    fails when storage is misconfigured (for a health endpoint).
    """
    config = WorkerConfig(
        bootstrap=settings.kafka.bootstrap,
        topic=settings.kafka.topic,
        dlq_topic=settings.kafka.dlq_topic,
        group_id=settings.kafka.group_id,
        partitions=settings.kafka.partitions,
        batch_size=settings.worker.batch_size,
        batch_timeout_s=settings.worker.batch_timeout_s,
        session_timeout_s=settings.kafka.session_timeout_s,
        max_payload_bytes=settings.worker.max_payload_bytes,
        retry_initial_s=settings.worker.retry_initial_s,
        retry_max_s=settings.worker.retry_max_s,
        shutdown_timeout_s=settings.worker.shutdown_timeout_s,
        control_topic=settings.kafka.control_topic,
        otlp_topics=tuple(settings.kafka.otlp_topics),
        otlp_mapping=OtlpMapping(
            model_version_keys=tuple(settings.otlp.model_version_from),
            default_version=settings.otlp.default_model_version,
        ),
        feedback_topic=settings.kafka.feedback_topic or None,
        security=kafka_security(settings.kafka),
    )
    # A wrong password stops the worker here, before it joins the group: nothing is consumed.
    check_credentials(config.bootstrap, config.security)
    parts = _WorkerParts(settings, build)
    return build_app(
        config,
        parts.pipeline,
        parts.accept_signal,
        parts.record_dead_letters,
        health=health,
        maintenance=parts.maintain,
        accept_feedback=parts.accept_feedback,
    )
