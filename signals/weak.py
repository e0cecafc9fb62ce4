"""Weak supervision: labelling functions vote on stored traffic, a label model weighs the votes.

A few-shot spec may name ``labelling_functions`` (:class:`signals.spec.LabellingFunction`):
cheap, noisy sources that each vote *failure* (1), *fine* (0) or abstain (-1) on an event:

* ``signal: NAME`` — another registered signal of the same field (any kind): flagged or not;
* ``patterns:`` / ``keywords:`` — a match votes (a pattern LF says nothing where it does not match);
* ``query:`` — zero-shot: the ``top`` share of the pool most like the query (cosine, best window)
  votes failure, the ``bottom`` share least like it votes fine;
* ``feedback: true`` — users' feedback on the event: negative votes failure, positive fine;
* ``examples: true`` — the gold examples themselves (label propagation): nearer a positive
  example than any negative by ``margin`` (cosine, best window pair) votes failure, and the
  other way round fine. On the gold examples it votes leave-one-out.

:class:`LabelModel` is a binary Dawid–Skene model (one of the oldest and best-understood label
models): each function has its own confusion table ``P(vote | true class)`` over the three
outcomes, abstention included (a pattern that fires on half the failures and almost no fine
answers is evidence of *fine* where it stays silent), the classes have a prior, and EM fits
both from the functions' agreements on unlabelled traffic; gold examples, when their votes are
known, are clamped to their labels and anchor the classes. The posterior is each event's
probabilistic label. Its assumption (functions independent given the class) is the usual one;
correlated functions are over-counted, which the bench's estimated-vs-true accuracy table shows.

Written here rather than taken from Snorkel: Snorkel's ``LabelModel`` pins torch and pandas
versions and ignores abstentions as evidence; the model below is 60 lines of numpy, and
``bench/weak_supervision.py`` compares it with majority vote on the labelled sets.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from signals.bank import SignalBank
from signals.errors import TrainingError
from signals.fitted import FittedSignal
from signals.matchers import PatternMatcher
from signals.spec import LabellingFunction, SignalSpec
from signals.windows import Windows

if TYPE_CHECKING:
    from numpy.typing import NDArray

__all__ = [
    "ABSTAIN",
    "LabelModel",
    "WeakExamples",
    "apply_labelling_functions",
    "majority_vote",
    "spec_functions",
    "weak_examples",
]

ABSTAIN = -1
_OUTCOMES = 3  # vote 1, vote 0, abstain
_SMOOTHING = 1.0  # Dirichlet pseudo-count per outcome: no function is ever certain
_ITERATIONS = 200
_TOLERANCE = 1e-6


@dataclass(frozen=True)
class WeakExamples:
    """Weakly labelled stored events for a few-shot fit: each event's window vectors and the
    label model's probability that it is a failure."""

    event_ids: tuple[str, ...]
    groups: list[NDArray[np.float32]]
    probabilities: NDArray[np.float64]

    def __len__(self) -> int:
        return len(self.event_ids)


