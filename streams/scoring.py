"""Scoring: events in, window vectors and every signal's scores out, the one path the worker's
pipeline and the guardrail API share.

:func:`score_fields` embeds each field of a batch once (:func:`embed_field`: windows for long
texts, the optional embedding cache first, vectors the event already carries when they fit) and
applies the :class:`~signals.bank.SignalBank` to it: the embedding signals (a signal's score is
its maximum over windows) and the text kinds (``pattern``, ``pii``, with the matched spans).
:class:`~streams.pipeline.Pipeline` turns the result into stored rows; :class:`Scorer` turns it
into one :class:`Scored` per request with the guardrail's decision
(:func:`signals.actions.guardrail_decision`), keeping the vectors of the events to be recorded
so that storing them embeds nothing twice (:mod:`streams.recording`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from signals import (
    FIELDS,
    Action,
    CacheCounts,
    EmbeddingCache,
    FieldEmbedders,
    GuardrailDecision,
    ImageError,
    ImagePolicy,
    Match,
    TextScores,
    Windows,
    as_field_embedders,
    guardrail_decision,
    load_image,
)
from streams.events import GenerationEvent

if TYPE_CHECKING:
    from numpy.typing import NDArray
    from PIL import Image

    from signals import Embedder, FieldScores, SignalBank

__all__ = [
    "FieldScoring",
    "Rejected",
    "ScoreRequest",
    "Scored",
    "Scorer",
    "SignalResult",
    "embed_field",
    "load_event_image",
    "score_fields",
]

_CONTENT: dict[str, Callable[[GenerationEvent], str | None]] = {
    "prompt.text": lambda e: e.prompt.text,
    "output.text": lambda e: e.output.text,
    "output.image": lambda e: e.output.image,
}
"""Where each embedding field's content is in an event (the fields of ``signals.FIELDS``)."""
assert tuple(_CONTENT) == FIELDS, "every embedded field needs its content accessor"


def load_event_image(event: GenerationEvent, policy: ImagePolicy) -> Image.Image | str:
    """The event's decoded ``output.image``, or the reason it did not load (which both paths
    report: a dead letter in the worker, a 422 in the API)."""
    try:
        return load_image(event.output.image or "", policy)
    except ImageError as exc:
        return f"output.image: {exc}"


@dataclass(frozen=True)
class FieldScoring:
    """One field of a batch: its window vectors and what every signal on it said.

    ``owners`` are the positions (in the batch given to :func:`score_fields`) of the events
    embedded for this field, in order, and the rows of ``windows`` and ``embedded``;
    ``text_owners`` are the rows of ``texts`` (the text kinds, when some signal reads the text).
    """

    name: str
    owners: tuple[int, ...]
    windows: Windows | None
    counts: CacheCounts | None
    embedded: FieldScores | None
    text_owners: tuple[int, ...] = ()
    texts: TextScores | None = None


def score_fields(
    embedders: FieldEmbedders,
    cache: EmbeddingCache | None,
    bank: SignalBank,
    events: Sequence[GenerationEvent],
    images: Mapping[int, Image.Image],
    *,
    keep_vectors: Callable[[int], bool] = lambda _: True,
    given: Mapping[str, Mapping[str, Sequence[Any]]] | None = None,
) -> list[FieldScoring]:
    """Embed and score every field of ``events`` that has content, field by field.

    A field is embedded for the events that have it when a signal reads its vectors, or when
    ``keep_vectors(position)`` (the pipeline stores every vector; the API keeps those it
    records). ``images`` holds the decoded image of each event with one, by position;
    ``given`` carries precomputed vectors (see :func:`embed_field`).
    """
    out = []
    for name, content in _CONTENT.items():
        with_content = [i for i, event in enumerate(events) if content(event)]
        if not with_content:
            continue
        owners = tuple(i for i in with_content if name in bank.fields or keep_vectors(i))
        windows, counts, embedded = None, None, None
        if owners:
            pictures = [images.get(i) for i in owners]
            windows, counts = embed_field(
                embedders, cache, name, [events[i] for i in owners], pictures, given
            )
            embedded = bank.score_windows(name, windows)
        texts = None
        if name in bank.text_fields:
            texts = bank.score_texts(name, [content(events[i]) or "" for i in with_content])
        text_owners = tuple(with_content) if texts is not None else ()
        out.append(FieldScoring(name, owners, windows, counts, embedded, text_owners, texts))
    return out


