"""OpenTelemetry out: every stored score as a ``gen_ai.evaluation.result`` event.

``TELLTALE_OTEL_EXPORT=otlp_http`` posts OTLP/HTTP protobuf to a Collector (or any OTLP
backend); ``kafka`` writes the same protobuf onto a topic that a Collector's kafka receiver
reads (``encoding: otlp_proto``). :func:`build_exporter` makes the exporter from the settings;
the pipeline hands it each stored batch (:meth:`EvaluationExporter.offer`). What a record
holds: :mod:`streams.otel_export.records`; how the worker is kept out of its way:
:mod:`streams.otel_export.exporter`.
"""

from __future__ import annotations

from streams.errors import ExportMisconfigured
from streams.otel_export.config import OtelExportConfig, logs_url, parse_headers
from streams.otel_export.exporter import EvaluationExporter, ExportTuning
from streams.otel_export.records import (
    EVENT_NAME,
    FLAGGED,
    NOT_FLAGGED,
    Evaluation,
    evaluation_request,
)
from streams.otel_export.senders import KafkaSender, OtlpHttpSender, Sender, SendFailed
from streams.settings import KafkaConfig

__all__ = [
    "EVENT_NAME",
    "FLAGGED",
    "NOT_FLAGGED",
    "Evaluation",
    "EvaluationExporter",
    "ExportTuning",
    "KafkaSender",
    "OtelExportConfig",
    "OtlpHttpSender",
    "SendFailed",
    "Sender",
    "build_exporter",
    "check_export",
    "evaluation_request",
]


def build_exporter(
    config: OtelExportConfig, kafka: KafkaConfig | None = None
) -> EvaluationExporter | None:
    """The exporter ``config`` asks for (its thread started), or None when export is off.

    ``kafka`` is the broker connection (bootstrap and security) for ``export="kafka"``;
    :func:`check_export` refuses a topic the worker uses.
    """
    if config.export == "off":
        return None
    check_export(config, kafka)
    sender: Sender
    if config.export == "otlp_http":
        sender = OtlpHttpSender(logs_url(config.export_endpoint),
                                parse_headers(config.export_headers),
                                config.export_timeout_s)  # fmt: skip
    else:
        kafka = kafka or KafkaConfig()
        sender = KafkaSender(kafka.bootstrap, config.export_topic, config.export_timeout_s,
                             kafka.security)  # fmt: skip
    return EvaluationExporter(sender, ExportTuning(
        queue_size=config.export_queue_size, batch_size=config.export_batch_size,
        batch_timeout_s=config.export_batch_timeout_s, retries=config.export_retries,
        retry_initial_s=config.export_retry_initial_s, retry_max_s=config.export_retry_max_s,
        shutdown_timeout_s=config.export_shutdown_timeout_s,
        request_timeout_s=config.export_timeout_s,
    ))  # fmt: skip


def check_export(config: OtelExportConfig, kafka: KafkaConfig | None = None) -> None:
    """Raise :class:`~streams.errors.ExportMisconfigured` when a Kafka export would write to a
    topic the worker reads or writes (its OTLP input above all: it would read its own
    evaluations back). Called when a worker starts, before anything is consumed."""
    if config.export != "kafka":
        return
    kafka = kafka or KafkaConfig()
    used = {kafka.topic, kafka.dlq_topic, kafka.control_topic, kafka.feedback_topic,
            *kafka.otlp_topics}  # fmt: skip
    if config.export_topic in used:
        raise ExportMisconfigured(
            f"TELLTALE_OTEL_EXPORT_TOPIC {config.export_topic!r} is a topic the worker reads "
            "or writes (TELLTALE_KAFKA_*)"
        )