def apply_labelling_functions(
    functions: Sequence[LabellingFunction],
    groups: Sequence[NDArray[np.float32]],
    texts: Sequence[str | None],
    *,
    signals: Mapping[str, FittedSignal] | None = None,
    queries: Mapping[str, NDArray[np.float32]] | None = None,
    feedback: Sequence[int | None] | None = None,
    cuts: dict[str, tuple[float, float]] | None = None,
    examples: tuple[Sequence[NDArray[np.float32]], Sequence[NDArray[np.float32]]] | None = None,
    leave_one_out: bool = False,
) -> NDArray[np.int8]:
    """The votes, ``(events, functions)`` in {1, 0, ABSTAIN}.

    ``groups``: per event, its ``(windows, dim)`` vectors; ``texts``: its stored text (None when
    the text was not stored: text functions abstain there); ``signals``: the fitted signals the
    functions name; ``queries``: each query's embedding; ``feedback``: per event, the lowest
    feedback value given (None: no feedback). ``cuts``: per query, the cosines above which it
    votes failure and below which it votes fine. Left empty, they are set from these events'
    ranks (``top`` / ``bottom`` shares) and written into the dict, so that other events (the
    gold examples) can be voted on with the pool's cuts. ``examples``: the gold positives'
    and negatives' window vectors; ``leave_one_out``: ``groups`` *are* those examples (positives
    then negatives) and each is voted on without itself.
    """
    n = len(groups)
    if len(texts) != n or (feedback is not None and len(feedback) != n):
        raise ValueError("groups, texts and feedback must describe the same events")
    votes = np.full((n, len(functions)), ABSTAIN, dtype=np.int8)
    for j, function in enumerate(functions):
        if function.signal is not None:
            fitted = (signals or {}).get(function.signal)
            if fitted is None:
                raise TrainingError(f"labelling function {function.label!r}: no signal "
                                    f"{function.signal!r} is registered")  # fmt: skip
            hit, known = _signal_flags(fitted, groups, texts)
        elif function.query is not None:
            vector = (queries or {}).get(function.query)
            if vector is None:
                raise TrainingError(f"labelling function {function.label!r}: query not embedded")
            hit, known = _query_votes(function, vector, groups, cuts)
        elif function.examples:
            if examples is None:
                raise TrainingError(f"labelling function {function.label!r}: no examples given")
            hit, known = _example_votes(function, groups, examples, leave_one_out)
        elif function.feedback:
            values = feedback or [None] * n
            known = np.array([v is not None and v != 0 for v in values])
            hit = np.array([v is not None and v < 0 for v in values])
        else:
            matcher = PatternMatcher(function.patterns, function.keywords,
                                     case_sensitive=function.case_sensitive,
                                     whole_word=function.whole_word)  # fmt: skip
            known = np.array([t is not None for t in texts])
            hit = np.array([t is not None and bool(matcher.find(t)) for t in texts])
        votes[:, j] = _as_votes(function, hit, known)
    return votes


def _as_votes(
    function: LabellingFunction, hit: NDArray[np.bool_], known: NDArray[np.bool_]
) -> NDArray[np.int8]:
    """Hits vote failure, misses fine, unknown events abstain; ``votes`` keeps some of them.

    For a signal, a query or feedback, ``positive`` keeps the failure votes and ``negative``
    the fine ones. For patterns, which say something only where they match, ``positive``: a
    match votes failure; ``negative``: a match votes fine ("mentions an index fund: fine");
    ``both``: a match votes failure and the rest fine.
    """
    votes = np.where(hit, 1, 0).astype(np.int8)
    mode = function.counted_votes
    if function.patterns or function.keywords:
        if mode != "both":
            votes = np.where(hit, 1 if mode == "positive" else 0, ABSTAIN).astype(np.int8)
    elif mode == "positive":
        votes[~hit] = ABSTAIN
    elif mode == "negative":
        votes[hit] = ABSTAIN
    votes[~known] = ABSTAIN
    return votes


def _signal_flags(
    fitted: FittedSignal, groups: Sequence[NDArray[np.float32]], texts: Sequence[str | None]
) -> tuple[NDArray[np.bool_], NDArray[np.bool_]]:
    bank = SignalBank([fitted], fitted.embedder_id)
    if fitted.reads_text:
        known = np.array([t is not None for t in texts])
        flagged = np.zeros(len(texts), dtype=bool)
        if known.any():
            scored = bank.score_texts(fitted.field, [t or "" for t in texts])
            flagged = scored.flagged[:, 0] & known
        return flagged, known
    dim = groups[0].shape[1]
    scores = bank.score_windows(fitted.field, Windows.of(list(groups), dim))
    return scores.flagged[:, 0], np.ones(len(groups), dtype=bool)


def _query_votes(
    function: LabellingFunction,
    query: NDArray[np.float32],
    groups: Sequence[NDArray[np.float32]],
    cuts: dict[str, tuple[float, float]] | None,
) -> tuple[NDArray[np.bool_], NDArray[np.bool_]]:
    """Cosine (best window) at or above the upper cut hits, below the lower cut misses, the
    middle abstains. Without given cuts, they are the cosines of the ``top`` and ``bottom``
    shares of these events."""
    assert function.query is not None
    q = query.astype(np.float64) / max(float(np.linalg.norm(query)), 1e-12)
    cosine = np.array([float((np.asarray(g, dtype=np.float64) @ q).max()) for g in groups])
    if cuts is None or function.query not in cuts:
        ranked = np.sort(cosine)[::-1]
        top = round(function.top * len(ranked))
        bottom = round(function.bottom * len(ranked))
        upper = float(ranked[top - 1]) if top else np.inf
        lower = float(ranked[len(ranked) - bottom]) if bottom else -np.inf
        if cuts is not None:
            cuts[function.query] = (upper, lower)
    else:
        upper, lower = cuts[function.query]
    hit = cosine >= upper
    return hit, hit | (cosine <= lower) & ~hit


