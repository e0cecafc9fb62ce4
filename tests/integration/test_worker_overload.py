"""Overload control in a real worker on the real broker: a backlog lowers the sampling rate.

Events are waiting on the topic before the ``telltale worker`` command starts, with a lag bound
of one second (``TELLTALE_SAMPLE_MAX_LAG_S=1``): the worker is behind by far more, so the
overload control halves the sampler's load factor. The rate in effect shows on ``/healthz``,
``/readyz`` and the ``telltale_worker_sampling_rate`` gauge, and the change is logged.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from kafka_io import fresh_topics
from test_metrics import scrape, total
from test_worker import probe
from testenv import TINY_ENV, free_port

from storage.client import connect
from storage.migrate import migrate
from streams.emitter import Emitter
from streams.events import validate_event

pytestmark = pytest.mark.integration

N_EVENTS = 3000


@pytest.mark.slow
def test_a_backlog_lowers_the_sampling_rate_on_health_and_metrics(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    topic, dlq, group = fresh_topics(kafka_bootstrap)
    db = tmp_path / "db"
    client = connect(f"chdb://{db}")
    migrate(client)
    client.close()
    start = datetime.now(UTC) - timedelta(minutes=30)
    with Emitter(kafka_bootstrap, topic) as emitter:
        for i in range(N_EVENTS):
            emitter.emit(validate_event({
                "event_id": f"evt-{i:05d}", "timestamp": (start + timedelta(seconds=i)).isoformat(),
                "model": "chat", "model_version": "v1", "user_id": f"u{i % 300}",
                "output": {"text": f"answer number {i}"},
            }))  # fmt: skip
    port = free_port()
    env = {
        **os.environ, **TINY_ENV, "TELLTALE_KAFKA_TOPIC": topic, "TELLTALE_KAFKA_DLQ_TOPIC": dlq,
        "TELLTALE_KAFKA_GROUP_ID": group, "TELLTALE_KAFKA_SESSION_TIMEOUT_S": "6",
        "TELLTALE_TEXT_EMBEDDER_MODEL": "open_clip", "TELLTALE_WORKER_BATCH_SIZE": "50",
        "TELLTALE_WORKER_HEALTH_PORT": str(port), "TELLTALE_WORKER_METRICS_LAG_INTERVAL_S": "30",
        # a bound the backlog is far past; measured twice a second; no doubling back in the test
        "TELLTALE_SAMPLE_MAX_LAG_S": "1", "TELLTALE_SAMPLE_LAG_INTERVAL_S": "0.5",
        "TELLTALE_SAMPLE_WINDOW_S": "2", "TELLTALE_SAMPLE_RECOVER_AFTER_S": "600",
    }  # fmt: skip
    worker_log = tmp_path / "worker.log"
    with worker_log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "telltale.cli", "worker", "--clickhouse", f"chdb://{db}",
             "--kafka", kafka_bootstrap],
            cwd=tmp_path, env=env, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
        try:
            deadline = time.monotonic() + 180
            while True:
                assert proc.poll() is None, worker_log.read_text(errors="replace")[-3000:]
                assert time.monotonic() < deadline, worker_log.read_text(errors="replace")[-3000:]
                try:
                    status, health = probe(port, "/healthz")
                except OSError:  # not listening yet
                    status, health = 0, {}
                if status == 200 and health["sampling_rate"] < 1.0:
                    break
                time.sleep(0.5)
            rate = health["sampling_rate"]
            assert rate in {2.0**-k for k in range(1, 7)}  # halvings, at most down to 1/64
            _, ready = probe(port, "/readyz")
            assert ready["sampling_rate"] <= rate  # only ever lower while the backlog lasts
            gauge = total(scrape(port), "telltale_worker_sampling_rate")
            assert gauge <= rate
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    output = worker_log.read_text(errors="replace")
    assert proc.returncode == 0, output[-3000:]
    assert "overload control on" in output
    assert "sampling rate now 0.5 (was 1)" in output, output[-3000:]
    assert "Traceback" not in output
