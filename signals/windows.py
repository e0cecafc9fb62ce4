"""Window embeddings of long texts, and what is kept of them.

A text longer than a model's context is cut into overlapping token windows and each window is
embedded. :class:`Windows` holds the vectors of a batch of texts in one ``(total, dim)`` array
with offsets, so the pipeline runs one model call over every window of a batch and a signal
bank scores every window in one matrix product.

What is stored, and why
-----------------------
* ``embeddings.vector`` is the *document vector*: the L2-normalised mean of the text's window
  vectors (for a text of one window, that window's vector). Drift tests, nearest neighbours,
  clustering and labelling suggestions compare whole texts, and a mean keeps every part of a
  long answer in view at the size of one vector.
* ``embeddings.windows`` holds the window vectors themselves, only when there is more than one
  (a short text would store its vector twice). A signal's score for a field is the *maximum*
  over windows, because a failure anywhere in an answer is a failure of the answer; back-fill
  and stored examples read these windows, so neither needs to re-embed anything.

Which windows
-------------
The text embedder's default windows are *sentences* (:func:`split_sentences`,
:func:`sentence_units`), not fixed token spans. The failures signals look for are local (a
stock pick, a dose, an e-mail address, one injected instruction, an apology): in a 256-token
window such a sentence is a tenth of a mean-pooled vector, in its own window it is all of it.
Measured on ``bench/data/chat_eval.jsonl`` (8+8 examples, MiniLM, same classifier): see
``bench/signals.py`` and the README; held-out F1 rose on every failure mode. Sentences shorter
than a few tokens ("Sure.", "Good question.") are joined to the next one, because on their own
they are pure style and, with eight examples, one that happens to open only the positives is
taken for the failure.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from numpy.typing import NDArray

__all__ = ["Windows", "document_vectors", "sentence_units", "split_sentences", "split_windows"]

# A sentence ends at . ! ? (or …) followed by closing quotes/brackets and white space, or at a
# line break; the punctuation and quotes stay with the sentence they end.
_SENTENCE_END = re.compile(r"[.!?\u2026]+[\"'\u201d\u2019)\]]*\s+|\n\s*")


@dataclass(frozen=True)
class Windows:
    """The window vectors of ``n`` texts: text ``i`` owns ``vectors[offsets[i]:offsets[i+1]]``."""

    vectors: NDArray[np.float32]  # (total windows, dim), unit rows
    offsets: NDArray[np.int64]  # (n + 1,), offsets[0] == 0, non-decreasing

    def __post_init__(self) -> None:
        if self.offsets.ndim != 1 or len(self.offsets) == 0 or self.offsets[0] != 0:
            raise ValueError("offsets must be a 1-D array starting at 0")
        if int(self.offsets[-1]) != len(self.vectors):
            raise ValueError("offsets must end at the number of window vectors")
        if len(self.offsets) > 1 and np.any(np.diff(self.offsets) < 1):
            raise ValueError("every text needs at least one window")

    def __len__(self) -> int:
        return len(self.offsets) - 1

    @property
    def dim(self) -> int:
        return int(self.vectors.shape[1])

    @classmethod
    def single(cls, vectors: NDArray[np.float32]) -> Windows:
        """One window per text (images, short texts, vectors given precomputed)."""
        vectors = np.asarray(vectors, dtype=np.float32)
        if len(vectors):  # an empty batch keeps its (0, dim) shape; reshape cannot infer it
            vectors = vectors.reshape(len(vectors), -1)
        return cls(vectors, np.arange(len(vectors) + 1, dtype=np.int64))

    @classmethod
    def of(cls, groups: Sequence[NDArray[np.float32]], dim: int) -> Windows:
        """Concatenate per-text window matrices (each ``(k, dim)``, or a ``(dim,)`` vector)."""
        mats = [np.asarray(g, dtype=np.float32).reshape(-1, dim) for g in groups]
        sizes = [len(m) for m in mats]
        offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
        vectors = np.concatenate(mats) if mats else np.zeros((0, dim), dtype=np.float32)
        return cls(np.ascontiguousarray(vectors, dtype=np.float32), offsets)

    def counts(self) -> NDArray[np.int64]:
        return np.diff(self.offsets)

    def group(self, i: int) -> NDArray[np.float32]:
        return self.vectors[self.offsets[i] : self.offsets[i + 1]]

    def groups(self) -> list[NDArray[np.float32]]:
        return [self.group(i) for i in range(len(self))]

    def documents(self) -> NDArray[np.float32]:
        """One unit vector per text: the normalised mean of its windows."""
        if not len(self):
            return np.zeros((0, self.dim), dtype=np.float32)
        return document_vectors(self.vectors, self.offsets)

    def max_per_text(self, values: NDArray[Any]) -> NDArray[Any]:
        """Row-wise maximum of per-window ``values`` (total × k) within each text: (n × k)."""
        if not len(self):
            return np.zeros((0, *values.shape[1:]), dtype=values.dtype)
        return np.maximum.reduceat(values, self.offsets[:-1], axis=0)

    def take(self, index: Sequence[int]) -> Windows:
        """The windows of the texts at ``index``, in that order."""
        return Windows.of([self.group(i) for i in index], self.dim)


def document_vectors(
    vectors: NDArray[np.float32], offsets: NDArray[np.int64]
) -> NDArray[np.float32]:
    sums = np.add.reduceat(vectors.astype(np.float64), offsets[:-1], axis=0)
    norms = np.maximum(np.linalg.norm(sums, axis=1, keepdims=True), 1e-12)
    return np.ascontiguousarray(sums / norms, dtype=np.float32)


def split_windows(ids: Sequence[int], size: int, stride: int) -> list[list[int]]:
    """Token ids cut into windows of ``size`` starting every ``stride`` tokens.

    The last window ends at the last token (so it may overlap its neighbour more than the
    others): no text is cut short and no window is a short tail.

    >>> split_windows(list(range(10)), size=4, stride=3)
    [[0, 1, 2, 3], [3, 4, 5, 6], [6, 7, 8, 9]]
    """
    if size < 1 or not 0 < stride <= size:
        raise ValueError("need size >= 1 and 0 < stride <= size")
    if len(ids) <= size:
        return [list(ids)]
    starts = list(range(0, len(ids) - size, stride))
    starts.append(len(ids) - size)
    return [list(ids[s : s + size]) for s in starts]


def split_sentences(text: str) -> list[str]:
    """The sentences of ``text`` (stripped, in order); a text without any is one piece.

    Punctuation inside numbers ("3.5 mg") or addresses ("a@b.com") is followed by no space and
    splits nothing; an abbreviation ("e.g. this") may split, and the short piece is then joined
    to its neighbour by :func:`sentence_units`.

    >>> split_sentences('Sure. Take 3.5 mg daily!\\nSay "hi." Then stop')
    ['Sure.', 'Take 3.5 mg daily!', 'Say "hi."', 'Then stop']
    """
    pieces: list[str] = []
    start = 0
    for match in _SENTENCE_END.finditer(text):
        piece = text[start : match.end()].strip()
        if piece:
            pieces.append(piece)
        start = match.end()
    tail = text[start:].strip()
    if tail:
        pieces.append(tail)
    return pieces or [text]


def sentence_units(
    sentences: Sequence[Sequence[int]], min_tokens: int, size: int, stride: int
) -> list[list[int]]:
    """Token ids of consecutive sentences → the windows a text is embedded as.

    A sentence of fewer than ``min_tokens`` tokens is joined to the next one (the last to the
    one before it); a unit longer than ``size`` is cut by :func:`split_windows`. Every token
    lands in some window, and the windows follow the text's order.

    >>> sentence_units([[1], [2, 3, 4], [5, 6, 7, 8, 9, 10], [11]], 3, size=4, stride=2)
    [[1, 2, 3, 4], [5, 6, 7, 8], [7, 8, 9, 10], [8, 9, 10, 11]]
    """
    if min_tokens < 0:
        raise ValueError("min_tokens must be >= 0")
    units: list[list[int]] = []
    carry: list[int] = []
    for sentence in sentences:
        carry = [*carry, *sentence]
        if len(carry) >= min_tokens:
            units.append(carry)
            carry = []
    if units and carry:
        units[-1] = [*units[-1], *carry]
    elif not units:
        units.append(carry)  # a text of one short sentence, or empty: one window
    return [window for unit in units for window in split_windows(unit, size, stride)]
