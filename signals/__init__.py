"""Embedders and quality signals. Knows nothing of Kafka or ClickHouse.

Heavy dependencies (torch, open_clip, scikit-learn) are imported where they are used.
"""

from __future__ import annotations

from signals.bank import FieldScores, SignalBank
from signals.base import Embedder, Modality, Target
from signals.errors import (
    DuplicateSignal,
    EmbedderError,
    EmbedderMismatch,
    ImageError,
    SignalError,
    SpecError,
    TrainingError,
)
from signals.fitted import FittedSignal
from signals.images import ImagePolicy, load_image
from signals.open_clip_embedder import EmbedderConfig, OpenClipEmbedder
from signals.registry import SignalRegistry
from signals.spec import Examples, SignalSpec, load_spec, parse_spec
from signals.training import fit_signal, train_signal

__all__ = [
    "DuplicateSignal",
    "Embedder",
    "EmbedderConfig",
    "EmbedderError",
    "EmbedderMismatch",
    "Examples",
    "FieldScores",
    "FittedSignal",
    "ImageError",
    "ImagePolicy",
    "Modality",
    "OpenClipEmbedder",
    "SignalBank",
    "SignalError",
    "SignalRegistry",
    "SignalSpec",
    "SpecError",
    "Target",
    "TrainingError",
    "fit_signal",
    "load_image",
    "load_spec",
    "parse_spec",
    "train_signal",
]
