"""How close a worker can get to its model on these cores: the CPU an event costs in the model
and outside it, measured side by side, and the ceiling that sets.

    .venv/bin/python bench/pipeline_ceiling.py [--events 2048] [--rounds 3] [--model minilm]

``bench/pipeline.py`` measures the worker against the model; this says how far the worker
*could* get. When the model's threads fill every core, each core-second the pipeline spends
beside the model is taken from it, however well the two overlap, so the best a worker can do
is ``model CPU / (model CPU + CPU outside the model)`` per event.

Per batch of the worker's size, in one process built by the worker's wiring (``make_parts``,
privacy included, as ``bench/pipeline.py`` builds it), interleaved:

* decode:   the worker's decoder on each record's bytes (JSON parse and validation), as the
            event loop runs it;
* model:    the batch's prompts and outputs queued for the model (``Pipeline.embed_ahead``) and
            waited for: the CPU of every thread of the process, the model's included;
* pipeline: ``Pipeline.process`` on the same batch, whose texts the finished job answers:
            dedup lookup, scoring, redaction, row building and the chDB inserts with the
            engine's own threads (views, merges), everything but the model.

CPU is ``time.process_time()`` (all the process's threads). Not counted: faust's own work per
message, the broker and a producer; ``bench/pipeline.py`` accounts those per thread.
"""

from __future__ import annotations

import sys
from pathlib import Path

_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]
sys.path.insert(0, str(_HERE.parent))

import argparse  # noqa: E402
import os  # noqa: E402
import random  # noqa: E402
import statistics  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

from bench.pipeline import bench_env, bench_specs, make_events  # noqa: E402
from signals.redaction import Redactor  # noqa: E402
from signals.training import train_signal  # noqa: E402
from storage.client import connect  # noqa: E402
from storage.migrate import migrate  # noqa: E402
from streams.batch_io import json_decoder  # noqa: E402
from streams.events import encode_event  # noqa: E402
from telltale.settings import Settings  # noqa: E402
from telltale.signal_store import ClickHouseSignalStore  # noqa: E402
from telltale.wiring import make_embedders, make_parts  # noqa: E402


class Clock:
    """Wall and process CPU seconds, summed over the calls it timed."""

    def __init__(self) -> None:
        self.wall = self.cpu = 0.0

    def __enter__(self) -> Clock:
        self._wall, self._cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall += time.perf_counter() - self._wall
        self.cpu += time.process_time() - self._cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=2048, help="events per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--model", default="minilm", help="as bench/pipeline.py --model")
    parser.add_argument("--pretrained", default="none")
    parser.add_argument("--batch-size", type=int, default=256)
    args = parser.parse_args()
    if args.rounds < 3:
        parser.error("--rounds must be at least 3: a median and a spread need them")
    os.environ.update({**bench_env(args.model, args.pretrained),
                       "TELLTALE_EMBEDDING_CACHE_ENABLED": "false"})  # fmt: skip
    settings = Settings()
    rng = random.Random(7)
    specs = bench_specs(rng)
    decode = json_decoder(settings.worker.max_payload_bytes)
    bs = args.batch_size
    per_round: list[dict[str, Clock]] = []
    with tempfile.TemporaryDirectory() as tmp:
        client = connect(f"chdb://{tmp}/db")
        migrate(client)
        embedders = make_embedders(settings.embedder, settings.text_embedder)
        for spec in specs:
            ClickHouseSignalStore(client).save(train_signal(spec, embedders))
        parts = make_parts(settings, client, embed_ahead=True)
        pipeline, text = parts.pipeline, parts.embedders.text
        assert pipeline.content is not None and isinstance(pipeline.content.redact, Redactor)
        pipeline.content.redact.load()
        pipeline.process(make_events(bs, "warm", rng))  # model, signals, tables: warm
        for r in range(args.rounds):
            clocks = {"decode": Clock(), "model": Clock(), "pipeline": Clock()}
            events = make_events(args.events, f"r{r}", rng)
            for i in range(0, len(events), bs):
                batch = events[i : i + bs]
                raw = [encode_event(e) for e in batch]
                with clocks["decode"]:
                    decoded = [e for payload in raw for e in decode(payload)]
                assert len(decoded) == len(batch)
                with clocks["model"]:
                    pipeline.embed_ahead(batch)  # the job the pipeline's texts are answered from
                    text.embed_windows([e.prompt.text or "" for e in batch]
                                       + [e.output.text or "" for e in batch])  # fmt: skip
                with clocks["pipeline"]:
                    pipeline.process(batch)
            per_round.append(clocks)
        client.close()

    n = args.events
    print(f"{n} events a round (prompt + output text), {args.rounds} rounds, batch {bs}, "
          f"embedder {parts.embedders.id}, {os.cpu_count()} CPUs")  # fmt: skip
    print(f"{'per event':<12}{'wall ms':>10}{'CPU ms':>10}   (median over rounds, min–max CPU)")
    for part in ("decode", "model", "pipeline"):
        wall = statistics.median(c[part].wall for c in per_round) * 1000 / n
        cpus = [c[part].cpu * 1000 / n for c in per_round]
        print(f"{part:<12}{wall:>10.2f}{statistics.median(cpus):>10.2f}   "
              f"({min(cpus):.2f}–{max(cpus):.2f})")  # fmt: skip
    ceilings = [
        c["model"].cpu / (c["model"].cpu + c["decode"].cpu + c["pipeline"].cpu) for c in per_round
    ]
    print(
        f"ceiling of a worker ÷ raw model when the model fills every core: "
        f"{statistics.median(ceilings):.3f} ({min(ceilings):.3f}–{max(ceilings):.3f}) = model "
        "CPU ÷ (model + decode + pipeline CPU), per round; faust, the broker and a producer "
        "lower it further"
    )


if __name__ == "__main__":
    main()
