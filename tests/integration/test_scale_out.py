"""Two worker processes in one consumer group on the real broker: each event written once.

Each worker owns its own embedded chDB (chDB allows one process per data path; in production
both would write to one ClickHouse server). Reading both databases afterwards shows how the
group split the work: every event is in exactly one of them.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from kafka.admin import KafkaAdminClient, NewTopic
from kafka_io import wait_committed
from testenv import TINY_ENV

from storage.client import connect
from streams.emitter import Emitter
from streams.events import validate_event

pytestmark = [pytest.mark.integration, pytest.mark.slow]
N_EVENTS = 600


def wait_for_shared_generation(logs: list[Path], timeout: float = 120.0) -> int:
    """Until every worker has joined the same (latest) group generation and was assigned."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        generations = []
        for log in logs:
            text = log.read_text(errors="replace")
            joined = [int(g) for g in re.findall(r"\(generation (\d+)\)", text)]
            assigned = "Worker ready" in text or "Resuming flow" in text
            generations.append(max(joined) if joined and assigned else -1)
        if min(generations) >= 0 and len(set(generations)) == 1:
            time.sleep(2.0)  # let the assignment settle before any event is sent
            return generations[0]
        time.sleep(0.5)
    raise AssertionError("the workers did not settle in one group generation")


def stored_ids(db: Path) -> set[str]:
    client = connect(f"chdb://{db}")
    try:
        return {r[0] for r in client.query("SELECT event_id FROM events FINAL").result_rows}
    finally:
        client.close()


def test_two_workers_share_partitions_and_write_each_event_once(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    suffix = uuid.uuid4().hex[:8]
    topic, group = f"gen-{suffix}", f"scale-{suffix}"
    admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    admin.create_topics([NewTopic(topic, 4, 1), NewTopic(f"{topic}.dlq", 4, 1)])
    admin.close()
    env = {**os.environ, **TINY_ENV, "TELLTALE_KAFKA_TOPIC": topic,
           "TELLTALE_KAFKA_DLQ_TOPIC": f"{topic}.dlq", "TELLTALE_KAFKA_GROUP_ID": group,
           "TELLTALE_KAFKA_PARTITIONS": "4", "TELLTALE_KAFKA_SESSION_TIMEOUT_S": "6",
           "TELLTALE_WORKER_BATCH_SIZE": "50"}  # fmt: skip
    workers, logs = [], []
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        logs.append((tmp_path / f"{name}.log").open("wb"))
        workers.append(subprocess.Popen(
            [sys.executable, "-m", "telltale.cli", "worker", "--clickhouse",
             f"chdb://{tmp_path / name / 'db'}", "--kafka", kafka_bootstrap],
            cwd=tmp_path / name, env=env, stdout=logs[-1], stderr=subprocess.STDOUT,
        ))  # fmt: skip
    try:
        wait_for_shared_generation([tmp_path / "a.log", tmp_path / "b.log"])
        start = datetime.now(UTC) - timedelta(minutes=10)
        with Emitter(kafka_bootstrap, topic) as emitter:
            for i in range(N_EVENTS):
                when = (start + timedelta(seconds=i)).isoformat()
                emitter.emit(validate_event({
                    "event_id": f"so-{i:04d}", "timestamp": when, "model": "chat",
                    "model_version": "v1", "output": {"text": f"answer {i}"},
                }))  # fmt: skip
        wait_committed(kafka_bootstrap, group, topic, N_EVENTS, workers[0], timeout=180)
        assert workers[1].poll() is None, "second worker exited early"
    finally:
        for proc in workers:
            proc.send_signal(signal.SIGTERM)
        for proc in workers:
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for log in logs:
            log.close()
    assert [p.returncode for p in workers] == [0, 0]
    a, b = stored_ids(tmp_path / "a" / "db"), stored_ids(tmp_path / "b" / "db")
    assert a and b, "both workers must have received partitions"
    assert not a & b, f"{len(a & b)} events written by both workers"
    assert a | b == {f"so-{i:04d}" for i in range(N_EVENTS)}
