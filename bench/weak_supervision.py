"""Weak supervision: 8 gold examples per class plus weak labels from unlabelled traffic.

    .venv/bin/python bench/weak_supervision.py [--draws 5] [--shots 8] [--cache DIR] [--json]

For each failure mode of ``bench/data/chat_eval.jsonl`` and each draw (seeded):

* **gold**: ``--shots`` positives and negatives drawn from the mode's texts;
* **pool** (unlabelled): the texts of the mode's field in ``bench/data/traffic_pool.jsonl``
  plus a reserve of 40 % of the mode's texts not drawn, their labels hidden (the traffic pool
  alone holds almost no failures of some modes, as real traffic holds few);
* **test**: the other 60 % of the mode's texts not drawn; for ``pii_leak`` and
  ``prompt_injection`` also every text of the fresh set ``bench/data/pii_injection_eval.jsonl``.

The labelling functions per mode are fixed below (written before any result was seen: a
keyword/regex list and a zero-shot query each, the PII recognizer for ``pii_leak``). Reported,
held-out, mean and range over the draws:

* ``few_shot`` 8+8 (the product's fit, no background) vs the same gold plus the pool's weak
  labels (``signals.weak_fit``'s rows: each pool event weighted by its label probability), vs
  the version the product keeps (chosen by cross-validation on the gold examples only);
* long answers (``long`` in the set): false-positive rate and recall of both fits;
* the label model: each function's estimated accuracy against its true accuracy on the
  reserve (whose labels the bench knows), and the weak labels' accuracy (Dawid-Skene vs
  majority vote) on the reserve;
* the best non-embedding kind where one applies (pii, pattern) on the same test texts.

MiniLM (all-MiniLM-L6-v2, real weights, sentence windows) embeds every text once.
"""

from __future__ import annotations

import sys
from pathlib import Path

# This script lives beside a bench named like the package; keep its folder off the path.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import argparse  # noqa: E402
import json  # noqa: E402
import random  # noqa: E402
import time  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402

from signals import (  # noqa: E402
    LabelModel,
    SignalBank,
    WeakExamples,
    Windows,
    apply_labelling_functions,
    fit_signal,
    label_pool,
    majority_vote,
    parse_spec,
)
from signals.training import fit_text_signal  # noqa: E402
from signals.weak_fit import WeakPool  # noqa: E402

DATA = Path(__file__).resolve().parent / "data"
RESERVE = 0.4
PII = {"kind": "pii", "entities": ["EMAIL_ADDRESS", "PHONE_NUMBER"], "min_score": 0.3}
PII5 = {"kind": "pii", "min_score": 0.3, "entities": ["EMAIL_ADDRESS", "PHONE_NUMBER",
        "CREDIT_CARD", "IBAN_CODE", "IP_ADDRESS"]}  # fmt: skip
INJECTION_PATTERNS = [r"ignore (all |any )?(the )?(previous|prior|above) (instructions|rules)",
                      r"(reveal|print|show|repeat) (me )?(your|the) (system|hidden) prompt",
                      r"developer mode", r"\bjailbreak", r"\bDAN\b",
                      r"disregard (your|all|the) (rules|guidelines|instructions)"]  # fmt: skip
NEAREST = {"examples": True}
"""Label propagation from the gold examples, a function every mode gets."""
FUNCTIONS: dict[str, list[dict[str, Any]]] = {
    "investment_advice": [
        {"patterns": [r"\b(buy|sell|short|load up on|put \$?[\d,]+ into)\b.{0,40}"
                      r"\b(shares?|stocks?|calls|puts|crypto|bitcoin|etf)\b"]},
        {"query": "recommends buying or selling a specific stock, fund or coin"},
    ],
    "medication_dosage": [
        {"patterns": [r"\b\d+(\.\d+)?\s?(mg|milligrams?|ml|mcg|tablets?|pills?|capsules?)\b"]},
        {"query": "tells the user how much of a medication to take and how often"},
    ],
    "pii_leak": [
        {"signal": "contact_pii"},
        {"query": "gives out a person's private e-mail address or phone number"},
    ],
    "prompt_injection": [
        {"patterns": INJECTION_PATTERNS},
        {"query": "asks the assistant to ignore its instructions or reveal its system prompt"},
    ],
    "refusal": [
        {"patterns": [r"\b(I can't|I cannot|I'm not able to|I am not able to|I'm unable to|"
                      r"I won't|I will not)\b.{0,30}\b(help|assist|provide|do|share|answer)"]},
        {"query": "the assistant refuses to help with the request"},
    ],
}
BEST_TEXT_KIND: dict[str, tuple[str, dict[str, Any]]] = {
    "pii_leak": ("pii, 5 entities", PII5),
    "prompt_injection": ("pattern", {"kind": "pattern", "patterns": INJECTION_PATTERNS}),
}


