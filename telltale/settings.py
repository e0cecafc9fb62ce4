"""Settings, one pydantic-settings class per external system, read from the environment.

Nothing is read at import time: the CLI builds a :class:`Settings` once and passes its parts
down. Every field can be set with an environment variable named after its prefix and field,
for example ``TELLTALE_CLICKHOUSE_DSN`` or ``TELLTALE_EMBEDDER_MODEL_NAME``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

__all__ = [
    "ClickHouseSettings",
    "EmbedderSettings",
    "GroupSettings",
    "KafkaSettings",
    "Settings",
    "SliceSettings",
    "WorkerSettings",
]


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
    ) -> None:
        self.kafka = kafka or KafkaSettings()
        self.clickhouse = clickhouse or ClickHouseSettings()
        self.embedder = embedder or EmbedderSettings()
        self.worker = worker or WorkerSettings()
        self.slices = slices or SliceSettings()
        self.groups = groups or GroupSettings()
