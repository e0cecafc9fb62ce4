"""Training a few-shot signal on its gold examples plus weakly labelled stored traffic.

:func:`train_weak_signal` applies the spec's labelling functions to a pool of stored events of
the signal's field (and to the gold examples, whose labels anchor the label model), fits the
:class:`~signals.weak.LabelModel`, and fits the signal twice from the same gold examples: plain,
and with the pool as weak examples. Cross-validation scores the **gold examples only** in both
fits; the weak version replaces the plain one only where its cross-validated F1 is higher (then
ROC-AUC; a tie keeps the plain one). Both sets of figures are stored in the chosen version's
metrics (``plain_*`` and ``weak_*``), with ``weak_used`` (1 or 0), the pool size, the share the
label model calls failures and each function's estimated accuracy (``lf<k>_accuracy``, in the
order of the spec's ``labelling_functions``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from signals.base import Embedder
from signals.embedders import FieldEmbedders, as_field_embedders
from signals.errors import TrainingError
from signals.fitted import FittedSignal
from signals.images import ImagePolicy
from signals.spec import EventRef, SignalSpec
from signals.training import (
    BACKGROUND_WINDOWS,
    ExampleLookup,
    TrafficSample,
    embed_example_windows,
    fit_signal,
)
from signals.weak import LabelModel, apply_labelling_functions, spec_functions, weak_examples

if TYPE_CHECKING:
    from numpy.typing import NDArray

__all__ = ["LabelledPool", "WeakPool", "label_pool", "least_certain", "train_weak_signal"]

_COMPARED = ("precision", "recall", "f1", "roc_auc")


@dataclass(frozen=True)
class WeakPool:
    """Stored events of one field to label weakly: ids, window vectors (under the field's
    embedder), stored text (None where it was not stored) and the lowest feedback value given
    (None: no feedback)."""

    event_ids: tuple[str, ...]
    groups: list[NDArray[np.float32]]
    texts: list[str | None]
    feedback: list[int | None]

    def __post_init__(self) -> None:
        n = len(self.event_ids)
        if not len(self.groups) == len(self.texts) == len(self.feedback) == n:
            raise ValueError("a weak pool's ids, vectors, texts and feedback must align")

    def __len__(self) -> int:
        return len(self.event_ids)


@dataclass(frozen=True)
class LabelledPool:
    """The pool's votes and probabilistic labels, and the label model that gave them."""

    model: LabelModel
    votes: NDArray[np.int8]
    probabilities: NDArray[np.float64]


def label_pool(
    spec: SignalSpec,
    embedder: Embedder | FieldEmbedders,
    pool: WeakPool,
    signals: Mapping[str, FittedSignal],
    gold: tuple[Sequence[NDArray[np.float32]], Sequence[NDArray[np.float32]]] | None = None,
) -> LabelledPool:
    """Votes of the spec's labelling functions on the pool, and the label model's posteriors.

    ``gold``: the embedded positive and negative examples (their votes anchor the model; their
    text is the inline example's, none for a stored-event example)."""
    functions = spec_functions(spec)
    embedders = as_field_embedders(embedder)
    for function in functions:
        fitted = signals.get(function.signal or "")  # a missing one: apply_labelling_functions
        if fitted is not None and fitted.field != spec.field:
            raise TrainingError(
                f"labelling function {function.label!r}: signal {function.signal!r} reads "
                f"{fitted.field}, not {spec.field}"
            )
        if (
            fitted is not None
            and not fitted.reads_text
            and (fitted.embedder_id != embedders.id_for(spec.field))
        ):
            raise TrainingError(
                f"labelling function {function.label!r}: signal {function.signal!r} was "
                f"trained on {fitted.embedder_id}, the pool is embedded by "
                f"{embedders.id_for(spec.field)} (retrain it first)"
            )
    queries = {f.query: embedders.embed_query(spec.field, f.query)
               for f in functions if f.query is not None}  # fmt: skip
    cuts: dict[str, tuple[float, float]] = {}
    votes = apply_labelling_functions(
        functions, pool.groups, pool.texts, signals=signals, queries=queries,
        feedback=pool.feedback, cuts=cuts, examples=gold,
    )  # fmt: skip
    gold_votes = gold_labels = None
    if gold is not None:
        examples = (*spec.examples.positive, *spec.examples.negative)
        texts = [None if isinstance(e, EventRef) else e for e in examples]
        groups = [*gold[0], *gold[1]]
        if groups and len(groups) == len(texts):
            gold_votes = apply_labelling_functions(
                functions, groups, texts, signals=signals, queries=queries, cuts=cuts,
                examples=gold, leave_one_out=True,
            )  # fmt: skip
            gold_labels = np.array([1.0] * len(gold[0]) + [0.0] * len(gold[1]))
    model = LabelModel.fit(votes, gold_votes, gold_labels)
    return LabelledPool(model, votes, model.predict(votes))


