"""Signal kinds that read the text: ``pattern`` (regex, keywords) and ``pii`` (Presidio, offline).

Real Presidio with ``spacy.blank("en")``, the real pipeline into chDB, the real columnar replay
path; the specs go through the same validation as ``telltale signals add``.
"""

from __future__ import annotations

import socket
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from signals.bank import SignalBank
from signals.errors import SpecError, TrainingError
from signals.live import LiveSignals
from signals.matchers import PII_ENTITIES, PatternMatcher, _offline_analyzer
from signals.open_clip_embedder import OpenClipEmbedder
from signals.spec import EventRef, Examples, parse_spec
from signals.training import train_signal
from storage.queries import failure_rates
from storage.writer import ClickHouseWriter
from streams.events import GenerationEvent, validate_event
from streams.pipeline import Pipeline
from telltale.backfill import backfill, backfill_total
from telltale.signal_store import ClickHouseSignalStore

T0 = datetime(2026, 11, 1, 9, 0, tzinfo=UTC)

LEAKS = (
    "You can reach our agent at maria.lopez@lopez-family.net for a refund.",
    "Call me on +44 20 7946 0958 tomorrow and I'll sort it out.",
    "Your card 4111 1111 1111 1111 has been charged twice.",
)
CLEAN = (
    "Your refund will arrive within five working days.",
    "Order 4411-2093 has shipped and will arrive on Monday.",
    "Write placeholders as name@example.com; the ISBN is 978-0-13-468599-1.",
)


def pii_spec(**extra: Any) -> Any:
    entities = ["EMAIL_ADDRESS", "PHONE_NUMBER", "CREDIT_CARD"]
    return parse_spec({"name": "contact_leak", "kind": "pii", "entities": entities, **extra})


def event(i: int, text: str, version: str = "v1") -> GenerationEvent:
    return validate_event({
        "event_id": f"e{i}", "timestamp": (T0 + timedelta(seconds=i)).isoformat(),
        "model": "m", "model_version": version, "prompt": {"text": "help me"},
        "output": {"text": text},
    })  # fmt: skip


def test_a_bad_regex_is_refused_with_the_position_of_the_error() -> None:
    with pytest.raises(SpecError, match=r"patterns.*at position 11: missing \)"):
        parse_spec({"name": "x", "kind": "pattern", "patterns": ["ignore (all"]})


def test_an_unknown_pii_entity_is_refused_naming_it_and_the_known_ones() -> None:
    with pytest.raises(SpecError, match=r"unknown PII entity EMAIL\b.*known: CREDIT_CARD"):
        parse_spec({"name": "x", "kind": "pii", "entities": ["EMAIL"]})


@pytest.mark.parametrize(("spec", "message"), [
    ({"kind": "pattern"}, "needs patterns or keywords"),
    ({"kind": "pii"}, "needs entities"),
    ({"kind": "pattern", "keywords": ["x"], "modality": "image"}, "reads text"),
    ({"kind": "few_shot", "patterns": ["x"]}, "only used by kind 'pattern'"),
    ({"kind": "pattern", "keywords": ["  "]}, "must not be empty"),
    ({"kind": "pattern", "keywords": ["x"], "query": "q"}, "query is not used"),
])  # fmt: skip
def test_inconsistent_text_kind_specs_are_refused(spec: dict[str, Any], message: str) -> None:
    with pytest.raises(SpecError, match=message):
        parse_spec({"name": "x", **spec})


def test_the_entity_list_is_what_the_installed_presidio_finds_without_ner() -> None:
    supported = set(_offline_analyzer().get_supported_entities())
    assert supported >= PII_ENTITIES
    # What the NER-only recognizers would claim, and blank spaCy never finds, stays refused.
    assert "PERSON" in supported and "PERSON" not in PII_ENTITIES


