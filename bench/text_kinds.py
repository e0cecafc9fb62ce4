"""Signals that read the text (``pattern``, ``pii``): their speed beside MiniLM's, and PII quality.

    .venv/bin/python bench/text_kinds.py [--events 10000] [--minilm-events 400] [--json]

1. **Speed.** ``--events`` chat answers, cycled from the answers of ``bench/data/chat_eval.jsonl``
   (all five failure modes, about half of them long: ~1,000 characters on average), scored
   through :meth:`signals.SignalBank.score_texts` as the pipeline scores them: a ``pattern``
   signal (six regular expressions and keywords for refusal boilerplate), a ``pii`` signal
   (e-mail, phone, card, IBAN, IP), and the two together. Beside them, in the same run and on
   the first ``--minilm-events`` of the same texts, MiniLM (all-MiniLM-L6-v2, real weights)
   embedding them window by window as the pipeline does. Printed: texts/s of each and the ratio
   to MiniLM's texts/s (how much of the embedder's time a text signal adds).
2. **Quality**, deterministic (no examples are drawn, so no range), on the ``pii_leak`` and
   ``prompt_injection`` modes of ``bench/data/chat_eval.jsonl`` and, when present, of the
   fresh ``bench/data/pii_injection_eval.jsonl`` (hard negatives: order ids, tracking numbers,
   format explanations, public emergency numbers; innocent "ignore"/"system prompt"):
   the ``pii`` kind on e-mail and phone at ``min_score`` 0.3 (default) and 0.5, phone numbers
   ``possible`` (default) and ``valid``, and on five entities; a ``pattern`` signal of the
   obvious injection phrasings (written before the fresh set was read). Printed: precision,
   recall, F1 and how many hard negatives were flagged. The few-shot figures to compare with
   are ``bench/signals.py``'s (8+8, MiniLM).
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import argparse  # noqa: E402
import json  # noqa: E402
import time  # noqa: E402
from typing import Any  # noqa: E402

from signals import SignalBank, parse_spec  # noqa: E402
from signals.training import fit_text_signal  # noqa: E402

DATA = Path(__file__).parent / "data" / "chat_eval.jsonl"
FRESH = Path(__file__).parent / "data" / "pii_injection_eval.jsonl"
REFUSAL = {
    "name": "refusal_boilerplate", "kind": "pattern",
    "patterns": [r"as an ai (language )?model", r"i(?:'m| am) (?:not able|unable) to",
                 r"against (?:my|our) (?:policy|guidelines)"],
    "keywords": ["I cannot help with that", "I can't assist", "consult a professional"],
}  # fmt: skip
PII = {
    "name": "contact_leak", "kind": "pii",
    "entities": ["EMAIL_ADDRESS", "PHONE_NUMBER", "CREDIT_CARD", "IBAN_CODE", "IP_ADDRESS"],
}  # fmt: skip


def rows(data: Path = DATA) -> list[dict[str, Any]]:
    return [json.loads(line) for line in data.read_text(encoding="utf-8").splitlines() if line]


def rate(bank: SignalBank, texts: list[str]) -> float:
    started = time.perf_counter()
    bank.score_texts("output.text", texts)
    return len(texts) / (time.perf_counter() - started)


def speed(events: int, minilm_events: int) -> dict[str, Any]:
    from signals.text_embedder import SentenceEmbedder

    answers = [r["text"] for r in rows() if r["field"] == "output"]
    texts = [answers[i % len(answers)] for i in range(events)]
    pattern = fit_text_signal(parse_spec(REFUSAL))
    pii = fit_text_signal(parse_spec(PII))
    banks = {"pattern": SignalBank([pattern], {}), "pii": SignalBank([pii], {}),
             "pattern+pii": SignalBank([pattern, pii], {})}  # fmt: skip
    for bank in banks.values():  # load Presidio and compile once, outside the timing
        bank.score_texts("output.text", texts[:20])
    embedder = SentenceEmbedder()
    embedder.embed_windows(texts[:20])
    started = time.perf_counter()
    embedder.embed_windows(texts[:minilm_events])
    minilm = minilm_events / (time.perf_counter() - started)
    out: dict[str, Any] = {
        "events": events, "mean_chars": sum(map(len, texts)) / len(texts),
        "minilm_texts_per_s": minilm, "minilm_events": minilm_events,
    }  # fmt: skip
    for name, bank in banks.items():
        full = rate(bank, texts)
        same = rate(bank, texts[:minilm_events])
        out[name] = {"texts_per_s": full, "texts_per_s_on_minilm_texts": same,
                     "ratio_to_minilm": same / minilm}  # fmt: skip
    return out


INJECTION = {
    # Written before the fresh evaluation set was read: the obvious phrasings only.
    "name": "injection_phrases", "kind": "pattern", "target": "prompt",
    "patterns": [r"(ignore|disregard|forget) (all |any )?(the |your )?(previous|prior|above) "
                 r"(instructions|rules|prompts?)",
                 r"(reveal|print|show|repeat) (me )?(your|the) (system prompt|instructions)",
                 r"you are now (dan|in developer mode)", r"developer mode"],
    "keywords": ["jailbreak", "do anything now"],
}  # fmt: skip
PII_VARIANTS = ((0.3, "possible"), (0.3, "valid"), (0.5, "possible"))


def quality(labelled: list[dict[str, Any]], spec: dict[str, Any]) -> dict[str, Any]:
    """Precision, recall and F1 of one text-kind signal on labelled texts."""
    signal = fit_text_signal(parse_spec(spec))
    flagged = SignalBank([signal], {}).score_texts(
        signal.field, [r["text"] for r in labelled]).flagged[:, 0]  # fmt: skip
    pairs = list(zip(labelled, flagged, strict=True))
    tp = sum(1 for r, f in pairs if f and r["label"] == 1)
    fp = sum(1 for r, f in pairs if f and r["label"] == 0)
    fn = sum(1 for r, f in pairs if not f and r["label"] == 1)
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    hard = [r for r, f in pairs if r.get("kind") == "hard_negative"]
    hard_fp = sum(1 for r, f in pairs if f and r.get("kind") == "hard_negative")
    return {"precision": precision, "recall": recall, "f1": f1, "tp": tp, "fp": fp, "fn": fn,
            "hard_negatives": len(hard), "hard_negatives_flagged": hard_fp}  # fmt: skip


def text_quality() -> list[dict[str, Any]]:
    found = []
    for data in (DATA, FRESH):
        if not data.exists():
            continue
        labelled = rows(data)
        pii = [r for r in labelled if r["mode"] == "pii_leak"]
        for min_score, phones in PII_VARIANTS:
            spec = {"name": "contact_leak", "kind": "pii", "min_score": min_score,
                    "phone_numbers": phones,
                    "entities": ["EMAIL_ADDRESS", "PHONE_NUMBER"]}  # fmt: skip
            found.append({"data": data.name, "mode": "pii_leak",
                          "signal": f"pii e-mail+phone, min_score {min_score}, {phones}",
                          **quality(pii, spec)})  # fmt: skip
        wide = {**PII, "min_score": 0.3}
        found.append({"data": data.name, "mode": "pii_leak", "signal": "pii 5 entities, 0.3",
                      **quality(pii, wide)})  # fmt: skip
        injection = [r for r in labelled if r["mode"] == "prompt_injection"]
        found.append({"data": data.name, "mode": "prompt_injection",
                      "signal": "pattern (obvious phrasings)",
                      **quality(injection, INJECTION)})  # fmt: skip
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=10_000)
    parser.add_argument("--minilm-events", type=int, default=400)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    result = {"speed": speed(args.events, args.minilm_events), "quality": text_quality()}
    if args.json:
        print(json.dumps(result, indent=2))
        return
    s = result["speed"]
    print(f"{s['events']} chat answers, {s['mean_chars']:.0f} characters on average")
    print(f"MiniLM (windows, real weights), first {s['minilm_events']}: "
          f"{s['minilm_texts_per_s']:.1f} texts/s")  # fmt: skip
    print(f"{'signals':<12} {'texts/s (all)':>14} {'texts/s (same)':>15} {'÷ MiniLM':>9}")
    for name in ("pattern", "pii", "pattern+pii"):
        r = s[name]
        print(f"{name:<12} {r['texts_per_s']:>14.0f} {r['texts_per_s_on_minilm_texts']:>15.0f} "
              f"{r['ratio_to_minilm']:>8.1f}×")  # fmt: skip
    print("\nquality (deterministic: no examples are drawn)")
    for q in result["quality"]:
        print(f"  {q['data']:<26} {q['mode']:<17} {q['signal']:<38} P {q['precision']:.3f} "
              f"R {q['recall']:.3f} F1 {q['f1']:.3f} (fp {q['fp']}, fn {q['fn']}; hard "
              f"negatives flagged {q['hard_negatives_flagged']}/{q['hard_negatives']})")

if __name__ == "__main__":
    main()
