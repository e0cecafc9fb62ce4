"""Embedders and quality signals. Knows nothing of Kafka or ClickHouse.

Heavy dependencies (torch, open_clip, scikit-learn) are imported where they are used.
"""

from __future__ import annotations

from signals.bank import FieldScores, SignalBank
from signals.base import Embedder, Modality, Target, TextEmbedder
from signals.cache import EmbeddingCache, LruVectorCache
from signals.embedders import FieldEmbedders
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
from signals.live import LiveSignals
from signals.open_clip_embedder import EmbedderConfig, OpenClipEmbedder
from signals.spec import Examples, SignalSpec, load_spec, parse_spec
from signals.store import InMemorySignalStore, SignalStore
from signals.text_embedder import SentenceEmbedder, TextEmbedderConfig
from signals.training import fit_signal, train_signal
from signals.verdict import Verdict, judge
from signals.windows import Windows

__all__ = [
    "DuplicateSignal",
    "Embedder",
    "EmbedderConfig",
    "EmbedderError",
    "EmbedderMismatch",
    "EmbeddingCache",
    "Examples",
    "FieldEmbedders",
    "FieldScores",
    "FittedSignal",
    "ImageError",
    "ImagePolicy",
    "InMemorySignalStore",
    "LiveSignals",
    "LruVectorCache",
    "Modality",
    "OpenClipEmbedder",
    "SentenceEmbedder",
    "SignalBank",
    "SignalError",
    "SignalSpec",
    "SignalStore",
    "SpecError",
    "Target",
    "TextEmbedder",
    "TextEmbedderConfig",
    "TrainingError",
    "Verdict",
    "Windows",
    "fit_signal",
    "judge",
    "load_image",
    "load_spec",
    "parse_spec",
    "train_signal",
]