def train_weak_signal(
    spec: SignalSpec,
    embedder: Embedder | FieldEmbedders,
    pool: WeakPool,
    signals: Mapping[str, FittedSignal],
    version: int = 1,
    policy: ImagePolicy | None = None,
    lookup: ExampleLookup | None = None,
    background_windows: int = BACKGROUND_WINDOWS,
) -> FittedSignal:
    """The plain and the weakly supervised fit of a few-shot spec; the better by gold-only
    cross-validation, carrying both sets of figures (see the module docstring)."""
    if spec.kind != "few_shot":
        raise TrainingError(f"signal {spec.name!r} of kind {spec.kind!r} is not trained on "
                            "labels; weak supervision trains few_shot signals")  # fmt: skip
    if not len(pool):
        raise TrainingError(f"signal {spec.name!r}: no stored events of {spec.field} to label "
                            "weakly (replay or ingest traffic first)")  # fmt: skip
    embedders = as_field_embedders(embedder)
    positives, negatives = embed_example_windows(spec, embedders, policy, lookup)
    labelled = label_pool(spec, embedders, pool, signals, (positives, negatives))
    gold_ids = {e.event_id for e in (*spec.examples.positive, *spec.examples.negative)
                if isinstance(e, EventRef)}  # fmt: skip
    weak = weak_examples(pool.event_ids, pool.groups, labelled.probabilities, gold_ids)
    background = None
    if isinstance(lookup, TrafficSample) and spec.modality == "text" and background_windows > 0:
        field_embedder = embedders.for_field(spec.field)
        background = lookup.background(spec.field, field_embedder, background_windows, gold_ids)
    embedder_id = embedders.id_for(spec.field)
    plain = fit_signal(spec, positives, negatives, embedder_id, version, background=background)
    weakly = fit_signal(spec, positives, negatives, embedder_id, version, background=background,
                        weak=weak)  # fmt: skip
    use_weak = _key(weakly) > _key(plain)
    chosen = weakly if use_weak else plain
    metrics = dict(chosen.metrics)
    for prefix, fit in (("plain", plain), ("weak", weakly)):
        metrics |= {f"{prefix}_{k}": fit.metrics[k] for k in _COMPARED if k in fit.metrics}
    metrics |= {
        "weak_used": float(use_weak),
        "weak_events": float(len(weak)),
        "weak_failure_share": float(labelled.probabilities.mean()),
        "weak_confident": float(np.mean(np.abs(labelled.probabilities - 0.5) >= 0.4)),
        "label_model_prior": labelled.model.prior,
    }
    metrics |= {f"lf{k}_accuracy": float(a) for k, a in enumerate(labelled.model.accuracies())}
    metrics |= {f"lf{k}_coverage": float(c)
                for k, c in enumerate((labelled.votes != -1).mean(axis=0))}  # fmt: skip
    return chosen.model_copy(update={"metrics": metrics,
                                     "train_ms": plain.train_ms + weakly.train_ms})  # fmt: skip


def _key(fitted: FittedSignal) -> tuple[float, float]:
    return round(fitted.metrics.get("f1", 0.0), 9), round(fitted.metrics.get("roc_auc", 0.0), 9)


def least_certain(
    pool: WeakPool, labelled: LabelledPool, limit: int, exclude: set[str] | None = None
) -> list[tuple[str, float, int]]:
    """Up to ``limit`` pool events a human label helps most: the label model least certain
    (probability nearest 0.5), among them first those where the functions disagree most (as
    many votes one way as the other). ``(event_id, probability, disagreement)`` where
    disagreement is the smaller of the failure and fine vote counts."""
    ones = (labelled.votes == 1).sum(axis=1)
    zeros = (labelled.votes == 0).sum(axis=1)
    disagreement = np.minimum(ones, zeros)
    order = sorted(
        (i for i, e in enumerate(pool.event_ids) if e not in (exclude or set())),
        key=lambda i: (round(abs(float(labelled.probabilities[i]) - 0.5), 3), -disagreement[i]),
    )
    return [(pool.event_ids[i], float(labelled.probabilities[i]), int(disagreement[i]))
            for i in order[:limit]]  # fmt: skip
