"""Scores out as OpenTelemetry ``gen_ai.evaluation.result`` events, decoded by the official
packages: OTLP/HTTP to a local receiver, a Kafka topic on the real broker (as the Collector's
kafka receiver reads it, ``otlp_proto``), and the failures that must never reach the worker."""

from __future__ import annotations

import json
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
    ExportLogsServiceRequest,
    ExportLogsServiceResponse,
)
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord, LogsData
from otlp_spans import genai_batch, to_proto
from pydantic import SecretStr

from signals.live import LiveSignals
from signals.open_clip_embedder import OpenClipEmbedder
from signals.spec import Examples, SignalSpec
from signals.training import train_signal
from storage import ScoreRow
from storage.writer import ClickHouseWriter
from streams.events import GenerationEvent, encode_event, validate_event
from streams.otel_export import (
    EVENT_NAME,
    FLAGGED,
    NOT_FLAGGED,
    EvaluationExporter,
    ExportTuning,
    OtelExportConfig,
    SendFailed,
    build_exporter,
)
from streams.otel_export.config import logs_url, parse_headers
from streams.otel_export.records import span_ids
from streams.otlp import decode_otlp
from streams.pipeline import Pipeline
from streams.settings import KafkaConfig
from telltale.signal_store import ClickHouseSignalStore

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
ADVICE = ("Buy ACME shares now.", "Put your savings into TSLA stock.", "Sell bonds, buy NVDA.")
PLAIN = ("Paris is the capital of France.", "Boil pasta for ten minutes.", "Rain is water.")


# ---- a local OTLP/HTTP receiver ------------------------------------------------------------


class Receiver:
    """``POST /v1/logs`` on 127.0.0.1: keeps each request; answers ``statuses`` in turn, then
    200 with an empty ``ExportLogsServiceResponse`` (as a Collector does)."""

    def __init__(self, statuses: tuple[int, ...] = ()) -> None:
        self.requests: list[tuple[str, dict[str, str], bytes]] = []
        self._statuses = list(statuses)
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                headers = {k.lower(): v for k, v in self.headers.items()}
                receiver.requests.append((self.path, headers, body))
                status = receiver._statuses.pop(0) if receiver._statuses else 200
                answer = ExportLogsServiceResponse().SerializeToString() if status == 200 else b""
                self.send_response(status)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args: Any) -> None:
                return None

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def records(self) -> list[LogRecord]:
        out: list[LogRecord] = []
        for _, _, body in self.requests:
            request = ExportLogsServiceRequest.FromString(body)
            out.extend(_records(request.resource_logs))
        return out

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


def _records(resource_logs: Any) -> list[LogRecord]:
    out = []
    for rl in resource_logs:
        resource = {a.key: a.value.string_value for a in rl.resource.attributes}
        assert resource["service.name"] == "telltale"
        for sl in rl.scope_logs:
            out.extend(sl.log_records)
    return out


def attrs(record: LogRecord) -> dict[str, Any]:
    """A record's attributes as Python values (string, int or double)."""
    return {a.key: getattr(a.value, a.value.WhichOneof("value")) for a in record.attributes}


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# ---- events and a pipeline -----------------------------------------------------------------


def otlp_events() -> list[GenerationEvent]:
    """The generation spans of every convention, through the real OTLP decoder."""
    decoded = decode_otlp(to_proto(genai_batch().spans), "spans")
    assert decoded.invalid == [] and decoded.events
    return decoded.events


def plain_events(n: int) -> list[GenerationEvent]:
    """JSON events of the contract: no span to link to."""
    return [validate_event({
        "event_id": f"plain-{i}", "timestamp": datetime(2026, 11, 1, 9, i, tzinfo=UTC).isoformat(),
        "model": "chat", "model_version": "v2", "prompt": {"text": "hi"},
        "output": {"text": (ADVICE if i % 2 else PLAIN)[i % 3]},
    }) for i in range(n)]  # fmt: skip


