"""open_clip image tower backends side by side: images/s and cosine to torch fp32.

    .venv/bin/python bench/image_embedder_backends.py [--models ViT-B-32 telltale-tiny] \
        [--variants torch torch-int8 onnx-fp32 onnx-int8] [--batch-sizes 8 32] [--images 64] \
        [--rounds 3] [--threads 2]

Every variant is the same open_clip model with seeded random weights (no pretrained weights
are reachable here; the speed of a tower does not depend on its weights' values) whose image
tower runs on one backend: ``torch`` (fp32, the reference and the default), ``torch-int8``
(``quantize``: torch's dynamic int8 Linear layers, in the text tower too) or ONNX Runtime
(``onnx-<weights>``, see :mod:`signals.onnx_image`; the export is made and cached before any
timing). Each variant embeds the same ``--images`` rendered landscapes (half with a watermark,
``telltale.sample_data.render_image``), through ``embed_images`` (preprocessing included, as
the product runs it) in batches of each ``--batch-sizes``. The images are embedded in
``--rounds`` interleaved rounds; in each round every variant runs once, in an order that rotates
from round to round, so a slow spell of a shared machine falls on all variants. Printed per
model, batch size and variant: images/s in each round, the median over rounds of the ratio to
torch (variant ÷ torch), and the cosine of each image's vector to torch's (mean, min).
"""

from __future__ import annotations

import sys
from pathlib import Path

# bench/signals.py is named like the package: keep this folder off the import path.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import argparse  # noqa: E402
import random  # noqa: E402
import statistics  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from typing import TYPE_CHECKING  # noqa: E402

import numpy as np  # noqa: E402

from signals.open_clip_embedder import OpenClipEmbedder  # noqa: E402
from telltale.sample_data import render_image  # noqa: E402

if TYPE_CHECKING:
    from PIL import Image

VARIANTS = ("torch", "torch-int8", "onnx-fp32", "onnx-int8")


def make(model: str, variant: str, threads: int, cache: Path) -> OpenClipEmbedder:
    if variant.startswith("torch"):
        return OpenClipEmbedder(model_name=model, pretrained=None, seed=0, threads=threads,
                                quantize=variant == "torch-int8")  # fmt: skip
    return OpenClipEmbedder(model_name=model, pretrained=None, seed=0, threads=threads,
                            image_backend="onnx", image_onnx_weights=variant[5:],
                            image_onnx_cache_dir=cache)  # fmt: skip


def embed(embedder: OpenClipEmbedder, images: list[Image.Image], batch: int) -> np.ndarray:
    parts = [embedder.embed_images(images[i : i + batch]) for i in range(0, len(images), batch)]
    return np.concatenate(parts)


def measure(
    embedders: dict[str, OpenClipEmbedder], images: list[Image.Image], batch: int, rounds: int
) -> tuple[dict[str, np.ndarray], dict[str, list[float]]]:
    """Every variant's vectors and its images/s in each round."""
    names = list(embedders)
    vectors: dict[str, np.ndarray] = {}
    rates: dict[str, list[float]] = {n: [] for n in names}
    for r in range(rounds):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            started = time.perf_counter()
            vectors[name] = embed(embedders[name], images, batch)
            rates[name].append(len(images) / (time.perf_counter() - started))
            print(f"  round {r + 1}/{rounds} batch {batch} {name:<10} {rates[name][-1]:7.1f} "
                  "images/s", file=sys.stderr, flush=True)  # fmt: skip
    return vectors, rates


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", nargs="+", default=["ViT-B-32", "telltale-tiny"])
    parser.add_argument("--variants", nargs="+", choices=VARIANTS, default=list(VARIANTS))
    parser.add_argument("--batch-sizes", nargs="+", type=int, default=[8, 32])
    parser.add_argument("--images", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--cache-dir", help="ONNX exports (default: a temporary folder)")
    args = parser.parse_args()
    variants = ["torch", *(v for v in args.variants if v != "torch")]
    rng = random.Random(7)
    images = [render_image(rng, i % 2 == 0) for i in range(args.images)]
    with tempfile.TemporaryDirectory() as tmp:
        cache = Path(args.cache_dir or tmp)
        rows = []
        for model in args.models:
            embedders = {v: make(model, v, args.threads, cache) for v in variants}  # exports
            for embedder in embedders.values():
                embedder.embed_images(images[:2])  # warm-up
            for batch in args.batch_sizes:
                vectors, rates = measure(embedders, images, batch, args.rounds)
                for v in variants:
                    ratio = statistics.median(
                        a / b for a, b in zip(rates[v], rates["torch"], strict=True)
                    )
                    cosine = np.sum(vectors["torch"] * vectors[v], axis=1)
                    by_round = ", ".join(f"{x:.1f}" for x in rates[v])
                    rows.append(f"| {model} | {batch} | {v} | {by_round} | {ratio:.2f} | "
                                f"{cosine.mean():.6f} / {cosine.min():.6f} |")  # fmt: skip
    print(f"{args.images} images (224 px landscapes), {args.rounds} interleaved rounds, "
          f"{args.threads} threads, seeded random weights\n")  # fmt: skip
    print("| model | batch | backend | images/s by round | ÷ torch (median) | cosine to torch "
          "mean / min |")  # fmt: skip
    print("| --- | --- | --- | --- | --- | --- |")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
