"""``telltale serve --all``: worker, monitor and API in one process over one embedded chDB, on the
real broker; and the monitor rebuilding its detectors when events arrive after their minute."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from alerts_seed import T0, traffic
from testenv import TINY_ENV, free_port

from alerts.delivery.monitor import Monitor
from alerts.settings import MonitorConfig
from storage.client import connect
from streams.emitter import Emitter
from streams.events import GenerationEvent, encode_event

MIN = timedelta(minutes=1)


def _wait(url: str, proc: subprocess.Popen[bytes], log: Path, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while True:
        assert proc.poll() is None, log.read_text()
        assert time.monotonic() < deadline, "serve --all did not become ready"
        try:
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.3)


def _series(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    from prometheus_client.parser import text_string_to_metric_families

    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}  # fmt: skip


@pytest.mark.integration
@pytest.mark.slow
def test_all_in_one_streams_scores_records_and_reports(
    kafka_bootstrap: str, topic_name: str, tmp_path: Path
) -> None:
    dsn = f"chdb://{tmp_path / 'chdb'}"
    port = free_port()
    env = {
        **os.environ, **TINY_ENV, "PYTHONPATH": os.getcwd(), "TELLTALE_CLICKHOUSE_DSN": dsn,
        "TELLTALE_KAFKA_BOOTSTRAP": kafka_bootstrap, "TELLTALE_KAFKA_TOPIC": topic_name,
        "TELLTALE_KAFKA_DLQ_TOPIC": f"{topic_name}.dlq",
        "TELLTALE_KAFKA_CONTROL_TOPIC": f"{topic_name}.control",
        "TELLTALE_KAFKA_GROUP_ID": f"g-{topic_name}", "TELLTALE_KAFKA_PARTITIONS": "1",
        "TELLTALE_KAFKA_SESSION_TIMEOUT_S": "6", "TELLTALE_WORKER_BATCH_TIMEOUT_S": "0.3",
        "TELLTALE_MONITOR_INTERVAL_S": "2", "TELLTALE_SERVE_RECORD_TO": "kafka",
        "TELLTALE_SERVE_API_KEYS": "k-123",
    }  # fmt: skip
    subprocess.run([sys.executable, "-m", "telltale.cli", "signals", "add",
                    "examples/stock_advice.yaml"], env=env, check=True,
                   capture_output=True)  # fmt: skip
    log = tmp_path / "serve.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "telltale.cli", "serve", "--all", "--port", str(port)],
            env=env, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    headers = {"X-API-Key": "k-123"}
    now = datetime.now(UTC).replace(microsecond=0)
    fake = np.random.default_rng(0).normal(size=384).astype(np.float32)  # all-MiniLM-L6-v2
    fake /= np.linalg.norm(fake)
    try:
        _wait(url, proc, log)
        probe = httpx.post(f"{url}/v1/score", headers=headers, timeout=60,
                           json={"model": "chat", "model_version": "v1",
                                 "output": {"text": "hello"}})  # fmt: skip
        embedder_id = probe.json()["embedder_id"]  # not recorded: the rates stay at 32 below
        with Emitter(kafka_bootstrap, topic_name) as emitter:
            for i in range(30):
                emitter.emit(GenerationEvent.model_validate({
                    "event_id": f"k-{i}", "timestamp": (now - i * MIN).isoformat(),
                    "model": "chat", "model_version": "v1",
                    "output": {"text": f"Put your savings into NVDA stock now ({i})."},
                }))  # fmt: skip
            # A payload that carries its vector: the worker stores it instead of embedding.
            carried = json.loads(encode_event(GenerationEvent.model_validate({
                "event_id": "carried", "timestamp": now.isoformat(), "model": "chat",
                "model_version": "v1", "output": {"text": "Water falls as rain."},
            })))  # fmt: skip
            carried["embeddings"] = {"embedder_id": embedder_id, "output.text": fake.tolist()}
            emitter.emit_raw(json.dumps(carried).encode(), key="carried")
        recorded = httpx.post(
            f"{url}/v1/score", params={"record": "true"}, headers=headers, timeout=60,
            json={"event_id": "via-api", "model": "chat", "model_version": "v1",
                  "output": {"text": "Sell your index funds and buy TSLA immediately."}},
        )  # fmt: skip
        assert recorded.status_code == 200 and recorded.json()["recorded"] is True
        assert httpx.get(f"{url}/v1/rates", timeout=30).status_code == 401  # key required

        deadline = time.monotonic() + 180
        while True:
            rates = httpx.get(f"{url}/v1/rates", headers=headers, timeout=60).json()["rates"]
            if rates and rates[0]["events"] == 32:
                break
            assert time.monotonic() < deadline, (rates, log.read_text()[-3000:])
            time.sleep(1)
        assert rates[0]["signal"] == "stock_advice" and rates[0]["model"] == "chat"
        # /metrics: the worker's counters beside the API's, equal to the stored rates
        while True:
            scraped = _series(httpx.get(f"{url}/metrics", headers=headers, timeout=30).text)
            key = (("model", "chat"), ("model_version", "v1"), ("signal", "stock_advice"))
            if scraped.get(("telltale_worker_signal_scored_total", key)) == 32:
                break
            assert time.monotonic() < deadline, scraped
            time.sleep(1)
        assert scraped[("telltale_worker_signal_flagged_total", key)] == rates[0]["failures"]
        assert scraped[("telltale_serve_signal_scored_total", key)] == 2  # probe + recorded
        assert scraped[("telltale_worker_sampling_rate", ())] == 1.0

        page = httpx.get(f"{url}/", params={"range": "1h"}, headers=headers, timeout=120)
        assert page.status_code == 200 and page.text.startswith("<!DOCTYPE html>")
        assert '<select name="range">' in page.text and "Open detections" in page.text
        assert "chat" in page.text
        bad = httpx.get(f"{url}/", params={"since": "2026-11-30T10:00:00Z",
                                           "until": "2026-11-30T09:00:00Z"},
                        headers=headers, timeout=30)  # fmt: skip
        assert bad.status_code == 422 and "before" in bad.json()["detail"]
        detections = httpx.get(f"{url}/v1/detections", headers=headers, timeout=30)
        assert detections.status_code == 200 and "detections" in detections.json()
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            code = proc.wait(90)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
    assert code in (0, -signal.SIGTERM), log.read_text()[-3000:]
    assert "Traceback" not in log.read_text()
    client = connect(dsn)  # the server has released the data path
    try:
        vectors = dict(client.query(
            "SELECT event_id, vector FROM embeddings WHERE event_id IN ('carried', 'via-api')"
        ).result_rows)  # fmt: skip
    finally:
        client.close()
    np.testing.assert_allclose(vectors["carried"], fake, atol=1e-6)
    assert len(vectors["via-api"]) == 384


def test_late_events_rebuild_the_detectors(ch: Any) -> None:
    """Late events are recomputed either way: the monitor finds them itself through the
    ``ingested_at`` watermark (issue 10), and ``request_rewind`` (what ``serve --all`` calls)
    forces a rebuild; the detection book keeps a rebuild from opening the same thing twice."""
    settings = MonitorConfig.model_validate({"lookback_minutes": 600})
    monitor = Monitor(ch, settings)
    traffic(ch, model="chat", version="v1", start=T0, minutes=120, per_minute=30, rate=0.02,
            seed=1)  # fmt: skip
    assert monitor.run_once(now=T0 + 125 * MIN).open_detections == 0
    assert monitor.position == T0 + 123 * MIN
    # A canary's events of an hour ago arrive only now (a backlog): their minutes were processed.
    traffic(ch, model="chat", version="v2", start=T0 + 60 * MIN, minutes=60, per_minute=30,
            rate=0.15, seed=2)  # fmt: skip
    report = monitor.run_once(now=T0 + 126 * MIN)
    assert report.late_rows > 0 and report.recomputed
    assert report.open_detections == 1
    assert monitor.position == T0 + 124 * MIN  # a rebuild never moves the position back
    assert len(report.engine.opened) == 1 and "model=chat/v2" in report.engine.opened[0]
    # Nothing new landed: no rebuild unless asked for; asked for, the rebuild opens nothing twice.
    quiet = monitor.run_once(now=T0 + 127 * MIN)
    assert quiet.late_rows == 0 and not quiet.recomputed
    monitor.request_rewind()
    rebuilt = monitor.run_once(now=T0 + 128 * MIN)
    assert rebuilt.recomputed and rebuilt.engine.opened == []
    assert rebuilt.open_detections == 1
    assert monitor.position == T0 + 126 * MIN


def test_the_all_in_one_writer_asks_for_a_rewind_only_for_processed_minutes(ch: Any) -> None:
    from telltale.serving.server import _Monitored

    monitor = Monitor(ch, MonitorConfig.model_validate({"lookback_minutes": 600}))
    watched = _Monitored(monitor=monitor)
    watched.saw_events_at(T0)  # before the first cycle: nothing to rebuild
    assert not monitor._rewind.is_set()
    monitor.run_once(now=T0 + 10 * MIN)
    watched.saw_events_at(T0 + 9 * MIN)  # after the processed minutes: seen in time
    assert not monitor._rewind.is_set()
    watched.saw_events_at(T0 + 2 * MIN)
    assert monitor._rewind.is_set()


def test_huge_statistics_read_as_numbers_on_the_report() -> None:
    from dashboards.svg import format_value

    assert format_value(3.2180816738107616e17, "") == "3.22e+17"
    assert format_value(5.59e9, "") == "5.59G"
