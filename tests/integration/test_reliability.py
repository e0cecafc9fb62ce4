"""Reliability on the real broker and the real ClickHouse engine: crashes, outages, shutdown.

Every test runs ``telltale worker`` as a subprocess (the real faust worker, Tansu broker, chDB),
hurts it for real, and then proves from ClickHouse and from the group's committed offsets that
no event was lost and none was stored twice:

* SIGKILL in the middle of a 5,000-event load, at several points, then a restart;
* a storage outage: the table directories are made immutable (``chattr +i``), which refuses
  every write even to root, until they are made writable again;
* SIGTERM in the middle of a load, and during a storage outage.

"Stored exactly once" is checked three ways: rows after deduplication (``FINAL``), physical
``events`` rows (events are inserted last and only when absent, so even physically there must
be one row per event) and ``uniqExact(event_id)``.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition
from kafka.admin import NewTopic
from testenv import TINY_ENV

from signals.live import LiveSignals
from signals.open_clip_embedder import OpenClipEmbedder
from signals.spec import Examples, SignalSpec
from signals.training import train_signal
from storage.client import connect
from storage.migrate import migrate
from storage.queries import failure_rates, table_counts
from streams.emitter import Emitter
from streams.events import validate_event
from telltale.signal_store import ClickHouseSignalStore

pytestmark = pytest.mark.integration

ADVICE = ("Buy ACME shares now.", "Put your savings into TSLA.", "Sell bonds, buy NVDA today.")
NEUTRAL = ("Paris is the capital of France.", "Boil pasta for ten minutes.", "Rain is water.")
WRITE_TABLES = ("embeddings", "signal_scores", "events", "failure_rates_1m")


# --------------------------------------------------------------------------- harness


def load_events(n: int, prefix: str = "evt") -> list[dict[str, Any]]:
    """``n`` valid events, one output text each (one embedding + one score per event)."""
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=3)
    return [
        {
            "event_id": f"{prefix}-{i:05d}",
            "timestamp": (start + timedelta(seconds=i)).isoformat(),
            "model": "chat",
            "model_version": "v2" if i % 2 else "v1",
            "output": {"text": f"{(ADVICE if i % 10 == 3 else NEUTRAL)[i % 3]} #{i}"},
        }
        for i in range(n)
    ]


def committed(bootstrap: str, group: str, topic: str) -> int:
    """Sum of the group's committed offsets on ``topic`` (OffsetFetch; does not join)."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    try:
        partitions = consumer.partitions_for_topic(topic) or set()
        return sum(consumer.committed(TopicPartition(topic, p)) or 0 for p in partitions)
    finally:
        consumer.close(autocommit=False)


def committed_by_partition(bootstrap: str, group: str, topic: str) -> dict[int, int]:
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    try:
        partitions = consumer.partitions_for_topic(topic) or set()
        return {p: consumer.committed(TopicPartition(topic, p)) or 0 for p in partitions}
    finally:
        consumer.close(autocommit=False)


def partition_ends(bootstrap: str, topic: str) -> dict[int, int]:
    """Offset after the last record of each partition, found by reading the topic: Tansu's
    ListOffsets answers with the base offset of the last record batch, not the end."""
    consumer = KafkaConsumer(
        topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", group_id=None,
        consumer_timeout_ms=3000,
    )  # fmt: skip
    ends: dict[int, int] = {}
    try:
        for message in consumer:
            ends[message.partition] = max(ends.get(message.partition, 0), message.offset + 1)
    finally:
        consumer.close()
    return ends


def read_topic(bootstrap: str, topic: str, timeout: float = 4.0) -> list[bytes]:
    """Everything on ``topic`` now (reads until it has been idle for ``timeout``)."""
    consumer = KafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        auto_offset_reset="earliest",
        group_id=None,
        consumer_timeout_ms=int(timeout * 1000),
    )
    try:
        return [message.value for message in consumer]
    finally:
        consumer.close()


