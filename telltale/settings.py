"""All settings of telltale: one nested pydantic :class:`Settings`, read from the environment.

Each package declares its own typed configuration as a plain pydantic model and reads no
environment: ``streams.settings.KafkaConfig`` and ``WorkerConfig``, ``streams.otlp.OtlpConfig``,
``streams.overload.OverloadConfig``, ``streams.slices.SliceConfig``,
``streams.sampling.SamplingConfig``, ``signals.open_clip_embedder.EmbedderConfig``,
``signals.text_embedder.TextEmbedderConfig``, ``alerts.settings.MonitorConfig`` and
``NotifyConfig``, ``dashboards.settings.GrafanaConfig``. This module binds each to its
environment variables by subclassing it together with pydantic-settings' ``BaseSettings``
(``KafkaSettings(BaseSettings, KafkaConfig)`` reads ``TELLTALE_KAFKA_*``), so every field is
declared once; sections only the composition root uses (ClickHouse, cache, signal quality,
images, groups, serve, retention, privacy, usage) are declared in
:mod:`telltale.settings_sections`.

Nothing is read at import time: the CLI's callback calls :func:`load_settings` once per
invocation and commands pass its sections down as objects. Every field can be set with an
environment variable named after its section's prefix and the field, for example
``TELLTALE_CLICKHOUSE_DSN``, ``TELLTALE_EMBEDDER_MODEL_NAME`` or ``TELLTALE_MONITOR_INTERVAL_S``.
Secrets are :class:`~pydantic.SecretStr`: never printed or logged.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field, ValidationError
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from alerts import LEGACY_PREFIXES, MonitorConfig, NotifyConfig
from dashboards import GrafanaConfig
from signals import (
    EmbedderConfig,
    TextEmbedderConfig,
)
from streams import (
    KafkaConfig,
    OtelExportConfig,
    OtlpConfig,
    OverloadConfig,
    SamplingConfig,
    SliceConfig,
    WorkerConfig,
)
from telltale.settings_sections import (
    AuditSettings,
    ClickHouseSettings,
    EmbeddingCacheSettings,
    GroupSettings,
    ImagesSettings,
    JudgeSettings,
    PrivacySettings,
    RetentionSettings,
    ServeSettings,
    SignalQualitySettings,
    UsageSettings,
)

__all__ = [
    "AuditSettings",
    "ClickHouseSettings",
    "EmbedderSettings",
    "EmbeddingCacheSettings",
    "GrafanaSettings",
    "GroupSettings",
    "ImagesSettings",
    "JudgeSettings",
    "KafkaSettings",
    "MonitorSettings",
    "NotifySettings",
    "OtelExportSettings",
    "OtlpSettings",
    "OverloadSettings",
    "RetentionSettings",
    "SamplingSettings",
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


class OverloadSettings(BaseSettings, OverloadConfig):
    """``TELLTALE_SAMPLE_MAX_LAG_S`` and the other overload-control fields (``TELLTALE_SAMPLE_*``,
    the sampling settings' prefix): the worker samples less while it falls behind."""

    model_config = SettingsConfigDict(env_prefix="TELLTALE_SAMPLE_", extra="ignore")


IMAGE_FIELDS_PREFIX = "image_"
IMAGE_ENV_PREFIX = "TELLTALE_IMAGE_EMBEDDER_"


class _ImageTowerEnv(EnvSettingsSource):
    """The open_clip settings' ``image_*`` fields (how the image tower runs) as
    ``TELLTALE_IMAGE_EMBEDDER_*``, beside ``TELLTALE_TEXT_EMBEDDER_*``: ``image_backend`` is
    ``TELLTALE_IMAGE_EMBEDDER_BACKEND``. Read before, and overriding, the section's own names
    (``TELLTALE_EMBEDDER_IMAGE_BACKEND``)."""

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        if not field_name.startswith(IMAGE_FIELDS_PREFIX):
            return None, field_name, False
        name = f"{IMAGE_ENV_PREFIX}{field_name[len(IMAGE_FIELDS_PREFIX) :]}"
        value = self.env_vars.get(name if self.case_sensitive else name.lower())
        return value, field_name, self.field_is_complex(field)


class EmbedderSettings(BaseSettings, EmbedderConfig):
    """``TELLTALE_EMBEDDER_*``: the open_clip model, its weights and device; its image tower's
    backend is ``TELLTALE_IMAGE_EMBEDDER_*`` (:class:`_ImageTowerEnv`)."""

    model_config = SettingsConfigDict(env_prefix="TELLTALE_EMBEDDER_", extra="ignore")

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        image = _ImageTowerEnv(settings_cls)
        return init_settings, image, env_settings, dotenv_settings, file_secret_settings


class TextEmbedderSettings(BaseSettings, TextEmbedderConfig):
    """``TELLTALE_TEXT_EMBEDDER_*``: the text model and its windows."""

    model_config = SettingsConfigDict(env_prefix="TELLTALE_TEXT_EMBEDDER_", extra="ignore")


class OtlpSettings(BaseSettings, OtlpConfig):
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


class SamplingSettings(BaseSettings, SamplingConfig):
    """``TELLTALE_SAMPLE_*``: the share of events the worker embeds and scores
    (``TELLTALE_SAMPLE_RATE``, ``TELLTALE_SAMPLE_MAX_EVENTS_PER_S``); every event is still
    counted. Replay and ``telltale serve``'s API never sample."""

    model_config = SettingsConfigDict(env_prefix="TELLTALE_SAMPLE_", extra="ignore")


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


class MonitorSettings(BaseSettings, MonitorConfig):
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


class NotifySettings(BaseSettings, NotifyConfig):
    """``TELLTALE_NOTIFY_*``: the webhook notifier."""

    model_config = SettingsConfigDict(env_prefix="TELLTALE_NOTIFY_", extra="ignore")


class GrafanaSettings(BaseSettings, GrafanaConfig):
    """``TELLTALE_GRAFANA_*``: where dashboards and alert rules are pushed."""

    model_config = SettingsConfigDict(env_prefix="TELLTALE_GRAFANA_", extra="ignore")


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
    overload: OverloadConfig = Field(default_factory=OverloadSettings)
    sampling: SamplingConfig = Field(default_factory=SamplingSettings)
    slices: SliceConfig = Field(default_factory=SliceSettings)
    groups: GroupSettings = Field(default_factory=GroupSettings)
    audit: AuditSettings = Field(default_factory=AuditSettings)
    judge: JudgeSettings = Field(default_factory=JudgeSettings)
    retention: RetentionSettings = Field(default_factory=RetentionSettings)
    serve: ServeSettings = Field(default_factory=ServeSettings)
    otlp: OtlpConfig = Field(default_factory=OtlpSettings)
    otel_export: OtelExportConfig = Field(default_factory=OtelExportSettings)
    monitor: MonitorConfig = Field(default_factory=MonitorSettings)
    notify: NotifyConfig = Field(default_factory=NotifySettings)
    grafana: GrafanaConfig = Field(default_factory=GrafanaSettings)
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
    "overload": OverloadSettings,
    "sampling": SamplingSettings,
    "slices": SliceSettings,
    "groups": GroupSettings,
    "audit": AuditSettings,
    "judge": JudgeSettings,
    "retention": RetentionSettings,
    "serve": ServeSettings,
    "otlp": OtlpSettings,
    "otel_export": OtelExportSettings,
    "monitor": MonitorSettings,
    "notify": NotifySettings,
    "grafana": GrafanaSettings,
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
                field = str(error["loc"][0]) if error["loc"] else ""
                if section is EmbedderSettings and field.startswith(IMAGE_FIELDS_PREFIX):
                    where = f"{IMAGE_ENV_PREFIX}{field[len(IMAGE_FIELDS_PREFIX) :].upper()}"
                problems.append(f"{where}: {error['msg']}")
    if problems:
        raise SettingsError("invalid settings: " + "; ".join(problems))
    return Settings.model_validate(sections)
