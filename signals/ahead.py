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
stored, one the sampler leaves out after all, one the shared embedding cache would have
answered) cost model time and nothing else. The last ``keep_jobs`` jobs are kept (the batch in
hand and the one taken ahead), so a batch bisected after a database refusal still finds its
texts, and a text that a kept job holds is not queued again.

>>> ahead = EmbedAhead(SentenceEmbedder(config))  # doctest: +SKIP
>>> ahead.submit(["texts of the next batch", ...])  # doctest: +SKIP
>>> ahead.embed_windows(["texts of the next batch", ...])  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections import deque
from collections.abc import Sequence
from concurrent.futures import Future, InvalidStateError, ThreadPoolExecutor
from typing import TYPE_CHECKING

import numpy as np

from signals.windows import Windows

if TYPE_CHECKING:
    from numpy.typing import NDArray

    from signals.base import TextEmbedder

__all__ = ["EmbedAhead"]

log = logging.getLogger(__name__)


class _Job:
    """One batch's texts embedded ahead: their windows once ``done`` is resolved (an empty
    dict when the job failed or was cancelled: its texts are then embedded when asked for)."""

    def __init__(self, texts: Sequence[str]) -> None:
        self.texts = frozenset(texts)
        self.done: Future[dict[str, NDArray[np.float32]]] = Future()
        self.task: Future[None] | None = None

    def resolve(self, windows: dict[str, NDArray[np.float32]]) -> None:
        """Resolve ``done`` once; later calls (a cancelled job's thread finishing) do nothing."""
        with contextlib.suppress(InvalidStateError):
            self.done.set_result(windows)


class EmbedAhead:
    """A text embedder that can embed texts before they are asked for (see the module).

    Same ``id`` and ``dim`` as ``inner``, so stored vectors and fitted signals cannot tell
    the difference. :meth:`submit` queues texts for the model on this embedder's own thread
    and returns at once; :meth:`embed_windows` and :meth:`embed_texts` answer from finished
    jobs, wait for a running job only for texts no earlier job holds, and embed the rest
    through ``inner``. ``queued`` and ``answered`` count texts sent ahead and texts answered
    from a job (the worker's ``/metrics``).

    The ahead thread runs the text model while the caller's thread may run the image model:
    on a GPU both hold activations at once.
    """

    def __init__(self, inner: TextEmbedder, keep_jobs: int = 2) -> None:
        if keep_jobs < 1:
            raise ValueError("keep_jobs must be at least 1")
        self.inner = inner
        self._jobs: deque[_Job] = deque(maxlen=keep_jobs)
        self._lock = threading.Lock()
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="telltale-ahead")
        self.queued = 0
        self.answered = 0

    @property
    def id(self) -> str:
        return self.inner.id

    @property
    def dim(self) -> int:
        return self.inner.dim

    def submit(self, texts: Sequence[str]) -> int:
        """Embed ``texts`` ahead, on this embedder's thread; return at once with the number
        of texts queued (those a kept job already holds are not queued again)."""
        with self._lock:
            staying = list(self._jobs)[len(self._jobs) == self._jobs.maxlen :]  # after append
            held = frozenset().union(*(job.texts for job in staying))
            unique = [t for t in dict.fromkeys(texts) if t and t not in held]
            if not unique:
                return 0
            job = _Job(unique)
            try:
                job.task = self._thread.submit(self._run, job, unique)
            except RuntimeError:  # closed: the texts are embedded when asked for
                return 0
            self._jobs.append(job)
            self.queued += len(unique)
        return len(unique)

    def _run(self, job: _Job, texts: list[str]) -> None:
        windows: dict[str, NDArray[np.float32]] = {}
        try:
            groups = self.inner.embed_windows(texts).groups()
            windows = {t: np.ascontiguousarray(g) for t, g in zip(texts, groups, strict=True)}
        except BaseException as exc:  # the texts are embedded when asked for; the batch decides
            log.warning("embedding %d texts ahead failed (embedded when needed): %s",
                        len(texts), exc)  # fmt: skip
            windows = {}
            if not isinstance(exc, Exception):
                raise
        finally:
            job.resolve(windows)  # always: a waiter must never hang on a job that died

    def embed_texts(self, texts: Sequence[str]) -> NDArray[np.float32]:
        return self.embed_windows(texts).documents()

    def embed_windows(self, texts: Sequence[str]) -> Windows:
        """The windows of ``texts``, as ``inner.embed_windows`` would return them."""
        found = self._ahead(texts)
        missing = [t for t in dict.fromkeys(texts) if t not in found]
        self.answered += sum(1 for t in texts if t in found)
        if missing:
            found.update(zip(missing, self.inner.embed_windows(missing).groups(), strict=True))
        return Windows.of([found[t] for t in texts], self.dim)

    def _ahead(self, texts: Sequence[str]) -> dict[str, NDArray[np.float32]]:
        """What the jobs ahead hold of ``texts``, oldest job first, waiting for a job only for
        texts no earlier job answered."""
        wanted = set(texts)
        with self._lock:
            jobs = [job for job in self._jobs if job.texts & wanted]
        found: dict[str, NDArray[np.float32]] = {}
        for job in jobs:
            needed = (job.texts & wanted).difference(found)
            if not needed:
                continue
            windows = job.done.result()
            found.update((t, windows[t]) for t in needed if t in windows)
        return found

    def close(self) -> None:
        """Drop the jobs not started (their texts are embedded when asked for) and stop the
        thread after the running one, without waiting for it (the worker's shutdown)."""
        self._thread.shutdown(wait=False, cancel_futures=True)
        with self._lock:
            for job in self._jobs:
                if job.task is not None and job.task.cancelled():
                    job.resolve({})
