"""Training signals from examples: few-shot logistic regression and zero-shot text queries.

Few-shot follows the practice that makes these signals useful: ``class_weight="balanced"``,
seeded randomness, stratified k-fold estimates of precision/recall/F1/ROC-AUC stored with the
model, and, when the spec says ``threshold: auto``, the threshold that maximises the
cross-validated F-beta (beta < 1 favours precision, which is what an alerting signal needs).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import numpy as np

from signals.errors import TrainingError
from signals.fitted import FittedSignal
from signals.images import ImagePolicy, load_image
from signals.spec import SignalSpec

if TYPE_CHECKING:
    from numpy.typing import NDArray

    from signals.base import Embedder

__all__ = ["MIN_EXAMPLES_PER_CLASS", "embed_examples", "fit_signal", "train_signal"]

MIN_EXAMPLES_PER_CLASS = 2
_MIN_SCALE = 1e-3
# Zero-shot without labels: CLIP's logit scale, and a cosine at which the probability is 0.5.
_ZERO_SHOT_SCALE = 100.0
_ZERO_SHOT_COSINE = 0.25


def embed_examples(
    spec: SignalSpec, embedder: Embedder, policy: ImagePolicy | None = None
) -> tuple[NDArray[np.float32], NDArray[np.float32]]:
    """Embed the spec's positive and negative examples with ``embedder``."""

    def embed(refs: Sequence[str]) -> NDArray[np.float32]:
        if not refs:
            return np.zeros((0, embedder.dim), dtype=np.float32)
        if spec.modality == "text":
            return embedder.embed_texts(list(refs))
        return embedder.embed_images([load_image(ref, policy) for ref in refs])

    return embed(spec.examples.positive), embed(spec.examples.negative)


def train_signal(
    spec: SignalSpec, embedder: Embedder, version: int = 1, policy: ImagePolicy | None = None
) -> FittedSignal:
    """Embed the spec's examples (and query) and fit the signal."""
    positives, negatives = embed_examples(spec, embedder, policy)
    query = (
        embedder.embed_texts([spec.query])[0] if spec.kind == "zero_shot" and spec.query else None
    )
    return fit_signal(spec, positives, negatives, embedder.id, version, query=query)


def fit_signal(
    spec: SignalSpec,
    positives: NDArray[np.float32],
    negatives: NDArray[np.float32],
    embedder_id: str,
    version: int = 1,
    *,
    query: NDArray[np.float32] | None = None,
) -> FittedSignal:
    """Fit from already-embedded examples. Inputs are never modified."""
    started = time.perf_counter()
    if spec.kind == "zero_shot":
        if query is None:
            raise TrainingError(f"signal {spec.name!r}: zero_shot needs the query embedding")
        weights, bias, threshold, metrics = _fit_zero_shot(spec, positives, negatives, query)
    else:
        weights, bias, threshold, metrics = _fit_few_shot(spec, positives, negatives)
    return FittedSignal(
        spec=spec,
        version=version,
        embedder_id=embedder_id,
        kind=spec.kind,
        weights=tuple(float(w) for w in weights),
        bias=float(bias),
        threshold=float(threshold),
        metrics=metrics,
        n_positive=len(positives),
        n_negative=len(negatives),
        trained_at=datetime.now(UTC),
        train_ms=(time.perf_counter() - started) * 1000.0,
    )


def _check_counts(spec: SignalSpec, n_pos: int, n_neg: int) -> None:
    for label, count in (("positive", n_pos), ("negative", n_neg)):
        if count < MIN_EXAMPLES_PER_CLASS:
            raise TrainingError(
                f"signal {spec.name!r} has {count} {label} example(s); "
                f"at least {MIN_EXAMPLES_PER_CLASS} of each class are needed"
            )


def _fit_few_shot(
    spec: SignalSpec, positives: NDArray[np.float32], negatives: NDArray[np.float32]
) -> tuple[NDArray[np.float64], float, float, dict[str, float]]:
    from sklearn.linear_model import LogisticRegression

    _check_counts(spec, len(positives), len(negatives))
    x = np.concatenate([positives, negatives]).astype(np.float64)
    y = np.concatenate([np.ones(len(positives)), np.zeros(len(negatives))])

    def make() -> Any:
        return LogisticRegression(
            C=spec.regularization, class_weight="balanced", max_iter=1000,
            random_state=spec.seed,
        )  # fmt: skip

    cv_probs = _cross_val_probs(make, x, y, spec.seed, standardize=True)
    threshold = (
        _pick_threshold(cv_probs, y, spec.beta)
        if spec.threshold == "auto"
        else float(spec.threshold)
    )
    mean, scale = _standardizer(x)
    model = make().fit((x - mean) / scale, y)
    # Fold the standardisation into the linear model so scoring stays one matrix product:
    # w·(e - mean)/scale + b  ==  (w/scale)·e + (b - w·mean/scale)
    weights = model.coef_[0] / scale
    bias = float(model.intercept_[0] - np.dot(weights, mean))
    metrics = _metrics(cv_probs, y, threshold)
    return weights, bias, threshold, metrics


