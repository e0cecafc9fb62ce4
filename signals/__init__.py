"""Embedders and quality signals. Knows nothing of Kafka or ClickHouse.

Heavy dependencies (torch, open_clip, scikit-learn) are imported where they are used.
"""

from __future__ import annotations

from signals.actions import Action, FlaggedAction, GuardrailDecision, guardrail_decision
from signals.ahead import EmbedAhead
from signals.audit import (
    NEAR_QUANTILE,
    CorrectedRate,
    ErrorEstimate,
    ErrorModel,
    ErrorShift,
    StratumCount,
    allocate,
    error_shift,
)
from signals.bank import FieldScores, SignalBank, TextScores
from signals.base import Embedder, Modality, Target, TextEmbedder
from signals.cache import CacheCounts, EmbeddingCache, LruVectorCache, content_key
from signals.discovery import discover_clusters
from signals.embedders import FIELDS, TEXT_FIELDS, FieldEmbedders, as_field_embedders
from signals.errors import (
    DuplicateSignal,
    EmbedderError,
    EmbedderMismatch,
    ImageError,
    SignalError,
    SpecError,
    TrainingError,
)
from signals.examples import StoredExamples, score_stored, stored_flag_share
from signals.fitted import FittedSignal
from signals.groups import GroupScore, SignalGroup, apply_groups, load_groups
from signals.images import DEFAULT_MAX_DECODED_PIXELS, ImagePolicy, load_image
from signals.labeling import suggest
from signals.live import LiveSignals, retrainer
from signals.llm_judge import Judge, JudgeAnswer, JudgeConfig, JudgeError, JudgeTally
from signals.matchers import PII_ENTITIES, Match
from signals.open_clip_embedder import EmbedderConfig, LazyOpenClipEmbedder, OpenClipEmbedder
from signals.published import PublishedSignal
from signals.redaction import DEFAULT_REDACTED_ENTITIES, Redactor
from signals.spec import EventRef, Examples, LabellingFunction, SignalSpec, load_spec, parse_spec
from signals.store import (
    InMemorySignalStore,
    RetrainOrigin,
    SignalStore,
    retrain_author,
    retrained_from_version,
)
from signals.text_embedder import SentenceEmbedder, TextEmbedderConfig
from signals.training import (
    BACKGROUND_WINDOWS,
    TrafficSample,
    embed_example_windows,
    fit_signal,
    train_signal,
)
from signals.verdict import Verdict, judge
from signals.weak import LabelModel, WeakExamples, apply_labelling_functions, majority_vote
from signals.weak_fit import LabelledPool, WeakPool, label_pool, train_weak_signal
from signals.windows import Windows

__all__ = [
    "BACKGROUND_WINDOWS",
    "DEFAULT_MAX_DECODED_PIXELS",
    "DEFAULT_REDACTED_ENTITIES",
    "FIELDS",
    "NEAR_QUANTILE",
    "PII_ENTITIES",
    "TEXT_FIELDS",
    "Action",
    "CacheCounts",
    "CorrectedRate",
    "DuplicateSignal",
    "EmbedAhead",
    "Embedder",
    "EmbedderConfig",
    "EmbedderError",
    "EmbedderMismatch",
    "EmbeddingCache",
    "ErrorEstimate",
    "ErrorModel",
    "ErrorShift",
    "EventRef",
    "Examples",
    "FieldEmbedders",
    "FieldScores",
    "FittedSignal",
    "FlaggedAction",
    "GroupScore",
    "GuardrailDecision",
    "ImageError",
    "ImagePolicy",
    "InMemorySignalStore",
    "Judge",
    "JudgeAnswer",
    "JudgeConfig",
    "JudgeError",
    "JudgeTally",
    "LabelModel",
    "LabelledPool",
    "LabellingFunction",
    "LazyOpenClipEmbedder",
    "LiveSignals",
    "LruVectorCache",
    "Match",
    "Modality",
    "OpenClipEmbedder",
    "PublishedSignal",
    "Redactor",
    "RetrainOrigin",
    "SentenceEmbedder",
    "SignalBank",
    "SignalError",
    "SignalGroup",
    "SignalSpec",
    "SignalStore",
    "SpecError",
    "StoredExamples",
    "StratumCount",
    "Target",
    "TextEmbedder",
    "TextEmbedderConfig",
    "TextScores",
    "TrafficSample",
    "TrainingError",
    "Verdict",
    "WeakExamples",
    "WeakPool",
    "Windows",
    "allocate",
    "apply_groups",
    "apply_labelling_functions",
    "as_field_embedders",
    "content_key",
    "discover_clusters",
    "embed_example_windows",
    "error_shift",
    "fit_signal",
    "guardrail_decision",
    "judge",
    "label_pool",
    "load_groups",
    "load_image",
    "load_spec",
    "majority_vote",
    "parse_spec",
    "retrain_author",
    "retrained_from_version",
    "retrainer",
    "score_stored",
    "stored_flag_share",
    "suggest",
    "train_signal",
    "train_weak_signal",
]