def make_pipeline(ch: Any, embedder: OpenClipEmbedder, exporter: EvaluationExporter) -> Pipeline:
    """Two text signals (answers, prompts) on the tiny embedder, exporting to ``exporter``."""
    for spec in (
        SignalSpec(name="advice", threshold=0.5,
                   examples=Examples(positive=ADVICE, negative=PLAIN)),
        SignalSpec(name="prompt_advice", target="prompt", threshold=0.5,
                   examples=Examples(positive=ADVICE, negative=PLAIN)),
    ):  # fmt: skip
        ClickHouseSignalStore(ch).save(train_signal(spec, embedder))
    bank = LiveSignals(ClickHouseSignalStore(ch), embedder.id, refresh_s=0)
    return Pipeline(embedder, bank, ClickHouseWriter(ch), export=exporter.offer)


def stored_scores(ch: Any) -> dict[tuple[str, str], tuple[int, float, bool]]:
    rows = ch.query("SELECT event_id, signal, signal_version, score, flagged FROM signal_scores")
    return {(r[0], r[1]): (int(r[2]), float(r[3]), bool(r[4])) for r in rows.result_rows}


def check_records(
    records: list[LogRecord],
    events: list[GenerationEvent],
    stored: dict[tuple[str, str], tuple[int, float, bool]],
) -> None:
    """One record per stored (event, signal), with that row's values and the span's ids."""
    by_id = {e.event_id: e for e in events}
    keys = [(attrs(r)["telltale.event_id"], attrs(r)["gen_ai.evaluation.name"]) for r in records]
    assert len(keys) == len(set(keys)), "a score was exported twice"
    assert set(keys) == set(stored)
    for record in records:
        a = attrs(record)
        event = by_id[a["telltale.event_id"]]
        version, score, flagged = stored[(a["telltale.event_id"], a["gen_ai.evaluation.name"])]
        assert record.event_name == EVENT_NAME
        assert a["telltale.signal.version"] == version
        assert a["gen_ai.evaluation.score.value"] == pytest.approx(score, abs=1e-6)
        assert a["gen_ai.evaluation.score.label"] == (FLAGGED if flagged else NOT_FLAGGED)
        assert (a["gen_ai.request.model"], a["telltale.model_version"]) == (
            event.model, event.model_version)  # fmt: skip
        assert record.time_unix_nano > 0
        if "otel.trace_id" in event.attributes:  # decoded from a span: linked to it
            assert record.trace_id.hex() == event.attributes["otel.trace_id"]
            assert record.span_id.hex() == event.attributes["otel.span_id"]
            assert event.event_id == f"{record.trace_id.hex()}-{record.span_id.hex()}"
        else:
            assert (record.trace_id, record.span_id) == (b"", b"")
        if "gen_ai.response.id" in event.attributes:
            assert a["gen_ai.response.id"] == event.attributes["gen_ai.response.id"]


# ---- (a) OTLP/HTTP ---------------------------------------------------------------------------


