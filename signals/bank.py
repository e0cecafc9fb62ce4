"""Apply every signal at once: one matrix product per embedding field.

All fitted signals that read the same field (``output.text`` say) are stacked into one weight
matrix ``W`` (signals × dim) and bias vector, so scoring a batch of ``n`` embeddings against
``S`` signals is a single ``(n × dim) · (dim × S)`` product, whatever ``S`` is.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from signals.errors import EmbedderMismatch
from signals.fitted import FittedSignal

if TYPE_CHECKING:
    from numpy.typing import NDArray

__all__ = ["FieldScores", "SignalBank"]


@dataclass(frozen=True)
class FieldScores:
    """Scores of one field's signals: ``probabilities[i, j]`` is event i under ``signals[j]``."""

    signals: tuple[FittedSignal, ...]
    probabilities: NDArray[np.float32]
    flagged: NDArray[np.bool_]


@dataclass(frozen=True)
class _Stack:
    signals: tuple[FittedSignal, ...]
    weights: NDArray[np.float32]  # (dim, S)
    bias: NDArray[np.float32]  # (S,)
    thresholds: NDArray[np.float32]  # (S,)


class SignalBank:
    """An immutable, stacked set of fitted signals bound to one embedder."""

    def __init__(self, signals: Sequence[FittedSignal], embedder_id: str) -> None:
        for signal in signals:
            if signal.embedder_id != embedder_id:
                raise EmbedderMismatch(
                    f"signal {signal.name!r} v{signal.version} was trained on "
                    f"{signal.embedder_id}, not {embedder_id}; retrain it"
                )
        self.embedder_id = embedder_id
        self.signals = tuple(signals)
        by_field: dict[str, list[FittedSignal]] = {}
        for signal in self.signals:
            by_field.setdefault(signal.field, []).append(signal)
        self._stacks = {
            name: _Stack(
                signals=tuple(group),
                weights=np.array([s.weights for s in group], dtype=np.float32).T.copy(),
                bias=np.array([s.bias for s in group], dtype=np.float32),
                thresholds=np.array([s.threshold for s in group], dtype=np.float32),
            )
            for name, group in by_field.items()
        }

    @property
    def fields(self) -> tuple[str, ...]:
        """The embedding fields some signal reads; the pipeline embeds only these (and prompts)."""
        return tuple(self._stacks)

    def __len__(self) -> int:
        return len(self.signals)

    def score(self, field: str, embeddings: NDArray[np.float32]) -> FieldScores:
        """Score ``embeddings`` (n × dim) with every signal on ``field``."""
        stack = self._stacks.get(field)
        if stack is None:
            empty = np.zeros((len(embeddings), 0), dtype=np.float32)
            return FieldScores((), empty, empty.astype(bool))
        logits = embeddings @ stack.weights + stack.bias
        probabilities = (1.0 / (1.0 + np.exp(-np.clip(logits, -60, 60)))).astype(np.float32)
        return FieldScores(stack.signals, probabilities, probabilities >= stack.thresholds)
