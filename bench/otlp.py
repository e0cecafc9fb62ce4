"""OTLP decoding throughput, side by side with the native event decoder, in one run.

    PYTHONPATH=. .venv/bin/python bench/otlp.py [--spans 20000] [--batch 200] [--repeat 3]

Builds ``--spans`` generation spans with the real OpenTelemetry SDK (current conventions: JSON
``gen_ai.input.messages`` / ``gen_ai.output.messages``, a few hundred characters each, plus one
HTTP span per four generations that the decoder must skip), encodes them as the Collector's
Kafka exporter does (one record per ``--batch`` spans, ``otlp_proto`` and ``otlp_json``), and
the same generations as native telltale JSON events (one record each). Then times, best of
``--repeat``:

* ``decode_otlp`` over the protobuf records, and over the JSON records: generations/s;
* ``decode_event`` over the native records: events/s;

and prints the ratios OTLP ÷ native. Decoding only: no Kafka, no embedding, no storage (the
embedding is the pipeline's bottleneck by two orders of magnitude; see bench/pipeline.py).
"""

from __future__ import annotations

import sys
from pathlib import Path

# bench/ holds scripts named like the packages they measure: keep it off the import path.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import argparse  # noqa: E402
import base64  # noqa: E402
import json  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from datetime import UTC, datetime  # noqa: E402

from google.protobuf import json_format  # noqa: E402
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans  # noqa: E402
from opentelemetry.sdk.resources import Resource  # noqa: E402
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider  # noqa: E402
from opentelemetry.sdk.trace.export import SimpleSpanProcessor  # noqa: E402
from opentelemetry.sdk.trace.export.in_memory_span_exporter import (  # noqa: E402
    InMemorySpanExporter,
)

from streams.events import decode_event, encode_event  # noqa: E402
from streams.otlp import decode_otlp  # noqa: E402

QUESTION = "Which of these index funds has the lowest fees and why would you pick it? " * 3
ANSWER = "Fund B has the lowest expense ratio at 0.03%, and it tracks the same index. " * 4


def make_spans(n: int) -> list[ReadableSpan]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "bench",
                                                        "service.version": "1.0"}))  # fmt: skip
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("bench")
    for i in range(n):
        with tracer.start_as_current_span(f"chat {i}") as span:
            span.set_attributes({
                "gen_ai.operation.name": "chat", "gen_ai.request.model": "gpt-4o",
                "gen_ai.response.model": "gpt-4o-2024-08-06", "user.id": f"u{i % 97}",
                "gen_ai.usage.input_tokens": 120, "gen_ai.usage.output_tokens": 80,
                "gen_ai.input.messages": json.dumps([
                    {"role": "system", "parts": [{"type": "text", "content": "Be precise."}]},
                    {"role": "user", "parts": [{"type": "text", "content": f"{QUESTION} {i}"}]},
                ]),
                "gen_ai.output.messages": json.dumps([{"role": "assistant", "parts": [
                    {"type": "text", "content": f"{ANSWER} {i}"}]}]),
            })  # fmt: skip
        if i % 4 == 0:
            with tracer.start_as_current_span("GET /api") as span:
                span.set_attribute("http.request.method", "GET")
    return list(exporter.get_finished_spans())


def otlp_json(spans: list[ReadableSpan]) -> bytes:
    document = json_format.MessageToDict(encode_spans(spans))
    for resource in document["resourceSpans"]:
        for scope in resource["scopeSpans"]:
            for span in scope["spans"]:
                for key in ("traceId", "spanId", "parentSpanId"):
                    if key in span:
                        span[key] = base64.b64decode(span[key]).hex()
    return json.dumps(document).encode()


def best(repeat: int, work: Callable[[], int]) -> tuple[float, int]:
    times, count = [], 0
    for _ in range(repeat):
        started = time.perf_counter()
        count = work()
        times.append(time.perf_counter() - started)
    return min(times), count


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--spans", type=int, default=20_000)
    parser.add_argument("--batch", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    spans = make_spans(args.spans)
    chunks = [spans[i : i + args.batch] for i in range(0, len(spans), args.batch)]
    proto = [bytes(encode_spans(c).SerializeToString()) for c in chunks]
    as_json = [otlp_json(c) for c in chunks]
    events = [e for record in proto for e in decode_otlp(record).events]
    native = [encode_event(e) for e in events]
    assert len(events) == args.spans

    def run_otlp(records: list[bytes]) -> Callable[[], int]:
        return lambda: sum(len(decode_otlp(r).events) for r in records)

    def run_native() -> int:
        return sum(1 for r in native if decode_event(r))

    t_proto, n_proto = best(args.repeat, run_otlp(proto))
    t_json, n_json = best(args.repeat, run_otlp(as_json))
    t_native, n_native = best(args.repeat, run_native)
    assert n_proto == n_json == n_native == args.spans
    rate = {"otlp_proto": n_proto / t_proto, "otlp_json": n_json / t_json,
            "native": n_native / t_native}  # fmt: skip
    print(f"{datetime.now(UTC).isoformat(timespec='seconds')}  {args.spans} generation spans "
          f"(+{len(spans) - args.spans} skipped HTTP spans), {len(proto)} export records of "
          f"{args.batch}; best of {args.repeat}")  # fmt: skip
    print(f"  record bytes: proto {sum(map(len, proto)) / len(proto):,.0f}, "
          f"json {sum(map(len, as_json)) / len(as_json):,.0f}, "
          f"native {sum(map(len, native)) / len(native):,.0f} per event")  # fmt: skip
    for name, value in rate.items():
        print(f"  {name:<10} {value:>10,.0f} generations/s")
    print(f"  ratio otlp_proto / native = {rate['otlp_proto'] / rate['native']:.2f}")
    print(f"  ratio otlp_json  / native = {rate['otlp_json'] / rate['native']:.2f}")


if __name__ == "__main__":
    main()
