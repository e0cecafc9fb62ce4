"""Guardrail scoring: one event in, every signal's score and a verdict out, micro-batched.

This is the framework-free core of ``telltale serve`` (the HTTP layer lives in
:mod:`telltale.serve`). Three parts:

* :class:`Scorer` scores a *batch* of events synchronously: one embedder call per field for the
  whole batch, then every signal at once through the same :class:`~signals.bank.SignalBank` the
  worker uses (and the same live registry, so hot reload applies here too). Texts are embedded
  exactly as the pipeline embeds them (:func:`streams.pipeline.embed_field`: windows for long
  texts, a signal's score is its maximum over windows, the optional embedding cache first).
* :class:`MicroBatcher` turns concurrent single requests into such batches: the first request
  waits at most ``max_wait_s`` for others to join (up to ``max_batch``), and while the model
  runs new requests queue up for the next call. Under load the batch grows by itself; a lone
  request pays at most ``max_wait_s``.
* :func:`verdict_of` maps flags to a verdict through each signal's spec ``action``: any flagged
  ``block`` signal blocks, else any flagged ``flag`` signal flags, else the event passes
  (``log`` signals are scored and recorded, never acted on).

Scored events keep their vectors, so recording them (``record=true``) embeds nothing twice: a
:data:`Recorder` writes them to storage through :class:`~streams.pipeline.Pipeline` with the
vectors as ``precomputed``, or sends them to Kafka with an ``embeddings`` member the worker uses.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Generic, Literal, TypeVar

import numpy as np

from signals import (
    CacheCounts,
    EmbeddingCache,
    FieldEmbedders,
    ImageError,
    ImagePolicy,
    Match,
    as_field_embedders,
    load_image,
)
from streams.events import GenerationEvent, encode_event
from streams.pipeline import FIELD_CONTENT, embed_field

if TYPE_CHECKING:
    from numpy.typing import NDArray
    from PIL import Image

    from signals import Embedder, SignalBank
    from streams.emitter import Emitter
    from streams.pipeline import Pipeline

__all__ = [
    "BatchStats",
    "GuardrailClosed",
    "MicroBatcher",
    "Recorder",
    "Rejected",
    "ScoreRequest",
    "Scored",
    "Scorer",
    "SignalResult",
    "Verdict",
    "envelope",
    "kafka_recorder",
    "storage_recorder",
    "verdict_of",
]

log = logging.getLogger(__name__)

Verdict = Literal["block", "flag", "pass"]
Action = Literal["block", "flag", "log"]

_I = TypeVar("_I")
_R = TypeVar("_R")


class GuardrailClosed(RuntimeError):
    """The batcher is stopping and takes no new requests."""


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
    verdict: Verdict
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


def verdict_of(results: Sequence[SignalResult]) -> Verdict:
    """``block`` if a flagged signal's action is block, else ``flag`` if one's is flag."""
    actions = {r.action for r in results if r.flagged}
    if "block" in actions:
        return "block"
    if "flag" in actions:
        return "flag"
    return "pass"


class Scorer:
    """Scores batches of events: one model call per field, every signal in one product.

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
        """Score ``requests`` in order; an item whose image does not load comes back Rejected."""
        bank = self._bank()
        self.signal_count = len(bank)
        images: dict[int, Image.Image] = {}  # by position: event ids may repeat within a batch
        rejected: dict[int, str] = {}
        needed: dict[str, list[int]] = {}
        for i, request in enumerate(requests):
            for name, content in FIELD_CONTENT.items():
                if content(request.event) and (request.record or name in bank.fields):
                    needed.setdefault(name, []).append(i)
            if i in needed.get("output.image", []):
                try:
                    image = load_image(request.event.output.image or "", self._image_policy)
                    images[i] = image
                except ImageError as exc:
                    rejected[i] = f"output.image: {exc}"
        vectors: dict[int, dict[str, NDArray[np.float32]]] = {i: {} for i in range(len(requests))}
        results: dict[int, list[SignalResult]] = {i: [] for i in range(len(requests))}
        for name, owners in needed.items():
            owners = [i for i in owners if i not in rejected]
            if not owners:
                continue
            pictures = [images.get(i) for i in owners]
            windows, _ = embed_field(
                self._embedders, self.cache, name, [requests[i].event for i in owners], pictures
            )
            for row, i in enumerate(owners):
                vectors[i][name] = windows.group(row)
            scored = bank.score_windows(name, windows)
            for j, signal in enumerate(scored.signals):
                for row, i in enumerate(owners):
                    results[i].append(SignalResult(
                        signal.name, signal.version, name, float(scored.probabilities[row, j]),
                        bool(scored.flagged[row, j]), signal.spec.action,
                    ))  # fmt: skip
        for name in bank.text_fields:  # pattern and PII kinds: the text, with matched spans
            content = FIELD_CONTENT[name]
            owners = [i for i, r in enumerate(requests) if content(r.event) and i not in rejected]
            texts = bank.score_texts(name, [content(requests[i].event) or "" for i in owners])
            for j, signal in enumerate(texts.signals):
                for row, i in enumerate(owners):
                    results[i].append(SignalResult(
                        signal.name, signal.version, name, float(texts.probabilities[row, j]),
                        bool(texts.flagged[row, j]), signal.spec.action, texts.matches[row][j],
                    ))  # fmt: skip
        out: list[Scored | Rejected] = []
        for i, request in enumerate(requests):
            if i in rejected:
                out.append(Rejected(request.event, rejected[i]))
                continue
            found = tuple(results[i])
            out.append(Scored(
                request.event, found, verdict_of(found), self._embedders.id,
                vectors[i] if request.record else {},
            ))  # fmt: skip
        return out

    def cache_counts(self) -> CacheCounts:
        """What the cache has saved so far (zeros without a cache)."""
        return self.cache.totals if self.cache is not None else CacheCounts()