def _example_votes(
    function: LabellingFunction,
    groups: Sequence[NDArray[np.float32]],
    examples: tuple[Sequence[NDArray[np.float32]], Sequence[NDArray[np.float32]]],
    leave_one_out: bool,
) -> tuple[NDArray[np.bool_], NDArray[np.bool_]]:
    """Failure where the best cosine to a positive example beats the best to a negative by
    more than ``margin``; fine the other way round; abstain in between."""
    positives = [np.asarray(g, dtype=np.float64) for g in examples[0]]
    negatives = [np.asarray(g, dtype=np.float64) for g in examples[1]]

    def best(event: NDArray[np.float64], pool: list[NDArray[np.float64]], skip: int) -> float:
        return max((float((event @ other.T).max()) for j, other in enumerate(pool) if j != skip),
                   default=-1.0)  # fmt: skip

    gap = np.empty(len(groups))
    for i, group in enumerate(groups):
        event = np.asarray(group, dtype=np.float64)
        own_pos = i if leave_one_out and i < len(positives) else -1
        own_neg = i - len(positives) if leave_one_out and i >= len(positives) else -1
        gap[i] = best(event, positives, own_pos) - best(event, negatives, own_neg)
    hit = gap > function.margin
    return hit, hit | (gap < -function.margin)


def majority_vote(votes: NDArray[np.int8]) -> NDArray[np.float64]:
    """The baseline label model: the share of non-abstaining votes that say failure (0.5 when
    every function abstains)."""
    ones = (votes == 1).sum(axis=1)
    cast = (votes != ABSTAIN).sum(axis=1)
    return np.where(cast > 0, ones / np.maximum(cast, 1), 0.5).astype(np.float64)


