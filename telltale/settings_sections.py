"""The settings sections only the composition root uses: ClickHouse, the embedding cache, signal
quality, audits, the judge, retention, groups, serving, images, privacy and usage prices.
:mod:`telltale.settings` assembles them with the packages' own models into :class:`Settings`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from signals import DEFAULT_MAX_DECODED_PIXELS, DEFAULT_REDACTED_ENTITIES, PII_ENTITIES
from storage import MAX_RETENTION_DAYS, PriceTable
from streams import comma_list

__all__ = [
    "AuditSettings",
    "ClickHouseSettings",
    "CommaList",
    "EmbeddingCacheSettings",
    "GroupSettings",
    "ImagesSettings",
    "JudgeSettings",
    "PrivacySettings",
    "RetentionSettings",
    "ServeSettings",
    "SignalQualitySettings",
    "UsageSettings",
]

CommaList = Annotated[tuple[str, ...], NoDecode]
"""A list setting written ``a,b,c`` in the environment (or a JSON array)."""


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
