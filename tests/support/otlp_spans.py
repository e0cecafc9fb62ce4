"""Real OpenTelemetry GenAI spans and log records, one set per convention, encoded as the
Collector's Kafka exporter writes them (``otlp_proto``, or ``otlp_json`` with hex ids).

Spans are made by the real SDK (TracerProvider, InMemorySpanExporter) and encoded by the real
OTLP encoders; the expected event of each is next to it, so tests check field by field.
"""

from __future__ import annotations

import base64
import io
import json
from dataclasses import dataclass, field
from typing import Any

from google.protobuf import json_format
from opentelemetry.exporter.otlp.proto.common._log_encoder import encode_logs
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import InMemoryLogExporter, SimpleLogRecordProcessor
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from PIL import Image


def png_bytes(color: tuple[int, int, int] = (200, 30, 30), size: int = 48) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (size, size), color).save(buffer, format="PNG")
    return buffer.getvalue()


@dataclass
class Expected:
    """What the stored event of one generation span must hold (None: not checked)."""

    convention: str
    model: str
    model_version: str
    app: str
    prompt: str
    output: str
    image: str = ""
    user_id: str = ""
    session_id: str = ""
    attributes: dict[str, str] = field(default_factory=dict)
    usage: dict[str, int] = field(default_factory=dict)  # the event's usage, absent counts left out


@dataclass
class Batch:
    spans: list[ReadableSpan]
    expected: dict[str, Expected]  # span name -> expected event
    skipped: int  # spans that are not generations


