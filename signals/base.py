"""The interfaces of the signals package: embedders and signals.

An *embedder* maps texts and images into one shared space (open_clip). A *text embedder* maps
texts only (a sentence-embedding model), and cuts long texts into windows. Which one serves each
embedding field is decided by :class:`~signals.embedders.FieldEmbedders`.

A *signal* is split in two, as in lilac and evidently: a frozen, serialisable
:class:`~signals.spec.SignalSpec` (what the failure mode is) and a
:class:`~signals.fitted.FittedSignal` (weights, threshold, metrics, the embedder it was trained
on). Scoring only ever touches fitted signals.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Literal, Protocol, runtime_checkable

if TYPE_CHECKING:
    import numpy as np
    from numpy.typing import NDArray
    from PIL import Image

    from signals.windows import Windows

__all__ = ["Embedder", "Modality", "Target", "TextEmbedder"]

Target = Literal["prompt", "output"]
Modality = Literal["text", "image"]


@runtime_checkable
class Embedder(Protocol):
    """Maps text and images into one L2-normalised embedding space."""

    @property
    def id(self) -> str:
        """Stable identity of model + weights; stored with every embedding and fitted signal."""
        ...

    @property
    def dim(self) -> int: ...

    def embed_texts(self, texts: Sequence[str]) -> NDArray[np.float32]:
        """Return an ``(n, dim)`` float32 array of unit vectors."""
        ...

    def embed_images(self, images: Sequence[Image.Image]) -> NDArray[np.float32]:
        """Return an ``(n, dim)`` float32 array of unit vectors."""
        ...


@runtime_checkable
class TextEmbedder(Protocol):
    """Maps texts to unit vectors, window by window for texts longer than its context."""

    @property
    def id(self) -> str: ...

    @property
    def dim(self) -> int: ...

    def embed_texts(self, texts: Sequence[str]) -> NDArray[np.float32]:
        """One unit vector per text (the document vector; see :mod:`signals.windows`)."""
        ...

    def embed_windows(self, texts: Sequence[str]) -> Windows:
        """The unit vectors of every window of every text."""
        ...
