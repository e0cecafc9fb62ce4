"""The cost of redaction: events/s stored with the content policy ``raw`` vs ``redacted``.

    .venv/bin/python bench/privacy.py [--events 2000] [--embedded-events 200] [--rounds 2]

Chat answers of ~300 characters, a third of them carrying an e-mail address, a phone or a
card number, a prompt (one in ten with an e-mail address) and a free-text attribute each.
Two paths, each measured raw and redacted side by side in one run, into a fresh embedded
ClickHouse:

1. **worker path**: ``Pipeline.process`` embedding prompt and answer with MiniLM (real
   weights), ``--embedded-events`` events: what a worker does;
2. **replay with carried vectors**: the same events with their vectors precomputed (the
   replay fast path), ``--events`` events: no model, so storage and redaction are all the
   work; the worst case for the policy's relative cost.

Raw and redacted alternate for ``--rounds`` rounds and each keeps its best rate (the first
run pays for warming the model). Prints events/s per path and policy and the ratio
redacted ÷ raw.
"""

from __future__ import annotations

import sys
from pathlib import Path

# bench/signals.py is named like the package: keep this folder off the import path.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import argparse  # noqa: E402
import random  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from datetime import UTC, datetime, timedelta  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402

from signals import LiveSignals, Redactor  # noqa: E402
from signals.text_embedder import SentenceEmbedder  # noqa: E402
from storage import ClickHouseWriter  # noqa: E402
from storage.client import connect  # noqa: E402
from storage.migrate import migrate  # noqa: E402
from streams import ContentPolicy, Pipeline  # noqa: E402
from streams.events import GenerationEvent, validate_event  # noqa: E402
from telltale.signal_store import ClickHouseSignalStore  # noqa: E402

FILLER = ("Thanks for reaching out about your order. I checked the shipment and it left "
          "our warehouse yesterday; the carrier usually delivers within three working days. ")
LEAKS = ("You can write to our agent at m.rossi{i}@support-desk.net.",
         "Call us back on +1 415 555 01{ii} any time after six.",
         "We charged the card 4111 1111 1111 1111 for the replacement.")  # fmt: skip


def events(n: int) -> list[GenerationEvent]:
    rng = random.Random(5)
    start = datetime.now(UTC) - timedelta(hours=2)
    out = []
    for i in range(n):
        answer = FILLER + (rng.choice(LEAKS).format(i=i, ii=f"{i % 100:02d}") if i % 3 == 0
                           else "Is there anything else I can help with?")  # fmt: skip
        out.append(validate_event({
            "event_id": f"b-{i:06d}", "timestamp": (start + timedelta(seconds=i)).isoformat(),
            "model": "support-bot", "model_version": "v1",
            "prompt": {"text": f"Where is my order {i}?"
                       + (f" My e-mail is c{i}@mail-box.net" if i % 10 == 0 else "")},
            "output": {"text": answer}, "attributes": {"locale": "en", "note": f"ticket {i}"},
        }))  # fmt: skip
    return out


def rate(pipeline: Pipeline, batch: list[GenerationEvent], vectors: Any = None) -> float:
    started = time.perf_counter()
    for k in range(0, len(batch), 200):
        chunk = batch[k : k + 200]
        pipeline.process(chunk, {e.event_id: vectors[e.event_id] for e in chunk}
                         if vectors else None)  # fmt: skip
    return len(batch) / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=2000)
    parser.add_argument("--embedded-events", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=2, help="alternating runs; best is kept")
    args = parser.parse_args()
    embedder = SentenceEmbedder()
    redactor = Redactor()
    redactor("warm up c1@mail-box.net")  # load Presidio and the model outside the timings
    embedder.embed_windows([FILLER] * 16)
    policies = {
        "raw": None,
        "redacted": ContentPolicy("redacted", "redacted", "redacted", frozenset({"locale"}),
                                  redactor),
    }  # fmt: skip
    batch = events(args.events)
    small = batch[: args.embedded_events]
    # Carried vectors: any unit vectors of the model's size do (no signal reads them here).
    rng = np.random.default_rng(0)
    unit = rng.normal(size=(2, len(batch), embedder.dim))
    unit /= np.linalg.norm(unit, axis=2, keepdims=True)
    vectors = {e.event_id: {"prompt.text": unit[0, i].tolist(), "output.text": unit[1, i].tolist()}
               for i, e in enumerate(batch)}  # fmt: skip
    results: dict[str, dict[str, float]] = {"worker": {}, "replay_vectors": {}}
    runs = {"worker": lambda p: rate(p, small), "replay_vectors": lambda p: rate(p, batch, vectors)}
    for round_ in range(args.rounds):  # alternate raw and redacted; keep each one's best
        for name, policy in policies.items():
            with tempfile.TemporaryDirectory() as folder:
                for path, run in runs.items():
                    client = connect(f"chdb://{folder}/{path}-{round_}")
                    migrate(client)
                    live = LiveSignals(ClickHouseSignalStore(client), embedder.id, 0)
                    pipeline = Pipeline(embedder, live, ClickHouseWriter(client), content=policy)
                    results[path][name] = max(results[path].get(name, 0.0), run(pipeline))
                    client.close()
    for path, by in results.items():
        print(f"{path:<15} raw {by['raw']:8.1f} events/s   redacted {by['redacted']:8.1f} "
              f"events/s   redacted / raw {by['redacted'] / by['raw']:.2f}")  # fmt: skip


if __name__ == "__main__":
    main()
