"""Signals: accuracy on real chat failure modes, training time, the cost of applying signals.

    .venv/bin/python bench/signals.py [--draws 5] [--json]                  # quality (default)
    .venv/bin/python bench/signals.py --embedders minilm_windows minilm_truncated --shots 8 16 \
        --mlp-shots                                                         # MiniLM rows only
    .venv/bin/python bench/signals.py --section costs [--model telltale-tiny] [--pretrained none]

``--section quality`` reads the labelled set ``bench/data/chat_eval.jsonl`` (written by
``bench/make_eval_set.py``: five failure modes, hard negatives, long answers with the failure
late) and reports, for every failure mode, held-out precision, recall and F1 at 2 / 4 / 8 / 16
examples per class (mean and range over ``--draws`` random draws; every text not drawn is
held out), logistic regression vs the one-hidden-layer MLP, for three text embedders:

* MiniLM (all-MiniLM-L6-v2, real weights) with sentence windows (the product's default,
  ``minilm_windows``) and with 256-token windows every 192 (the default before,
  ``minilm_w256s192``);
* the same MiniLM truncated to its first 256 tokens (what the model alone sees);
* CLIP ViT-B-32's text tower with *random weights* (no pretrained weights are reachable here),
  which reads the first 77 tokens.

Each text is embedded once per embedder and reused by every draw; the embedding times give the
text throughput of each model on the same texts. Long answers are also scored on their own
(the held-out long texts of each draw), and the very long ones (400-700 tokens, the failure
after token 300) alone, which is where windows and truncation at 256 tokens differ.

``--background N`` also fits every logistic signal against N window vectors of unlabelled
"traffic" (see ``_background``; variants ``none`` / ``traffic`` / ``traffic5``, the last one
built with the labels to simulate a 5 % failure rate) and reports the training time per signal.

``--section costs`` prints, with the embedder given:

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
import itertools  # noqa: E402
import json  # noqa: E402
import random  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402
from sklearn.metrics import f1_score, roc_auc_score  # noqa: E402

from signals.bank import SignalBank  # noqa: E402
from signals.open_clip_embedder import OpenClipEmbedder  # noqa: E402
from signals.spec import SignalSpec  # noqa: E402
from signals.text_embedder import SentenceEmbedder  # noqa: E402
from signals.training import fit_signal  # noqa: E402
from signals.windows import Windows  # noqa: E402
from telltale.sample_data import advice_text, neutral_text, render_image  # noqa: E402

BATCH = 256
EVAL_SET = Path(__file__).resolve().parent / "data" / "chat_eval.jsonl"
SHOTS = (2, 4, 8, 16)
METRICS = ("precision", "recall", "f1", "long_f1", "long_recall", "very_long_f1",
           "very_long_recall", "cv_f1", "train_s", "roc_auc", "best_cut_f1")  # fmt: skip
"""``roc_auc`` (how well the signal ranks the held-out texts) and ``best_cut_f1`` (F1 at the
threshold that is best *on the held-out texts themselves*, a ceiling no threshold rule can
beat) separate what the ranking limits from what the chosen threshold costs."""
BACKGROUNDS = ("none", "traffic", "traffic5")
"""With ``--background N``: no background; N windows of unlabelled traffic of the field
(every label at the pool's rate); the same with the mode's positives cut to <= 5 % of the
texts (uses labels to build the background: simulates a realistic failure rate only)."""
RESERVE = 0.4  # share of a mode's not-drawn texts kept out of the test set, for the background


def timed(fn: Callable[[], Any], repeat: int = 3) -> float:
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def _prf(y: np.ndarray, flagged: np.ndarray) -> tuple[float, float, float]:
    tp = float(np.sum(flagged & (y == 1)))
    fp = float(np.sum(flagged & (y == 0)))
    fn = float(np.sum(~flagged & (y == 1)))
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return precision, recall, f1


def _best_cut_f1(y: np.ndarray, probs: np.ndarray) -> float:
    """F1 at the threshold that is best on these very texts (a ceiling, not a result)."""
    return max(_prf(y, probs >= cut)[2] for cut in np.unique(probs))


def _background(
    rows: list[dict[str, Any]],
    groups: list[np.ndarray],
    mode: str,
    taken: set[int],
    not_drawn: list[int],
    variant: str,
    windows: int,
    rng: random.Random,
) -> tuple[list[int], np.ndarray | None]:
    """The test texts and the background windows of one draw.

    The same split for every variant of a draw: ``RESERVE`` of the mode's not-drawn texts go to
    the background pool, the rest are the test set (never in the background); the pool also
    holds every text of the other modes of the same field. ``traffic`` samples ``windows``
    window vectors from the whole pool, whatever their labels; ``traffic5`` first keeps only
    as many of the mode's positives as make 5 % of the pool's texts.
    """
    shuffled = list(not_drawn)
    rng.shuffle(shuffled)
    reserve = set(shuffled[: int(len(shuffled) * RESERVE)])
    test = [i for i in not_drawn if i not in reserve]
    field = rows[not_drawn[0]]["field"]
    others = {i for i, r in enumerate(rows) if r["field"] == field and r["mode"] != mode}
    pool = sorted(reserve | (others - taken))
    if variant == "none":
        return test, None
    if variant == "traffic5":
        failing = [i for i in pool if rows[i]["mode"] == mode and rows[i]["label"] == 1]
        harmless = [i for i in pool if i not in set(failing)]
        keep = int(0.05 * len(harmless) / 0.95)
        pool = sorted(harmless + rng.sample(failing, min(keep, len(failing))))
    vectors = np.concatenate([groups[i] for i in pool])
    pick = np.random.default_rng(rng.randrange(2**32)).permutation(len(vectors))[:windows]
    return test, vectors[np.sort(pick)]


def _summary(values: list[float]) -> dict[str, float]:
    return {"mean": float(np.mean(values)), "min": float(np.min(values)),
            "max": float(np.max(values))}  # fmt: skip


def quality(args: argparse.Namespace) -> dict[str, Any]:
    rows = [json.loads(line) for line in EVAL_SET.read_text(encoding="utf-8").splitlines()]
    texts = [str(r["text"]) for r in rows]
    makers: dict[str, Callable[[], Any]] = {
        "minilm_windows": lambda: SentenceEmbedder(),  # the product default: sentences
        "minilm_w256s192": lambda: SentenceEmbedder(units="tokens"),  # the default before
        "minilm_truncated": lambda: SentenceEmbedder(window_tokens=256, truncate=True),
        "minilm_w128s96": lambda: SentenceEmbedder(
            units="tokens", window_tokens=128, stride_tokens=96
        ),
        "minilm_w64s48": lambda: SentenceEmbedder(
            units="tokens", window_tokens=64, stride_tokens=48
        ),
        "clip_b32_random_text": lambda: OpenClipEmbedder(
            model_name="ViT-B-32", pretrained=None, seed=0
        ),
        "minilm_torch": lambda: SentenceEmbedder(backend="torch"),
        "minilm_torch_b32": lambda: SentenceEmbedder(backend="torch", batch_size=32),
        **{f"minilm_onnx_{w.replace('-', '_')}": (lambda w=w: SentenceEmbedder(
            backend="onnx", onnx_weights=w)) for w in ("fp32", "int8", "int8-mixed")},
    }  # fmt: skip
    embedders: dict[str, Any] = {n: makers[n]() for n in args.embedders}
    embedded: dict[str, list[np.ndarray]] = {}
    throughput: dict[str, dict[str, float]] = {}
    for name, embedder in embedders.items():
        cached = Path(args.load_embeddings or "") / f"{name}.npz"
        if args.load_embeddings and cached.exists():
            with np.load(cached) as saved:  # reruns of the fits only: no throughput figure
                windows = Windows(saved["vectors"], saved["offsets"])
            embedded[name] = windows.groups()
            throughput[name] = {"texts_per_s": float("nan"), "seconds": float("nan"),
                                "windows": float(len(windows.vectors))}  # fmt: skip
            continue
        started = time.perf_counter()
        windows = embedder.embed_windows(texts)
        seconds = time.perf_counter() - started
        if args.save_embeddings:
            np.savez(Path(args.save_embeddings) / f"{name}.npz", vectors=windows.vectors,
                     offsets=windows.offsets)  # fmt: skip
        embedded[name] = windows.groups()
        throughput[name] = {"texts_per_s": len(texts) / seconds, "seconds": seconds,
                            "windows": float(len(windows.vectors))}  # fmt: skip
        print(f"embedded with {name} in {seconds:.1f} s", file=sys.stderr, flush=True)
    out: dict[str, Any] = {
        "texts": len(texts),
        "embedder_ids": {n: e.id for n, e in embedders.items()},
        "throughput": throughput,
        "minilm_vs_clip_text_throughput": throughput["minilm_windows"]["texts_per_s"]
        / throughput["clip_b32_random_text"]["texts_per_s"]
        if {"minilm_windows", "clip_b32_random_text"} <= set(throughput)
        else None,
        "draws": args.draws,
        "results": [],
        "errors": [],
    }
    modes = sorted({str(r["mode"]) for r in rows})
    fit_started = time.perf_counter()
    for mode in modes:
        print(f"fitting {mode} ({time.perf_counter() - fit_started:.0f} s so far)",
              file=sys.stderr, flush=True)  # fmt: skip
        index = [i for i, r in enumerate(rows) if r["mode"] == mode]
        pos = [i for i in index if rows[i]["label"] == 1]
        neg = [i for i in index if rows[i]["label"] == 0]
        for shots in args.shots:
            for name, groups in embedded.items():
                dim = groups[0].shape[1]
                for classifier in ("logistic", "mlp"):
                    if classifier == "mlp" and shots not in args.mlp_shots:
                        continue
                    variants = BACKGROUNDS if args.background and classifier == "logistic" \
                        else ("",)  # fmt: skip
                    cells_by: dict[str, dict[str, list[float]]] = {
                        v: {k: [] for k in METRICS} for v in variants
                    }
                    for draw, variant in itertools.product(range(args.draws), variants):
                        cells = cells_by[variant]
                        rng = random.Random(f"{mode}/{shots}/{draw}")
                        train_pos, train_neg = rng.sample(pos, shots), rng.sample(neg, shots)
                        taken = set(train_pos) | set(train_neg)
                        test = [i for i in index if i not in taken]
                        background = None
                        if args.background and classifier == "logistic":
                            test, background = _background(
                                rows, groups, mode, taken, test, variant, args.background,
                                random.Random(f"background/{mode}/{shots}/{draw}"),
                            )  # fmt: skip
                        spec = SignalSpec(name=mode, classifier=classifier, seed=draw)
                        started = time.perf_counter()
                        fitted = fit_signal(spec, [groups[i] for i in train_pos],
                                            [groups[i] for i in train_neg], name,
                                            background=background)  # fmt: skip
                        cells["train_s"].append(time.perf_counter() - started)
                        bank = SignalBank([fitted], name)
                        scored = bank.score_windows(
                            "output.text", Windows.of([groups[i] for i in test], dim)
                        )
                        flagged, probs = scored.flagged[:, 0], scored.probabilities[:, 0]
                        y = np.array([rows[i]["label"] for i in test])
                        p, r, f = _prf(y, flagged)
                        long = np.array([bool(rows[i]["long"]) for i in test])
                        _, long_r, long_f = _prf(y[long], flagged[long])
                        very = np.array([bool(rows[i].get("very_long")) for i in test])
                        _, very_r, very_f = _prf(y[very], flagged[very])
                        if (
                            draw == 0
                            and classifier == "logistic"
                            and shots == args.errors_at
                            and name == next(iter(embedded))
                            and variant == variants[-1]
                            and args.show_errors
                        ):
                            wrong = [(i, float(pr)) for i, pr, fl in zip(test, probs, flagged,
                                                                          strict=True)
                                     if bool(fl) != bool(rows[i]["label"])]  # fmt: skip
                            out["errors"].append({"mode": mode, "embedder": f"{name} {variant}",
                                                  "threshold": fitted.threshold,
                                                  "wrong": [{**rows[i], "p": pr}
                                                            for i, pr in wrong]})  # fmt: skip
                        for key, value in (("precision", p), ("recall", r), ("f1", f),
                                           ("long_f1", long_f), ("long_recall", long_r),
                                           ("very_long_f1", very_f),
                                           ("very_long_recall", very_r),
                                           ("cv_f1", fitted.metrics["f1"]),
                                           ("roc_auc", float(roc_auc_score(y, probs))),
                                           ("best_cut_f1", _best_cut_f1(y, probs))):  # fmt: skip
                            cells[key].append(value)
                    for variant, cells in cells_by.items():
                        out["results"].append({
                            "mode": mode, "per_class": shots,
                            "embedder": f"{name}{'+' if variant else ''}{variant}",
                            "classifier": classifier,
                            **{k: _summary(v) for k, v in cells.items()},
                        })  # fmt: skip
    return out


def print_quality(out: dict[str, Any]) -> None:
    print(f"{out['texts']} labelled texts, {out['draws']} draws per cell; held-out = every text "
          "not drawn for training")  # fmt: skip
    for name, t in out["throughput"].items():
        print(f"  {name:<22} {out['embedder_ids'][name]:<48} {t['texts_per_s']:6.1f} texts/s "
              f"({int(t['windows'])} windows)")  # fmt: skip
    if out["minilm_vs_clip_text_throughput"] is not None:
        print(
            f"  text throughput MiniLM (windows) / CLIP ViT-B-32 text tower: "
            f"{out['minilm_vs_clip_text_throughput']:.2f}x"
        )
    by = {(r["mode"], r["per_class"], r["embedder"], r["classifier"]): r for r in out["results"]}
    modes = sorted({r["mode"] for r in out["results"]})
    names = list(dict.fromkeys(r["embedder"] for r in out["results"]))
    for classifier in ("logistic", "mlp"):
        shots = [k for k in SHOTS if any((m, k, n, classifier) in by
                                         for m in modes for n in names)]  # fmt: skip
        if not shots:
            continue
        print(f"\nheld-out F1, mean [min, max] — {classifier}")
        print(f"  {'mode':<18} {'embedder':<22} " + "  ".join(f"{k:>2}+{k:<2} {'':>12}"
                                                           for k in shots))  # fmt: skip
        for mode in modes:
            for name in names:
                if not all((mode, k, name, classifier) in by for k in shots):
                    continue
                cells = "  ".join(
                    f"{by[(mode, k, name, classifier)]['f1']['mean']:.2f} "
                    f"[{by[(mode, k, name, classifier)]['f1']['min']:.2f},"
                    f"{by[(mode, k, name, classifier)]['f1']['max']:.2f}]"
                    for k in shots
                )
                seconds = "  ".join(f"{by[(mode, k, name, classifier)]['train_s']['mean']:.1f}"
                                    for k in shots)  # fmt: skip
                print(f"  {mode:<18} {name:<22} {cells}   train s: {seconds}")
    for k in sorted({r["per_class"] for r in out["results"]}):
        print(
            f"\n{k}+{k} examples: precision / recall / F1 on all held-out texts; F1 and recall "
            "on the held-out long answers (200+ tokens, failure late) and on the very long "
            "ones alone (400-700 tokens, failure after token 300)"
        )
        for classifier in ("logistic", "mlp"):
            for mode in modes:
                for name in names:
                    if (mode, k, name, classifier) not in by:
                        continue
                    r = by[(mode, k, name, classifier)]
                    print(
                        f"  {classifier:<8} {mode:<18} {name:<22} P {r['precision']['mean']:.2f}"
                        f"  R {r['recall']['mean']:.2f}  F1 {r['f1']['mean']:.2f}   long: "
                        f"F1 {r['long_f1']['mean']:.2f}  R {r['long_recall']['mean']:.2f}   "
                        f"400+: F1 {r['very_long_f1']['mean']:.2f}  "
                        f"R {r['very_long_recall']['mean']:.2f}   ROC-AUC "
                        f"{r['roc_auc']['mean']:.2f}  F1 at the best cut "
                        f"{r['best_cut_f1']['mean']:.2f}"
                    )


def print_errors(out: dict[str, Any], show: int) -> None:
    for block in out.get("errors", []):
        wrong = block["wrong"]
        fp = sum(1 for w in wrong if not w["label"])
        print(f"\nmisclassified, {block['mode']} ({block['embedder']}, draw 0, threshold "
              f"{block['threshold']:.3f}): {fp} false positives, {len(wrong) - fp} false "
              f"negatives; the {show} most confident")  # fmt: skip
        worst = sorted(wrong, key=lambda w: -abs(w["p"] - block["threshold"]))[:show]
        for w in worst:
            text = " ".join(w["text"].split())
            print(
                f"  {'FP' if not w['label'] else 'FN'} p={w['p']:.3f} {w['kind']:<14} "
                f"{text[:160]}{'...' if len(text) > 160 else ''}"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--section", choices=("quality", "costs"), default="quality")
    parser.add_argument("--draws", type=int, default=5)
    parser.add_argument(
        "--mlp-shots",
        type=int,
        nargs="*",
        default=[8],
        help="examples per class at which the (slow to cross-validate) MLP runs",
    )
    parser.add_argument(
        "--embedders",
        nargs="+",
        choices=(
            "minilm_windows",
            "minilm_w256s192",
            "minilm_truncated",
            "minilm_w128s96",
            "minilm_w64s48",
            "clip_b32_random_text",
            "minilm_torch",  # this and the next four: bench/onnx_embedder.py
            "minilm_torch_b32",
            *(f"minilm_onnx_{w}" for w in ("fp32", "int8", "int8_mixed")),
        ),
        default=["minilm_windows", "minilm_w256s192", "minilm_truncated", "clip_b32_random_text"],
        help="which text embedders to compare (default: sentence windows (the product's "
        "default), 256-token windows every 192 (the default before), truncation at 256, "
        "CLIP; also token windows of 128 and 64)",
    )
    parser.add_argument(
        "--shots",
        type=int,
        nargs="+",
        default=list(SHOTS),
        help="examples per class to draw (default: 2 4 8 16)",
    )
    parser.add_argument("--save-embeddings", help="folder to keep each model's window vectors")
    parser.add_argument("--load-embeddings", help="folder of saved vectors to reuse (no "
                        "throughput figure for those)")  # fmt: skip
    parser.add_argument(
        "--show-errors",
        type=int,
        default=0,
        metavar="N",
        help="print the N most confident mistakes per mode (draw 0)",
    )
    parser.add_argument("--errors-at", type=int, default=8, help="examples per class for "
                        "--show-errors (first embedder, logistic)")  # fmt: skip
    parser.add_argument("--background", type=int, default=0, metavar="N", help="also fit "
                        "logistic signals with N background windows of unlabelled traffic "
                        "(variants none / traffic / traffic5; the test set then leaves out a "
                        "reserve of 40 %% of the mode's texts)")  # fmt: skip
    parser.add_argument("--model", default="telltale-tiny")
    parser.add_argument("--pretrained", default="none")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--json-out", help="also write the JSON document to this file")
    args = parser.parse_args()
    if args.section == "quality":
        out = quality(args)
        if args.json_out:
            Path(args.json_out).write_text(json.dumps(out, indent=2), encoding="utf-8")
        if args.json:
            print(json.dumps(out, indent=2))
        else:
            print_quality(out)
            print_errors(out, args.show_errors)
        return
    costs(args)


def costs(args: argparse.Namespace) -> None:
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
