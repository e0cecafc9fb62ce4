"""Training signals from examples: few-shot logistic regression or a one-hidden-layer MLP, and
zero-shot text queries.

Few-shot follows the practice that makes these signals useful: ``class_weight="balanced"``,
seeded randomness, stratified k-fold estimates of precision/recall/F1/ROC-AUC stored with the
model, and, when the spec says ``threshold: auto``, the threshold that maximises the
cross-validated F-beta (beta < 1 favours precision, which is what an alerting signal needs).
"""

from __future__ import annotations

import time
from collections.abc import Collection, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import numpy as np

from signals.base import Embedder, TextEmbedder
from signals.embedders import FieldEmbedders, as_field_embedders
from signals.errors import ImageError, TrainingError
from signals.fitted import FittedSignal
from signals.fitting import (
    MIN_EXAMPLES_PER_CLASS,
    Groups,
    as_groups,
    check_example_counts,
    example_metrics,
    fit_few_shot,
    fit_zero_shot,
)
from signals.images import ImagePolicy, load_image
from signals.matchers import score_of
from signals.spec import EventRef, Example, SignalSpec
from signals.text_kinds import matcher_for, matcher_id
from signals.weak import WeakExamples
from signals.windows import Windows

if TYPE_CHECKING:
    from numpy.typing import NDArray

__all__ = [
    "BACKGROUND_WINDOWS",
    "MIN_EXAMPLES_PER_CLASS",
    "ExampleLookup",
    "TrafficSample",
    "embed_example_windows",
    "embed_examples",
    "fit_signal",
    "fit_text_signal",
    "train_signal",
]

# Zero-shot without labels: CLIP's logit scale, and a cosine at which the probability is 0.5.


class ExampleLookup(Protocol):
    """Embeddings of stored events, for examples given as ``{event_id: ...}``.

    Implemented by :class:`signals.examples.StoredExamples`; returns, for each id it knows,
    the ``field`` embedding in ``embedder``'s space: a ``(dim,)`` vector or, for a long
    text, its ``(windows, dim)`` window vectors. Unknown ids are left out.
    """

    def vectors(
        self, event_ids: Sequence[str], field: str, embedder: Embedder | TextEmbedder
    ) -> dict[str, NDArray[np.float32]]: ...


BACKGROUND_WINDOWS = 1000
"""Window vectors of stored traffic a text signal trains against (fixed a priori, in the
brief's 200-2000; see :func:`train_signal`)."""


@runtime_checkable
class TrafficSample(Protocol):
    """Unlabelled stored traffic of a field, for background negatives.

    Implemented by :class:`signals.examples.StoredExamples` (the ClickHouse lookup the CLI and
    the retrainer pass): up to ``windows`` window vectors of ``field`` stored under
    ``embedder``'s id, a reproducible sample, leaving out the events in ``exclude``; an empty
    ``(0, dim)`` array when nothing is stored under that embedder.
    """

    def background(
        self, field: str, embedder: Embedder | TextEmbedder, windows: int, exclude: Collection[str]
    ) -> NDArray[np.float32]: ...


def embed_example_windows(
    spec: SignalSpec,
    embedder: Embedder | FieldEmbedders,
    policy: ImagePolicy | None = None,
    lookup: ExampleLookup | None = None,
) -> tuple[Groups, Groups]:
    """Embed the spec's positive and negative examples with its field's embedder, by window.

    Inline examples are embedded (long texts windowed exactly as the pipeline windows events);
    ``EventRef`` examples come from ``lookup``. An unknown event id, a missing lookup, or an
    inline example of the wrong modality is a :class:`TrainingError` naming the example.
    """
    field_embedder = as_field_embedders(embedder).for_field(spec.field)
    refs = [e.event_id for e in (*spec.examples.positive, *spec.examples.negative)
            if isinstance(e, EventRef)]  # fmt: skip
    stored: dict[str, NDArray[np.float32]] = {}
    if refs:
        if lookup is None:
            raise TrainingError(
                f"signal {spec.name!r} uses stored events as examples; no event store was given"
            )
        stored = lookup.vectors(refs, spec.field, field_embedder)
        unknown = [r for r in refs if r not in stored]
        if unknown:
            raise TrainingError(
                f"signal {spec.name!r}: unknown event id(s) or no {spec.field} in them: "
                + ", ".join(repr(u) for u in unknown[:5])
            )
    dim = field_embedder.dim

    def embed(examples: Sequence[Example], label: str) -> Groups:
        rows: list[NDArray[np.float32] | None] = [
            np.asarray(stored[e.event_id], dtype=np.float32).reshape(-1, dim)
            if isinstance(e, EventRef) else None
            for e in examples
        ]  # fmt: skip
        inline = [(i, e) for i, e in enumerate(examples) if isinstance(e, str)]
        if inline:
            groups = _embed_inline(spec, field_embedder, [e for _, e in inline], label, policy)
            for (i, _), group in zip(inline, groups, strict=True):
                rows[i] = group
        return [r for r in rows if r is not None]

    return embed(spec.examples.positive, "positive"), embed(spec.examples.negative, "negative")


