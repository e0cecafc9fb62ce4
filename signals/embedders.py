"""Which embedder serves which embedding field.

Text fields (``prompt.text``, ``output.text``) use a text embedder: a sentence-embedding model
(:class:`~signals.text_embedder.SentenceEmbedder`) or, when configured so, CLIP's text tower.
``output.image`` uses open_clip. A zero-shot query is embedded by the embedder of the field it
scores: the text model for text fields, CLIP's text tower for images (the only text encoder
that shares the image space). Every stored vector and fitted signal records its field's id.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from signals.base import Embedder, TextEmbedder
from signals.errors import EmbedderError

if TYPE_CHECKING:
    import numpy as np
    from numpy.typing import NDArray

    from signals.windows import Windows

__all__ = ["FIELDS", "TEXT_FIELDS", "FieldEmbedders", "as_field_embedders", "ids_by_field"]

TEXT_FIELDS = ("prompt.text", "output.text")
FIELDS = (*TEXT_FIELDS, "output.image")


class FieldEmbedders:
    """The embedder of each field: ``text`` for text fields, ``image`` (open_clip) for images.

    ``text`` defaults to ``image`` (CLIP's text tower for everything, the former behaviour).
    """

    def __init__(self, image: Embedder, text: TextEmbedder | None = None) -> None:
        self.image = image
        self.text: TextEmbedder = text if text is not None else _ClipText(image)

    def for_field(self, field: str) -> TextEmbedder | Embedder:
        if field in TEXT_FIELDS:
            return self.text
        if field == "output.image":
            return self.image
        raise EmbedderError(f"unknown embedding field {field!r}; known: {', '.join(FIELDS)}")

    def id_for(self, field: str) -> str:
        return self.for_field(field).id

    @property
    def ids(self) -> dict[str, str]:
        return {field: self.id_for(field) for field in FIELDS}

    @property
    def id(self) -> str:
        """One label for an event row: the single id, or ``text=...|image=...``."""
        text, image = self.text.id, self.image.id
        return text if text == image else f"text={text}|image={image}"

    def embed_query(self, field: str, query: str) -> NDArray[np.float32]:
        """A zero-shot query's vector in ``field``'s space."""
        embedded: NDArray[np.float32] = self.for_field(field).embed_texts([query])[0]
        return embedded


class _ClipText:
    """open_clip's text tower seen as a :class:`TextEmbedder` (one truncated window per text)."""

    def __init__(self, clip: Embedder) -> None:
        self._clip = clip

    @property
    def id(self) -> str:
        return self._clip.id

    @property
    def dim(self) -> int:
        return self._clip.dim

    def embed_texts(self, texts: Sequence[str]) -> NDArray[np.float32]:
        return self._clip.embed_texts(texts)

    def embed_windows(self, texts: Sequence[str]) -> Windows:
        from signals.windows import Windows

        return Windows.single(self._clip.embed_texts(texts))


def as_field_embedders(embedder: Embedder | FieldEmbedders) -> FieldEmbedders:
    """Accept one open_clip embedder (every field in CLIP space) where field embedders go."""
    if isinstance(embedder, FieldEmbedders):
        return embedder
    text = embedder if isinstance(embedder, TextEmbedder) else None
    return FieldEmbedders(embedder, text)


def ids_by_field(embedder_ids: str | Mapping[str, str]) -> dict[str, str]:
    """Field → embedder id, from one id for every field or a mapping."""
    if isinstance(embedder_ids, str):
        return dict.fromkeys(FIELDS, embedder_ids)
    return dict(embedder_ids)