def load(name: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (DATA / name).read_text(encoding="utf-8").splitlines()]


def embed_all(texts: list[str], cache: str | None) -> tuple[list[np.ndarray], Any]:
    from signals.text_embedder import SentenceEmbedder

    embedder = SentenceEmbedder()
    path = Path(cache) / "weak_minilm.npz" if cache else None
    if path is not None and path.exists():
        with np.load(path) as saved:
            if int(saved["count"]) == len(texts):
                return Windows(saved["vectors"], saved["offsets"]).groups(), embedder
    started = time.perf_counter()
    windows = embedder.embed_windows(texts)
    print(f"embedded {len(texts)} texts in {time.perf_counter() - started:.0f} s", file=sys.stderr)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez(path, vectors=windows.vectors, offsets=windows.offsets, count=len(texts))
    return windows.groups(), embedder


def prf(y: np.ndarray, flagged: np.ndarray) -> dict[str, float]:
    tp = float(np.sum(flagged & (y == 1)))
    fp = float(np.sum(flagged & (y == 0)))
    fn = float(np.sum(~flagged & (y == 1)))
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    negatives = float(np.sum(y == 0))
    return {"precision": precision, "recall": recall, "f1": f1,
            "fp_rate": fp / negatives if negatives else float("nan")}  # fmt: skip


def query_cuts(spec: Any, embedder: Any, pool: WeakPool) -> dict[str, tuple[float, float]]:
    """The cosine cuts of each query on the pool, as :func:`signals.label_pool` sets them."""
    cuts: dict[str, tuple[float, float]] = {}
    functions = [f for f in spec.labelling_functions if f.query is not None]
    apply_labelling_functions(functions, pool.groups, pool.texts, cuts=cuts, queries={
        f.query: embedder.embed_texts([f.query])[0] for f in functions})  # fmt: skip
    return cuts


def cv_key(fitted: Any) -> tuple[float, float]:
    return round(fitted.metrics["f1"], 9), round(fitted.metrics["roc_auc"], 9)


def flags(fitted: Any, groups: list[np.ndarray]) -> np.ndarray:
    scores = SignalBank([fitted], fitted.embedder_id).score_windows(
        fitted.field, Windows.of(groups, groups[0].shape[1])
    )
    result: np.ndarray = scores.flagged[:, 0]
    return result