def _provider(service: str, version: str) -> tuple[TracerProvider, InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider(
        resource=Resource.create({"service.name": service, "service.version": version})
    )
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider, exporter


def genai_batch(image_uri: str = "s3://images/cat.png", tag: str = "") -> Batch:
    """One export batch: two services (resources), every convention, plus spans to skip."""
    shop, shop_spans = _provider("shop-bot", "2.3.0")
    support, support_spans = _provider("support-bot", "1.0.7")
    expected: dict[str, Expected] = {}
    t = shop.get_tracer("openai-instrumentation", "1.0")
    png = base64.b64encode(png_bytes()).decode()

    # 1. current conventions (semconv >= 1.37): messages as JSON attributes
    with t.start_as_current_span(f"chat gpt-4o{tag}") as s:
        s.set_attributes({
            "gen_ai.operation.name": "chat", "gen_ai.provider.name": "openai",
            "gen_ai.request.model": "gpt-4o", "gen_ai.response.model": "gpt-4o-2024-08-06",
            "gen_ai.usage.input_tokens": 31, "gen_ai.usage.output_tokens": 7,
            "gen_ai.response.finish_reasons": ["stop"],
            "gen_ai.conversation.id": "conv-1", "user.id": "user-7",
            "gen_ai.input.messages": json.dumps([
                {"role": "system", "parts": [{"type": "text", "content": "You are helpful."}]},
                {"role": "user", "parts": [{"type": "text", "content": "Hi"}]},
                {"role": "assistant", "parts": [{"type": "text", "content": "Hello!"}]},
                {"role": "user", "parts": [{"type": "text", "content": "Which stock to buy?"}]},
            ]),
            "gen_ai.output.messages": json.dumps([{
                "role": "assistant", "finish_reason": "stop",
                "parts": [{"type": "text", "content": "Buy ACME shares now."}],
            }]),
        })  # fmt: skip
    expected[f"chat gpt-4o{tag}"] = Expected(
        "gen_ai.messages", "gpt-4o", "gpt-4o-2024-08-06", "shop-bot", "Which stock to buy?",
        "Buy ACME shares now.", user_id="user-7", session_id="conv-1",
        attributes={"gen_ai.provider.name": "openai"},
        usage={"input_tokens": 31, "output_tokens": 7},
    )  # fmt: skip

    # 1b. current conventions, an image generated inline (blob part)
    with t.start_as_current_span(f"generate_content imagen{tag}") as s:
        s.set_attributes({
            "gen_ai.operation.name": "generate_content", "gen_ai.request.model": "imagen-3",
            "gen_ai.input.messages": json.dumps(
                [{"role": "user", "parts": [{"type": "text", "content": "a red square"}]}]
            ),
            "gen_ai.output.messages": json.dumps([{"role": "assistant", "parts": [
                {"type": "blob", "modality": "image", "mime_type": "image/png", "content": png}
            ]}]),
        })  # fmt: skip
    expected[f"generate_content imagen{tag}"] = Expected(
        "gen_ai.messages",
        "imagen-3",
        "2.3.0",
        "shop-bot",
        "a red square",
        "",
        image=f"data:image/png;base64,{png}",
    )

    # 2. pre-1.37 indexed attributes (OpenLLMetry / Traceloop)
    with t.start_as_current_span(f"openai.chat{tag}") as s:
        s.set_attributes({
            "llm.request.type": "chat", "gen_ai.system": "openai",
            "gen_ai.request.model": "gpt-3.5-turbo",
            "gen_ai.response.model": "gpt-3.5-turbo-0125",
            "gen_ai.prompt.0.role": "system", "gen_ai.prompt.0.content": "Be brief.",
            "gen_ai.prompt.1.role": "user", "gen_ai.prompt.1.content": "Capital of France?",
            "gen_ai.completion.0.role": "assistant", "gen_ai.completion.0.content": "Paris.",
            "gen_ai.usage.prompt_tokens": 12, "gen_ai.usage.completion_tokens": 3,
        })  # fmt: skip
    expected[f"openai.chat{tag}"] = Expected(
        "gen_ai.prompt.indexed",
        "gpt-3.5-turbo",
        "gpt-3.5-turbo-0125",
        "shop-bot",
        "Capital of France?",
        "Paris.",
        attributes={"gen_ai.system": "openai"},
        usage={"input_tokens": 12, "output_tokens": 3},  # the older key names
    )

    # 2b. pre-1.37 span events gen_ai.content.prompt / gen_ai.content.completion
    with t.start_as_current_span(f"chat claude{tag}") as s:
        s.set_attributes({"gen_ai.operation.name": "chat", "gen_ai.system": "anthropic",
                          "gen_ai.request.model": "claude-3-5-sonnet"})  # fmt: skip
        s.add_event("gen_ai.content.prompt", {"gen_ai.prompt": json.dumps(
            [{"role": "user", "content": "Write a haiku about rain."}])})  # fmt: skip
        s.add_event("gen_ai.content.completion", {"gen_ai.completion": json.dumps(
            [{"role": "assistant", "content": "Soft rain on the roof"}])})  # fmt: skip
    expected[f"chat claude{tag}"] = Expected(
        "gen_ai.content.events",
        "claude-3-5-sonnet",
        "2.3.0",
        "shop-bot",
        "Write a haiku about rain.",
        "Soft rain on the roof",
    )

    s2 = support.get_tracer("openinference.instrumentation.openai")
    # 3. OpenInference messages
    with s2.start_as_current_span(f"ChatCompletion{tag}") as s:
        s.set_attributes({
            "openinference.span.kind": "LLM", "llm.model_name": "gpt-4o-mini",
            "llm.provider": "openai", "session.id": "sess-42", "user.id": "user-9",
            "llm.input_messages.0.message.role": "system",
            "llm.input_messages.0.message.content": "You answer tickets.",
            "llm.input_messages.1.message.role": "user",
            "llm.input_messages.1.message.content": "My order never arrived.",
            "llm.output_messages.0.message.role": "assistant",
            "llm.output_messages.0.message.content": "Sorry! I have refunded you.",
            "input.value": '{"messages": "..."}', "output.value": '{"choices": "..."}',
            "llm.token_count.prompt": 25, "llm.token_count.completion": 9,
            "llm.token_count.total": 34,
        })  # fmt: skip
    expected[f"ChatCompletion{tag}"] = Expected(
        "openinference.messages",
        "gpt-4o-mini",
        "1.0.7",
        "support-bot",
        "My order never arrived.",
        "Sorry! I have refunded you.",
        user_id="user-9",
        session_id="sess-42",
        attributes={"llm.provider": "openai"},
        usage={"input_tokens": 25, "output_tokens": 9},
    )
    # 3b. OpenInference with only input.value / output.value
    with s2.start_as_current_span(f"llm{tag}") as s:
        s.set_attributes({"openinference.span.kind": "LLM", "llm.model_name": "llama-3-8b",
                          "input.value": "Translate 'cat' to German.",
                          "output.value": "Katze"})  # fmt: skip
    expected[f"llm{tag}"] = Expected(
        "openinference.values",
        "llama-3-8b",
        "1.0.7",
        "support-bot",
        "Translate 'cat' to German.",
        "Katze",
    )

    # 4. OpenLIT: plain-text gen_ai.prompt / gen_ai.completion events, application name
    lit = support.get_tracer("openlit.otel.tracing")
    with lit.start_as_current_span(f"openai.chat.completions{tag}") as s:
        s.set_attributes({
            "gen_ai.operation.name": "chat", "gen_ai.system": "openai",
            "gen_ai.request.model": "gpt-4", "gen_ai.response.model": "gpt-4-0613",
            "gen_ai.application_name": "support-bot", "gen_ai.environment": "production",
            "gen_ai.usage.input_tokens": 14, "gen_ai.usage.output_tokens": 5,
        })  # fmt: skip
        s.add_event("gen_ai.content.prompt", {"gen_ai.prompt": "user: Reset my password"})
        s.add_event("gen_ai.content.completion", {"gen_ai.completion": "Click 'Forgot'."})
    expected[f"openai.chat.completions{tag}"] = Expected(
        "gen_ai.content.events",
        "gpt-4",
        "gpt-4-0613",
        "support-bot",
        "user: Reset my password",
        "Click 'Forgot'.",
        attributes={"gen_ai.environment": "production"},
        usage={"input_tokens": 14, "output_tokens": 5},
    )
    # 4b. OpenLIT image generation: the image URL in gen_ai.response.image
    with lit.start_as_current_span(f"openai.images.generate{tag}") as s:
        s.set_attributes({
            "gen_ai.operation.name": "image", "gen_ai.system": "openai",
            "gen_ai.request.model": "dall-e-3", "gen_ai.response.image": image_uri,
        })  # fmt: skip
        s.add_event("gen_ai.content.prompt", {"gen_ai.prompt": "a cat in a hat"})
    expected[f"openai.images.generate{tag}"] = Expected(
        "gen_ai.content.events",
        "dall-e-3",
        "1.0.7",
        "support-bot",
        "a cat in a hat",
        "",
        image=image_uri,
    )

    # 5. a generation recorded without content (the instrumentations' default)
    with t.start_as_current_span(f"chat gpt-4o-mini{tag}") as s:
        s.set_attributes(
            {
                "gen_ai.operation.name": "chat",
                "gen_ai.request.model": "gpt-4o-mini",
                "gen_ai.usage.input_tokens": 40,
                "gen_ai.usage.output_tokens": 12,
            }
        )
    expected[f"chat gpt-4o-mini{tag}"] = Expected(  # tokens still count: cost needs no content
        "none",
        "gpt-4o-mini",
        "2.3.0",
        "shop-bot",
        "",
        "",
        usage={"input_tokens": 40, "output_tokens": 12},
    )

    # not generations: an HTTP span, an embeddings call, a tool call, an agent span
    with t.start_as_current_span("GET /checkout") as s:
        s.set_attribute("http.request.method", "GET")
        with t.start_as_current_span("embeddings text-embedding-3") as e:
            e.set_attributes({"gen_ai.operation.name": "embeddings",
                              "gen_ai.request.model": "text-embedding-3-small"})  # fmt: skip
        with t.start_as_current_span("execute_tool get_weather") as e:
            e.set_attribute("gen_ai.operation.name", "execute_tool")
        with s2.start_as_current_span("agent") as e:
            e.set_attribute("openinference.span.kind", "AGENT")
    spans = [*shop_spans.get_finished_spans(), *support_spans.get_finished_spans()]
    return Batch(spans, expected, skipped=4)


def to_proto(spans: list[ReadableSpan]) -> bytes:
    """``otlp_proto``: the serialised ExportTraceServiceRequest, as the exporter writes it."""
    return bytes(encode_spans(spans).SerializeToString())


def to_json(spans: list[ReadableSpan]) -> bytes:
    """``otlp_json``: protobuf JSON mapping with OTLP/JSON's hex trace and span ids."""
    return _otlp_json(json_format.MessageToDict(encode_spans(spans)))


def _otlp_json(document: dict[str, Any]) -> bytes:
    def hexify(node: Any) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key in ("traceId", "spanId", "parentSpanId") and isinstance(value, str):
                    node[key] = base64.b64decode(value).hex()
                else:
                    hexify(value)
        elif isinstance(node, list):
            for item in node:
                hexify(item)

    hexify(document)
    return json.dumps(document).encode()


def details_logs(tag: str = "") -> tuple[bytes, bytes, Expected]:
    """A ``gen_ai.client.inference.operation.details`` log record (current conventions) and an
    unrelated log record, as ``otlp_proto`` and ``otlp_json``."""
    exporter = InMemoryLogExporter()
    provider = LoggerProvider(
        resource=Resource.create({"service.name": "docs-bot", "service.version": "0.9"})
    )
    provider.add_log_record_processor(SimpleLogRecordProcessor(exporter))
    logger = provider.get_logger("genai")
    tracer_provider, _ = _provider("docs-bot", "0.9")
    with tracer_provider.get_tracer("x").start_as_current_span(f"chat{tag}"):
        logger.emit(
            event_name="gen_ai.client.inference.operation.details",
            attributes={
                "gen_ai.operation.name": "chat", "gen_ai.request.model": "mistral-large",
                "gen_ai.response.model": "mistral-large-2411",
                "gen_ai.input.messages": json.dumps(
                    [{"role": "user", "parts": [{"type": "text", "content": "Summarise RFC 9110"}]}]
                ),
                "gen_ai.output.messages": json.dumps([
                    {"role": "assistant", "parts": [{"type": "text", "content": "HTTP semantics."}]}
                ]),
            },
        )  # fmt: skip
        logger.emit(body="cache warmed", attributes={"component": "cache"})
    records = exporter.get_finished_logs()
    request = encode_logs(records)
    expected = Expected(
        "gen_ai.messages",
        "mistral-large",
        "mistral-large-2411",
        "docs-bot",
        "Summarise RFC 9110",
        "HTTP semantics.",
    )
    return (
        bytes(request.SerializeToString()),
        _otlp_json(json_format.MessageToDict(request)),
        expected,
    )
