"""Errors raised by the signals layer.

Hierarchy::

    SignalError
    ├── EmbedderError       the embedding model cannot be loaded or run
    ├── ImageError          an image reference cannot be loaded (bad base64, format, size, URL)
    ├── SpecError           a signal specification is invalid (names the offending field)
    ├── TrainingError       a signal cannot be trained (too few examples of a class, ...)
    ├── EmbedderMismatch    a fitted signal meets embeddings of another embedder
    └── DuplicateSignal     a registry already holds a signal of that name
"""

from __future__ import annotations

__all__ = [
    "DuplicateSignal",
    "EmbedderError",
    "EmbedderMismatch",
    "ImageError",
    "SignalError",
    "SpecError",
    "TrainingError",
]


class SignalError(Exception):
    """Root of every error raised by :mod:`signals`."""


class EmbedderError(SignalError):
    pass


class ImageError(SignalError):
    pass


class SpecError(SignalError):
    pass


class TrainingError(SignalError):
    pass


class EmbedderMismatch(SignalError):
    pass


class DuplicateSignal(SignalError):
    pass