Recorder = Callable[[Sequence[Scored]], None]
"""Stores scored events (with their vectors) so guardrail traffic is monitored too."""


def storage_recorder(pipeline: Pipeline) -> Recorder:
    """Write straight to storage (embedded mode): the pipeline reuses the scored vectors.

    Idempotent on ``event_id`` like every pipeline write. The pipeline must use the scorer's
    embedder (the vectors are stored under its id).
    """

    def record(scored: Sequence[Scored]) -> None:
        if not scored:
            return
        precomputed = {s.event.event_id: s.precomputed() for s in scored}
        result = pipeline.process([s.event for s in scored], precomputed)
        if result.rejected:
            reasons = "; ".join(f"{e.event_id}: {reason}" for e, reason in result.rejected)
            raise ValueError(f"not stored: {reasons}")

    return record


def kafka_recorder(emitter: Emitter) -> Recorder:
    """Send to the worker's topic; the payload carries the vectors under ``embeddings``
    (``{"embedder_id": ..., "output.text": [...]}``), which a worker on the same embedder uses
    instead of embedding the event again."""

    def record(scored: Sequence[Scored]) -> None:
        for s in scored:
            emitter.emit_raw(envelope(s), key=s.event.event_id)
        emitter.flush()

    return record


def envelope(scored: Scored) -> bytes:
    """The event's wire form plus its vectors under ``embeddings``."""
    document = json.loads(encode_event(scored.event))
    document["embeddings"] = {"embedder_id": scored.embedder_id, **scored.precomputed()}
    return json.dumps(document, separators=(",", ":")).encode()


@dataclass
class _Pending(Generic[_I, _R]):
    item: _I
    future: asyncio.Future[_R]


@dataclass
class BatchStats:
    """What the batcher has done: read by metrics."""

    batches: int = 0
    items: int = 0
    last_size: int = 0
    last_seconds: float = 0.0


class MicroBatcher(Generic[_I, _R]):
    """Collects concurrent :meth:`submit` calls into batches for one synchronous function.

    ``run`` receives a list of items and returns one result per item, in order; it runs on
    ``executor`` (off the event loop; give it one thread, the model runs one batch at a time).
    ``max_batch=1`` turns batching off. ``on_batch(size, seconds)`` is called after each batch.
    """

    def __init__(
        self,
        run: Callable[[list[_I]], list[_R]],
        executor: Executor,
        *,
        max_batch: int = 64,
        max_wait_s: float = 0.005,
        on_batch: Callable[[int, float], None] | None = None,
    ) -> None:
        if max_batch < 1:
            raise ValueError("max_batch must be at least 1")
        if max_wait_s < 0:
            raise ValueError("max_wait_s must not be negative")
        self._run = run
        self._executor = executor
        self._max_batch = max_batch
        self._max_wait_s = max_wait_s
        self._on_batch = on_batch
        self._queue: asyncio.Queue[_Pending[_I, _R]] | None = None
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        self.stats = BatchStats()

    def start(self) -> None:
        """Start the batching task on the running loop."""
        self._queue = asyncio.Queue()
        self._task = asyncio.get_running_loop().create_task(self._loop())

    async def submit(self, item: _I) -> _R:
        """Queue ``item``; return its result once its batch ran (its exception, if it failed)."""
        if self._closed or self._queue is None:
            raise GuardrailClosed("the scorer is not accepting requests")
        future: asyncio.Future[_R] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait(_Pending(item, future))
        return await future

    async def stop(self) -> None:
        """Take no new items; finish every queued one, then end the batching task."""
        self._closed = True
        if self._queue is None or self._task is None:
            return
        await self._queue.join()
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task

    async def _loop(self) -> None:
        assert self._queue is not None
        queue = self._queue
        loop = asyncio.get_running_loop()
        while True:
            batch = [await queue.get()]
            deadline = loop.time() + self._max_wait_s
            while len(batch) < self._max_batch:
                if not queue.empty():
                    batch.append(queue.get_nowait())
                    continue
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                try:
                    batch.append(await asyncio.wait_for(queue.get(), remaining))
                except TimeoutError:
                    break
            await self._execute(batch)
            for _ in batch:
                queue.task_done()

    async def _execute(self, batch: list[_Pending[_I, _R]]) -> None:
        loop = asyncio.get_running_loop()
        started = time.perf_counter()
        try:
            results = await loop.run_in_executor(self._executor, self._run,
                                                 [p.item for p in batch])  # fmt: skip
            if len(results) != len(batch):
                raise RuntimeError(f"batch of {len(batch)} gave {len(results)} results")
        except Exception as exc:
            log.warning("guardrail batch of %d failed: %s: %s", len(batch),
                        type(exc).__name__, exc)  # fmt: skip
            for pending in batch:
                if not pending.future.done():
                    pending.future.set_exception(exc)
            return
        finally:
            seconds = time.perf_counter() - started
            self.stats.batches += 1
            self.stats.items += len(batch)
            self.stats.last_size, self.stats.last_seconds = len(batch), seconds
            if self._on_batch is not None:
                self._on_batch(len(batch), seconds)
        for pending, result in zip(batch, results, strict=True):
            if not pending.future.done():  # a client that went away cancelled its future
                pending.future.set_result(result)