def embed_examples(
    spec: SignalSpec,
    embedder: Embedder | FieldEmbedders,
    policy: ImagePolicy | None = None,
    lookup: ExampleLookup | None = None,
) -> tuple[NDArray[np.float32], NDArray[np.float32]]:
    """The examples' document vectors (mean of windows), ``(n, dim)`` per class."""
    dim = as_field_embedders(embedder).for_field(spec.field).dim
    positives, negatives = embed_example_windows(spec, embedder, policy, lookup)
    return Windows.of(positives, dim).documents(), Windows.of(negatives, dim).documents()


def _embed_inline(
    spec: SignalSpec, embedder: Embedder | TextEmbedder, refs: list[str], label: str,
    policy: ImagePolicy | None,
) -> Groups:  # fmt: skip
    if spec.modality == "text":
        if isinstance(embedder, TextEmbedder):
            return embedder.embed_windows(refs).groups()
        return [v[None, :] for v in embedder.embed_texts(refs)]
    if not isinstance(embedder, Embedder):  # pragma: no cover - FieldEmbedders maps images to CLIP
        raise TrainingError(f"{embedder.id} cannot embed images")
    images = []
    for number, ref in enumerate(refs, start=1):
        try:
            images.append(load_image(ref, policy))
        except ImageError as exc:
            raise TrainingError(
                f"signal {spec.name!r} has modality image, but {label} example {number} is not "
                f"a loadable image: {exc}"
            ) from exc
    return [v[None, :] for v in embedder.embed_images(images)]


def train_signal(
    spec: SignalSpec,
    embedder: Embedder | FieldEmbedders,
    version: int = 1,
    policy: ImagePolicy | None = None,
    lookup: ExampleLookup | None = None,
    background_windows: int = BACKGROUND_WINDOWS,
) -> FittedSignal:
    """Embed the spec's examples (and query) with its field's embedder and fit the signal.

    A few-shot logistic text signal whose ``lookup`` is also a :class:`TrafficSample` (the
    stored-events lookup of ``telltale signals add``, ``label`` and the retrainer) trains
    against up to ``background_windows`` stored windows of its field as background negatives
    (:func:`fit_signal`); with nothing stored (a fresh install) it trains on its examples
    alone, as a signal without a store does. ``metrics["background_windows"]`` says how many.
    Measured on ``bench/data/chat_eval.jsonl`` (``bench/signals.py --background 1000``): the
    README's table.
    """
    if spec.reads_text:
        return fit_text_signal(spec, version)
    embedders = as_field_embedders(embedder)
    positives, negatives = embed_example_windows(spec, embedders, policy, lookup)
    query = (
        embedders.embed_query(spec.field, spec.query)
        if spec.kind == "zero_shot" and spec.query
        else None
    )
    background = None
    if (
        isinstance(lookup, TrafficSample)
        and spec.kind == "few_shot"
        and spec.classifier == "logistic"
        and spec.modality == "text"
        and background_windows > 0
    ):
        refs = {e.event_id for e in (*spec.examples.positive, *spec.examples.negative)
                if isinstance(e, EventRef)}  # fmt: skip
        field_embedder = embedders.for_field(spec.field)
        background = lookup.background(spec.field, field_embedder, background_windows, refs)
    return fit_signal(spec, positives, negatives, embedders.id_for(spec.field), version,
                      query=query, background=background)  # fmt: skip