def embed_field(
    embedders: FieldEmbedders,
    cache: EmbeddingCache | None,
    name: str,
    owners: Sequence[GenerationEvent],
    images: Sequence[Image.Image | None],
    given: Mapping[str, Mapping[str, Sequence[Any]]] | None = None,
) -> tuple[Windows, CacheCounts | None]:
    """Window vectors of field ``name`` for ``owners``, the one way every path embeds.

    A vector in ``given`` (by event id, then field) is used instead of the model when it has
    the field embedder's size: one flat vector is one window, a list of vectors is the windows
    themselves (what the guardrail API records). ``images`` holds one decoded image per owner,
    by position (not by event id: two requests of one micro-batch may carry the same id). Texts
    and images go through ``cache`` when there is one (images keyed by their decoded pixels).
    """
    dim = embedders.for_field(name).dim
    groups: list[NDArray[np.float32]] = [np.zeros((1, dim), dtype=np.float32)] * len(owners)
    missing = []
    for i, event in enumerate(owners):
        carried = _carried_windows((given or {}).get(event.event_id, {}).get(name), dim)
        if carried is None:
            missing.append(i)  # absent, or not this embedder's shape: the model embeds it
        else:
            groups[i] = carried
    counts: CacheCounts | None = None
    if missing:
        if name == "output.image":
            pictures = [_present(images[i], owners[i]) for i in missing]
            if cache is not None:  # keyed by decoded pixels: the fetch happened, the model may not
                computed, counts = cache.embed_images(embedders.image, name, pictures)
            else:
                computed = Windows.single(embedders.image.embed_images(pictures))
        else:
            texts = [_CONTENT[name](owners[i]) or "" for i in missing]
            if cache is not None:
                computed, counts = cache.embed_windows(embedders.text, name, texts)
            else:
                computed = embedders.text.embed_windows(texts)
        for i, group in zip(missing, computed.groups(), strict=True):
            groups[i] = group
    return Windows.of(groups, dim), counts


def _present(image: Image.Image | None, event: GenerationEvent) -> Image.Image:
    if image is None:
        raise ValueError(f"event {event.event_id}: output.image was not loaded")
    return image


def _carried_windows(vector: Sequence[Any] | None, dim: int) -> NDArray[np.float32] | None:
    """A carried vector (or list of window vectors) as a windows matrix, if it has ``dim``."""
    if vector is None or not len(vector):
        return None
    try:
        matrix = np.asarray(vector, dtype=np.float32)
    except (TypeError, ValueError):  # ragged or not numbers
        return None
    if matrix.ndim == 1:
        matrix = matrix.reshape(1, -1)
    if matrix.ndim != 2 or matrix.shape[1] != dim or not np.isfinite(matrix).all():
        return None
    return matrix


# --- the guardrail API's side: one result per request, with a decision ----------------------


@dataclass(frozen=True)
class SignalResult:
    """One signal applied to one event."""

    name: str
    version: int
    field: str
    score: float
    flagged: bool
    action: Action
    matches: tuple[Match, ...] = ()
    """For the text kinds (``pattern``, ``pii``): the spans of the field's text that matched."""


@dataclass(frozen=True)
class ScoreRequest:
    """An event to score; ``record`` asks for its vectors too (every field, not only those a
    signal reads), so it can be stored without embedding it again."""

    event: GenerationEvent
    record: bool = False


@dataclass(frozen=True)
class Scored:
    event: GenerationEvent
    signals: tuple[SignalResult, ...]
    verdict: GuardrailDecision
    embedder_id: str
    vectors: Mapping[str, NDArray[np.float32]] = field(default_factory=dict)
    """Per field, the window vectors (one row per window; one row for images and short texts)."""
    recorded: bool = False
    record_error: str = ""

    def precomputed(self) -> dict[str, list[list[float]]]:
        """The vectors as :meth:`Pipeline.process` takes them (``{"output.text": [[...]]}``)."""
        return {name: vector.tolist() for name, vector in self.vectors.items()}