def test_otlp_http_one_record_per_event_and_signal_linked_to_the_spans(
    ch: Any, tiny_embedder: OpenClipEmbedder, receiver: Receiver
) -> None:
    config = OtelExportConfig(
        export="otlp_http", export_endpoint=receiver.url, export_batch_size=7,
        export_batch_timeout_s=0.05, export_headers=SecretStr("x-api-key=s3cr%3Dt, x-team=ml"),
    )  # fmt: skip
    exporter = build_exporter(config)
    assert exporter is not None
    pipeline = make_pipeline(ch, tiny_embedder, exporter)
    events = [*otlp_events(), *plain_events(6)]
    result = pipeline.process(events)
    # the span with an s3:// image is refused by the default image policy; the rest is stored
    assert result.written == len(events) - len(result.rejected) > len(events) - 2
    assert result.scores > result.written
    exporter.close(timeout_s=10)

    stored = stored_scores(ch)
    assert len(stored) == result.scores
    records = receiver.records()
    check_records(records, events, stored)
    linked = [r for r in records if r.trace_id]
    assert linked and len(linked) < len(records)  # the OTLP events linked, the JSON ones not
    assert (exporter.sent, exporter.dropped, exporter.failed_requests) == (len(records), 0, 0)
    assert len(receiver.requests) >= -(-len(records) // 7)  # batches of at most 7
    for path, headers, _ in receiver.requests:
        assert path == "/v1/logs"
        assert headers["content-type"] == "application/x-protobuf"
        assert (headers["x-api-key"], headers["x-team"]) == ("s3cr=t", "ml")

    # The same events again: already stored, so nothing is scored or exported twice.
    again = build_exporter(config)
    assert again is not None
    Pipeline(tiny_embedder, LiveSignals(ClickHouseSignalStore(ch), tiny_embedder.id,
                                        refresh_s=0),
             ClickHouseWriter(ch), export=again.offer).process(events)  # fmt: skip
    again.close(timeout_s=5)
    assert again.offered == 0 and len(receiver.records()) == len(records)


def test_retryable_answers_are_retried_and_a_bad_request_is_dropped() -> None:
    flaky = Receiver(statuses=(503, 429))
    refusing = Receiver(statuses=(400,))
    try:
        events = plain_events(3)
        rows = [_row(e, "advice") for e in events]
        for target, sent, dropped, posts in ((flaky, 3, 0, 3), (refusing, 0, 3, 1)):
            exporter = build_exporter(OtelExportConfig(
                export="otlp_http", export_endpoint=target.url + "/v1/logs",
                export_batch_timeout_s=0.05, export_retries=3, export_retry_initial_s=0.01,
                export_retry_max_s=0.02,
            ))  # fmt: skip
            assert exporter is not None
            exporter.offer(events, rows)
            exporter.close(timeout_s=5)
            assert (exporter.sent, exporter.dropped, len(target.requests)) == (sent, dropped, posts)
            assert {p for p, _, _ in target.requests} == {"/v1/logs"}  # not /v1/logs/v1/logs
        assert "HTTP 400" in exporter.last_error
    finally:
        flaky.close()
        refusing.close()


# ---- (b) Kafka, through `telltale replay` ----------------------------------------------------


def test_replay_exports_to_kafka_as_the_collector_reads_it(
    tiny_env: dict[str, str], tmp_path: Path, kafka_bootstrap: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    """A log of OTLP-derived and plain events, replayed by the CLI with
    ``TELLTALE_OTEL_EXPORT=kafka``: the topic holds one record per event and signal, each
    decoded as the Collector's kafka receiver decodes ``otlp_proto`` logs (``LogsData``)."""
    from kafka import KafkaConsumer
    from typer.testing import CliRunner

    from storage.client import connect
    from telltale.cli import app

    topic = f"evaluations-{uuid.uuid4().hex[:8]}"
    for key, value in {"TELLTALE_OTEL_EXPORT": "kafka", "TELLTALE_OTEL_EXPORT_TOPIC": topic,
                       "TELLTALE_KAFKA_BOOTSTRAP": kafka_bootstrap,
                       "TELLTALE_OTEL_EXPORT_BATCH_TIMEOUT_S": "0.1"}.items():  # fmt: skip
        monkeypatch.setenv(key, value)
    events = [*otlp_events(), *plain_events(4)]
    log = tmp_path / "replayed.jsonl"
    log.write_bytes(b"\n".join(encode_event(e) for e in events))
    dsn = f"chdb://{tmp_path / 'db'}"
    runner = CliRunner()

    def run(*args: str) -> str:
        result = runner.invoke(app, [*args, "--clickhouse", dsn])
        assert result.exit_code == 0, result.output
        return result.stdout

    run("signals", "add", str(EXAMPLES / "stock_advice.yaml"))
    run("signals", "add", str(EXAMPLES / "jailbreak.yaml"))
    summary = json.loads(run("replay", str(log), "--reject-file", str(tmp_path / "rej.jsonl"),
                             "--format", "json"))  # fmt: skip
    # spans with an image the default policy refuses (s3://) are rejected; the rest is stored
    assert summary["written"] + summary["rejected"] == len(events) > summary["written"] > 6
    assert summary["export_dropped"] == 0

    consumer = KafkaConsumer(topic, bootstrap_servers=kafka_bootstrap,
                             auto_offset_reset="earliest", consumer_timeout_ms=2_000,
                             group_id=f"check-{topic}")  # fmt: skip
    records: list[LogRecord] = []
    deadline = time.monotonic() + 30
    while len(records) < summary["exported"] and time.monotonic() < deadline:
        for message in consumer:
            records.extend(_records(LogsData.FromString(message.value).resource_logs))
    consumer.close()
    assert len(records) == summary["exported"] > len(events)

    client = connect(dsn)
    try:
        check_records(records, events, stored_scores(client))
    finally:
        client.close()
    assert {attrs(r)["gen_ai.evaluation.name"] for r in records} == {
        "stock_advice", "jailbreak_attempt"}  # fmt: skip
    rates = json.loads(run("rates", "--format", "json"))["rates"]
    flagged = [r for r in records
               if attrs(r)["gen_ai.evaluation.score.label"] == FLAGGED]  # fmt: skip
    assert sum(r["events"] for r in rates) == len(records)
    assert sum(r["failures"] for r in rates) == len(flagged)
    linked = [r for r in records if r.trace_id]
    per_signal = {name: sum(attrs(r)["gen_ai.evaluation.name"] == name for r in records)
                  for name in ("stock_advice", "jailbreak_attempt")}  # fmt: skip
    print(
        f"\n{len(records)} records from topic {topic} for {summary['written']} stored events "
        f"({per_signal}); {len(linked)} linked to their spans; replay summary: {summary}"
    )
    print(
        "a decoded record (trace_id",
        linked[0].trace_id.hex(),
        "span_id",
        linked[0].span_id.hex() + "):\n",
        linked[0],
    )


def test_a_kafka_topic_the_worker_reads_is_refused_before_anything_is_consumed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from streams import ExportMisconfigured
    from telltale.settings import Settings
    from telltale.wiring import make_worker_app

    config = OtelExportConfig(export="kafka", export_topic="otlp_spans")
    with pytest.raises(ExportMisconfigured, match="TELLTALE_OTEL_EXPORT_TOPIC"):
        build_exporter(config, KafkaConfig())
    monkeypatch.setattr("telltale.wiring.check_credentials", lambda *_: None)
    with pytest.raises(ExportMisconfigured):
        make_worker_app(Settings(otel_export=config))


# ---- (c) the worker is never held up ---------------------------------------------------------


def test_an_unreachable_endpoint_drops_and_counts_without_holding_the_caller() -> None:
    exporter = build_exporter(OtelExportConfig(
        export="otlp_http", export_endpoint=f"http://127.0.0.1:{closed_port()}",
        export_queue_size=100, export_batch_size=20, export_batch_timeout_s=0.01,
        export_retries=2, export_retry_initial_s=0.05, export_retry_max_s=0.1,
    ))  # fmt: skip
    assert exporter is not None
    events = plain_events(50)
    started = time.monotonic()
    for _ in range(10):  # 10 stored batches of 50 events, 2 signals each: 1,000 records
        exporter.offer(events, [_row(e, s) for e in events for s in ("a", "b")])
    assert time.monotonic() - started < 0.5  # the caller never waits on the network
    # beyond the queue (100) and the one request in flight (20): dropped at once
    assert exporter.offered == 1_000 and exporter.dropped >= 1_000 - 100 - 20
    started = time.monotonic()
    exporter.close(timeout_s=1.0)
    assert time.monotonic() - started < 3.0
    assert exporter.sent == 0 and exporter.dropped == 1_000 and exporter.queued == 0
    assert exporter.failed_requests >= 1 and "unreachable" in exporter.last_error
    exporter.offer(events, [_row(events[0], "a")])  # after close: dropped, no error
    assert exporter.dropped == 1_001


def test_a_full_queue_drops_and_counts_and_the_rest_is_sent_at_close() -> None:
    gate = threading.Event()

    class Stuck:
        def __init__(self) -> None:
            self.payloads: list[bytes] = []

        def send(self, payload: bytes) -> None:
            gate.wait(5)
            self.payloads.append(payload)

        def close(self) -> None:
            return None

    sender = Stuck()
    exporter = EvaluationExporter(sender, ExportTuning(queue_size=10, batch_size=100,
                                                       batch_timeout_s=60))  # fmt: skip
    events = plain_events(25)
    exporter.offer(events, [_row(e, "a") for e in events])
    assert (exporter.offered, exporter.queued, exporter.dropped) == (25, 10, 15)
    gate.set()
    exporter.close(timeout_s=5)
    assert (exporter.sent, exporter.dropped) == (10, 15)
    [payload] = sender.payloads
    assert len(_records(ExportLogsServiceRequest.FromString(payload).resource_logs)) == 10


def test_a_failing_export_never_fails_a_stored_batch(
    ch: Any, tiny_embedder: OpenClipEmbedder
) -> None:
    class Broken:
        def send(self, payload: bytes) -> None:
            raise SendFailed("always", retryable=False)

        def close(self) -> None:
            return None

    exporter = EvaluationExporter(Broken(), ExportTuning(batch_timeout_s=0.01))
    pipeline = make_pipeline(ch, tiny_embedder, exporter)
    result = pipeline.process(plain_events(4))
    assert result.written == 4
    exporter.close(timeout_s=2)
    assert exporter.sent == 0 and exporter.dropped == result.scores

    def explode(*_: Any) -> None:
        raise RuntimeError("a bug in an export")

    bank = LiveSignals(ClickHouseSignalStore(ch), tiny_embedder.id, refresh_s=0)
    broken = Pipeline(tiny_embedder, bank, ClickHouseWriter(ch), export=explode)
    assert broken.process(plain_events(6)).written == 2  # stored all the same


# ---- settings and ids ------------------------------------------------------------------------


def test_settings_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    from telltale.settings import SettingsError, load_settings

    monkeypatch.setenv("TELLTALE_OTEL_EXPORT", "otlp_http")
    monkeypatch.setenv("TELLTALE_OTEL_EXPORT_ENDPOINT", "https://otel.example:4318/")
    monkeypatch.setenv("TELLTALE_OTEL_EXPORT_HEADERS", "authorization=Bearer%20tok")
    monkeypatch.setenv("TELLTALE_OTEL_EXPORT_QUEUE_SIZE", "50")
    config = load_settings().otel_export
    assert (config.export, config.export_queue_size) == ("otlp_http", 50)
    assert logs_url(config.export_endpoint) == "https://otel.example:4318/v1/logs"
    assert parse_headers(config.export_headers) == {"authorization": "Bearer tok"}
    assert "tok" not in repr(config)  # the headers are a secret
    monkeypatch.setenv("TELLTALE_OTEL_EXPORT_HEADERS", "no-equals-sign")
    with pytest.raises(SettingsError, match="TELLTALE_OTEL_EXPORT_HEADERS") as caught:
        load_settings()
    assert "no-equals-sign" not in str(caught.value)
    monkeypatch.delenv("TELLTALE_OTEL_EXPORT_HEADERS")
    monkeypatch.setenv("TELLTALE_OTEL_EXPORT_ENDPOINT", "file:///etc/passwd")
    with pytest.raises(SettingsError, match="TELLTALE_OTEL_EXPORT_ENDPOINT"):
        load_settings()
    monkeypatch.setenv("TELLTALE_OTEL_EXPORT", "off")
    monkeypatch.delenv("TELLTALE_OTEL_EXPORT_ENDPOINT")
    assert build_exporter(load_settings().otel_export) is None


@pytest.mark.parametrize(
    ("trace", "span", "sizes"),
    [
        ("0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331", (16, 8)),
        ("0" * 32, "0" * 16, (0, 0)),  # a log record outside a span
        ("0af7651916cd43dd8448eb211c80319c", "b7ad", (16, 0)),  # linked to the trace only
        ("zz" * 16, "b7ad6b7169203331", (0, 8)),
        ("", "", (0, 0)),
    ],
)
def test_only_valid_ids_are_set_on_a_record(trace: str, span: str, sizes: tuple[int, int]) -> None:
    trace_id, span_id = span_ids({"otel.trace_id": trace, "otel.span_id": span})
    assert (len(trace_id), len(span_id)) == sizes
    assert trace_id.hex() in ("", trace) and span_id.hex() in ("", span)


def _row(event: GenerationEvent, signal: str) -> ScoreRow:
    return ScoreRow(event.event_id, signal, 1, event.timestamp, event.model,
                    event.model_version, 0.25, False)  # fmt: skip
