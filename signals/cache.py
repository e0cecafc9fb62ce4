"""The embedding cache: content hash → window vectors, so repeated content skips the model.

Chat traffic repeats itself: system prompts, templates, retries, the same question asked by
many users, the same product image in many generations. :class:`EmbeddingCache` sits between
the pipeline and an embedder and answers, for each text or image of a batch, from (1) the batch
itself (content repeated inside the batch is embedded once), (2) an in-process
:class:`LruVectorCache`, (3) an optional shared store (a ClickHouse table,
``storage.embedding_cache``, shared by every worker), and only then (4) the model, in one call
for everything still missing. The key is a hash of the embedder id, the field and the content
(:func:`content_key`, :func:`image_key`): a vector is only ever reused for the same model,
windowing and field. :class:`CacheCounts` says where each batch's vectors came from.

Images are keyed by their *decoded pixels* (mode, size, RGB bytes), not by their reference: a
URL can serve new content tomorrow, so a URL key would return yesterday's vector for today's
image. The pixels are exactly what the model sees, so the same picture behind two URLs (or
inline as base64) hits, and any changed pixel misses. The image is still fetched and decoded;
the cache saves the model call, which is the expensive part (tens of milliseconds per image on
a CPU, against about a millisecond to hash a megapixel).

>>> cache = EmbeddingCache(LruVectorCache(10_000))  # doctest: +SKIP
>>> windows, counts = cache.embed_windows(embedder, "prompt.text", texts)  # doctest: +SKIP
>>> vectors, counts = cache.embed_images(clip, "output.image", images)  # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import logging
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Protocol, TypeVar

import numpy as np

from signals.windows import Windows

if TYPE_CHECKING:
    from numpy.typing import NDArray
    from PIL import Image

    from signals.base import Embedder, TextEmbedder

__all__ = [
    "CacheCounts",
    "EmbeddingCache",
    "LruVectorCache",
    "SharedVectorStore",
    "content_key",
    "image_key",
]

log = logging.getLogger(__name__)

_T = TypeVar("_T")


def content_key(embedder_id: str, field: str, content: str) -> str:
    """A stable hash of what determines a vector: embedder, field and content."""
    digest = hashlib.sha256()
    for part in (embedder_id, field, content):
        data = part.encode("utf-8", "surrogatepass")
        digest.update(len(data).to_bytes(8, "big"))  # length-prefixed: no ambiguous joins
        digest.update(data)
    return digest.hexdigest()[:40]


def image_key(embedder_id: str, field: str, image: Image.Image) -> str:
    """The key of an image's vector: embedder, field and a hash of the decoded pixels.

    Mode and size are hashed with the pixel bytes, so two images whose raw bytes happen to
    agree but whose shapes differ (a 2x6 and a 3x4 image) never share a key.
    """
    pixels = hashlib.sha256()
    pixels.update(f"{image.mode}:{image.width}x{image.height}:".encode())
    pixels.update(image.tobytes())
    return content_key(embedder_id, field, f"image:{pixels.hexdigest()}")


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

    def __contains__(self, key: object) -> bool:
        """Whether ``key`` is held (without making it recently used)."""
        return key in self._items

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
    """Texts (or images) that needed a vector, and where the vectors came from."""

    lookups: int = 0
    batch_repeats: int = 0  # the same content earlier in the batch
    memory_hits: int = 0
    shared_hits: int = 0
    model_texts: int = 0  # texts or images the model embedded (the stats table's column name)

    def add(self, other: CacheCounts) -> None:
        for f in fields(self):
            setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))

    @property
    def saved(self) -> int:
        """Texts or images that did not reach the model."""
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

    def remembers(self, embedder_id: str, field: str, text: str) -> bool:
        """Whether memory holds the windows of ``text`` (a peek: counts nothing, moves
        nothing; what the worker leaves out of the texts it embeds ahead)."""
        return content_key(embedder_id, field, text) in self.memory

    def embed_windows(
        self, embedder: TextEmbedder, field: str, texts: Sequence[str]
    ) -> tuple[Windows, CacheCounts]:
        """The windows of ``texts`` as ``embedder.embed_windows`` would return them."""
        keys = [content_key(embedder.id, field, t) for t in texts]

        def compute(items: list[str]) -> list[NDArray[np.float32]]:
            return embedder.embed_windows(items).groups()

        return self._answer(embedder.id, embedder.dim, field, keys, texts, compute)

    def embed_images(
        self, embedder: Embedder, field: str, images: Sequence[Image.Image]
    ) -> tuple[Windows, CacheCounts]:
        """One window per image, as ``embedder.embed_images`` would return it.

        Keyed by :func:`image_key` (the decoded pixels), so a repeated picture reaches the
        model once whatever reference it came from.
        """
        keys = [image_key(embedder.id, field, image) for image in images]

        def compute(items: list[Image.Image]) -> list[NDArray[np.float32]]:
            return Windows.single(embedder.embed_images(items)).groups()

        return self._answer(embedder.id, embedder.dim, field, keys, images, compute)

    def _answer(
        self,
        embedder_id: str,
        dim: int,
        field: str,
        keys: Sequence[str],
        items: Sequence[_T],
        compute: Callable[[list[_T]], list[NDArray[np.float32]]],
    ) -> tuple[Windows, CacheCounts]:
        """Windows for ``items`` by ``keys``: batch, memory, shared store, then ``compute``."""
        counts = CacheCounts(lookups=len(items))
        first: dict[str, _T] = {}
        for key, item in zip(keys, items, strict=True):
            first.setdefault(key, item)
        counts.batch_repeats = len(items) - len(first)
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
            computed = compute([first[k] for k in missing])
            counts.model_texts = len(missing)
            fresh = dict(zip(missing, computed, strict=True))
            for key, matrix in fresh.items():
                matrix = np.ascontiguousarray(matrix)
                found[key] = matrix
                self.memory.put(key, matrix)
            if self.shared is not None:
                try:
                    self.shared.put_many({k: m.tolist() for k, m in fresh.items()},
                                         embedder_id=embedder_id, field=field)  # fmt: skip
                except Exception as exc:
                    log.warning("shared embedding cache unavailable for inserts: %s", exc)
        self.totals.add(counts)
        return Windows.of([found[k] for k in keys], dim), counts
