"""Text embedder backends side by side: throughput, cosine to torch fp32, held-out F1.

    .venv/bin/python bench/onnx_embedder.py [--rounds 4] [--draws 5] [--shots 8] \
        [--variants torch onnx-fp32 onnx-int8 onnx-int8-mixed] [--threads 2]

Every variant is MiniLM (the product's text model, real weights, sentence windows) run by one
backend: ``torch`` (fp32, the reference) or ONNX Runtime (``onnx-<weights>``, see
:mod:`signals.onnx_text`; the export is made and cached before any timing). The labelled texts
of ``bench/data/chat_eval.jsonl`` are dealt into ``--rounds`` interleaved rounds (text ``i`` in
round ``i mod rounds``); in each round every variant embeds the same texts, in an order that
rotates from round to round, so a slow spell of a shared machine falls on all variants. The
script prints, per variant:

* texts/s in each round and the median over rounds of its ratio to torch (onnx ÷ torch);
* cosine to torch of every window vector and of every text's vector (mean, min);
* held-out F1 and ROC-AUC per failure mode at ``--shots`` examples per class (logistic, mean
  over ``--draws`` draws, the same draws for every variant), by ``bench/signals.py``'s quality
  section on the vectors embedded here, and their change from torch.

``torch-b32`` is a numerical control, not a candidate: torch fp32 again in batches of 32
windows instead of 64, so its vectors differ from torch's only by float rounding (padding
changes the order of sums). How far its F1 moves is the noise floor of the F1 comparison: the
few-shot fit (cross-validated choices, a threshold) is not continuous in its input vectors.
``--embeddings DIR`` keeps every variant's vectors there and reuses them on a later run (then
without throughput figures), so the fits can be rerun with more draws.
"""

from __future__ import annotations

import sys
from pathlib import Path

# bench/signals.py is named like the package: keep this folder off the import path.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import argparse  # noqa: E402
import importlib.util  # noqa: E402
import json  # noqa: E402
import statistics  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402

from signals.text_embedder import SentenceEmbedder  # noqa: E402
from signals.windows import Windows  # noqa: E402

HERE = Path(__file__).resolve().parent
EVAL_SET = HERE / "data" / "chat_eval.jsonl"
VARIANTS = ("torch", "torch-b32", "onnx-fp32", "onnx-int8", "onnx-int8-mixed")
BENCH_NAMES = {v: "minilm_" + v.replace("-", "_") for v in VARIANTS}
"""Each variant's name in ``bench/signals.py`` (which builds the same embedder)."""


def make(variant: str, threads: int) -> SentenceEmbedder:
    if variant.startswith("torch"):
        batch = 32 if variant == "torch-b32" else 64
        return SentenceEmbedder(threads=threads, batch_size=batch, backend="torch")
    return SentenceEmbedder(threads=threads, backend="onnx", onnx_weights=variant[5:])


def embed_rounds(
    embedders: dict[str, SentenceEmbedder], texts: list[str], rounds: int
) -> tuple[dict[str, Windows], dict[str, list[float]]]:
    """Every text embedded by every variant, round by round; texts/s per variant and round."""
    names = list(embedders)
    parts: dict[str, list[tuple[list[int], Windows]]] = {n: [] for n in names}
    rates: dict[str, list[float]] = {n: [] for n in names}
    for r in range(rounds):
        index = list(range(r, len(texts), rounds))
        chunk = [texts[i] for i in index]
        for name in names[r % len(names) :] + names[: r % len(names)]:
            started = time.perf_counter()
            windows = embedders[name].embed_windows(chunk)
            seconds = time.perf_counter() - started
            parts[name].append((index, windows))
            rates[name].append(len(chunk) / seconds)
            print(f"round {r + 1}/{rounds} {name:<16} {len(chunk)} texts in {seconds:6.1f} s",
                  file=sys.stderr, flush=True)  # fmt: skip
    return {n: _reassemble(parts[n], len(texts)) for n in names}, rates


def _reassemble(parts: list[tuple[list[int], Windows]], count: int) -> Windows:
    groups: list[np.ndarray] = [np.zeros((0, 0))] * count
    for index, windows in parts:
        for i, group in zip(index, windows.groups(), strict=True):
            groups[i] = group
    return Windows.of(groups, groups[0].shape[1])


def _load(path: Path) -> Windows:
    with np.load(path) as saved:
        return Windows(saved["vectors"], saved["offsets"])


def cosines(reference: Windows, other: Windows) -> dict[str, float]:
    per_window = np.sum(reference.vectors * other.vectors, axis=1)
    per_text = np.sum(reference.documents() * other.documents(), axis=1)
    return {"window_mean": float(per_window.mean()), "window_min": float(per_window.min()),
            "text_mean": float(per_text.mean()), "text_min": float(per_text.min())}  # fmt: skip


