"""``/metrics`` of a real worker on the real broker during a replay, against ``telltale rates``.

A log of 1,000 events (two model versions, two signals) is replayed onto Kafka with
``telltale replay --to-kafka`` and 20 malformed payloads are sent beside it; the worker (the
``telltale worker`` command, health port set) stores and scores them. Its ``/metrics`` is
scraped while it runs and parsed with ``prometheus_client``'s parser: the scored and flagged
counts per (signal, model, model_version) equal what ``telltale rates`` reads from storage, the
events seen and stored equal the log, the dead letters equal the malformed payloads, and the
consumer lag returns to 0 once everything is committed. Run with ``-s`` to see the series.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from kafka_io import fresh_topics, wait_committed
from prometheus_client.parser import text_string_to_metric_families
from test_worker import (
    ADVICE,
    BENIGN,
    JAILBREAK,
    N_BAD,
    N_EVENTS,
    NEUTRAL,
    bad_payloads,
    free_port,
    planted_events,
)
from testenv import TINY_ENV

from signals.open_clip_embedder import OpenClipEmbedder
from signals.spec import Examples, SignalSpec
from signals.training import train_signal
from storage.client import connect
from storage.migrate import migrate
from streams.emitter import Emitter
from telltale.signal_store import ClickHouseSignalStore

pytestmark = pytest.mark.integration

Key = tuple[str, str, str]


def scrape(port: int) -> dict[str, list[tuple[dict[str, str], float]]]:
    """``GET /metrics``, parsed: samples by name."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        assert response.headers["Content-Type"].startswith("text/plain; version=")
        text = response.read().decode()
    series: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            series.setdefault(sample.name, []).append((dict(sample.labels), sample.value))
    return series


def per_signal(series: dict[str, Any], name: str) -> dict[Key, int]:
    return {(labels["signal"], labels["model"], labels["model_version"]): int(value)
            for labels, value in series.get(name, [])}  # fmt: skip


def total(series: dict[str, Any], name: str) -> float:
    return sum(value for _, value in series.get(name, []))


def run_cli(env: dict[str, str], cwd: Path, *args: str) -> str:
    done = subprocess.run([sys.executable, "-m", "telltale.cli", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300, check=False)  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


@pytest.mark.slow
def test_scraped_metrics_match_telltale_rates(
    kafka_bootstrap: str, tmp_path: Path, tiny_embedder: OpenClipEmbedder
) -> None:
    topic, dlq, group = fresh_topics(kafka_bootstrap)
    db = tmp_path / "db"
    client = connect(f"chdb://{db}")
    migrate(client)
    store = ClickHouseSignalStore(client)
    store.save(train_signal(SignalSpec(name="stock_advice", target="output", threshold=0.5,
                                       examples=Examples(positive=ADVICE, negative=NEUTRAL)),
                            tiny_embedder))  # fmt: skip
    store.save(train_signal(SignalSpec(name="jailbreak", target="prompt", threshold=0.5,
                                       examples=Examples(positive=JAILBREAK, negative=BENIGN)),
                            tiny_embedder))  # fmt: skip
    client.close()

    events, _, _ = planted_events()
    log_file = tmp_path / "log.jsonl"
    log_file.write_text("".join(json.dumps(e) + "\n" for e in events))
    port = free_port()
    env = {
        **os.environ, **TINY_ENV, "TELLTALE_KAFKA_TOPIC": topic, "TELLTALE_KAFKA_DLQ_TOPIC": dlq,
        "TELLTALE_KAFKA_GROUP_ID": group, "TELLTALE_KAFKA_SESSION_TIMEOUT_S": "6",
        "TELLTALE_WORKER_BATCH_SIZE": "200", "TELLTALE_WORKER_HEALTH_PORT": str(port),
        "TELLTALE_WORKER_METRICS_LAG_INTERVAL_S": "1", "TELLTALE_WORKER_METRICS_REFRESH_S": "2",
    }  # fmt: skip
    worker_log = tmp_path / "worker.log"
    with worker_log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "telltale.cli", "worker", "--clickhouse", f"chdb://{db}",
             "--kafka", kafka_bootstrap],
            cwd=tmp_path, env=env, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
        try:
            replayed = run_cli(env, tmp_path, "replay", str(log_file), "--to-kafka", "--kafka",
                               kafka_bootstrap, "--format", "json")  # fmt: skip
            assert json.loads(replayed)["sent_to_kafka"] == N_EVENTS
            with Emitter(kafka_bootstrap, topic) as emitter:
                for i, raw in enumerate(bad_payloads()):
                    emitter.emit_raw(raw, key=f"bad-{i}")
            wait_committed(kafka_bootstrap, group, topic, N_EVENTS + N_BAD, proc)
            deadline = time.monotonic() + 60
            while True:  # the lag is measured every second: it reaches 0 once all is committed
                series = scrape(port)
                lags = [(labels["partition"], v) for labels, v
                        in series.get("telltale_worker_consumer_lag", [])
                        if labels["topic"] == topic]  # fmt: skip
                if len(lags) == 3 and sum(v for _, v in lags) == 0:
                    break
                assert time.monotonic() < deadline, f"lag never reached 0: {lags}"
                time.sleep(1.0)
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    assert proc.returncode == 0, worker_log.read_text(errors="replace")[-3000:]

    rates = json.loads(run_cli(env, tmp_path, "rates", "--clickhouse", f"chdb://{db}",
                               "--format", "json"))["rates"]  # fmt: skip
    stored_events = {(r["signal"], r["model"], r["model_version"]): r["events"] for r in rates}
    stored_failures = {(r["signal"], r["model"], r["model_version"]): r["failures"] for r in rates}
    scored = per_signal(series, "telltale_worker_signal_scored_total")
    flagged = per_signal(series, "telltale_worker_signal_flagged_total")

    print("\n/metrics of the worker (scraped during the replay, after its last commit):")
    for name in sorted(series):
        if name.startswith("telltale_") and not name.endswith("_created"):
            for labels, value in series[name]:
                shown = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
                print(f"  {name}{{{shown}}} {value:g}")
    print(
        "\nsignal        model  version  scored(/metrics)  events(rates)  "
        "flagged(/metrics)  failures(rates)"
    )
    for key in sorted(stored_events):
        print(
            f"  {key[0]:<12} {key[1]:<6} {key[2]:<8} {scored.get(key, 0):>16} "
            f"{stored_events[key]:>14} {flagged.get(key, 0):>18} {stored_failures[key]:>16}"
        )

    assert scored == stored_events
    assert flagged == stored_failures
    versions = {"v1": 600, "v2": 400}
    for name in ("telltale_worker_events_seen_total", "telltale_worker_events_scored_total"):
        got = {labels["model_version"]: int(v) for labels, v in series[name]
               if labels["model"] == "chat"}  # fmt: skip
        assert got == versions, name
    dead = {labels["reason"]: int(v) for labels, v in series["telltale_worker_dead_letters_total"]}
    assert sum(dead.values()) == N_BAD
    assert total(series, "telltale_worker_sampling_rate") == 1.0
    assert "telltale_open_incidents" not in series or total(series, "telltale_open_incidents") == 0
