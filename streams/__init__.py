"""Events, the Emitter, the in-process pipeline and the scoring it shares with the guardrail API,
the faust worker, dead-letter handling and the OpenTelemetry export of scores."""

from __future__ import annotations

from streams._json import MAX_JSON_DEPTH, check_depth, parse_json
from streams.batch_io import WorkerHealth
from streams.dead_letter import DeadLetter
from streams.emitter import Emitter
from streams.errors import (
    EmitError,
    ExportMisconfigured,
    InvalidEvent,
    JsonTooDeep,
    StreamError,
)
from streams.events import (
    GenerationEvent,
    Output,
    Prompt,
    decode_event,
    encode_event,
    validate_event,
)
from streams.feedback import Feedback, validate_feedback
from streams.kafka_security import KafkaSecurity, check_credentials
from streams.metrics import MeteredWriter, SignalCounters, VersionCap, WorkerMetrics
from streams.otel_export import (
    EvaluationExporter,
    OtelExportConfig,
    build_exporter,
    check_export,
)
from streams.otlp import OtlpConfig
from streams.overload import OverloadConfig
from streams.pipeline import BatchResult, Pipeline
from streams.privacy import ContentPolicy
from streams.pseudonyms import Pseudonyms
from streams.recording import Recorder, kafka_recorder, storage_recorder
from streams.replay import (
    Ahead,
    Checkpoint,
    RejectWriter,
    Replayer,
    ReplayStats,
    Vectors,
    parse_mapping,
    read_records,
)
from streams.sampling import Sampler, SamplingConfig
from streams.scoring import (
    Rejected,
    Scored,
    Scorer,
    ScoreRequest,
    SignalResult,
)
from streams.settings import KafkaConfig, WorkerConfig, comma_list
from streams.slices import SliceConfig, Slicer
from streams.worker import build_app

__all__ = [
    "MAX_JSON_DEPTH",
    "Ahead",
    "BatchResult",
    "Checkpoint",
    "ContentPolicy",
    "DeadLetter",
    "EmitError",
    "Emitter",
    "EvaluationExporter",
    "ExportMisconfigured",
    "Feedback",
    "GenerationEvent",
    "InvalidEvent",
    "JsonTooDeep",
    "KafkaConfig",
    "KafkaSecurity",
    "MeteredWriter",
    "OtelExportConfig",
    "OtlpConfig",
    "Output",
    "OverloadConfig",
    "Pipeline",
    "Prompt",
    "Pseudonyms",
    "Recorder",
    "RejectWriter",
    "Rejected",
    "ReplayStats",
    "Replayer",
    "Sampler",
    "SamplingConfig",
    "ScoreRequest",
    "Scored",
    "Scorer",
    "SignalCounters",
    "SignalResult",
    "SliceConfig",
    "Slicer",
    "StreamError",
    "Vectors",
    "VersionCap",
    "WorkerConfig",
    "WorkerHealth",
    "WorkerMetrics",
    "build_app",
    "build_exporter",
    "check_credentials",
    "check_depth",
    "check_export",
    "comma_list",
    "decode_event",
    "encode_event",
    "kafka_recorder",
    "parse_json",
    "parse_mapping",
    "read_records",
    "storage_recorder",
    "validate_event",
    "validate_feedback",
]
