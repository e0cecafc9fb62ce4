"""All settings of telltale: one nested pydantic :class:`Settings`, read from the environment.

Each package declares its own typed configuration as a plain pydantic model and reads no
environment: ``streams.settings.KafkaConfig`` and ``WorkerConfig``, ``streams.otlp.OtlpMapping``,
``streams.slices.SliceConfig``, ``signals.open_clip_embedder.EmbedderConfig``,
``signals.text_embedder.TextEmbedderConfig``, ``alerts.settings.MonitorSettings`` and
``NotifySettings``, ``dashboards.settings.GrafanaSettings``. This module binds each to its
environment variables by subclassing it together with pydantic-settings' ``BaseSettings``
(``KafkaSettings(BaseSettings, KafkaConfig)`` reads ``TELLTALE_KAFKA_*``), so every field is
declared once; sections only the composition root uses (ClickHouse, cache, signal quality,
images, groups, serve, retention) are declared here.

Nothing is read at import time: the CLI's callback calls :func:`load_settings` once per
invocation and commands pass its sections down as objects. Every field can be set with an
environment variable named after its section's prefix and the field, for example
``TELLTALE_CLICKHOUSE_DSN``, ``TELLTALE_EMBEDDER_MODEL_NAME`` or ``TELLTALE_MONITOR_INTERVAL_S``.
Secrets are :class:`~pydantic.SecretStr`: never printed or logged.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, SecretStr, ValidationError, field_validator
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from alerts import LEGACY_PREFIXES, MonitorSettings, NotifySettings
from dashboards import GrafanaSettings
from signals import (
    DEFAULT_MAX_DECODED_PIXELS,
    DEFAULT_REDACTED_ENTITIES,
    PII_ENTITIES,
    EmbedderConfig,
    TextEmbedderConfig,
)
from storage import MAX_RETENTION_DAYS, PriceTable
from streams import (
    KafkaConfig,
    OtelExportConfig,
    OtlpMapping,
    SliceConfig,
    WorkerConfig,
    comma_list,
)

__all__ = [
    "AuditSettings",
    "ClickHouseSettings",
    "EmbedderSettings",
    "EmbeddingCacheSettings",
    "GrafanaEnv",
    "GroupSettings",
    "ImagesSettings",
    "JudgeSettings",
    "KafkaSettings",
    "MonitorEnv",
    "NotifyEnv",
    "OtelExportSettings",
    "OtlpSettings",
    "RetentionSettings",
    "ServeSettings",
    "Settings",
    "SettingsError",
    "SignalQualitySettings",
    "SliceSettings",
    "TextEmbedderSettings",
    "UsageSettings",
    "WorkerSettings",
    "load_settings",
]

CommaList = Annotated[tuple[str, ...], NoDecode]
"""A list setting written ``a,b,c`` in the environment (or a JSON array)."""


class SettingsError(ValueError):
    """An environment variable holds a value its setting does not accept."""


# --- the packages' models, bound to the environment -------------------------------------------


class KafkaSettings(BaseSettings, KafkaConfig):
    """``TELLTALE_KAFKA_*``: broker, topics, consumer group, SASL and TLS."""

    # No JSON decoding: TELLTALE_KAFKA_OTLP_TOPICS is written a,b (or as a JSON array).
    model_config = SettingsConfigDict(
        env_prefix="TELLTALE_KAFKA_", extra="ignore", enable_decoding=False
    )


class WorkerSettings(BaseSettings, WorkerConfig):
    """``TELLTALE_WORKER_*``: batching, back-off and shutdown of the stream worker."""

    model_config = SettingsConfigDict(env_prefix="TELLTALE_WORKER_", extra="ignore")


class EmbedderSettings(BaseSettings, EmbedderConfig):
    """``TELLTALE_EMBEDDER_*``: the open_clip model, its weights and device."""

    model_config = SettingsConfigDict(env_prefix="TELLTALE_EMBEDDER_", extra="ignore")


class TextEmbedderSettings(BaseSettings, TextEmbedderConfig):
    """``TELLTALE_TEXT_EMBEDDER_*``: the text model and its windows."""

    model_config = SettingsConfigDict(env_prefix="TELLTALE_TEXT_EMBEDDER_", extra="ignore")


class OtlpSettings(BaseSettings, OtlpMapping):
    """``TELLTALE_OTLP_*``: how OpenTelemetry GenAI spans map onto events where the
    conventions leave a choice."""

    # No JSON decoding: TELLTALE_OTLP_MODEL_VERSION_FROM is written a,b (or as a JSON array).
    model_config = SettingsConfigDict(
        env_prefix="TELLTALE_OTLP_", extra="ignore", enable_decoding=False
    )


class OtelExportSettings(BaseSettings, OtelExportConfig):
    """``TELLTALE_OTEL_EXPORT`` and ``TELLTALE_OTEL_EXPORT_*``: scores out as OpenTelemetry
    ``gen_ai.evaluation.result`` events."""

    model_config = SettingsConfigDict(env_prefix="TELLTALE_OTEL_", extra="ignore")


class SliceSettings(BaseSettings, SliceConfig):
    """``TELLTALE_SLICE_*``: slice keys (``TELLTALE_SLICE_KEYS=locale,customer_tier``; ``app``
    is always one) and the cap on values per key."""

    # No JSON decoding: TELLTALE_SLICE_KEYS is written a,b (or as a JSON array).
    model_config = SettingsConfigDict(
        env_prefix="TELLTALE_SLICE_", extra="ignore", enable_decoding=False
    )


class _LegacyDetectorEnv(EnvSettingsSource):
    """The detector settings' older names, ``TELLTALE_MONITOR_SPIKE_*``, ``_CUSUM_*`` and
    ``_DRIFT_*`` (``alerts.LEGACY_PREFIXES``): read after, and overridden by, the current ones."""

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        for prefix, legacy in LEGACY_PREFIXES.items():
            if field_name.startswith(prefix):
                name = f"{self.env_prefix}{legacy}{field_name[len(prefix) :]}"
                value = self.env_vars.get(name if self.case_sensitive else name.lower())
                return value, field_name, self.field_is_complex(field)
        return None, field_name, False


class MonitorEnv(BaseSettings, MonitorSettings):
    """``TELLTALE_MONITOR_*``: the monitor's schedule and its detectors."""

    model_config = SettingsConfigDict(env_prefix="TELLTALE_MONITOR_", extra="ignore")

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        legacy = _LegacyDetectorEnv(settings_cls)
        return init_settings, env_settings, legacy, dotenv_settings, file_secret_settings


