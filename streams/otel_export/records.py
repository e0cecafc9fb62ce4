"""Scores as OpenTelemetry ``gen_ai.evaluation.result`` events (OTLP log records).

The event is defined by the OpenTelemetry GenAI semantic conventions,
``open-telemetry/semantic-conventions-genai``, ``model/gen-ai/events.yaml`` (read at commit
``fecf9e12378d7b913438c954f8d7d243680ece47``; stability: development): an OTLP log record whose
``event_name`` is ``gen_ai.evaluation.result``, which "SHOULD be parented to GenAI operation span
being evaluated when possible or set ``gen_ai.response.id`` when span id is not available". Its
attributes are ``gen_ai.evaluation.name`` (required), ``gen_ai.evaluation.score.value`` and
``gen_ai.evaluation.score.label`` (conditionally required), ``gen_ai.evaluation.explanation``
and ``gen_ai.response.id`` (recommended) and ``error.type``.

One record per score row (an event and a signal, or a signal group):

* ``gen_ai.evaluation.name``: the signal's name;
* ``gen_ai.evaluation.score.value``: the signal's probability (a double in [0, 1]);
* ``gen_ai.evaluation.score.label``: :data:`FLAGGED` or :data:`NOT_FLAGGED` (the convention asks
  implementations to document the values; a signal detects a property of an answer, so the label
  says whether it was found rather than claiming pass or fail);
* ``telltale.signal.version``: the signal's version. The conventions have **no** attribute for
  the evaluator's version yet (``gen_ai.evaluation.evaluator.version`` is proposed in
  semantic-conventions-genai pull request #359, open), so the name is telltale's own;
* ``gen_ai.request.model``, ``telltale.model_version``, ``telltale.event_id``, and
  ``gen_ai.response.id`` when the evaluated span carried one;
* ``trace_id`` / ``span_id`` of the record: the evaluated span's, when the event came from an
  OTLP span (its ``otel.trace_id`` / ``otel.span_id`` attributes); absent otherwise;
* time: when the score was stored (the evaluation), not when the answer was generated.

No content (prompt, answer, explanation) is exported. The resource says ``service.name`` =
``telltale``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, InstrumentationScope, KeyValue
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord, ResourceLogs, ScopeLogs
from opentelemetry.proto.resource.v1.resource_pb2 import Resource

__all__ = [
    "EVENT_NAME",
    "FLAGGED",
    "NOT_FLAGGED",
    "SERVICE_NAME",
    "Evaluation",
    "evaluation_request",
    "span_ids",
]

EVENT_NAME = "gen_ai.evaluation.result"
FLAGGED = "flagged"
NOT_FLAGGED = "not_flagged"
SERVICE_NAME = "telltale"
SCOPE_NAME = "telltale.evaluations"
TRACE_ID_ATTRIBUTE = "otel.trace_id"  # set by streams.otlp on events decoded from spans
SPAN_ID_ATTRIBUTE = "otel.span_id"
RESPONSE_ID_ATTRIBUTE = "gen_ai.response.id"


@dataclass(frozen=True, slots=True)
class Evaluation:
    """One score of one event, as the exporter queues it (plain values, cheap to make)."""

    event_id: str
    signal: str
    signal_version: int
    score: float
    flagged: bool
    model: str
    model_version: str
    time_unix_nano: int
    trace_id: bytes = b""
    span_id: bytes = b""
    response_id: str = ""


def span_ids(attributes: Mapping[str, str]) -> tuple[bytes, bytes]:
    """The trace and span id an event was decoded from (16 and 8 bytes), or empty bytes.

    Ids that are not hex of the right length, or all zeros (a log record outside a span), give
    empty bytes: an invalid id on the record would make a Collector refuse the whole request.
    """
    return (_id(attributes.get(TRACE_ID_ATTRIBUTE, ""), 16),
            _id(attributes.get(SPAN_ID_ATTRIBUTE, ""), 8))  # fmt: skip


def _id(text: str, size: int) -> bytes:
    if len(text) != 2 * size:
        return b""
    try:
        value = bytes.fromhex(text)
    except ValueError:
        return b""
    return value if any(value) else b""


def evaluation_request(evaluations: Iterable[Evaluation]) -> ExportLogsServiceRequest:
    """One OTLP export request holding a log record per evaluation (same resource and scope)."""
    scope_logs = ScopeLogs(scope=InstrumentationScope(name=SCOPE_NAME))
    scope_logs.log_records.extend(_record(e) for e in evaluations)
    resource = Resource(attributes=[_kv("service.name", SERVICE_NAME)])
    return ExportLogsServiceRequest(
        resource_logs=[ResourceLogs(resource=resource, scope_logs=[scope_logs])]
    )


def _record(e: Evaluation) -> LogRecord:
    attributes: Sequence[KeyValue] = [
        _kv("gen_ai.evaluation.name", e.signal),
        KeyValue(key="gen_ai.evaluation.score.value", value=AnyValue(double_value=e.score)),
        _kv("gen_ai.evaluation.score.label", FLAGGED if e.flagged else NOT_FLAGGED),
        KeyValue(key="telltale.signal.version", value=AnyValue(int_value=e.signal_version)),
        _kv("gen_ai.request.model", e.model),
        _kv("telltale.model_version", e.model_version),
        _kv("telltale.event_id", e.event_id),
    ]
    if e.response_id:
        attributes = [*attributes, _kv(RESPONSE_ID_ATTRIBUTE, e.response_id)]
    return LogRecord(
        time_unix_nano=e.time_unix_nano, observed_time_unix_nano=e.time_unix_nano,
        event_name=EVENT_NAME, attributes=attributes, trace_id=e.trace_id, span_id=e.span_id,
    )  # fmt: skip


def _kv(key: str, value: str) -> KeyValue:
    return KeyValue(key=key, value=AnyValue(string_value=value))