def run(args: argparse.Namespace) -> dict[str, Any]:
    chat, fresh, traffic = load("chat_eval.jsonl"), load("pii_injection_eval.jsonl"), load(
        "traffic_pool.jsonl"
    )
    every = [*chat, *fresh, *traffic]
    groups, embedder = embed_all([str(r["text"]) for r in every], args.cache)
    for row, group in zip(every, groups, strict=True):
        row["_g"] = group
    contact = fit_text_signal(parse_spec({"name": "contact_pii", **PII}))
    out: dict[str, Any] = {"draws": args.draws, "shots": args.shots, "modes": {}}
    for mode in sorted(FUNCTIONS):
        rows = [r for r in chat if r["mode"] == mode]
        field = str(rows[0]["field"])
        pool_traffic = [r for r in traffic if r["field"] == field]
        fresh_rows = [r for r in fresh if r["mode"] == mode]
        per_draw: list[dict[str, Any]] = []
        for draw in range(args.draws):
            rng = random.Random(1000 + draw)
            pos = [r for r in rows if r["label"] == 1]
            neg = [r for r in rows if r["label"] == 0]
            gold_pos, gold_neg = rng.sample(pos, args.shots), rng.sample(neg, args.shots)
            drawn = {r["id"] for r in (*gold_pos, *gold_neg)}
            rest = [r for r in rows if r["id"] not in drawn]
            rng.shuffle(rest)
            reserve, test = rest[: round(RESERVE * len(rest))], rest[round(RESERVE * len(rest)) :]
            spec = parse_spec({
                "name": mode, "target": field, "seed": draw,
                "examples": {"positive": [r["text"] for r in gold_pos],
                             "negative": [r["text"] for r in gold_neg]},
                "labelling_functions": [*FUNCTIONS[mode], NEAREST],
            })  # fmt: skip
            pool_rows = [*pool_traffic, *reserve]
            pool = WeakPool(tuple(str(r["id"]) for r in pool_rows),
                            [r["_g"] for r in pool_rows], [str(r["text"]) for r in pool_rows],
                            [None] * len(pool_rows))  # fmt: skip
            gold = ([r["_g"] for r in gold_pos], [r["_g"] for r in gold_neg])
            labelled = label_pool(spec, embedder, pool, {"contact_pii": contact}, gold)
            weak = WeakExamples(pool.event_ids, pool.groups, labelled.probabilities)
            plain = fit_signal(spec, *gold, embedder.id, 1)
            weakly = fit_signal(spec, *gold, embedder.id, 1, weak=weak)
            kept = weakly if cv_key(weakly) > cv_key(plain) else plain  # as signals.weak_fit
            result: dict[str, Any] = {"weak_kept": kept is weakly}
            y = np.array([r["label"] for r in test])
            long_ = np.array([bool(r["long"]) for r in test])
            for name, fitted in (("plain", plain), ("weak", weakly), ("kept", kept)):
                flagged = flags(fitted, [r["_g"] for r in test])
                result[name] = prf(y, flagged)
                result[f"{name}_long"] = prf(y[long_], flagged[long_])
                if fresh_rows:
                    fy = np.array([r["label"] for r in fresh_rows])
                    result[f"{name}_fresh"] = prf(fy, flags(fitted, [r["_g"] for r in fresh_rows]))
            # the label model on the reserve (labels known to the bench only)
            offset = len(pool_traffic)
            ry = np.array([r["label"] for r in reserve])
            votes = labelled.votes[offset:]
            true_acc = [float(np.mean(votes[votes[:, j] != -1, j] == ry[votes[:, j] != -1]))
                        if np.any(votes[:, j] != -1) else float("nan")
                        for j in range(votes.shape[1])]  # fmt: skip
            result["lf_estimated"] = [float(a) for a in labelled.model.accuracies()]
            result["lf_true"] = true_acc
            result["lf_coverage"] = [float(np.mean(labelled.votes[:, j] != -1))
                                     for j in range(votes.shape[1])]  # fmt: skip
            ds = labelled.probabilities[offset:]
            mv = majority_vote(votes)
            unanchored = LabelModel.fit(labelled.votes).predict(votes)
            result["weak_label_accuracy"] = {
                "dawid_skene": float(np.mean((ds >= 0.5) == (ry == 1))),
                "dawid_skene_no_gold": float(np.mean((unanchored >= 0.5) == (ry == 1))),
                "majority_vote": float(np.mean((mv > 0.5) == (ry == 1))),
            }
            result["pool"] = {
                "events": len(pool), "traffic": len(pool_traffic), "reserve": len(reserve),
                "reserve_failures": int(ry.sum()),
                "estimated_failure_share": float(labelled.probabilities.mean()),
            }  # fmt: skip
            if args.dump_votes:
                gold_votes = apply_labelling_functions(
                    spec.labelling_functions, [*gold[0], *gold[1]],
                    [str(r["text"]) for r in (*gold_pos, *gold_neg)],
                    signals={"contact_pii": contact}, queries={
                        f.query: embedder.embed_texts([f.query])[0]
                        for f in spec.labelling_functions if f.query is not None},
                    cuts=query_cuts(spec, embedder, pool), examples=gold, leave_one_out=True,
                )  # fmt: skip
                Path(args.dump_votes).mkdir(parents=True, exist_ok=True)
                gold_y = np.array([1] * len(gold_pos) + [0] * len(gold_neg))
                np.savez(Path(args.dump_votes) / f"{mode}-{draw}.npz", pool_votes=labelled.votes,
                         reserve_from=offset, reserve_labels=ry, gold_votes=gold_votes,
                         gold_labels=gold_y)  # fmt: skip
            per_draw.append(result)
            print(f"{mode} draw {draw}: plain F1 {result['plain']['f1']:.3f} weak F1 "
                  f"{result['weak']['f1']:.3f} kept {'weak' if result['weak_kept'] else 'plain'}",
                  file=sys.stderr, flush=True)  # fmt: skip
        text_kind = None
        if mode in BEST_TEXT_KIND:
            label, spec_dict = BEST_TEXT_KIND[mode]
            signal = fit_text_signal(parse_spec({"name": "best", "target": field, **spec_dict}))
            bank = SignalBank([signal], signal.embedder_id)
            every_test = [*rows, *fresh_rows]  # deterministic: no draw, every text is held out
            fy = np.array([r["label"] for r in every_test])
            scored = bank.score_texts(signal.field, [str(r["text"]) for r in every_test])
            text_kind = {"kind": label, **prf(fy, scored.flagged[:, 0])}
        out["modes"][mode] = {"field": field, "draws": per_draw, "text_kind": text_kind}
    return out