def _fit_zero_shot(
    spec: SignalSpec,
    positives: NDArray[np.float32],
    negatives: NDArray[np.float32],
    query: NDArray[np.float32],
) -> tuple[NDArray[np.float64], float, float, dict[str, float]]:
    """Cosine to the query, mapped to a probability; Platt-calibrated when labels exist."""
    q = query.astype(np.float64)
    q = q / max(float(np.linalg.norm(q)), 1e-12)
    if len(positives) < MIN_EXAMPLES_PER_CLASS or len(negatives) < MIN_EXAMPLES_PER_CLASS:
        threshold = 0.5 if spec.threshold == "auto" else float(spec.threshold)
        weights = q * _ZERO_SHOT_SCALE
        return weights, -_ZERO_SHOT_SCALE * _ZERO_SHOT_COSINE, threshold, {"calibrated": 0.0}
    from sklearn.linear_model import LogisticRegression

    cos = np.concatenate([positives, negatives]).astype(np.float64) @ q
    y = np.concatenate([np.ones(len(positives)), np.zeros(len(negatives))])

    def make() -> Any:
        return LogisticRegression(C=1e4, class_weight="balanced", random_state=spec.seed)

    cv_probs = _cross_val_probs(make, cos[:, None], y, spec.seed)
    threshold = (
        _pick_threshold(cv_probs, y, spec.beta)
        if spec.threshold == "auto"
        else float(spec.threshold)
    )
    model = make().fit(cos[:, None], y)
    metrics = {**_metrics(cv_probs, y, threshold), "calibrated": 1.0}
    scale = float(model.coef_[0][0])
    return q * scale, float(model.intercept_[0]), threshold, metrics


def _standardizer(x: NDArray[np.float64]) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Per-dimension mean and spread. Embeddings of one model share a large common component;
    standardising lets a few examples find the directions that differ (AUC 0.87 → 0.999 on the
    watermark set with random weights, 16+16 examples)."""
    return x.mean(axis=0), np.maximum(x.std(axis=0), _MIN_SCALE)


def _cross_val_probs(
    make: Any,
    x: NDArray[np.float64],
    y: NDArray[np.float64],
    seed: int,
    *,
    standardize: bool = False,
) -> NDArray[np.float64]:
    """Held-out probabilities from stratified k-fold (k = min(5, smallest class))."""
    from sklearn.model_selection import StratifiedKFold

    folds = max(int(min(5, y.sum(), len(y) - y.sum())), 2)
    probs = np.zeros(len(y))
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    for train, test in splitter.split(x, y):
        mean, scale = _standardizer(x[train]) if standardize else (0.0, 1.0)
        model = make().fit((x[train] - mean) / scale, y[train])
        probs[test] = model.predict_proba((x[test] - mean) / scale)[:, 1]
    return probs


def _pick_threshold(probs: NDArray[np.float64], y: NDArray[np.float64], beta: float) -> float:
    """The probability cut that maximises F-beta on held-out predictions.

    Among equally good cuts the highest is taken (precision first), and the threshold is placed
    midway between it and the next lower held-out probability, not on a training point.
    """
    candidates = sorted(set(np.round(probs, 6).tolist()))
    best_score, best_index = -1.0, 0
    for index, candidate in enumerate(candidates):
        score = _fbeta(probs >= candidate, y, beta)
        if score >= best_score:
            best_score, best_index = score, index
    upper = candidates[best_index]
    lower = candidates[best_index - 1] if best_index > 0 else upper / 2
    return float(min(max((upper + lower) / 2, 1e-6), 1 - 1e-6))


def _fbeta(predicted: NDArray[np.bool_], y: NDArray[np.float64], beta: float) -> float:
    tp = float(np.sum(predicted & (y == 1)))
    fp = float(np.sum(predicted & (y == 0)))
    fn = float(np.sum(~predicted & (y == 1)))
    denom = (1 + beta**2) * tp + beta**2 * fn + fp
    return (1 + beta**2) * tp / denom if denom else 0.0


def _metrics(
    probs: NDArray[np.float64], y: NDArray[np.float64], threshold: float
) -> dict[str, float]:
    from sklearn.metrics import f1_score, precision_score, recall_score, roc_auc_score

    predicted = probs >= threshold
    return {
        "precision": float(precision_score(y, predicted, zero_division=0)),
        "recall": float(recall_score(y, predicted, zero_division=0)),
        "f1": float(f1_score(y, predicted, zero_division=0)),
        "roc_auc": float(roc_auc_score(y, probs)),
        "cv_folds": float(min(5, y.sum(), len(y) - y.sum())),
    }