def f1_by_mode(folder: Path, variants: list[str], args: argparse.Namespace) -> dict[str, Any]:
    """``bench/signals.py --load-embeddings folder`` at ``--shots`` (logistic only)."""
    spec = importlib.util.spec_from_file_location("bench_signals", HERE / "signals.py")
    assert spec is not None and spec.loader is not None
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    options = argparse.Namespace(
        embedders=[BENCH_NAMES[v] for v in variants], load_embeddings=str(folder),
        save_embeddings=None, shots=[args.shots], mlp_shots=[], draws=args.draws, background=0,
        show_errors=0, errors_at=args.shots,
    )  # fmt: skip
    out: dict[str, Any] = bench.quality(options)
    return {(r["mode"], r["embedder"]): r for r in out["results"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--variants", nargs="+", choices=VARIANTS, default=list(VARIANTS))
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--draws", type=int, default=5)
    parser.add_argument("--shots", type=int, default=8)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--limit", type=int, default=0, help="first N texts only (a smoke run)")
    parser.add_argument("--no-f1", action="store_true", help="throughput and cosine only")
    parser.add_argument("--embeddings", help="folder to keep (and reuse) the window vectors")
    args = parser.parse_args()
    variants = ["torch", *(v for v in args.variants if v != "torch")]
    rows = [json.loads(line) for line in EVAL_SET.read_text(encoding="utf-8").splitlines()]
    texts = [str(r["text"]) for r in rows][: args.limit or None]
    embedders = {v: make(v, args.threads) for v in variants}  # exports happen here, untimed
    saved = Path(args.embeddings or ".") / f"vectors-{len(texts)}"
    if args.embeddings and all((saved / f"{BENCH_NAMES[v]}.npz").exists() for v in variants):
        windows = {v: _load(saved / f"{BENCH_NAMES[v]}.npz") for v in variants}
        rates = {v: [float("nan")] * args.rounds for v in variants}
    else:
        for embedder in embedders.values():
            embedder.embed_texts(texts[:8])  # warm-up
        windows, rates = embed_rounds(embedders, texts, args.rounds)
    if args.embeddings:
        saved.mkdir(parents=True, exist_ok=True)
        for v in variants:
            np.savez(saved / f"{BENCH_NAMES[v]}.npz", vectors=windows[v].vectors,
                     offsets=windows[v].offsets)  # fmt: skip
    print(f"{len(texts)} texts ({len(windows['torch'].vectors)} sentence windows) from "
          f"{EVAL_SET.name}, {args.rounds} interleaved rounds, {args.threads} threads")  # fmt: skip
    print(f"\n{'variant':<16} {'id':<62} {'texts/s by round':<28} {'÷ torch (median)':>16}  "
          "cosine to torch: windows mean/min, texts mean/min")  # fmt: skip
    for v in variants:
        ratio = statistics.median(a / b for a, b in zip(rates[v], rates["torch"], strict=True))
        c = cosines(windows["torch"], windows[v])
        by_round = " ".join(f"{x:5.1f}" for x in rates[v])
        print(f"{v:<16} {embedders[v].id:<62} {by_round:<28} {ratio:15.2f}x  "
              f"{c['window_mean']:.4f} / {c['window_min']:.4f}, "
              f"{c['text_mean']:.4f} / {c['text_min']:.4f}")  # fmt: skip
    if args.no_f1:
        return
    with tempfile.TemporaryDirectory() as tmp:
        for v in variants:
            np.savez(Path(tmp) / f"{BENCH_NAMES[v]}.npz", vectors=windows[v].vectors,
                     offsets=windows[v].offsets)  # fmt: skip
        by = f1_by_mode(Path(tmp), variants, args)
    modes = sorted({mode for mode, _ in by})
    for metric in ("f1", "roc_auc"):
        print(f"\nheld-out {metric} at {args.shots}+{args.shots} (logistic, mean [min, max] over "
              f"{args.draws} draws; change from torch)")  # fmt: skip
        print(f"  {'mode':<18} " + "  ".join(f"{v:<26}" for v in variants))
        worst = dict.fromkeys(variants, 0.0)
        for mode in modes:
            base = by[(mode, BENCH_NAMES["torch"])][metric]["mean"]
            cells = []
            for v in variants:
                m = by[(mode, BENCH_NAMES[v])][metric]
                delta = m["mean"] - base
                worst[v] = min(worst[v], delta)
                cells.append(f"{m['mean']:.3f} [{m['min']:.2f},{m['max']:.2f}] {delta:+.3f}")
            print(f"  {mode:<18} " + "  ".join(f"{c:<26}" for c in cells))
        print(f"  largest {metric} drop from torch: "
              + ", ".join(f"{v} {worst[v]:+.3f}" for v in variants))  # fmt: skip


if __name__ == "__main__":
    main()
