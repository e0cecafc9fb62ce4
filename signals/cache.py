"""The embedding cache: content hash → window vectors, so repeated texts skip the model.

Chat traffic repeats itself: system prompts, templates, retries, the same question asked by
many users. :class:`EmbeddingCache` sits between the pipeline and a text embedder and answers,
for each text of a batch, from (1) the batch itself (a text repeated inside the batch is
embedded once), (2) an in-process :class:`LruVectorCache`, (3) an optional shared store (a
ClickHouse table, ``storage.embedding_cache``, shared by every worker), and only then (4) the
model, in one call for all texts still missing. The key is a hash of the embedder id, the
field and the content (:func:`content_key`): a vector is only ever reused for the same model,
windowing and field. :class:`CacheCounts` says where each batch's vectors came from.

>>> cache = EmbeddingCache(LruVectorCache(10_000))  # doctest: +SKIP
>>> windows, counts = cache.embed_windows(embedder, "prompt.text", texts)  # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import logging
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Protocol

import numpy as np

from signals.windows import Windows

if TYPE_CHECKING:
    from numpy.typing import NDArray

    from signals.base import TextEmbedder

__all__ = ["CacheCounts", "EmbeddingCache", "LruVectorCache", "SharedVectorStore", "content_key"]

log = logging.getLogger(__name__)


def content_key(embedder_id: str, field: str, content: str) -> str:
    """A stable hash of what determines a vector: embedder, field and content."""
    digest = hashlib.sha256()
    for part in (embedder_id, field, content):
        data = part.encode("utf-8", "surrogatepass")
        digest.update(len(data).to_bytes(8, "big"))  # length-prefixed: no ambiguous joins
        digest.update(data)
    return digest.hexdigest()[:40]


class SharedVectorStore(Protocol):
    """A store shared by workers (``storage.embedding_cache.ClickHouseVectorCache``).

    Either method may raise when the store is unreachable; the cache then carries on without it.
    """

    def get_many(self, keys: Sequence[str]) -> Mapping[str, Sequence[Sequence[float]]]: ...

    def put_many(
        self, items: Mapping[str, Sequence[Sequence[float]]], *, embedder_id: str, field: str
    ) -> None: ...


class LruVectorCache:
    """At most ``max_entries`` window matrices, least recently used evicted first."""

    def __init__(self, max_entries: int = 20_000) -> None:
        if max_entries < 0:
            raise ValueError("max_entries must be >= 0")
        self.max_entries = max_entries
        self._items: OrderedDict[str, NDArray[np.float32]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._items)

    def get(self, key: str) -> NDArray[np.float32] | None:
        value = self._items.get(key)
        if value is not None:
            self._items.move_to_end(key)
        return value

    def put(self, key: str, windows: NDArray[np.float32]) -> None:
        if self.max_entries == 0:
            return
        self._items[key] = windows
        self._items.move_to_end(key)
        while len(self._items) > self.max_entries:
            self._items.popitem(last=False)


@dataclass
class CacheCounts:
    """Texts that needed a vector, and where the vectors came from."""

    lookups: int = 0
    batch_repeats: int = 0  # the same text earlier in the batch
    memory_hits: int = 0
    shared_hits: int = 0
    model_texts: int = 0  # texts the model embedded

    def add(self, other: CacheCounts) -> None:
        for f in fields(self):
            setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))

    @property
    def saved(self) -> int:
        """Texts that did not reach the model."""
        return self.lookups - self.model_texts

    @property
    def hit_rate(self) -> float:
        return self.saved / self.lookups if self.lookups else 0.0


class EmbeddingCache:
    """Window vectors by content, from the batch, memory, a shared store, then the model.

    Not thread-safe: one per pipeline (the pipeline runs one batch at a time).
    """

    def __init__(
        self, memory: LruVectorCache | None = None, shared: SharedVectorStore | None = None
    ) -> None:
        self.memory = memory if memory is not None else LruVectorCache()
        self.shared = shared
        self.totals = CacheCounts()

    def embed_windows(
        self, embedder: TextEmbedder, field: str, texts: Sequence[str]
    ) -> tuple[Windows, CacheCounts]:
        """The windows of ``texts`` as ``embedder.embed_windows`` would return them."""
        counts = CacheCounts(lookups=len(texts))
        keys = [content_key(embedder.id, field, t) for t in texts]
        first: dict[str, str] = {}
        for key, text in zip(keys, texts, strict=True):
            first.setdefault(key, text)
        counts.batch_repeats = len(texts) - len(first)
        found: dict[str, NDArray[np.float32]] = {}
        for key in first:
            hit = self.memory.get(key)
            if hit is not None:
                found[key] = hit
        counts.memory_hits = len(found)
        missing = [k for k in first if k not in found]
        if missing and self.shared is not None:
            try:
                shared = self.shared.get_many(missing)
            except Exception as exc:  # a cache outage costs model time, never the batch
                log.warning("shared embedding cache unavailable for lookups: %s", exc)
                shared = {}
            for key, windows in shared.items():
                if key in first and key not in found and len(windows):
                    matrix = np.asarray(windows, dtype=np.float32).reshape(len(windows), -1)
                    found[key] = matrix
                    self.memory.put(key, matrix)
                    counts.shared_hits += 1
            missing = [k for k in missing if k not in found]
        if missing:
            computed = embedder.embed_windows([first[k] for k in missing])
            counts.model_texts = len(missing)
            fresh = dict(zip(missing, computed.groups(), strict=True))
            for key, matrix in fresh.items():
                matrix = np.ascontiguousarray(matrix)
                found[key] = matrix
                self.memory.put(key, matrix)
            if self.shared is not None:
                try:
                    self.shared.put_many({k: m.tolist() for k, m in fresh.items()},
                                         embedder_id=embedder.id, field=field)  # fmt: skip
                except Exception as exc:
                    log.warning("shared embedding cache unavailable for inserts: %s", exc)
        self.totals.add(counts)
        return Windows.of([found[k] for k in keys], embedder.dim), counts