def fit_signal(
    spec: SignalSpec,
    positives: NDArray[np.float32] | Sequence[NDArray[np.float32]],
    negatives: NDArray[np.float32] | Sequence[NDArray[np.float32]],
    embedder_id: str,
    version: int = 1,
    *,
    query: NDArray[np.float32] | None = None,
    background: NDArray[np.float32] | None = None,
    weak: WeakExamples | None = None,
) -> FittedSignal:
    """Fit from already-embedded examples. Inputs are never modified.

    Each class is an ``(n, dim)`` array (one vector per example) or a sequence of per-example
    ``(windows, dim)`` arrays. With windows, an example's probability is the maximum over its
    windows, in cross-validation as in scoring; see :func:`_fit_windows` for the training rows.
    ``background``: ``(m, dim)`` unlabelled window vectors of stored traffic of the field, extra
    negative rows of a few-shot logistic signal (in every cross-validation fold and the final
    fit; never scored as examples); ``metrics["background_windows"]`` records how many.
    ``weak``: weakly labelled stored events (:mod:`signals.weak`), extra training rows of a
    few-shot logistic signal weighted by their label probability, in every fold and the final
    fit; cross-validation still scores the gold examples only.
    """
    from threadpoolctl import threadpool_limits  # type: ignore[import-untyped]

    started = time.perf_counter()
    pos, neg = as_groups(positives), as_groups(negatives)
    # A few dozen rows: a multi-threaded BLAS only adds thread hand-offs (8x slower measured on
    # 2 busy cores), so the fits run on one BLAS thread.
    with threadpool_limits(limits=1, user_api="blas"):
        if spec.kind == "zero_shot":
            if query is None:
                raise TrainingError(f"signal {spec.name!r}: zero_shot needs the query embedding")
            fit = fit_zero_shot(spec, pos, neg, query)
        else:
            check_example_counts(spec, len(pos), len(neg))
            extra = None if background is None else np.asarray(background, dtype=np.float64)
            if weak is not None and len(weak) and spec.classifier != "logistic":
                raise TrainingError(f"signal {spec.name!r}: weak labels train a logistic "
                                    "classifier only")  # fmt: skip
            fit = fit_few_shot(spec, pos, neg, None if extra is None or not len(extra) else extra,
                                weak if weak is not None and len(weak) else None)  # fmt: skip
            if background is not None and spec.classifier == "logistic":
                fit.metrics.setdefault("background_offered", 0.0)
                fit.metrics.setdefault("background_windows", 0.0)
    hidden_w = () if fit.hidden_weights is None else tuple(map(tuple, fit.hidden_weights.tolist()))
    hidden_b = () if fit.hidden_bias is None else tuple(fit.hidden_bias.tolist())
    return FittedSignal(
        spec=spec,
        version=version,
        embedder_id=embedder_id,
        kind=spec.kind,
        weights=tuple(float(w) for w in fit.weights),
        bias=float(fit.bias),
        hidden_weights=hidden_w,
        hidden_bias=hidden_b,
        threshold=float(fit.threshold),
        metrics=fit.metrics,
        n_positive=len(pos),
        n_negative=len(neg),
        trained_at=datetime.now(UTC),
        train_ms=(time.perf_counter() - started) * 1000.0,
    )


def fit_text_signal(spec: SignalSpec, version: int = 1) -> FittedSignal:
    """A ``pattern`` or ``pii`` signal: nothing to fit; its inline examples measure it.

    The threshold is fixed (0.5 for patterns, whose score is 0 or 1; ``min_score`` for PII),
    and ``metrics`` hold precision, recall and F1 on the examples (none without examples).
    Stored events as examples are refused: their text is not in the spec.
    """
    refs = [e for e in (*spec.examples.positive, *spec.examples.negative)
            if isinstance(e, EventRef)]  # fmt: skip
    if refs:
        raise TrainingError(f"signal {spec.name!r} of kind {spec.kind!r} is not trained: give "
                            "its examples as texts, not stored events")  # fmt: skip
    started = time.perf_counter()
    matcher = matcher_for(spec)
    threshold = 0.5 if spec.kind == "pattern" else max(spec.min_score, 1e-6)
    pos = [str(e) for e in spec.examples.positive]
    neg = [str(e) for e in spec.examples.negative]
    metrics: dict[str, float] = {}
    if pos and neg:
        probs = np.array([score_of(matcher.find(t)) for t in (*pos, *neg)], dtype=np.float64)
        y = np.array([1.0] * len(pos) + [0.0] * len(neg))
        metrics = example_metrics(probs >= threshold, y)
    return FittedSignal(
        spec=spec, version=version, embedder_id=matcher_id(spec), kind=spec.kind, weights=(),
        bias=0.0, threshold=threshold, metrics=metrics, n_positive=len(pos),
        n_negative=len(neg), trained_at=datetime.now(UTC),
        train_ms=(time.perf_counter() - started) * 1000.0,
    )  # fmt: skip