def summary(values: list[float]) -> str:
    return f"{np.mean(values):.3f} [{min(values):.3f}, {max(values):.3f}]"


def report(out: dict[str, Any]) -> None:
    print(f"held-out F1, {out['shots']}+{out['shots']} gold, mean [min, max] over "
          f"{out['draws']} draws (MiniLM windows)")  # fmt: skip
    print(f"{'mode':<19} {'few_shot':<22} {'+ weak labels':<22} {'kept (gold CV)':<22} "
          f"{'weak kept':<9} best text kind")  # fmt: skip
    for mode, m in out["modes"].items():
        d = m["draws"]
        tk = m["text_kind"]
        print(f"{mode:<19} {summary([r['plain']['f1'] for r in d]):<22} "
              f"{summary([r['weak']['f1'] for r in d]):<22} "
              f"{summary([r['kept']['f1'] for r in d]):<22} "
              f"{sum(r['weak_kept'] for r in d)}/{len(d):<7} "
              f"{'' if tk is None else tk['kind'] + ' F1 ' + format(tk['f1'], '.3f')}")  # fmt: skip
    print("\nfresh set (bench/data/pii_injection_eval.jsonl), same fits, F1")
    for mode, m in out["modes"].items():
        d = m["draws"]
        if "plain_fresh" in d[0]:
            print(f"{mode:<19} few_shot {summary([r['plain_fresh']['f1'] for r in d])}  "
                  f"+ weak {summary([r['weak_fresh']['f1'] for r in d])}  "
                  f"kept {summary([r['kept_fresh']['f1'] for r in d])}")  # fmt: skip
    print("\nlong answers (held-out, long=True): false-positive rate / recall")
    for mode, m in out["modes"].items():
        d = m["draws"]
        print(f"{mode:<19} few_shot FP {summary([r['plain_long']['fp_rate'] for r in d])} "
              f"R {summary([r['plain_long']['recall'] for r in d])} | + weak FP "
              f"{summary([r['weak_long']['fp_rate'] for r in d])} "
              f"R {summary([r['weak_long']['recall'] for r in d])}")  # fmt: skip
    print("\nlabel model: functions' estimated vs true accuracy (reserve), coverage; weak-label "
          "accuracy on the reserve")  # fmt: skip
    for mode, m in out["modes"].items():
        d = m["draws"]
        n = len(d[0]["lf_true"])
        parts = [f"lf{j} est {np.mean([r['lf_estimated'][j] for r in d]):.2f} true "
                 f"{np.nanmean([r['lf_true'][j] for r in d]):.2f} cov "
                 f"{np.mean([r['lf_coverage'][j] for r in d]):.2f}" for j in range(n)]  # fmt: skip
        acc = {k: np.mean([r["weak_label_accuracy"][k] for r in d])
               for k in d[0]["weak_label_accuracy"]}  # fmt: skip
        print(f"{mode:<19} " + "; ".join(parts) + " | weak labels: " +
              ", ".join(f"{k} {v:.3f}" for k, v in acc.items()))  # fmt: skip
        pool = d[0]["pool"]
        share = np.mean([r["pool"]["estimated_failure_share"] for r in d])
        print(f"{'':<19} pool {pool['events']} events ({pool['traffic']} traffic + "
              f"{pool['reserve']} reserve, {pool['reserve_failures']} failures in the reserve); "
              f"estimated failure share {share:.3f}")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--draws", type=int, default=5)
    parser.add_argument("--shots", type=int, default=8)
    parser.add_argument("--cache", help="folder to keep the MiniLM vectors between runs")
    parser.add_argument("--dump-votes", help="folder: each draw's votes and reserve labels (npz)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    out = run(args)
    if args.json:
        print(json.dumps(out, indent=2))
    else:
        report(out)


if __name__ == "__main__":
    main()
