"""Embedding ahead: the texts of the next batch are embedded while this batch is stored.

The Kafka worker takes batch k+1 from the broker while batch k is scored and written
(:mod:`streams.worker`). :class:`EmbedAhead` wraps the text embedder so that k+1's texts can go
to the model at once, on a thread of their own, instead of after k's rows are built and
written: the model, the expensive part, then runs back to back, and the work around it (the
already-stored lookup, scoring, row building, the database write) overlaps the next batch's
model call instead of adding to it.

It is a cache of model output keyed by the text itself, nothing more: :meth:`embed_windows`
answers a text embedded ahead with exactly what the model returned for it, waits for an ahead
job that is still embedding it, and sends every other text to the model as before. Nothing it
holds decides what is stored: a batch that is retried, bisected or redelivered is embedded
again for whatever the ahead jobs no longer hold, and an ahead job that fails only means those
texts are embedded when asked for. Texts embedded ahead but never asked for (an event already
stored, one the sampler leaves out after all) cost model time and nothing else. The last
``keep_jobs`` jobs are kept, so a batch bisected after a database refusal still finds its
texts.

>>> ahead = EmbedAhead(SentenceEmbedder(config))  # doctest: +SKIP
>>> ahead.submit(["texts of the next batch", ...])  # doctest: +SKIP
>>> ahead.embed_windows(["texts of the next batch", ...])  # doctest: +SKIP
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING

import numpy as np

from signals.windows import Windows

if TYPE_CHECKING:
    from numpy.typing import NDArray

    from signals.base import TextEmbedder

__all__ = ["EmbedAhead"]

log = logging.getLogger(__name__)


class _Job:
    """One batch's texts embedded ahead: their windows once ``done`` is resolved."""

    def __init__(self, texts: Sequence[str]) -> None:
        self.texts = frozenset(texts)
        self.done: Future[dict[str, NDArray[np.float32]]] = Future()


class EmbedAhead:
    """A text embedder that can embed texts before they are asked for (see the module).

    Same ``id`` and ``dim`` as ``inner``, so stored vectors and fitted signals cannot tell
    the difference. :meth:`submit` queues texts for the model on this embedder's own thread
    and returns at once; :meth:`embed_windows` and :meth:`embed_texts` answer from finished
    jobs, wait for running ones, and embed the rest through ``inner``.
    """

    def __init__(self, inner: TextEmbedder, keep_jobs: int = 4) -> None:
        if keep_jobs < 1:
            raise ValueError("keep_jobs must be at least 1")
        self.inner = inner
        self._jobs: deque[_Job] = deque(maxlen=keep_jobs)
        self._lock = threading.Lock()
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="telltale-ahead")
        self.answered = 0  # texts answered from a job ahead (for tests and the bench)

    @property
    def id(self) -> str:
        return self.inner.id

    @property
    def dim(self) -> int:
        return self.inner.dim

    def submit(self, texts: Sequence[str]) -> None:
        """Embed ``texts`` ahead, on this embedder's thread; return at once."""
        unique = [t for t in dict.fromkeys(texts) if t]
        if not unique:
            return
        job = _Job(unique)
        try:
            self._thread.submit(self._run, job, unique)
        except RuntimeError:  # closed: the texts are embedded when asked for
            return
        with self._lock:
            self._jobs.append(job)

    def _run(self, job: _Job, texts: list[str]) -> None:
        try:
            groups = self.inner.embed_windows(texts).groups()
        except Exception as exc:  # the texts are embedded when asked for; the batch decides
            log.warning("embedding %d texts ahead failed (embedded when needed): %s",
                        len(texts), exc)  # fmt: skip
            job.done.set_result({})
            return
        pairs = zip(texts, groups, strict=True)
        job.done.set_result({t: np.ascontiguousarray(g) for t, g in pairs})

    def embed_texts(self, texts: Sequence[str]) -> NDArray[np.float32]:
        return self.embed_windows(texts).documents()

    def embed_windows(self, texts: Sequence[str]) -> Windows:
        """The windows of ``texts``, as ``inner.embed_windows`` would return them."""
        found = self._ahead(texts)
        missing = [t for t in dict.fromkeys(texts) if t not in found]
        if missing:
            found.update(zip(missing, self.inner.embed_windows(missing).groups(), strict=True))
        self.answered += sum(1 for t in texts if t not in missing)
        return Windows.of([found[t] for t in texts], self.dim)

    def _ahead(self, texts: Sequence[str]) -> dict[str, NDArray[np.float32]]:
        """What the jobs ahead hold of ``texts``, waiting for those still embedding them."""
        wanted = set(texts)
        with self._lock:
            jobs = [job for job in self._jobs if job.texts & wanted]
        found: dict[str, NDArray[np.float32]] = {}
        for job in jobs:
            windows = job.done.result()
            found.update((t, windows[t]) for t in job.texts & wanted if t in windows)
        return found

    def close(self) -> None:
        """Stop the thread once the queued jobs are done."""
        self._thread.shutdown(wait=True)
