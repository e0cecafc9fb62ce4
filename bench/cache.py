"""The embedding cache on a stream with Zipf-distributed repeats: model calls saved, events/s.

    .venv/bin/python bench/cache.py [--events 100000] [--zipf 1.1] [--model tiny|minilm]
                                    [--baseline-events 100000] [--shared] [--json]
    .venv/bin/python bench/cache.py --images [--events 2000] [--image-model vit-b-32|tiny]
                                    [--image-size 256] [--baseline-events 500] [--shared]

One run, side by side: the prompts of ``--events`` events are drawn from a Zipf law (rank k
drawn with probability proportional to k^-s, unbounded, numpy's ``zipf``), as templates,
system prompts and popular questions repeat in chat traffic while a long tail stays unique.
They are embedded in batches of 256 (the worker's default batch):

* through :class:`signals.cache.EmbeddingCache` (repeats inside a batch, an LRU of
  ``--memory-entries`` texts, and with ``--shared`` the ClickHouse table in a temporary chDB);
* straight through the model, as without a cache, for every n-th batch (about
  ``--baseline-events`` events), timed right after the cached pass over the same batch, so
  both rates see the same load on a shared machine (pass ``--baseline-events`` equal to
  ``--events`` to time every batch both ways).

Only the embedding stage is timed: ClickHouse writes are the same with and without the cache.
``--model tiny`` (default) is the 4-layer random-weight CLIP config, so the run stays within
minutes on 2 cores; ``minilm`` is the production text model, where the cache saves more time.

``--images``: the same, for ``output.image``. Rank k is a fixed picture (a rendered landscape,
every third one watermarked), JPEG-encoded and decoded by ``signals.load_image`` as the
pipeline does; decoding is not timed (it happens with and without the cache). Timed: the cache
(hashing the decoded pixels, then batch, LRU, shared table, model) against the model alone, in
batches of 64. ``--image-model vit-b-32`` (default) is the production architecture with random
weights (the same compute as the pretrained one); ``tiny`` is the test config.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import argparse  # noqa: E402
import json  # noqa: E402
import random  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402

from signals.cache import EmbeddingCache, LruVectorCache, image_key  # noqa: E402
from signals.embedders import as_field_embedders  # noqa: E402

BATCH = 256
IMAGE_BATCH = 64
_TOPICS = ["my phone bill", "a refund", "the delivery date", "password reset", "a cover letter",
           "a SQL query", "the return policy", "a birthday poem", "my exam schedule",
           "a trip to Porto", "invoice 4471", "the API rate limit", "a job interview"]  # fmt: skip
_ASKS = ["Can you help me with", "I have a question about", "Please explain",
         "Write a reply about", "Summarise the thread on", "What should I do about",
         "Give me three ideas for"]  # fmt: skip


def prompt(rank: int) -> str:
    """The text of the rank-th most popular prompt: fixed per rank, distinct across ranks."""
    rng = random.Random(rank)
    return (f"{rng.choice(_ASKS)} {rng.choice(_TOPICS)}? Context #{rank}: "
            f"{rng.choice(_TOPICS)} and {rng.choice(_TOPICS)}.")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=None, help="100000 (texts), 2000 (images)")
    parser.add_argument("--zipf", type=float, default=1.1)
    parser.add_argument("--model", choices=("tiny", "minilm"), default="tiny")
    parser.add_argument("--memory-entries", type=int, default=20_000)
    parser.add_argument("--baseline-events", type=int, default=None,
                        help="100000 (texts), 500 (images)")  # fmt: skip
    parser.add_argument("--shared", action="store_true", help="add the ClickHouse cache (chDB)")
    parser.add_argument("--images", action="store_true", help="output.image instead of prompts")
    parser.add_argument("--image-model", choices=("vit-b-32", "tiny"), default="vit-b-32")
    parser.add_argument("--image-size", type=int, default=256)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if args.images:
        images_main(args)
        return
    args.events = 100_000 if args.events is None else args.events
    args.baseline_events = 100_000 if args.baseline_events is None else args.baseline_events

    if args.model == "tiny":
        from signals.open_clip_embedder import OpenClipEmbedder

        embedder: Any = as_field_embedders(
            OpenClipEmbedder(model_name="telltale-tiny", pretrained=None, seed=0)
        ).text
    else:
        from signals.text_embedder import SentenceEmbedder

        embedder = SentenceEmbedder()
    ranks = np.random.default_rng(20261201).zipf(args.zipf, args.events)
    texts = [prompt(int(k)) for k in ranks]
    distinct = len(set(texts))

    cache = EmbeddingCache(LruVectorCache(args.memory_entries), _shared(args.shared))
    # Interleaved: every `every`-th batch is also embedded without the cache, right after the
    # cached pass over it, so both rates see the same machine load (it is shared and varies).
    every = max(1, round(len(texts) / max(args.baseline_events, 1)))
    cached_s = plain_s = 0.0
    plain_events = 0
    for number, start in enumerate(range(0, len(texts), BATCH)):
        batch = texts[start : start + BATCH]
        began = time.perf_counter()
        cache.embed_windows(embedder, "prompt.text", batch)
        cached_s += time.perf_counter() - began
        if number % every == 0:
            began = time.perf_counter()
            embedder.embed_windows(batch)
            plain_s += time.perf_counter() - began
            plain_events += len(batch)

    totals = cache.totals
    out = {
        "embedder": embedder.id, "events": len(texts), "zipf_s": args.zipf,
        "distinct_prompts": distinct, "memory_entries": args.memory_entries,
        "shared_cache": args.shared, "model_texts": totals.model_texts,
        "model_calls_saved_share": totals.hit_rate, "batch_repeats": totals.batch_repeats,
        "memory_hits": totals.memory_hits, "shared_hits": totals.shared_hits,
        "cached_events_per_s": len(texts) / cached_s,
        "baseline_events": plain_events, "no_cache_events_per_s": plain_events / plain_s,
    }  # fmt: skip
    out["speedup"] = out["cached_events_per_s"] / out["no_cache_events_per_s"]
    if args.json:
        print(json.dumps(out, indent=2))
        return
    print(f"{out['events']} events, prompts Zipf s={args.zipf}: {distinct} distinct; "
          f"embedder {embedder.id}; batches of {BATCH}")  # fmt: skip
    print(f"  model calls saved: {totals.saved} of {totals.lookups} texts "
          f"({totals.hit_rate:.1%}): {totals.batch_repeats} repeats within a batch, "
          f"{totals.memory_hits} LRU hits ({args.memory_entries} entries), "
          f"{totals.shared_hits} shared-cache hits")  # fmt: skip
    print(f"  with cache:    {out['cached_events_per_s']:8.0f} events/s over {len(texts)} events")
    print(f"  without cache: {out['no_cache_events_per_s']:8.0f} events/s over "
          f"{plain_events} events (every {every}th batch, interleaved)")  # fmt: skip
    print(f"  speed-up: {out['speedup']:.2f}x")


def _shared(wanted: bool) -> Any:
    """The ClickHouse cache table in a fresh temporary chDB, or None."""
    if not wanted:
        return None
    from storage.client import connect
    from storage.embedding_cache import ClickHouseVectorCache
    from storage.migrate import migrate

    client = connect(f"chdb://{tempfile.mkdtemp(prefix='telltale-cache-bench-')}/db")
    migrate(client)
    return ClickHouseVectorCache(client)


def picture(rank: int, size: int) -> str:
    """The rank-th most popular image as base64 JPEG: fixed per rank, distinct across ranks."""
    from telltale.sample_data import image_base64, render_image

    return image_base64(render_image(random.Random(rank), rank % 3 == 0, size))


def images_main(args: argparse.Namespace) -> None:
    """``--images``: images/s through the cache and straight through the model, interleaved."""
    from signals.images import load_image
    from signals.open_clip_embedder import OpenClipEmbedder

    events = 2_000 if args.events is None else args.events
    baseline = 500 if args.baseline_events is None else args.baseline_events
    name = "ViT-B-32" if args.image_model == "vit-b-32" else "telltale-tiny"
    embedder = OpenClipEmbedder(model_name=name, pretrained=None, seed=0)
    ranks = [int(k) for k in np.random.default_rng(20261201).zipf(args.zipf, events)]
    distinct = len(set(ranks))
    cache = EmbeddingCache(LruVectorCache(args.memory_entries), _shared(args.shared))
    every = max(1, round(events / max(baseline, 1)))
    encoded: dict[int, str] = {}
    cached_s = plain_s = hash_s = 0.0
    plain_images = 0
    for number, start in enumerate(range(0, events, IMAGE_BATCH)):
        refs = [encoded.setdefault(k, picture(k, args.image_size))
                for k in ranks[start : start + IMAGE_BATCH]]  # fmt: skip
        batch = [load_image(ref) for ref in refs]  # decoding: the same with or without a cache
        began = time.perf_counter()
        cache.embed_images(embedder, "output.image", batch)
        cached_s += time.perf_counter() - began
        began = time.perf_counter()
        for image in batch:  # the cache's own overhead, measured apart
            image_key(embedder.id, "output.image", image)
        hash_s += time.perf_counter() - began
        if number % every == 0:
            began = time.perf_counter()
            embedder.embed_images(batch)
            plain_s += time.perf_counter() - began
            plain_images += len(batch)

    totals = cache.totals
    out = {
        "embedder": embedder.id, "images": events, "zipf_s": args.zipf,
        "distinct_images": distinct, "image_size": args.image_size,
        "memory_entries": args.memory_entries, "shared_cache": args.shared,
        "model_images": totals.model_texts, "model_calls_saved_share": totals.hit_rate,
        "batch_repeats": totals.batch_repeats, "memory_hits": totals.memory_hits,
        "shared_hits": totals.shared_hits, "cached_images_per_s": events / cached_s,
        "baseline_images": plain_images, "no_cache_images_per_s": plain_images / plain_s,
        "hash_ms_per_image": 1000 * hash_s / events,
    }  # fmt: skip
    out["speedup"] = out["cached_images_per_s"] / out["no_cache_images_per_s"]
    if args.json:
        print(json.dumps(out, indent=2))
        return
    print(f"{events} images ({args.image_size}px JPEG), Zipf s={args.zipf}: {distinct} distinct; "
          f"embedder {embedder.id}; batches of {IMAGE_BATCH}")  # fmt: skip
    print(f"  model calls saved: {totals.saved} of {totals.lookups} images "
          f"({totals.hit_rate:.1%}): {totals.batch_repeats} repeats within a batch, "
          f"{totals.memory_hits} LRU hits, {totals.shared_hits} shared-cache hits")  # fmt: skip
    print(f"  pixel hash: {out['hash_ms_per_image']:.2f} ms/image (inside the cached rate)")
    print(f"  with cache:    {out['cached_images_per_s']:8.1f} images/s over {events} images")
    print(f"  without cache: {out['no_cache_images_per_s']:8.1f} images/s over "
          f"{plain_images} images (every {every}th batch, interleaved)")  # fmt: skip
    print(f"  speed-up: {out['speedup']:.2f}x")


if __name__ == "__main__":
    main()