class NotifyEnv(BaseSettings, NotifySettings):
    """``TELLTALE_NOTIFY_*``: the webhook notifier."""

    model_config = SettingsConfigDict(env_prefix="TELLTALE_NOTIFY_", extra="ignore")


class GrafanaEnv(BaseSettings, GrafanaSettings):
    """``TELLTALE_GRAFANA_*``: where dashboards and alert rules are pushed."""

    model_config = SettingsConfigDict(env_prefix="TELLTALE_GRAFANA_", extra="ignore")


# --- sections only the composition root uses ---------------------------------------------------


class ClickHouseSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TELLTALE_CLICKHOUSE_", extra="ignore")

    dsn: str = Field(
        default="chdb://./.telltale/db",
        description="chdb://PATH (embedded engine), http(s)://host:port or clickhouse://host",
    )
    password: SecretStr | None = None
    database: str | None = None
    cluster: str | None = Field(
        default=None,
        description="ClickHouse cluster name: replicated shards behind Distributed tables",
    )


class EmbeddingCacheSettings(BaseSettings):
    """Content hash → vectors: an in-process LRU, then a table shared by every worker."""

    model_config = SettingsConfigDict(env_prefix="TELLTALE_EMBEDDING_CACHE_", extra="ignore")

    enabled: bool = True
    memory_entries: int = Field(default=20_000, ge=0, description="LRU size (texts)")
    shared: bool = Field(default=True, description="also use the ClickHouse embedding_cache")


