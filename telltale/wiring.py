"""Wiring: build the parts of telltale from settings. The only place that knows all packages."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from signals.images import ImagePolicy
from signals.open_clip_embedder import EmbedderConfig, OpenClipEmbedder
from storage.client import connect
from storage.dead_letters import DeadLetterRow, record_dead_letters
from storage.feedback import FeedbackRow, record_feedback
from storage.migrate import migrate
from storage.writer import ClickHouseWriter
from streams.dead_letter import DeadLetter
from streams.feedback import Feedback
from streams.kafka_security import KafkaSecurity, check_credentials
from streams.otlp import OtlpMapping
from streams.pipeline import Pipeline
from streams.signal_store import LiveSignals, PublishedSignal, retrainer, save_fitted
from streams.worker import WorkerConfig, build_app
from telltale.settings import (
    ClickHouseSettings,
    EmbedderSettings,
    ImagesSettings,
    KafkaSettings,
    Settings,
)

if TYPE_CHECKING:
    from clickhouse_connect.driver.client import Client

__all__ = [
    "feedback_rows",
    "image_policy",
    "kafka_security",
    "make_client",
    "make_embedder",
    "make_pipeline",
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


def make_pipeline(
    settings: Settings, client: Client | None = None, *, worker: bool = False
) -> Pipeline:
    client = client or make_client(settings.clickhouse)
    return _pipeline_and_signals(settings, client, worker=worker)[0]


def _pipeline_and_signals(
    settings: Settings, client: Client, *, worker: bool
) -> tuple[Pipeline, LiveSignals]:
    embedder = make_embedder(settings.embedder)
    signals = LiveSignals(
        client, embedder.id, settings.worker.signal_refresh_s, retrain=retrainer(client, embedder)
    )
    policy = image_policy(settings.images, worker=worker)
    return Pipeline(embedder, signals, ClickHouseWriter(client), policy), signals


class _WorkerParts:
    """What one worker process builds once, on its pipeline thread: client, model, signals."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._pipeline: Pipeline | None = None
        self._client: Client | None = None
        self._signals: LiveSignals | None = None

    def pipeline(self) -> Pipeline:
        if self._pipeline is None:
            self._client = make_client(self._settings.clickhouse)
            self._pipeline, self._signals = _pipeline_and_signals(
                self._settings, self._client, worker=True
            )
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


def make_worker_app(settings: Settings) -> Any:
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
    parts = _WorkerParts(settings)
    return build_app(config, parts.pipeline, parts.accept_signal, parts.record_dead_letters,
                     parts.accept_feedback)  # fmt: skip