@dataclass(frozen=True)
class Rejected:
    """An event that could not be scored (its image did not load); ``reason`` says why."""

    event: GenerationEvent
    reason: str


class Scorer:
    """Scores batches of requests: one model call per field, every signal in one product.

    ``bank`` is called once per batch (a :class:`~signals.live.LiveSignals` re-reads
    the registry on its own schedule), exactly as :class:`~streams.pipeline.Pipeline` does.
    ``cache`` counts what it saved in ``cache.totals``.
    """

    def __init__(
        self,
        embedder: Embedder | FieldEmbedders,
        bank: Callable[[], SignalBank],
        image_policy: ImagePolicy | None = None,
        cache: EmbeddingCache | None = None,
    ) -> None:
        self._embedders = as_field_embedders(embedder)
        self._bank = bank
        self._image_policy = image_policy or ImagePolicy()
        self.cache = cache
        self.signal_count = 0

    @property
    def embedder_id(self) -> str:
        return self._embedders.id

    def signals(self) -> SignalBank:
        """The bank the next batch will use (also loads it: readiness)."""
        bank = self._bank()
        self.signal_count = len(bank)
        return bank

    def score(self, requests: Sequence[ScoreRequest]) -> list[Scored | Rejected]:
        """Score ``requests`` in order; an item whose image does not load comes back Rejected.

        Each request's signals come in order: the embedding signals field by field, then the
        text kinds.
        """
        bank = self.signals()
        images: dict[int, Image.Image] = {}  # by position: event ids may repeat within a batch
        rejected: dict[int, str] = {}
        for i, request in enumerate(requests):
            if request.event.output.image and (request.record or "output.image" in bank.fields):
                loaded = load_event_image(request.event, self._image_policy)
                if isinstance(loaded, str):
                    rejected[i] = loaded
                else:
                    images[i] = loaded
        kept = [i for i in range(len(requests)) if i not in rejected]  # position of each row
        fields = score_fields(
            self._embedders, self.cache, bank, [requests[i].event for i in kept],
            {row: images[i] for row, i in enumerate(kept) if i in images},
            keep_vectors=lambda row: requests[kept[row]].record,
        )  # fmt: skip
        vectors: dict[int, dict[str, NDArray[np.float32]]] = {i: {} for i in kept}
        results: dict[int, list[SignalResult]] = {i: [] for i in kept}
        for scored in fields:
            if scored.windows is not None:
                for row, owner in enumerate(scored.owners):
                    vectors[kept[owner]][scored.name] = scored.windows.group(row)
            if scored.embedded is not None:
                _collect(results, scored.name, scored.embedded, [kept[o] for o in scored.owners])
        by_name = {scored.name: scored for scored in fields}
        for name in bank.text_fields:  # the text kinds after every embedding signal, as ever
            text_scored = by_name.get(name)
            if text_scored is not None and text_scored.texts is not None:
                owners = [kept[o] for o in text_scored.text_owners]
                _collect(results, name, text_scored.texts, owners)
        out: list[Scored | Rejected] = []
        for i, request in enumerate(requests):
            if i in rejected:
                out.append(Rejected(request.event, rejected[i]))
                continue
            found = tuple(results[i])
            out.append(Scored(
                request.event, found, guardrail_decision(found), self._embedders.id,
                vectors[i] if request.record else {},
            ))  # fmt: skip
        return out

    def cache_counts(self) -> CacheCounts:
        """What the cache has saved so far (zeros without a cache)."""
        return self.cache.totals if self.cache is not None else CacheCounts()


def _collect(
    results: dict[int, list[SignalResult]],
    name: str,
    scored: FieldScores | TextScores,
    positions: Sequence[int],
) -> None:
    """Append each signal's result of ``scored`` (rows: ``positions``) to its request's list."""
    matches = scored.matches if isinstance(scored, TextScores) else None
    for j, signal in enumerate(scored.signals):
        for row, i in enumerate(positions):
            results[i].append(SignalResult(
                signal.name, signal.version, name, float(scored.probabilities[row, j]),
                bool(scored.flagged[row, j]), signal.spec.action,
                matches[row][j] if matches is not None else (),
            ))  # fmt: skip
