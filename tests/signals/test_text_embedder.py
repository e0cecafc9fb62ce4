"""Text fields on a real sentence-embedding model: the bundled all-MiniLM-L6-v2 (real weights,
offline), long texts in windows, per-field embedders, the embedding cache, degenerate signals."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from signals.bank import SignalBank
from signals.cache import CacheCounts, EmbeddingCache, LruVectorCache, content_key
from signals.embedders import FieldEmbedders
from signals.errors import EmbedderError, EmbedderMismatch
from signals.live import LiveSignals
from signals.open_clip_embedder import OpenClipEmbedder
from signals.spec import Examples, SignalSpec
from signals.text_embedder import SentenceEmbedder, bundled_model_path
from signals.training import fit_signal, train_signal
from signals.verdict import chance_f1, judge
from signals.windows import Windows, sentence_units, split_sentences, split_windows
from storage.embedding_cache import ClickHouseVectorCache
from storage.writer import ClickHouseWriter
from streams.events import validate_event
from streams.pipeline import Pipeline
from telltale.backfill import backfill
from telltale.signal_store import ClickHouseSignalStore

EVAL_SET = Path(__file__).resolve().parents[2] / "bench" / "data" / "chat_eval.jsonl"


@pytest.fixture(scope="session")
def field_embedders(tiny_embedder: OpenClipEmbedder, minilm: SentenceEmbedder) -> FieldEmbedders:
    return FieldEmbedders(tiny_embedder, minilm)


def eval_rows(mode: str) -> list[dict[str, Any]]:
    rows = [json.loads(line) for line in EVAL_SET.read_text(encoding="utf-8").splitlines()]
    return [r for r in rows if r["mode"] == mode]


# --- windows ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("n", "size", "stride"), [(0, 4, 2), (3, 4, 2), (4, 4, 4), (10, 4, 3),
                                                   (129, 128, 96), (1000, 128, 96)])  # fmt: skip
def test_windows_cover_every_token_within_the_size(n: int, size: int, stride: int) -> None:
    ids = list(range(n))
    windows = split_windows(ids, size, stride)
    assert all(len(w) <= size for w in windows)
    assert sorted(set().union(*map(set, windows))) == ids
    assert all(w == ids[w[0] : w[0] + len(w)] for w in windows if w)  # contiguous
    if n > size:
        assert all(len(w) == size for w in windows)


def test_sentences_keep_their_punctuation_and_split_nothing_inside_numbers_or_addresses() -> None:
    text = 'Sure. Take 2.5 mg, i.e. half a tablet!\nWrite to jo.li@x.org. Say "stop." Done?  end'
    expected = ["Sure.", "Take 2.5 mg, i.e.", "half a tablet!", "Write to jo.li@x.org.",
                'Say "stop."', "Done?", "end"]  # fmt: skip
    assert split_sentences(text) == expected
    assert split_sentences("") == [""] and split_sentences("no end") == ["no end"]


@pytest.mark.parametrize("lengths", [[], [0], [1], [3, 1, 9, 2], [2, 2, 2, 2, 2], [40, 1, 1],
                                     [1, 1, 25, 5]])  # fmt: skip
def test_sentence_units_cover_every_token_in_order_and_short_ones_join(lengths: list[int]) -> None:
    sentences, start = [], 0
    for n in lengths:
        sentences.append(list(range(start, start + n)))
        start += n
    units = sentence_units(sentences, min_tokens=3, size=16, stride=12)
    ids = list(range(start))
    assert units and all(len(u) <= 16 for u in units)
    assert sorted(set().union(*map(set, units))) == ids
    assert all(u == ids[u[0] : u[0] + len(u)] for u in units if u)  # contiguous, in order
    if start >= 3:  # a text of three tokens or more has no unit under three tokens
        assert all(len(u) >= 3 for u in units)


def test_windows_container_validates_and_reduces() -> None:
    vectors = np.eye(4, dtype=np.float32)
    windows = Windows(vectors, np.array([0, 1, 4]))
    assert windows.counts().tolist() == [1, 3]
    np.testing.assert_allclose(windows.max_per_text(np.array([[1.0], [0.2], [0.9], [0.1]])),
                               [[1.0], [0.9]])  # fmt: skip
    docs = windows.documents()
    np.testing.assert_allclose(np.linalg.norm(docs, axis=1), 1.0, rtol=1e-6)
    np.testing.assert_allclose(docs[1], np.array([0, 1, 1, 1]) / np.sqrt(3), rtol=1e-6)
    with pytest.raises(ValueError, match="at least one window"):
        Windows(vectors, np.array([0, 0, 4]))
    with pytest.raises(ValueError, match="end at"):
        Windows(vectors, np.array([0, 3]))


# --- the real text model ----------------------------------------------------------------------


def test_bundled_minilm_loads_offline_and_windows_long_texts(minilm: SentenceEmbedder) -> None:
    assert bundled_model_path() is not None
    assert minilm.id.startswith("st/all-MiniLM-L6-v2/")
    assert minilm.id.endswith("/sent8w256s192/onnx-fp32")  # the default backend: ONNX fp32
    assert minilm.dim == 384
    long = " ".join(r["text"] for r in eval_rows("refusal") if r["long"])[:6000]
    windows = minilm.embed_windows(["Hello there.", long, ""])
    counts = windows.counts().tolist()
    assert counts[0] == 1 and counts[1] > 3 and counts[2] == 1
    np.testing.assert_allclose(np.linalg.norm(windows.vectors, axis=1), 1.0, rtol=1e-5)
    again = minilm.embed_texts(["Hello there.", long, ""])
    np.testing.assert_allclose(again, windows.documents(), atol=1e-5)  # deterministic
    # windows are embedded together but each is the model's vector of that window alone
    alone = minilm.embed_windows([long]).vectors
    np.testing.assert_allclose(alone, windows.group(1), atol=1e-5)
    with pytest.raises(EmbedderError, match="text only"):
        minilm.embed_images([])


def test_real_weights_separate_meaning_not_words(minilm: SentenceEmbedder) -> None:
    a, b, c = minilm.embed_texts([
        "You should buy Tesla shares today, they will double by spring.",
        "Put half of your savings into Nvidia stock this week.",
        "Index funds spread your money across many companies at low cost.",
    ])  # fmt: skip
    assert float(a @ b) > float(a @ c) + 0.1


def test_truncation_is_recorded_in_the_id_and_keeps_one_window() -> None:
    truncated = SentenceEmbedder(window_tokens=64, truncate=True)
    assert truncated.id.endswith("/trunc64/onnx-fp32")
    assert truncated.embed_windows(["word " * 500]).counts().tolist() == [1]


def test_sentence_windows_are_the_sentences_and_long_texts_are_capped(
    minilm: SentenceEmbedder,
) -> None:
    tokens = SentenceEmbedder(units="tokens", window_tokens=64, stride_tokens=48, max_windows=3)
    assert tokens.id.endswith("/w64s48/onnx-fp32")
    capped = SentenceEmbedder(window_tokens=64, stride_tokens=48, max_windows=3)
    assert capped.id.endswith("/sent8w64s48/onnx-fp32")
    sentences = ["Here is the plan for the week ahead.", "Sure.",
                 "Take two tablets of ibuprofen every four hours."]  # fmt: skip
    windows = minilm.embed_windows([" ".join(sentences)])
    assert windows.counts().tolist() == [2]  # "Sure." is joined to the sentence after it
    alone = minilm.embed_texts([sentences[0], " ".join(sentences[1:])])
    np.testing.assert_allclose(windows.vectors, alone, atol=1e-5)
    # the same span of tokens as token windows: max_windows x stride + window = 208 tokens
    long = " ".join(f"Sentence number {i} of a long paste." for i in range(100))
    span = sum(len(u) for u in capped._sentence_windows(long))
    assert 200 <= span <= 208 < len(capped._tokens([long])[0])
    assert len(tokens.embed_windows([long]).vectors) == 3


# --- per-field embedders ----------------------------------------------------------------------


def test_fields_use_their_own_embedder_and_zero_shot_queries_follow(
    field_embedders: FieldEmbedders, tiny_embedder: OpenClipEmbedder, minilm: SentenceEmbedder
) -> None:
    assert field_embedders.ids == {"prompt.text": minilm.id, "output.text": minilm.id,
                                   "output.image": tiny_embedder.id}  # fmt: skip
    text_query = SignalSpec(name="q", kind="zero_shot", query="a stock tip")
    fitted = train_signal(text_query, field_embedders)
    assert fitted.embedder_id == minilm.id and len(fitted.weights) == minilm.dim
    image_query = SignalSpec(name="w", kind="zero_shot", modality="image", query="a watermark")
    fitted_image = train_signal(image_query, field_embedders)
    assert fitted_image.embedder_id == tiny_embedder.id
    assert len(fitted_image.weights) == tiny_embedder.dim  # CLIP's text tower, image space
    bank = SignalBank([fitted, fitted_image], field_embedders.ids)
    assert set(bank.fields) == {"output.text", "output.image"}
    with pytest.raises(EmbedderMismatch):
        SignalBank([fitted], tiny_embedder.id)


# --- accuracy with real weights ---------------------------------------------------------------


@pytest.mark.parametrize("mode", ["investment_advice", "pii_leak", "refusal"])
def test_eight_examples_per_class_separate_a_failure_mode_on_held_out_texts(
    minilm: SentenceEmbedder, mode: str
) -> None:
    from sklearn.metrics import roc_auc_score

    # Answers of 400-700 tokens are left out (this test's scope before sentence windows): with
    # them in, this one draw of investment advice ranks at AUC 0.70 (bench/signals.py measures
    # every answer over five draws; see the README).
    rows = [r for r in eval_rows(mode) if not r["very_long"]]
    rng = random.Random(mode)
    pos = rng.sample([r for r in rows if r["label"] == 1], 8)
    neg = rng.sample([r for r in rows if r["label"] == 0], 8)
    taken = {r["id"] for r in pos + neg}
    test = [r for r in rows if r["id"] not in taken]
    examples = Examples(positive=tuple(r["text"] for r in pos),
                        negative=tuple(r["text"] for r in neg))  # fmt: skip
    fitted = train_signal(SignalSpec(name=mode, examples=examples), minilm)
    scored = SignalBank([fitted], minilm.id).score_windows(
        "output.text", minilm.embed_windows([r["text"] for r in test])
    )
    y = np.array([r["label"] for r in test])
    flagged = scored.flagged[:, 0]
    tp = int(np.sum(flagged & (y == 1)))
    f1 = 2 * tp / (int(flagged.sum()) + int(y.sum()))
    # One draw of 8+8 against hard negatives: F1 varies from draw to draw (bench/signals.py
    # measures the spread), the ranking much less. Flagging everything scores chance_f1.
    assert roc_auc_score(y, scored.probabilities[:, 0]) >= 0.8
    assert f1 > chance_f1(int(y.sum()), int(len(y) - y.sum())), f"{mode}: F1 {f1:.2f}"


def test_windows_find_a_failure_late_in_a_long_answer_that_truncation_misses(
    minilm: SentenceEmbedder,
) -> None:
    # the long answers: 200-316 tokens and 400-700 tokens, the failure late
    rows = eval_rows("medication_dosage")

    def pick(label: int, long: bool) -> list[str]:
        return [r["text"] for r in rows if r["label"] == label and r["long"] == long]

    # examples windowed as events are: short and long ones, the long failures late
    train_pos, train_neg = (
        pick(1, False)[:5] + pick(1, True)[:5],
        pick(0, False)[:5] + pick(0, True)[:5],
    )
    test_pos, test_neg = pick(1, True)[5:], pick(0, True)[5:]
    spec = SignalSpec(name="dose", examples=Examples(positive=tuple(train_pos),
                                                     negative=tuple(train_neg)))  # fmt: skip
    truncated = SentenceEmbedder(window_tokens=64, truncate=True)
    recall = {}
    for name, embedder in (("windows", minilm), ("truncated", truncated)):
        fitted = train_signal(spec, embedder)
        bank = SignalBank([fitted], embedder.id)
        flagged_pos = bank.score_windows("output.text", embedder.embed_windows(test_pos)).flagged
        flagged_neg = bank.score_windows("output.text", embedder.embed_windows(test_neg)).flagged
        recall[name] = (float(flagged_pos.mean()), float(flagged_neg.mean()))
    assert recall["windows"][0] >= 0.6 and recall["windows"][1] <= 0.3, recall
    assert recall["windows"][0] - recall["windows"][1] >= (
        recall["truncated"][0] - recall["truncated"][1] + 0.3
    ), recall


def test_long_positive_examples_train_on_their_failure_window(minilm: SentenceEmbedder) -> None:
    rows = eval_rows("pii_leak")
    # answers of 450+ tokens (two long ones): several windows each; the leak in one of them
    clean = [r["text"] for r in rows if r["label"] == 0 and r["long"]]
    leaks = [r["text"] for r in rows if r["label"] == 1 and r["long"]]
    pos = [f"{clean[i + 12]} {leaks[i]}" for i in range(6)]
    neg = [f"{clean[i]} {clean[i + 6]}" for i in range(6)]
    pos_groups = minilm.embed_windows(pos).groups()
    neg_groups = minilm.embed_windows(neg).groups()
    assert all(len(g) > 1 for g in pos_groups + neg_groups)
    before = [g.copy() for g in pos_groups]
    fitted = fit_signal(SignalSpec(name="leak"), pos_groups, neg_groups, minilm.id)
    assert all(np.array_equal(a, b) for a, b in zip(before, pos_groups, strict=True))
    assert fitted.metrics["roc_auc"] >= 0.8
    assert (fitted.n_positive, fitted.n_negative) == (6, 6)


def test_windowed_positives_choose_how_the_failure_window_is_found_by_cross_validation() -> None:
    # Answers made of shared harmless sentences; a positive also holds one failure sentence
    # (near one direction). Negatives hold harmless sentences only.
    rng = np.random.default_rng(5)

    def unit(v: np.ndarray) -> np.ndarray:
        return (v / np.linalg.norm(v, axis=-1, keepdims=True)).astype(np.float32)

    harmless = unit(rng.normal(size=(12, 32)))
    failure = unit(rng.normal(size=32))

    def answer(failing: bool) -> np.ndarray:
        rows = list(harmless[rng.choice(12, size=4, replace=False)])
        if failing:
            rows.insert(int(rng.integers(0, 5)), unit(failure + 0.4 * rng.normal(size=32)))
        return np.stack(rows)

    pos, neg = [answer(True) for _ in range(8)], [answer(False) for _ in range(8)]
    fitted = fit_signal(SignalSpec(name="late"), pos, neg, "e")
    assert fitted.metrics["selection"] in (0.0, 1.0, 2.0)
    assert fitted.metrics["regularization"] in (1.0, 0.1)
    bank = SignalBank([fitted], "e")
    test_pos, test_neg = [answer(True) for _ in range(20)], [answer(False) for _ in range(20)]
    flagged = bank.score_windows("output.text", Windows.of(test_pos + test_neg, 32)).flagged[:, 0]
    assert flagged[:20].mean() >= 0.9 and flagged[20:].mean() <= 0.1
    # one window per example: nothing to choose, the spec's C as given
    single = fit_signal(SignalSpec(name="short"), [g[:1] for g in pos], [g[:1] for g in neg], "e")
    assert "selection" not in single.metrics


# --- verdict ----------------------------------------------------------------------------------


def test_verdict_compares_f1_with_flagging_everything(minilm: SentenceEmbedder) -> None:
    assert chance_f1(8, 8) == pytest.approx(2 / 3)
    assert chance_f1(2, 8) == pytest.approx(2 * 0.2 / 1.2)
    rng = random.Random(3)
    texts = [r["text"] for r in eval_rows("refusal")]
    noise = SignalSpec(name="noise", examples=Examples(
        positive=tuple(rng.sample(texts, 8)), negative=tuple(rng.sample(texts, 8))))  # fmt: skip
    fitted = train_signal(noise, minilm)
    verdict = judge(fitted, None, 0)
    assert verdict.degenerate and "not clearly above chance" in verdict.reason
    assert "0.67" in verdict.reason and "8+8" in verdict.reason
    sound = fitted.model_copy(update={"metrics": {**fitted.metrics, "f1": 0.95}})
    assert not judge(sound, 0.2, 1000).degenerate
    flagging = judge(sound, 0.93, 1000, max_flag_share=0.5)
    assert flagging.degenerate and "flags 93% of 1000 stored output.text events" in flagging.reason


# --- the embedding cache ----------------------------------------------------------------------


def test_content_key_separates_embedder_field_and_content() -> None:
    keys = {content_key("a", "prompt.text", "x"), content_key("b", "prompt.text", "x"),
            content_key("a", "output.text", "x"), content_key("a", "prompt.text", "y"),
            content_key("ab", "prompt.text", ""), content_key("a", "bprompt.text", "")}  # fmt: skip
    assert len(keys) == 6


def test_lru_evicts_the_least_recently_used() -> None:
    lru = LruVectorCache(2)
    one, two, three = (np.full((1, 2), i, dtype=np.float32) for i in (1, 2, 3))
    lru.put("1", one)
    lru.put("2", two)
    assert lru.get("1") is one  # 1 is now the most recent
    lru.put("3", three)
    assert lru.get("2") is None and lru.get("1") is one and len(lru) == 2
    LruVectorCache(0).put("x", one)  # size 0: caches nothing, no error


def test_repeated_texts_never_reach_the_model_and_workers_share_vectors(
    minilm: SentenceEmbedder, ch: Any
) -> None:
    texts = ["You are a helpful assistant.", "Summarise this ticket.",
             "You are a helpful assistant.", "Translate to French: bonjour"]  # fmt: skip
    first = EmbeddingCache(LruVectorCache(100), ClickHouseVectorCache(ch))
    windows, counts = first.embed_windows(minilm, "prompt.text", texts)
    assert counts == CacheCounts(lookups=4, batch_repeats=1, memory_hits=0, shared_hits=0,
                                 model_texts=3)  # fmt: skip
    np.testing.assert_allclose(windows.documents(), minilm.embed_texts(texts), atol=1e-5)
    _, again = first.embed_windows(minilm, "prompt.text", texts[:2])
    assert (again.memory_hits, again.model_texts) == (2, 0)
    # another worker: empty LRU, same ClickHouse table
    second = EmbeddingCache(LruVectorCache(100), ClickHouseVectorCache(ch))
    shared, counts = second.embed_windows(minilm, "prompt.text", [texts[1], "A new prompt"])
    assert (counts.shared_hits, counts.model_texts) == (1, 1)
    np.testing.assert_allclose(shared.group(0), windows.group(1), atol=1e-6)
    # another field is another key: no hit
    _, other = second.embed_windows(minilm, "output.text", [texts[1]])
    assert other.model_texts == 1
    assert second.totals.lookups == 3 and second.totals.saved == 1


# --- the pipeline, storage and back-fill ------------------------------------------------------


def _event(i: int, prompt: str, output: str) -> Any:
    return validate_event({
        "event_id": f"t{i:04d}", "timestamp": f"2026-11-20T10:{i // 60:02d}:{i % 60:02d}Z",
        "model": "chat", "model_version": "1", "prompt": {"text": prompt},
        "output": {"text": output},
    })  # fmt: skip


def test_pipeline_stores_windows_scores_the_max_and_backfill_needs_no_model(
    field_embedders: FieldEmbedders, minilm: SentenceEmbedder, ch: Any
) -> None:
    rows = eval_rows("investment_advice")
    short_pos = [r["text"] for r in rows if r["label"] == 1 and not r["long"]][:8]
    short_neg = [r["text"] for r in rows if r["label"] == 0 and not r["long"]][:8]
    spec = SignalSpec(name="advice", examples=Examples(positive=tuple(short_pos),
                                                       negative=tuple(short_neg)))  # fmt: skip
    fitted = ClickHouseSignalStore(ch).save(train_signal(spec, field_embedders))
    long = [r["text"] for r in rows if r["long"]]
    # answers of 450+ tokens: several 256-token windows each
    outputs = [f"{long[i]} {long[i + 6]}" for i in range(6)] + short_neg[:2]
    events = [_event(i, "You are a helpful assistant. Answer briefly.", text)
              for i, text in enumerate(outputs)]  # fmt: skip
    cache = EmbeddingCache(LruVectorCache(100), ClickHouseVectorCache(ch))
    live = LiveSignals(ClickHouseSignalStore(ch), field_embedders.ids, 0)
    pipeline = Pipeline(field_embedders, live, ClickHouseWriter(ch), cache=cache)
    result = pipeline.process(events)
    assert result.written == len(events)
    # 8 identical prompts: embedded once
    stats = ch.query("SELECT field, lookups, batch_repeats, model_texts FROM "
                     "embedding_cache_stats ORDER BY field").result_rows  # fmt: skip
    assert stats == [("output.text", 8, 0, 8), ("prompt.text", 8, 7, 1)]
    stored = {
        r[0]: (np.array(r[1], dtype=np.float32), np.array(r[2], dtype=np.float32))
        for r in ch.query(
            "SELECT event_id, vector, windows FROM embeddings WHERE field = 'output.text'"
        ).result_rows
    }
    expected = minilm.embed_windows(outputs)
    for i, event in enumerate(events):
        vector, windows = stored[event.event_id]
        np.testing.assert_allclose(vector, expected.documents()[i], atol=1e-5)
        if expected.counts()[i] > 1:
            np.testing.assert_allclose(windows, expected.group(i), atol=1e-5)
        else:
            assert windows.size == 0
    assert int(expected.counts()[:6].min()) > 1  # the long answers were windowed
    scores = dict(ch.query("SELECT event_id, score FROM signal_scores").result_rows)
    want = SignalBank([fitted], minilm.id).score_windows("output.text", expected).probabilities
    for i, event in enumerate(events):
        assert scores[event.event_id] == pytest.approx(float(want[i, 0]), abs=1e-5)
    # back-fill of a new version reads stored windows: same scores, no model involved
    v2 = ClickHouseSignalStore(ch).save(fitted)
    ch.command("ALTER TABLE embedding_cache DELETE WHERE 1")  # nothing to fall back on
    assert backfill(ch, v2).scored == len(events)
    again = dict(ch.query("SELECT event_id, score FROM signal_scores FINAL "
                          "WHERE signal_version = {v:UInt32}",
                          parameters={"v": v2.version}).result_rows)  # fmt: skip
    for event_id, score in scores.items():
        assert again[event_id] == pytest.approx(score, abs=1e-5)