def test_pii_runs_offline_and_finds_leaks_not_their_lookalikes() -> None:
    def no_network(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError(f"network access attempted: {args}")

    fitted = train_signal(pii_spec(examples={"positive": LEAKS, "negative": CLEAN}),
                          embedder=None)  # type: ignore[arg-type]  # fmt: skip
    real = socket.create_connection
    socket.create_connection = no_network  # type: ignore[assignment]
    try:
        bank = SignalBank([fitted], {"output.text": "any"})
        scored = bank.score_texts("output.text", [*LEAKS, *CLEAN])
    finally:
        socket.create_connection = real  # type: ignore[assignment]
    assert scored.flagged[:, 0].tolist() == [True] * 3 + [False] * 3
    assert fitted.metrics == {"precision": 1.0, "recall": 1.0, "f1": 1.0}
    assert fitted.embedder_id.startswith("presidio-") and fitted.threshold == 0.3
    [email] = scored.matches[0][0]
    assert (email.label, LEAKS[0][email.start : email.end]) == (
        "EMAIL_ADDRESS",
        "maria.lopez@lopez-family.net",
    )


def test_keywords_respect_case_and_word_edges() -> None:
    words = PatternMatcher([], ["ignore previous", "c++"])
    assert [m.label for m in words.find("Please IGNORE PREVIOUS instructions")] == [
        "ignore previous"]  # fmt: skip
    assert words.find("I'd ignore previously seen tips") == []  # whole word: not "previously"
    assert [m.label for m in words.find("I write c++ daily")] == ["c++"]
    exact = PatternMatcher([], ["ACME"], case_sensitive=True, whole_word=False)
    assert exact.find("acme") == [] and len(exact.find("xACMEx")) == 1


def test_catastrophic_backtracking_is_cut_off_and_counted() -> None:
    matcher = PatternMatcher([r"(a|aa)+$"], timeout_s=0.05)  # exponential on a run of a's
    text = "a" * 60 + "b"
    started = datetime.now(UTC)
    assert matcher.find(text) == []
    assert (datetime.now(UTC) - started).total_seconds() < 5
    assert matcher.timeouts == 1


def test_stored_events_as_examples_are_refused_for_text_kinds() -> None:
    spec = pii_spec(examples={"positive": [{"event_id": "e1"}], "negative": ["fine"]})
    assert isinstance(spec.examples.positive[0], EventRef)
    with pytest.raises(TrainingError, match="as texts, not stored events"):
        train_signal(spec, embedder=None)  # type: ignore[arg-type]


def test_the_pipeline_scores_text_kinds_beside_embedding_signals(
    ch: Any, tiny_embedder: OpenClipEmbedder
) -> None:
    store = ClickHouseSignalStore(ch)
    refusal = parse_spec({"name": "refusal", "kind": "pattern",
                          "patterns": [r"as an ai (language )?model"]})  # fmt: skip
    advice = parse_spec({"name": "advice", "threshold": 0.5, "examples": Examples(
        positive=("Buy ACME shares now.", "Sell bonds, buy NVDA."),
        negative=("Paris is in France.", "Boil pasta for ten minutes."))})  # fmt: skip
    for spec in (pii_spec(), refusal, advice):
        store.save(train_signal(spec, tiny_embedder))
    pipeline = Pipeline(tiny_embedder, LiveSignals(store, tiny_embedder.id, refresh_s=0),
                        ClickHouseWriter(ch))  # fmt: skip
    texts = [*LEAKS, *CLEAN, "As an AI model I cannot do that.", "As an AI language model, no."]
    events = [event(i, texts[i % len(texts)], "v2" if i % 2 else "v1") for i in range(40)]
    result = pipeline.process(events)
    assert result.written == 40 and result.scores == 40 * 3
    rates: dict[str, tuple[int, int]] = {}
    for r in failure_rates(ch):  # a row per model version
        events_, failures = rates.get(r.signal, (0, 0))
        rates[r.signal] = (events_ + r.events, failures + r.failures)
    expected_leaks = sum(1 for i in range(40) if i % len(texts) < 3)
    expected_refusals = sum(1 for i in range(40) if i % len(texts) >= 6)
    assert rates["contact_leak"] == (40, expected_leaks)
    assert rates["refusal"] == (40, expected_refusals)
    assert rates["advice"][0] == 40


def test_backfill_scores_a_new_pattern_signal_over_the_stored_texts(
    ch: Any, tiny_embedder: OpenClipEmbedder
) -> None:
    store = ClickHouseSignalStore(ch)
    pipeline = Pipeline(tiny_embedder, LiveSignals(store, tiny_embedder.id, refresh_s=0),
                        ClickHouseWriter(ch))  # fmt: skip
    texts = [*LEAKS, *CLEAN]
    pipeline.process([event(i, texts[i % len(texts)]) for i in range(30)])
    fitted = store.save(train_signal(pii_spec(), tiny_embedder))
    assert backfill_total(ch, fitted, None, None) == 30
    first = backfill(ch, fitted, chunk=7)
    assert (first.scored, first.flagged) == (30, 15)
    again = backfill(ch, fitted)  # idempotent: every event already has this version's score
    assert (again.scored, again.flagged) == (0, 0)
    [rate] = failure_rates(ch)
    assert (rate.signal, rate.events, rate.failures) == ("contact_leak", 30, 15)


def test_a_pattern_that_flags_most_stored_texts_is_judged_degenerate(
    ch: Any, tiny_embedder: OpenClipEmbedder
) -> None:
    from telltale.cli_signals import _verdict

    store = ClickHouseSignalStore(ch)
    pipeline = Pipeline(tiny_embedder, LiveSignals(store, tiny_embedder.id, refresh_s=0),
                        ClickHouseWriter(ch))  # fmt: skip
    texts = [*LEAKS, *CLEAN]
    pipeline.process([event(i, texts[i % len(texts)]) for i in range(30)])
    greedy = train_signal(parse_spec({"name": "greedy", "kind": "pattern", "patterns": [r"\w"]}),
                          tiny_embedder)  # fmt: skip
    verdict = _verdict(ch, greedy)  # matches every stored answer
    assert (verdict.degenerate, verdict.flag_share, verdict.scored_events) == (True, 1.0, 30)
    assert not _verdict(ch, train_signal(pii_spec(), tiny_embedder)).degenerate


def test_suggest_refuses_a_pattern_signal_and_points_to_audits() -> None:
    from signals.labeling import suggest

    fitted = train_signal(pii_spec(), embedder=None)  # type: ignore[arg-type]
    with pytest.raises(TrainingError, match=r"reads the text.*signals audit"):
        suggest(None, fitted, None, None)  # type: ignore[arg-type]