@dataclass(frozen=True)
class LabelModel:
    """A fitted Dawid–Skene model: ``prior`` = P(failure), ``confusion[j, c, o]`` = P(function j
    gives outcome o | class c), outcomes (vote 1, vote 0, abstain)."""

    prior: float
    confusion: NDArray[np.float64]
    iterations: int

    @classmethod
    def fit(
        cls,
        votes: NDArray[np.int8],
        gold_votes: NDArray[np.int8] | None = None,
        gold_labels: NDArray[np.float64] | None = None,
    ) -> LabelModel:
        """EM from the votes on unlabelled events; gold events (their votes and labels) keep
        their labels throughout and fix which class is which."""
        m = votes.shape[1]
        if m == 0:
            raise TrainingError("a label model needs at least one labelling function")
        if gold_votes is None or gold_labels is None:
            gold_votes, gold_labels = np.zeros((0, m), dtype=np.int8), np.zeros(0)
        every = np.concatenate([votes, gold_votes])
        outcomes = _outcomes(every)
        clamped = np.concatenate([np.full(len(votes), np.nan), gold_labels])
        fixed = ~np.isnan(clamped)
        starts = [np.where(fixed, np.nan_to_num(clamped), majority_vote(every))]
        if fixed.any():
            # A second start from the gold alone: where the functions mostly mean the opposite
            # of what they say, EM from their votes settles on the mirror image.
            from_gold = cls._m_step(outcomes[fixed], clamped[fixed], 0)
            starts.append(np.where(fixed, clamped, from_gold._posterior(outcomes)))
        fits = [cls._em(outcomes, start, fixed, clamped) for start in starts]
        model = max(fits, key=lambda fit: fit._log_likelihood(outcomes, fixed, clamped))
        if not fixed.any() and model.accuracies().mean() < 0.5:
            # Without gold the two classes are interchangeable; take the side on which the
            # functions mostly mean what they say (a vote 1 means failure).
            model = cls(1.0 - model.prior, model.confusion[:, ::-1, :].copy(), model.iterations)
        return model

    @classmethod
    def _em(
        cls,
        outcomes: NDArray[np.intp],
        posterior: NDArray[np.float64],
        fixed: NDArray[np.bool_],
        clamped: NDArray[np.float64],
    ) -> LabelModel:
        for iteration in range(1, _ITERATIONS + 1):
            model = cls._m_step(outcomes, posterior, iteration)
            updated = np.where(fixed, np.nan_to_num(clamped), model._posterior(outcomes))
            change = float(np.max(np.abs(updated - posterior)))
            posterior = updated
            if change < _TOLERANCE:
                break
        return model

    def _log_likelihood(
        self, outcomes: NDArray[np.intp], fixed: NDArray[np.bool_], clamped: NDArray[np.float64]
    ) -> float:
        """Of the unlabelled votes (classes summed out) and of the gold votes with their
        labels."""
        log_fail, log_fine = self._log_joint(outcomes)
        free = np.logaddexp(log_fail, log_fine)
        gold = np.where(np.nan_to_num(clamped) == 1, log_fail, log_fine)
        return float(np.where(fixed, gold, free).sum())

    def _log_joint(
        self, outcomes: NDArray[np.intp]
    ) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        """log P(class, votes) per event, for failure and for fine."""
        log_conf = np.log(self.confusion)
        rows = np.arange(outcomes.shape[1])
        log_fail = np.log(self.prior) + log_conf[rows, 1, outcomes].sum(axis=1)
        log_fine = np.log(1.0 - self.prior) + log_conf[rows, 0, outcomes].sum(axis=1)
        return log_fail, log_fine

    @classmethod
    def _m_step(
        cls, outcomes: NDArray[np.intp], posterior: NDArray[np.float64], iteration: int
    ) -> LabelModel:
        n, m = outcomes.shape
        weights = np.stack([1.0 - posterior, posterior], axis=1)  # (n, 2)
        confusion = np.empty((m, 2, _OUTCOMES))
        for o in range(_OUTCOMES):
            confusion[:, :, o] = (outcomes == o).T.astype(np.float64) @ weights + _SMOOTHING
        confusion /= confusion.sum(axis=2, keepdims=True)
        prior = (float(posterior.sum()) + 1.0) / (n + 2.0)
        return cls(prior, confusion, iteration)

    def _posterior(self, outcomes: NDArray[np.intp]) -> NDArray[np.float64]:
        log_fail, log_fine = self._log_joint(outcomes)
        result: NDArray[np.float64] = 1.0 / (1.0 + np.exp(np.clip(log_fine - log_fail, -50, 50)))
        return result

    def predict(self, votes: NDArray[np.int8]) -> NDArray[np.float64]:
        """P(failure | votes) per event."""
        return self._posterior(_outcomes(votes))

    def accuracies(self) -> NDArray[np.float64]:
        """Each function's estimated accuracy where it votes, P(vote = class | it votes), under
        the fitted prior and confusion tables."""
        fail = self.prior * self.confusion[:, 1, :]
        fine = (1 - self.prior) * self.confusion[:, 0, :]
        right = fail[:, 0] + fine[:, 1]
        cast = right + fail[:, 1] + fine[:, 0]
        result: NDArray[np.float64] = right / np.maximum(cast, 1e-12)
        return result


def _outcomes(votes: NDArray[np.int8]) -> NDArray[np.intp]:
    """Vote 1 → 0, vote 0 → 1, abstain → 2 (indices into the confusion tables)."""
    result: NDArray[np.intp] = np.where(votes == 1, 0, np.where(votes == 0, 1, 2)).astype(np.intp)
    return result


def weak_examples(
    event_ids: Sequence[str],
    groups: Sequence[NDArray[np.float32]],
    probabilities: NDArray[np.float64],
    exclude: set[str] | None = None,
) -> WeakExamples:
    """The pool as weak examples, the signal's own gold events (``exclude``) left out."""
    keep = [i for i, e in enumerate(event_ids) if e not in (exclude or set())]
    return WeakExamples(
        tuple(event_ids[i] for i in keep),
        [np.asarray(groups[i], dtype=np.float32) for i in keep],
        np.asarray(probabilities, dtype=np.float64)[keep],
    )


def spec_functions(spec: SignalSpec) -> tuple[LabellingFunction, ...]:
    """The spec's labelling functions; an error when it has none."""
    if not spec.labelling_functions:
        raise TrainingError(f"signal {spec.name!r} names no labelling_functions: nothing to "
                            "weakly label with")  # fmt: skip
    return spec.labelling_functions
