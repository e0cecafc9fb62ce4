"""Production ingest end to end on the real broker, a real S3-compatible server and chDB.

One worker process (``telltale worker``, as users run it) reads at once:

* the Collector's OTLP topics: export batches of real SDK spans in ``otlp_proto`` and
  ``otlp_json``, every convention, plus inference-details log records;
* native events, among them an image on ``s3://`` (moto's server on 127.0.0.1) and one naming
  a local file, which the worker must refuse;
* delayed feedback, sent before and after its event, each record twice.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from kafka import KafkaAdminClient
from kafka.admin import NewTopic
from kafka_io import read_topic, wait_committed
from otlp_spans import details_logs, genai_batch, png_bytes, to_json, to_proto
from testenv import TINY_ENV

from signals.open_clip_embedder import OpenClipEmbedder
from signals.spec import Examples, SignalSpec
from signals.training import train_signal
from storage.client import connect
from storage.migrate import migrate
from streams.emitter import Emitter
from streams.events import validate_event
from streams.feedback import Feedback
from telltale.signal_store import ClickHouseSignalStore

pytestmark = pytest.mark.integration

AWS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing-secret",
    "AWS_DEFAULT_REGION": "us-east-1",
}


@pytest.fixture
def s3_endpoint(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """moto's S3 server on 127.0.0.1 (a free port), with a bucket ``images``."""
    import boto3
    from moto.server import ThreadedMotoServer

    for key, value in AWS.items():
        monkeypatch.setenv(key, value)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
    s3.create_bucket(Bucket="images")
    try:
        yield endpoint
    finally:
        server.stop()


def data_uri(color: tuple[int, int, int]) -> str:
    return "data:image/png;base64," + base64.b64encode(png_bytes(color)).decode()


def start_worker(
    db: Path, bootstrap: str, env: dict[str, str], log: Path
) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "telltale.cli", "worker", "--clickhouse", f"chdb://{db}",
         "--kafka", bootstrap],
        cwd=log.parent, env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT,
    )  # fmt: skip


def stop(proc: subprocess.Popen[bytes], log: Path) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    assert proc.returncode == 0, log.read_text(errors="replace")[-3000:]


def rows(client: Any, sql: str, **params: Any) -> list[tuple[Any, ...]]:
    return [tuple(r) for r in client.query(sql, parameters=params).result_rows]