def wait_for(
    what: str, condition: Callable[[], bool], timeout: float, alive: Callable[[], None]
) -> float:
    """Poll ``condition`` until true; return the seconds it took. ``alive`` asserts progress."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        alive()
        if condition():
            return time.monotonic() - start
        time.sleep(0.25)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


@dataclass
class Stack:
    """A fresh topic, DLQ, consumer group and migrated chDB (with one trained signal)."""

    bootstrap: str
    tmp: Path
    topic: str
    dlq: str
    group: str
    db: Path
    runs: int = 0

    def env(self, **extra: str) -> dict[str, str]:
        return {
            **os.environ,
            **TINY_ENV,
            "TELLTALE_KAFKA_TOPIC": self.topic,
            "TELLTALE_KAFKA_DLQ_TOPIC": self.dlq,
            "TELLTALE_KAFKA_GROUP_ID": self.group,
            "TELLTALE_KAFKA_SESSION_TIMEOUT_S": "6",
            "TELLTALE_WORKER_BATCH_SIZE": "100",
            "TELLTALE_WORKER_SIGNAL_REFRESH_S": "5",
            **extra,
        }

    def emit(self, payloads: list[dict[str, Any]]) -> None:
        with Emitter(self.bootstrap, self.topic) as emitter:
            for payload in payloads:
                emitter.emit(validate_event(payload))

    def committed(self) -> int:
        return committed(self.bootstrap, self.group, self.topic)

    def start(self, **extra_env: str) -> WorkerProcess:
        self.runs += 1
        log = self.tmp / f"worker-{self.runs}.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(
                [
                    sys.executable, "-m", "telltale.cli", "worker",
                    "--clickhouse", f"chdb://{self.db}", "--kafka", self.bootstrap,
                ],
                cwd=self.tmp, env=self.env(**extra_env), stdout=out, stderr=subprocess.STDOUT,
            )  # fmt: skip
        return WorkerProcess(proc, log)

    def table_dirs(self) -> list[Path]:
        """The on-disk directories of the tables a worker writes (chDB's Atomic database)."""
        return [(self.db / "data" / "default" / t).resolve() for t in WRITE_TABLES]


@dataclass
class WorkerProcess:
    proc: subprocess.Popen[bytes]
    log: Path

    def alive(self) -> None:
        assert self.proc.poll() is None, f"worker exited early:\n{self.text()[-3000:]}"

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def batches(self) -> list[tuple[int, int]]:
        """(written, already stored) of every batch the worker logged."""
        found = re.findall(r"batch: (\d+) written, (\d+) already stored", self.text())
        return [(int(w), int(s)) for w, s in found]

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)  # only the PID this test started
        self.proc.wait(timeout=30)

    def terminate(self, timeout: float = 60.0) -> tuple[int, float]:
        """SIGTERM; return (exit code, seconds to exit). SIGKILL if it hangs past ``timeout``."""
        start = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(
                f"worker ignored SIGTERM for {timeout:.0f}s:\n{self.text()[-3000:]}"
            ) from None
        return code, time.monotonic() - start

    def stop_quietly(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@contextmanager
def new_stack(bootstrap: str, tmp: Path, embedder: OpenClipEmbedder) -> Iterator[Stack]:
    """A fresh topic + DLQ + group and a migrated chDB with one trained signal."""
    suffix = uuid.uuid4().hex[:8]
    topic, group = f"generations-{suffix}", f"telltale-rel-{suffix}"
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    admin.create_topics([NewTopic(topic, 3, 1), NewTopic(f"{topic}.dlq", 3, 1)])
    admin.close()
    db = tmp / "db"
    client = connect(f"chdb://{db}")
    try:
        migrate(client)
        spec = SignalSpec(
            name="stock_advice",
            threshold=0.5,
            examples=Examples(positive=ADVICE, negative=NEUTRAL),
        )
        ClickHouseSignalStore(client).save(train_signal(spec, embedder))
    finally:
        client.close()
    try:
        yield Stack(bootstrap, tmp, topic, f"{topic}.dlq", group, db)
    finally:
        for table_dir in (db / "store").glob("*/*"):  # never leave an immutable directory behind
            subprocess.run(["chattr", "-i", str(table_dir)], check=False, capture_output=True)


@pytest.fixture
def stack(kafka_bootstrap: str, tmp_path: Path, tiny_embedder: OpenClipEmbedder) -> Iterator[Stack]:
    with new_stack(kafka_bootstrap, tmp_path, tiny_embedder) as s:
        yield s


@dataclass(frozen=True)
class Stored:
    events_final: int
    events_physical: int
    events_distinct: int
    embeddings: int
    scores: int
    rated_events: int


def stored(db: Path) -> Stored:
    """What ClickHouse holds (open only while no worker runs: one process per chDB path)."""
    client = connect(f"chdb://{db}")
    try:
        counts = table_counts(client)
        physical = int(client.query("SELECT count() FROM events").result_rows[0][0])
        rated = sum(r.events for r in failure_rates(client))
    finally:
        client.close()
    return Stored(
        counts.events, physical, counts.distinct_events, counts.embeddings, counts.scores, rated
    )


def assert_exactly_once(stack: Stack, n: int) -> Stored:
    s = stored(stack.db)
    assert s == Stored(n, n, n, n, n, n), f"expected every count to be {n}: {s}"
    ends = partition_ends(stack.bootstrap, stack.topic)
    assert committed_by_partition(stack.bootstrap, stack.group, stack.topic) == ends
    assert sum(ends.values()) == n
    assert read_topic(stack.bootstrap, stack.dlq, timeout=2.0) == []  # nothing dead-lettered
    return s


# --------------------------------------------------------------------------- 1. crash safety

N_CRASH = 5_000


# Three kills in one load (a fresh worker each time, same group, same chDB path): right after
# the first batch is written (before its offsets can be committed), then once 2,000 and 3,500
# offsets are committed. One load instead of one per kill point keeps this under two minutes.
KILL_POINTS: tuple[int | str, ...] = ("first-write", 2_000, 3_500)


@pytest.mark.slow
def test_sigkill_mid_load_then_restart_stores_every_event_once(stack: Stack) -> None:
    """SIGKILL gives the worker no chance to flush, ack or commit. Whatever it had written but
    not committed is delivered again after the restart and must be skipped, not stored twice."""
    kill_points = KILL_POINTS
    started = time.monotonic()
    stack.emit(load_events(N_CRASH))
    worker = stack.start()
    workers = [worker]
    try:
        for point in kill_points:
            if point == "first-write":
                wait_for("the first batch write", lambda: bool(worker.batches()), 120, worker.alive)
            else:
                wait_for(f"{point} committed offsets", lambda: stack.committed() >= point, 180,
                         worker.alive)  # fmt: skip
            at = stack.committed()
            worker.kill()
            print(f"SIGKILL at {at} committed offsets ({point})")
            worker = stack.start()
            workers.append(worker)
        wait_for(f"all {N_CRASH} offsets committed", lambda: stack.committed() >= N_CRASH, 240,
                 worker.alive)  # fmt: skip
    except BaseException:
        worker.stop_quietly()
        raise
    code, _ = worker.terminate()
    assert code == 0, worker.text()[-3000:]
    s = assert_exactly_once(stack, N_CRASH)
    redelivered_but_stored = sum(skip for w in workers[1:] for _, skip in w.batches())
    print(
        f"crash {kill_points}: {N_CRASH} events, stored {s}, {redelivered_but_stored} redelivered"
        f" events skipped as already stored, {time.monotonic() - started:.0f}s"
    )


# --------------------------------------------------------------------------- 2. storage outage


def freeze(dirs: list[Path]) -> None:
    """Make directories immutable: ClickHouse cannot create a part in them, even as root."""
    subprocess.run(["chattr", "+i", *map(str, dirs)], check=True, capture_output=True)


def thaw(dirs: list[Path]) -> None:
    subprocess.run(["chattr", "-i", *map(str, dirs)], check=True, capture_output=True)


def require_chattr(tmp: Path) -> None:
    probe = tmp / "chattr-probe"
    probe.mkdir(exist_ok=True)
    try:
        freeze([probe])
    except (OSError, subprocess.CalledProcessError) as exc:
        pytest.skip(f"cannot make directories immutable here (chattr +i): {exc}")
    try:
        writable = os.access(probe, os.W_OK)
        try:
            (probe / "x").mkdir()
            refused = False
        except OSError:
            refused = True
    finally:
        thaw([probe])
    if not refused:
        pytest.skip(f"chattr +i does not refuse writes here (writable={writable})")


def test_writer_retries_during_an_outage_do_not_pile_up_rows(
    ch: Any, chdb_path: Path, tiny_embedder: OpenClipEmbedder
) -> None:
    """The pipeline retries a failed batch by calling ``write`` again with the same rows. The
    writer keeps rows of a failed flush, so before the fix every retry buffered the batch once
    more; after ~``max_rows / rows per batch`` retries the outage turned into BackPressure and the
    worker dead-lettered valid events. Real fault: the table directories are immutable."""
    from storage.errors import StorageUnavailable
    from storage.writer import ClickHouseWriter
    from streams.pipeline import Pipeline
    from telltale.signal_store import (
        ClickHouseSignalStore,
    )

    require_chattr(chdb_path.parent)
    ClickHouseSignalStore(ch).save(train_signal(
        SignalSpec(name="advice", threshold=0.5,
                   examples=Examples(positive=ADVICE, negative=NEUTRAL)),
        tiny_embedder,
    ))  # fmt: skip
    writer = ClickHouseWriter(ch, max_rows=1_000)  # a 100-event batch is 300 rows
    pipeline = Pipeline(
        tiny_embedder, LiveSignals(ClickHouseSignalStore(ch), tiny_embedder.id, refresh_s=0), writer
    )
    events = [validate_event(e) for e in load_events(100)]
    dirs = [(chdb_path / "data" / "default" / t).resolve() for t in WRITE_TABLES]
    freeze(dirs)
    try:
        for _attempt in range(8):  # 8 x 300 rows would exceed max_rows if rows piled up
            with pytest.raises(StorageUnavailable, match="not permitted"):
                pipeline.process(events)
            assert writer.pending <= 300
    finally:
        thaw(dirs)
    result = pipeline.process(events)
    assert (result.written, result.skipped_existing, writer.pending) == (100, 0, 0)
    counts = table_counts(ch)
    physical = ch.query("SELECT count() FROM events").result_rows[0][0]
    assert (counts.events, physical, counts.embeddings, counts.scores) == (100, 100, 100, 100)


N_OUTAGE = 2_000
MIN_FAILED_ATTEMPTS = 6  # 0.5 + 1 + 2 + 2 + 2 s of back-off, plus the attempts themselves
RETRY_MAX_S = 2.0


@pytest.mark.slow
def test_storage_outage_holds_offsets_backs_off_and_resumes_without_loss(stack: Stack) -> None:
    """While every table refuses writes the worker commits nothing, retries the same batch with
    exponential back-off capped at TELLTALE_WORKER_RETRY_MAX_S (0.5 s, 1 s, 2 s, 2 s, ...), and
    resumes by itself, without loss or duplicates, once storage accepts writes again."""
    require_chattr(stack.tmp)
    started = time.monotonic()
    stack.emit(load_events(N_OUTAGE))
    worker = stack.start(TELLTALE_WORKER_RETRY_MAX_S=str(RETRY_MAX_S))
    dirs = stack.table_dirs()
    try:
        wait_for("300 committed offsets", lambda: stack.committed() >= 300, 120, worker.alive)
        freeze(dirs)
        try:
            wait_for("the first failed write", lambda: "storage unavailable" in worker.text(),
                     30, worker.alive)  # fmt: skip
            outage_start = time.monotonic()
            time.sleep(2.5)  # offsets acked before the fault may still be committed (1 s interval)
            held = stack.committed()
            samples = []
            while worker.text().count("storage unavailable") < MIN_FAILED_ATTEMPTS:
                worker.alive()
                assert time.monotonic() - outage_start < 90, "too few retries in 90 s"
                samples.append(stack.committed())
                time.sleep(1.0)
            samples.append(stack.committed())
            outage_s = time.monotonic() - outage_start
            assert set(samples) == {held}, f"offsets moved during the outage: {samples}"
            assert held < N_OUTAGE
        finally:
            thaw(dirs)
        resumed = wait_for("the first commit after the outage",
                           lambda: stack.committed() > held, 60, worker.alive)  # fmt: skip
        finished = wait_for(f"all {N_OUTAGE} offsets committed",
                             lambda: stack.committed() >= N_OUTAGE, 180, worker.alive)  # fmt: skip
    except BaseException:
        worker.stop_quietly()
        raise
    code, _ = worker.terminate()
    assert code == 0, worker.text()[-3000:]
    log = worker.text()
    delays = [float(d) for d in re.findall(r"storage unavailable, retrying in ([\d.]+)s", log)]
    assert len(delays) >= MIN_FAILED_ATTEMPTS, delays
    expected = [min(0.5 * 2**i, RETRY_MAX_S) for i in range(len(delays))]
    assert delays == expected, f"back-off was {delays}"
    assert "Operation not permitted" in log  # the cause is in the log, not just "failed"
    s = assert_exactly_once(stack, N_OUTAGE)
    print(
        f"outage: {N_OUTAGE} events, {len(delays)} failed attempts in {outage_s:.0f}s,"
        f" back-off {delays}, offsets held at {held}, committing again {resumed:.1f}s after the"
        f" fault was lifted and done {finished:.1f}s later, stored {s},"
        f" {time.monotonic() - started:.0f}s"
    )


# --------------------------------------------------------------------------- 7. graceful shutdown

N_SHUTDOWN = 2_000
SHUTDOWN_LIMIT_S = 30.0


@pytest.mark.slow
def test_sigterm_mid_load_and_during_an_outage_exits_cleanly_without_loss(stack: Stack) -> None:
    """SIGTERM in the middle of a load: faust stops fetching, waits for the streams to ack what
    they took (``stream_wait_empty``), so the in-flight batch is written, acked and committed
    before exit, and the restarted worker is not handed a single stored event again.

    SIGTERM while storage refuses writes: the in-flight batch cannot be stored, so it must not be
    acked; the worker gives up retrying, exits with 0 within the bound, and the restarted worker
    (storage back) stores that batch from the uncommitted offsets: at-least-once delivery,
    exactly-once storage."""
    require_chattr(stack.tmp)
    stack.emit(load_events(N_SHUTDOWN))
    worker = stack.start()
    try:
        wait_for("600 committed offsets", lambda: stack.committed() >= 600, 120, worker.alive)
    except BaseException:
        worker.stop_quietly()
        raise
    code, took = worker.terminate(timeout=SHUTDOWN_LIMIT_S)
    assert code == 0, worker.text()[-3000:]
    after_term = stack.committed()
    s = stored(stack.db)
    assert s.events_physical == s.events_final == after_term, (s, after_term)
    print(f"SIGTERM mid-load: exit {code} in {took:.1f}s, {after_term} stored == committed")

    worker = stack.start(TELLTALE_WORKER_RETRY_MAX_S=str(RETRY_MAX_S))
    dirs = stack.table_dirs()
    try:
        wait_for("more committed offsets", lambda: stack.committed() >= after_term + 300, 120,
                 worker.alive)  # fmt: skip
        assert all(skipped == 0 for _, skipped in worker.batches())  # nothing stored came again
        freeze(dirs)
        try:
            wait_for("a failed write", lambda: "storage unavailable" in worker.text(), 30,
                     worker.alive)  # fmt: skip
            time.sleep(1.5)
            code, took = worker.terminate(timeout=SHUTDOWN_LIMIT_S)
        finally:
            thaw(dirs)
    except BaseException:
        worker.stop_quietly()
        raise
    assert code == 0, worker.text()[-3000:]
    held = stack.committed()
    s = stored(stack.db)
    assert s.events_final == s.events_physical >= held
    print(f"SIGTERM in an outage: exit {code} in {took:.1f}s, {held} committed, {s} stored")

    worker = stack.start()
    try:
        wait_for(f"all {N_SHUTDOWN} offsets committed",
                 lambda: stack.committed() >= N_SHUTDOWN, 180, worker.alive)  # fmt: skip
    except BaseException:
        worker.stop_quietly()
        raise
    code, _ = worker.terminate()
    assert code == 0, worker.text()[-3000:]
    assert_exactly_once(stack, N_SHUTDOWN)