class SignalQualitySettings(BaseSettings):
    """When ``telltale signals add`` refuses a signal as degenerate (``--force`` keeps it)."""

    model_config = SettingsConfigDict(env_prefix="TELLTALE_SIGNALS_", extra="ignore")

    min_f1_margin: float = Field(
        default=0.1, ge=0, le=1,
        description="cross-validated F1 must exceed the F1 of flagging everything by this",
    )  # fmt: skip
    max_flag_share: float = Field(
        default=0.5, gt=0, le=1,
        description="largest share of the field's stored events the threshold may flag",
    )  # fmt: skip
    flag_share_sample: int = Field(
        default=20_000, ge=100, description="stored events scored to estimate the share"
    )


class AuditSettings(BaseSettings):
    """Audits of signals and the corrected rates read from them (``telltale signals audit``)."""

    model_config = SettingsConfigDict(env_prefix="TELLTALE_AUDIT_", extra="ignore")

    default_labels: int = Field(default=80, ge=1, le=10_000, description="labels per audit")
    max_age_days: float = Field(
        default=30, gt=0, description="a signal with no audit label for longer is stale"
    )
    min_version_labels: int = Field(
        default=20, ge=2,
        description="labels a product version needs for its own error estimate (else pooled)",
    )  # fmt: skip
    use_judge_labels: bool = Field(
        default=False,
        description="let LLM-judge labels enter the correction (off until agreement is measured)",
    )


class JudgeSettings(BaseSettings):
    """An OpenAI-compatible chat-completions endpoint that labels audit samples (optional)."""

    model_config = SettingsConfigDict(env_prefix="TELLTALE_JUDGE_", extra="ignore")

    url: str | None = Field(
        default=None, description="chat completions URL, or a base URL ending in /v1"
    )
    model: str | None = None
    api_key: SecretStr | None = None
    timeout_s: float = Field(default=30.0, gt=0)
    max_attempts: int = Field(default=4, ge=1, le=20)


class RetentionSettings(BaseSettings):
    """``TELLTALE_RETENTION_<TABLE>_DAYS``: days each table of per-event data keeps its rows
    (``0``: for ever), applied as ClickHouse TTLs by ``telltale migrate``. Content and vectors
    go first; scores, which carry no content, last. The per-minute aggregates
    have no TTL: they outlive the events they count."""

    model_config = SettingsConfigDict(env_prefix="TELLTALE_RETENTION_", extra="ignore")

    events_days: int = Field(
        default=30, ge=0, le=MAX_RETENTION_DAYS,
        description="events: prompts, outputs, attributes, user and session ids",
    )  # fmt: skip
    embeddings_days: int = Field(
        default=30, ge=0, le=MAX_RETENTION_DAYS,
        description="embeddings of prompts and outputs, with their window vectors",
    )  # fmt: skip
    embedding_cache_days: int = Field(
        default=30, ge=0, le=MAX_RETENTION_DAYS,
        description="the shared cache of vectors by content hash",
    )  # fmt: skip
    signal_scores_days: int = Field(
        default=400, ge=0, le=MAX_RETENTION_DAYS,
        description="each event's score per signal (with its slice values): rates by slice, "
        "localisation, backtests over a year and a season",
    )  # fmt: skip
    dead_letters_days: int = Field(
        default=14, ge=0, le=MAX_RETENTION_DAYS,
        description="rejected messages and why (the reason may quote the payload)",
    )  # fmt: skip
    feedback_days: int = Field(
        default=90, ge=0, le=MAX_RETENTION_DAYS,
        description="user feedback with user ids and free-text comments (its negative rate "
        "is kept in signal_scores)",
    )  # fmt: skip
    audit_samples_days: int = Field(
        default=400, ge=0, le=MAX_RETENTION_DAYS,
        description="events drawn for audits, with their strata",
    )  # fmt: skip
    audit_labels_days: int = Field(
        default=400, ge=0, le=MAX_RETENTION_DAYS,
        description="audit answers (event id, label, labeller): the signals' error estimates",
    )  # fmt: skip
    discovered_clusters_days: int = Field(
        default=30, ge=0, le=MAX_RETENTION_DAYS,
        description="discovered failure-mode clusters with example event ids and texts",
    )  # fmt: skip

    def days(self) -> dict[str, int]:
        """Table name -> days kept (``0``: for ever), as ``storage.migrate`` takes them."""
        return {name.removesuffix("_days"): int(days) for name, days in self}


class GroupSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TELLTALE_SIGNAL_", extra="ignore")

    groups_file: Path | None = Field(
        default=None, description="YAML file of signal groups (TELLTALE_SIGNAL_GROUPS_FILE)"
    )


class ServeSettings(BaseSettings):
    """``telltale serve``: the guardrail API (and, with ``--all``, the live report)."""

    model_config = SettingsConfigDict(env_prefix="TELLTALE_SERVE_", extra="ignore")

    host: str = Field(default="127.0.0.1", description="interface to listen on")
    port: int = Field(default=8000, ge=0, le=65535)
    api_keys: SecretStr | None = Field(
        default=None,
        description="comma-separated API keys; when set, every /v1 call and the report page "
        "need one (Authorization: Bearer KEY, X-API-Key: KEY, or basic auth with KEY as the "
        "password). Unset: no authentication (the default host is 127.0.0.1)",
    )
    max_body_bytes: int = Field(
        default=4 * 1024 * 1024, ge=1024, description="larger request bodies get 413"
    )
    batch_max_size: int = Field(
        default=64, ge=1, description="most requests scored by one model call (1: no batching)"
    )
    batch_max_wait_ms: float = Field(
        default=5.0, ge=0, description="how long a request waits for others to join its batch"
    )
    record_to: Literal["auto", "kafka", "storage"] = Field(
        default="auto",
        description="where record=true sends scored events: 'storage' writes them directly "
        "(embedded chDB), 'kafka' to the worker's topic; 'auto' picks storage for chdb:// DSNs",
    )
    shutdown_timeout_s: float = Field(
        default=30.0, gt=0, description="how long SIGTERM waits for requests in flight"
    )
    header_timeout_s: float = Field(
        default=10.0,
        gt=0,
        description="a connection that has not sent a complete request head (request line and "
        "headers) this long after it opened, or after its previous response, is closed: slow "
        "senders cannot hold connections open",
    )
    docs: bool = Field(
        default=False,
        description="serve /docs and /redoc (Swagger UI and ReDoc, which load their scripts from "
        "a public CDN); /openapi.json is always served",
    )
    protect_ops: bool = Field(
        default=False,
        description="require an API key on /readyz and /metrics too (/healthz stays open for "
        "liveness probes); needs TELLTALE_SERVE_API_KEYS",
    )

    def key_list(self) -> list[bytes]:
        """The configured keys, as bytes for constant-time comparison."""
        if self.api_keys is None:
            return []
        raw = self.api_keys.get_secret_value()
        return [k.strip().encode() for k in raw.split(",") if k.strip()]


class ImagesSettings(BaseSettings):
    """Where event images may be read from, and how much of them."""

    model_config = SettingsConfigDict(env_prefix="TELLTALE_IMAGES_", extra="ignore")

    allowed_hosts: CommaList = Field(
        default=(),
        description="https hosts images may be fetched from (exact names, or *.example.com)",
    )
    object_stores: CommaList = Field(
        default=("s3", "gs", "az"),
        description="object-store schemes read through fsspec with the providers' credentials",
    )
    buckets: CommaList = Field(
        default=(), description="only these buckets/containers (empty: any the credentials reach)"
    )
    max_bytes: int = Field(default=20 * 1024 * 1024, ge=1024)
    max_decoded_pixels: int = Field(
        default=DEFAULT_MAX_DECODED_PIXELS,
        ge=224 * 224,
        description="larger images are scaled down to this many pixels while they are decoded "
        "(the models see 224x224): bounds the memory a small file that decodes to a huge "
        "picture can take",
    )
    fetch_timeout_s: float = Field(default=5.0, gt=0)
    worker_local_files: bool = Field(
        default=False,
        description="let the Kafka worker read local file paths named by events (off: an "
        "event must not make the worker read its own disk)",
    )
    local_files: bool = Field(default=True, description="local file paths in replay and the CLI")
    s3_endpoint_url: str | None = Field(
        default=None, description="S3-compatible endpoint (MinIO, Ceph, R2); default AWS"
    )

    @field_validator("allowed_hosts", "object_stores", "buckets", mode="before")
    @classmethod
    def _split(cls, value: object) -> object:
        return comma_list(value)