@pytest.mark.slow
def test_otlp_images_and_feedback_through_the_worker(
    kafka_bootstrap: str, tmp_path: Path, tiny_embedder: OpenClipEmbedder, s3_endpoint: str
) -> None:
    import boto3

    tag = uuid.uuid4().hex[:8]
    topic, dlq = f"generations-{tag}", f"generations-{tag}.dlq"
    spans_topic, logs_topic, fb_topic = f"otlp_spans-{tag}", f"otlp_logs-{tag}", f"fb-{tag}"
    group = f"telltale-test-{tag}"
    admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    admin.create_topics(
        [NewTopic(t, 3, 1) for t in (topic, dlq, spans_topic, logs_topic, fb_topic)]
    )
    admin.close()

    boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1").put_object(
        Bucket="images", Key="cat.png", Body=png_bytes((210, 20, 20))
    )
    db = tmp_path / "db"
    client = connect(f"chdb://{db}")
    migrate(client)
    reds = [data_uri((200 + i * 5, 10 * i, 10)) for i in range(4)]
    blues = [data_uri((10, 10 * i, 200 + i * 5)) for i in range(4)]
    spec = SignalSpec(name="red_image", target="output", modality="image", threshold=0.5,
                      examples=Examples(positive=tuple(reds), negative=tuple(blues)))  # fmt: skip
    ClickHouseSignalStore(client).save(train_signal(spec, tiny_embedder))
    client.close()

    env = {
        **os.environ, **TINY_ENV, **AWS,
        "TELLTALE_KAFKA_TOPIC": topic, "TELLTALE_KAFKA_DLQ_TOPIC": dlq,
        "TELLTALE_KAFKA_GROUP_ID": group, "TELLTALE_KAFKA_SESSION_TIMEOUT_S": "6",
        "TELLTALE_KAFKA_OTLP_TOPICS": f"{spans_topic},{logs_topic}",
        "TELLTALE_KAFKA_FEEDBACK_TOPIC": fb_topic,
        "TELLTALE_IMAGES_S3_ENDPOINT_URL": s3_endpoint,
        "TELLTALE_IMAGES_BUCKETS": "images",
        "TELLTALE_WORKER_BATCH_TIMEOUT_S": "0.5",
    }  # fmt: skip
    batch = genai_batch(image_uri="s3://images/cat.png")
    json_batch = genai_batch(image_uri="s3://images/cat.png", tag="-json")
    logs_proto, _, want_log = details_logs()
    _, logs_json, _ = details_logs(tag="-2")
    local_png = tmp_path / "secret.png"
    local_png.write_bytes(png_bytes())
    now = datetime.now(UTC).replace(microsecond=0)

    def event(event_id: str, **extra: Any) -> Any:
        at = (now - timedelta(minutes=5)).isoformat()
        return validate_event({"event_id": event_id, "timestamp": at, "model": "chat",
                               "model_version": "v1", "app": "shop", **extra})  # fmt: skip

    def feedback(event_id: str, value: int, comment: str) -> Feedback:
        return Feedback(event_id=event_id, value=value, user_id="u-1", comment=comment,  # type: ignore[arg-type]
                        timestamp=now - timedelta(minutes=1))  # fmt: skip

    log = tmp_path / "worker.log"
    proc = start_worker(db, kafka_bootstrap, env, log)
    try:
        with Emitter(kafka_bootstrap, topic, feedback_topic=fb_topic) as emitter:
            # feedback before its event, twice
            emitter.feedback(feedback("fb-early", -1, "wrong answer"))
            emitter.feedback(feedback("fb-early", -1, "wrong answer"))
            emitter.emit_raw(to_proto(batch.spans), topic=spans_topic)
            emitter.emit_raw(to_json(json_batch.spans), topic=spans_topic)
            emitter.emit_raw(to_proto(batch.spans), topic=spans_topic)  # redelivered batch
            emitter.emit_raw(logs_proto, topic=logs_topic)
            emitter.emit_raw(logs_json, topic=logs_topic)
            emitter.emit_raw(b"\x0a\xff\xff garbage", topic=spans_topic)
        wait_committed(kafka_bootstrap, group, fb_topic, 2, proc)
        with Emitter(kafka_bootstrap, topic, feedback_topic=fb_topic) as emitter:
            emitter.emit(event("fb-early", output={"text": "The moon is cheese."}))
            emitter.emit(event("fb-late", output={"text": "Paris is in France."}))
            emitter.emit(event("fb-happy", output={"text": "Rain is condensed vapour."}))
            emitter.emit(event("img-s3", output={"image": "s3://images/cat.png"}))
            emitter.emit(event("img-local", output={"image": str(local_png)}))
        wait_committed(kafka_bootstrap, group, topic, 5, proc)
        with Emitter(kafka_bootstrap, topic, feedback_topic=fb_topic) as emitter:
            emitter.feedback(feedback("fb-late", 1, ""))
            emitter.feedback(feedback("fb-late", 1, ""))
            emitter.feedback(feedback("fb-happy", 1, "thanks"))
            emitter.feedback(Feedback(event_id="fb-late", rating=1, user_id="u-2",  # 1 of 5 stars
                                      timestamp=now, kind="rating"))  # fmt: skip
        wait_committed(kafka_bootstrap, group, fb_topic, 6, proc)
        wait_committed(kafka_bootstrap, group, spans_topic, 4, proc)
        wait_committed(kafka_bootstrap, group, logs_topic, 2, proc)
    finally:
        stop(proc, log)

    dead = [json.loads(v) for v in read_topic(kafka_bootstrap, dlq, 2, timeout=20)]
    reasons = {d["topic"]: d["reason"] for d in dead}
    assert len(dead) == 2, dead
    assert "OTLP" in reasons[spans_topic]
    assert "local image files are not allowed" in reasons[topic]

    client = connect(f"chdb://{db}")
    try:
        stored = {
            r[0]: r for r in rows(client, """
                SELECT event_id, model, model_version, app, prompt_text, output_text,
                       output_image, user_id, session_id, attributes['otel.convention'],
                       latency_ms, input_tokens, output_tokens
                FROM events FINAL""")
        }  # fmt: skip
        for spans in (batch, json_batch):
            ids = {s.name: f"{s.context.trace_id:032x}-{s.context.span_id:016x}"
                   for s in spans.spans}  # fmt: skip
            for name, want in spans.expected.items():
                row = stored[ids[name]]
                got = (row[1], row[2], row[3], row[4], row[5], row[7], row[8], row[9])
                assert got == (want.model, want.model_version, want.app, want.prompt,
                               want.output, want.user_id, want.session_id,
                               want.convention), name  # fmt: skip
                image = want.image if len(want.image) <= 2048 else f"inline:{len(want.image)}b"
                assert row[6] == image, name
                assert row[10] is not None and row[10] >= 0
                tokens = {"input_tokens": row[11], "output_tokens": row[12]}
                assert {k: v for k, v in tokens.items() if v is not None} == want.usage, name
        logs = [r for r in stored.values() if r[3] == "docs-bot"]
        assert len(logs) == 2 and {r[4] for r in logs} == {want_log.prompt}
        otlp_events = 2 * len(batch.expected) + 2
        assert len(stored) == otlp_events + 4  # fb-early/late/happy, img-s3; not img-local
        assert rows(client, "SELECT count() FROM events")[0][0] == len(stored)  # once each

        # generations without content: stored, not embedded
        empty = [k for k, r in stored.items() if r[9] == "none"]
        assert len(empty) == 2
        assert rows(client, "SELECT count() FROM embeddings WHERE event_id IN {ids:Array(String)}",
                    ids=empty)[0][0] == 0  # fmt: skip

        # the s3:// images (native event and OpenLIT span) were fetched, embedded and scored
        s3_ids = [k for k, r in stored.items() if r[6] == "s3://images/cat.png"]
        assert len(s3_ids) == 3
        scored = rows(client, "SELECT event_id, flagged FROM signal_scores FINAL "
                      "WHERE signal = 'red_image' AND event_id IN {ids:Array(String)}",
                      ids=s3_ids)  # fmt: skip
        assert {r[0] for r in scored} == set(s3_ids)

        # feedback: 6 records sent, 4 distinct, joined whichever arrived first
        assert rows(client, "SELECT count() FROM feedback FINAL")[0][0] == 4
        series = dict(rows(client, "SELECT event_id, flagged FROM signal_scores FINAL "
                           "WHERE signal = 'feedback.negative'"))  # fmt: skip
        # fb-late: +1 from one user, a 1-of-5-star rating from another: negatively rated
        assert series == {"fb-early": 1, "fb-late": 1, "fb-happy": 0}
    finally:
        client.close()

    result = subprocess.run(
        [sys.executable, "-m", "telltale.cli", "rates", "--signal", "feedback.negative",
         "--format", "json", "--clickhouse", f"chdb://{db}"],
        capture_output=True, text=True, env={**os.environ, **TINY_ENV}, timeout=120, check=True,
    )  # fmt: skip
    (rate,) = json.loads(result.stdout)["rates"]
    assert (rate["model"], rate["model_version"], rate["events"], rate["failures"]) == (
        "chat",
        "v1",
        3,
        2,
    )

    # tokens and cost per version of the OTLP log, priced when read (the worker stored tokens)
    prices = {"TELLTALE_USAGE_PRICES": "gpt-4o=2.5:10,gpt-4o-mini=0.15:0.6,gpt-4=30:60"}
    usage = subprocess.run(
        [sys.executable, "-m", "telltale.cli", "rates", "--usage", "--format", "json",
         "--clickhouse", f"chdb://{db}"],
        capture_output=True, text=True, env={**os.environ, **TINY_ENV, **prices}, timeout=120,
        check=True,
    )  # fmt: skip
    per_version = {(d["model"], d["model_version"]): d for d in json.loads(usage.stdout)["usage"]}
    gpt4o = per_version[("gpt-4o", "gpt-4o-2024-08-06")]
    counts = (gpt4o["events_with_usage"], gpt4o["input_tokens"], gpt4o["output_tokens"])
    assert counts == (2, 62, 14)
    assert gpt4o["cost"] == pytest.approx((62 * 2.5 + 14 * 10) / 1e6)
    assert per_version[("claude-3-5-sonnet", "2.3.0")]["cost"] is None  # no tokens, no price
    print(usage.stdout)
