"""Signals: training time, the cost of applying many signals, and F1 against labels.

    .venv/bin/python bench/signals.py [--model telltale-tiny] [--pretrained none] [--json]

One run prints, with the embedder available here:

1. training time (cross-validation and threshold choice included) for 8+8, 20+20 and 200+200
   examples, logistic regression and the one-hidden-layer MLP;
2. the cost of applying 1, 10, 100 and 1,000 signals to a batch of 256 events, as a fraction of
   the cost of embedding that batch (texts and images), all signals stacked into one matrix;
3. F1 on 200+200 held-out examples against the number of labelled examples per class
   (2, 4, 8, 16, 32), for a synthetic image failure mode (stock-photo watermark overlay) and a
   synthetic text failure mode (unsolicited stock picks), mean over 3 draws of the examples.
"""

from __future__ import annotations

import sys
from pathlib import Path

# This script is named like the package it measures: keep its own folder off the import path.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import argparse  # noqa: E402
import json  # noqa: E402
import random  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402
from sklearn.metrics import f1_score  # noqa: E402

from signals.bank import SignalBank  # noqa: E402
from signals.open_clip_embedder import OpenClipEmbedder  # noqa: E402
from signals.spec import SignalSpec  # noqa: E402
from signals.training import fit_signal  # noqa: E402
from telltale.sample_data import advice_text, neutral_text, render_image  # noqa: E402

BATCH = 256


def timed(fn: Callable[[], Any], repeat: int = 3) -> float:
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="telltale-tiny")
    parser.add_argument("--pretrained", default="none")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    pretrained = None if args.pretrained.lower() == "none" else args.pretrained
    embedder = OpenClipEmbedder(model_name=args.model, pretrained=pretrained, seed=0)
    rng = random.Random(11)
    out: dict[str, Any] = {"embedder": embedder.id, "dim": embedder.dim}

    # data: texts and images, failure (1) or not (0)
    def texts(n: int, failing: bool) -> list[str]:
        return [advice_text(rng) if failing else neutral_text(rng) for _ in range(n)]

    def images(n: int, failing: bool) -> np.ndarray:
        return embedder.embed_images([render_image(rng, failing) for _ in range(n)])

    text_pos, text_neg = (
        embedder.embed_texts(texts(232, True)),
        embedder.embed_texts(texts(232, False)),
    )
    img_pos, img_neg = images(232, True), images(232, False)

    # 1. training time
    training = []
    for n in (8, 20, 200):
        for classifier in ("logistic", "mlp"):
            spec = SignalSpec(name="t", classifier=classifier)
            seconds = timed(lambda: fit_signal(spec, text_pos[:n], text_neg[:n], embedder.id))  # noqa: B023
            training.append({"per_class": n, "classifier": classifier, "ms": seconds * 1000})
    out["training"] = training

    # 2. apply cost vs embedding cost, batch of 256
    batch_texts = texts(BATCH, False)
    batch_images = [render_image(rng, False) for _ in range(BATCH)]
    embed_text_s = timed(lambda: embedder.embed_texts(batch_texts), repeat=2)
    embed_image_s = timed(lambda: embedder.embed_images(batch_images), repeat=1)
    base = fit_signal(SignalSpec(name="s"), text_pos[:8], text_neg[:8], embedder.id)
    vectors = embedder.embed_texts(batch_texts)
    apply = []
    for count in (1, 10, 100, 1000):
        noise = np.random.default_rng(count).normal(0, 0.01, (count, embedder.dim))
        signals = [base.model_copy(update={"spec": SignalSpec(name=f"s{i}"),
                                           "weights": tuple(np.array(base.weights) + noise[i])})
                   for i in range(count)]  # fmt: skip
        bank = SignalBank(signals, embedder.id)
        seconds = timed(lambda: bank.score("output.text", vectors), repeat=5)  # noqa: B023
        apply.append({"signals": count, "ms": seconds * 1000,
                      "of_text_embedding": seconds / embed_text_s,
                      "of_image_embedding": seconds / embed_image_s})  # fmt: skip
    out["embed_batch_ms"] = {"text": embed_text_s * 1000, "image": embed_image_s * 1000}
    out["apply"] = apply

    # 3. F1 against labelled examples, held-out 200 + 200
    curves: dict[str, list[dict[str, float]]] = {}
    for name, pos, neg in (
        ("image_watermark", img_pos, img_neg),
        ("text_stock_advice", text_pos, text_neg),
    ):
        test_x = np.concatenate([pos[32:], neg[32:]])
        test_y = np.r_[np.ones(len(pos) - 32), np.zeros(len(neg) - 32)]
        curve = []
        for n in (2, 4, 8, 16, 32):
            scores = []
            for draw in range(3):
                pick = np.random.default_rng(draw).permutation(32)[:n]
                fitted = fit_signal(SignalSpec(name=name, seed=draw), pos[pick], neg[pick],
                                    embedder.id)  # fmt: skip
                flagged = SignalBank([fitted], embedder.id).score("output.text", test_x).flagged
                scores.append(f1_score(test_y, flagged[:, 0]))
            curve.append(
                {
                    "per_class": n,
                    "f1": float(np.mean(scores)),
                    "f1_min": float(np.min(scores)),
                    "f1_max": float(np.max(scores)),
                }
            )
        curves[name] = curve
    out["f1_by_examples"] = curves

    if args.json:
        print(json.dumps(out, indent=2))
        return
    print(f"embedder {embedder.id} (dim {embedder.dim}); batch {BATCH}")
    print("\n1. training time (k-fold CV + threshold + final fit)")
    for row in training:
        print(
            f"   {row['per_class']:>4}+{row['per_class']:<4} {row['classifier']:<9}"
            f"{row['ms']:9.1f} ms"
        )
    print(
        f"\n2. applying signals to {BATCH} events vs embedding them "
        f"(texts {embed_text_s * 1000:.0f} ms, images {embed_image_s * 1000:.0f} ms)"
    )
    for row in apply:
        print(
            f"   {row['signals']:>5} signals {row['ms']:8.3f} ms = "
            f"{row['of_text_embedding']:.1e} × text embedding, "
            f"{row['of_image_embedding']:.1e} × image embedding"
        )
    print("\n3. held-out F1 (200+200) by labelled examples per class, mean [min, max] of 3 draws")
    for name, curve in curves.items():
        cells = "  ".join(f"{c['per_class']}: {c['f1']:.2f} [{c['f1_min']:.2f}, {c['f1_max']:.2f}]"
                          for c in curve)  # fmt: skip
        print(f"   {name:<18} {cells}")


if __name__ == "__main__":
    main()