class PrivacySettings(BaseSettings):
    """``TELLTALE_PRIVACY_*``: what is stored about people."""

    model_config = SettingsConfigDict(
        env_prefix="TELLTALE_PRIVACY_", extra="ignore", enable_decoding=False
    )

    prompt_text: Literal["raw", "redacted", "drop"] = Field(
        default="redacted",
        description="how prompts are stored: as sent, with personal data replaced by typed "
        "placeholders (<EMAIL_ADDRESS>), or not at all; signals always score the raw text",
    )
    output_text: Literal["raw", "redacted", "drop"] = Field(
        default="redacted", description="how answers are stored (as prompt_text)"
    )
    attributes: Literal["raw", "redacted", "drop"] = Field(
        default="redacted", description="how free-text attribute values are stored"
    )
    raw_attributes: CommaList = Field(
        default=("locale", "customer_tier", "region", "plan", "channel", "experiment"),
        description="attribute keys whose values are stored as sent (slice keys, tiers)",
    )
    entities: CommaList = Field(
        default=DEFAULT_REDACTED_ENTITIES,
        description="what 'redacted' replaces (Presidio entity types)",
    )
    store_windows: bool = Field(
        default=True,
        description="store the window vectors of long texts beside their document vector; "
        "false keeps the document vector only (less to reveal; back-fills of long answers then "
        "score the document vector instead of the windows the live path scored)",
    )
    min_slice_users: int = Field(
        default=0,
        ge=0,
        description="slices with fewer distinct users are merged into 'other' in rates --by, "
        "dashboards and the report (0: off); a merged 'other' still under it is withheld",
    )
    id_key: SecretStr | None = Field(
        default=None,
        description="secret key (16+ characters): user and session ids are stored as keyed "
        "hashes (HMAC-SHA-256), so units, slices and joins work and ids cannot be reversed",
    )

    @field_validator("raw_attributes", "entities", mode="before")
    @classmethod
    def _split(cls, value: object) -> object:
        return comma_list(value)

    @field_validator("entities")
    @classmethod
    def _known_entities(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        unknown = sorted(set(value) - PII_ENTITIES)
        if unknown:
            raise ValueError(f"unknown entities {', '.join(unknown)}; known: "
                             f"{', '.join(sorted(PII_ENTITIES))}")  # fmt: skip
        return value

    @field_validator("id_key")
    @classmethod
    def _long_enough(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value()) < 16:
            raise ValueError("must be at least 16 characters (it is a secret key, not a salt)")
        return value


class UsageSettings(BaseSettings):
    """``TELLTALE_USAGE_*``: what tokens cost. Costs are computed when read, never stored."""

    model_config = SettingsConfigDict(
        env_prefix="TELLTALE_USAGE_", extra="ignore", enable_decoding=False
    )

    prices: PriceTable = Field(
        default_factory=PriceTable,
        description="price per 1M input and output tokens: 'model=in:out,...' for every "
        "version of a model, or a JSON list of {model, model_version, input_per_1m, "
        "output_per_1m} for per-version prices; unpriced models show tokens without cost",
    )

    @field_validator("prices", mode="before")
    @classmethod
    def _parse(cls, value: object) -> object:
        return PriceTable.parse(value) if isinstance(value, str) else value


class Settings(BaseModel):
    """All settings, one section per system; built once per CLI invocation.

    ``Settings()`` reads every section from the environment (each default factory does);
    :func:`load_settings` does the same and reports every bad variable in one
    :class:`SettingsError`. A section may also be given as a plain model (tests, overrides).
    """

    kafka: KafkaConfig = Field(default_factory=KafkaSettings)
    clickhouse: ClickHouseSettings = Field(default_factory=ClickHouseSettings)
    embedder: EmbedderConfig = Field(default_factory=EmbedderSettings)
    text_embedder: TextEmbedderConfig = Field(default_factory=TextEmbedderSettings)
    cache: EmbeddingCacheSettings = Field(default_factory=EmbeddingCacheSettings)
    signal_quality: SignalQualitySettings = Field(default_factory=SignalQualitySettings)
    images: ImagesSettings = Field(default_factory=ImagesSettings)
    worker: WorkerConfig = Field(default_factory=WorkerSettings)
    slices: SliceConfig = Field(default_factory=SliceSettings)
    groups: GroupSettings = Field(default_factory=GroupSettings)
    audit: AuditSettings = Field(default_factory=AuditSettings)
    judge: JudgeSettings = Field(default_factory=JudgeSettings)
    retention: RetentionSettings = Field(default_factory=RetentionSettings)
    serve: ServeSettings = Field(default_factory=ServeSettings)
    otlp: OtlpMapping = Field(default_factory=OtlpSettings)
    otel_export: OtelExportConfig = Field(default_factory=OtelExportSettings)
    monitor: MonitorSettings = Field(default_factory=MonitorEnv)
    notify: NotifySettings = Field(default_factory=NotifyEnv)
    grafana: GrafanaSettings = Field(default_factory=GrafanaEnv)
    privacy: PrivacySettings = Field(default_factory=PrivacySettings)
    usage: UsageSettings = Field(default_factory=UsageSettings)

    def with_overrides(
        self, *, clickhouse: str | None = None, kafka: str | None = None
    ) -> Settings:
        """These settings with the command line's ``--clickhouse DSN`` / ``--kafka HOST:PORT``."""
        update: dict[str, Any] = {}
        if clickhouse:
            update["clickhouse"] = self.clickhouse.model_copy(update={"dsn": clickhouse})
        if kafka:
            update["kafka"] = self.kafka.model_copy(update={"bootstrap": kafka})
        return self.model_copy(update=update) if update else self


_SECTIONS: dict[str, type[BaseSettings]] = {
    "kafka": KafkaSettings,
    "clickhouse": ClickHouseSettings,
    "embedder": EmbedderSettings,
    "text_embedder": TextEmbedderSettings,
    "cache": EmbeddingCacheSettings,
    "signal_quality": SignalQualitySettings,
    "images": ImagesSettings,
    "worker": WorkerSettings,
    "slices": SliceSettings,
    "groups": GroupSettings,
    "audit": AuditSettings,
    "judge": JudgeSettings,
    "retention": RetentionSettings,
    "serve": ServeSettings,
    "otlp": OtlpSettings,
    "otel_export": OtelExportSettings,
    "monitor": MonitorEnv,
    "notify": NotifyEnv,
    "grafana": GrafanaEnv,
    "privacy": PrivacySettings,
    "usage": UsageSettings,
}


def load_settings() -> Settings:
    """Every section from the environment. Bad values raise one :class:`SettingsError` that
    names each offending variable (never its value: it may be a secret)."""
    sections: dict[str, BaseSettings] = {}
    problems: list[str] = []
    for name, section in _SECTIONS.items():
        try:
            sections[name] = section()
        except ValidationError as exc:
            prefix = str(section.model_config.get("env_prefix", ""))
            for error in exc.errors():
                where = f"{prefix}{str(error['loc'][0]).upper()}" if error["loc"] else name
                problems.append(f"{where}: {error['msg']}")
    if problems:
        raise SettingsError("invalid settings: " + "; ".join(problems))
    return Settings.model_validate(sections)
