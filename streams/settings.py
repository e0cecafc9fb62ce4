"""What the stream side is configured with: the Kafka connection and the worker's tuning.

Plain pydantic models, declared once: this package reads no environment. :mod:`telltale.settings`
binds each to its variables (``TELLTALE_KAFKA_*``, ``TELLTALE_WORKER_*``) and the CLI builds
them once and passes them down. The SASL password and TLS key password are
:class:`~pydantic.SecretStr`: never printed or logged.
"""

from __future__ import annotations

import json
from typing import Literal

from pydantic import BaseModel, Field, SecretStr, field_validator, model_validator

from streams.kafka_security import KafkaSecurity

__all__ = ["KafkaConfig", "WorkerConfig", "comma_list"]


def comma_list(value: object) -> object:
    """``a, b,c`` or ``["a", "b"]`` as a tuple of non-empty names; other values unchanged."""
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            return tuple(str(v).strip() for v in json.loads(text) if str(v).strip())
        return tuple(v.strip() for v in text.split(",") if v.strip())
    return value


class KafkaConfig(BaseModel):
    """The broker, the topics, the consumer group and how every Kafka client authenticates."""

    bootstrap: str = Field(default="127.0.0.1:9092", description="host:port of a Kafka broker")
    topic: str = "generations"
    dlq_topic: str = "generations.dlq"
    control_topic: str = Field(
        default="telltale.signals", description="fitted signals published to running workers"
    )
    group_id: str = "telltale-worker"
    partitions: int = Field(default=3, ge=1)
    session_timeout_s: float = Field(default=30.0, gt=0)
    otlp_topics: tuple[str, ...] = Field(
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
        return comma_list(value)

    @model_validator(mode="after")
    def _sasl_needs_credentials(self) -> KafkaConfig:
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

    @property
    def security(self) -> KafkaSecurity:
        """The security fields as the object every Kafka client is built from."""
        return KafkaSecurity(
            protocol=self.security_protocol, mechanism=self.sasl_mechanism,
            username=self.sasl_username, password=self.sasl_password,
            cafile=self.ssl_cafile, certfile=self.ssl_certfile,
            keyfile=self.ssl_keyfile, key_password=self.ssl_key_password,
            check_hostname=self.ssl_check_hostname,
        )  # fmt: skip


class WorkerConfig(BaseModel):
    """How the stream worker batches, retries and shuts down."""

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
    commit_interval_s: float = Field(default=1.0, gt=0, description="Kafka offset commits")
    embed_ahead: bool = Field(
        default=True,
        description="embed the texts of the batch taken ahead while the current one is "
        "scored and written (signals.ahead)",
    )
    maintenance_interval_s: float = Field(
        default=10.0, gt=0, description="retraining of stale signals, between batches"
    )
    retrain_cooldown_s: float = Field(
        default=3600.0,
        ge=0,
        description="a worker does not retrain back, for this long, a "
        "signal another worker just retrained away from its embedder (a rolling upgrade)",
    )
    health_port: int = Field(
        default=0,
        ge=0,
        le=65535,
        description="HTTP port of the worker's /healthz and /readyz (0: no endpoint)",
    )
    health_host: str = Field(default="127.0.0.1", description="address the health endpoint binds")
    metrics_max_versions: int = Field(
        default=20,
        ge=1,
        description="distinct model_version labels per model on /metrics; later ones: 'other'",
    )
    metrics_lag_interval_s: float = Field(
        default=15.0, gt=0, description="how often /metrics' consumer lag is measured"
    )
    metrics_refresh_s: float = Field(
        default=60.0,
        gt=0,
        description="how often /metrics' gauges read from storage (corrected rates, incidents)",
    )
    metrics_rate_window_s: float = Field(
        default=3600.0, gt=0, description="the recent window of /metrics' corrected rates"
    )
    log_level: Literal["debug", "info", "warning", "error"] = "info"
