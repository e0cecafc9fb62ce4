"""Apply every signal at once: one matrix product per embedding field.

All logistic signals that read the same field (``output.text`` say) are stacked into one weight
matrix ``W`` (dim × signals) and bias vector, so scoring a batch of ``n`` embeddings against
``S`` signals is a single ``(n × dim) · (dim × S)`` product, whatever ``S`` is. MLP signals are
batched the same way: their hidden layers are concatenated into one ``(dim × S·h)`` matrix, and
their output layers form one block-diagonal ``(S·h × S)`` matrix.

Long texts arrive as several window vectors (:class:`~signals.windows.Windows`):
:meth:`SignalBank.score_windows` scores every window in the same product and keeps, per text and
signal, the highest probability, so a failure anywhere in an answer flags the answer.

Signals of the text kinds (``pattern``, ``pii``: :mod:`signals.matchers`) read the text, not a
vector: :meth:`SignalBank.score_texts` runs their matchers, one compiled matcher per signal
version, built when the bank is.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from signals.embedders import ids_by_field
from signals.errors import EmbedderMismatch
from signals.fitted import FittedSignal
from signals.matchers import Match, TextMatcher, score_of
from signals.text_kinds import matcher_for
from signals.windows import Windows

if TYPE_CHECKING:
    from numpy.typing import NDArray

__all__ = ["FieldScores", "SignalBank", "TextScores"]


@dataclass(frozen=True)
class FieldScores:
    """Scores of one field's signals: ``probabilities[i, j]`` is event i under ``signals[j]``."""

    signals: tuple[FittedSignal, ...]
    probabilities: NDArray[np.float32]
    flagged: NDArray[np.bool_]


@dataclass(frozen=True)
class TextScores(FieldScores):
    """Scores of one field's text-kind signals, with the spans each matched in each text:
    ``matches[i][j]`` are text i's matches under ``signals[j]``."""

    matches: tuple[tuple[tuple[Match, ...], ...], ...] = ()


@dataclass(frozen=True)
class _Stack:
    signals: tuple[FittedSignal, ...]  # logistic signals first, then MLP signals
    weights: NDArray[np.float32]  # (dim, S_linear)
    bias: NDArray[np.float32]  # (S_linear,)
    hidden: NDArray[np.float32]  # (dim, sum of hidden widths)
    hidden_bias: NDArray[np.float32]
    output: NDArray[np.float32]  # block-diagonal (sum of hidden widths, S_mlp)
    output_bias: NDArray[np.float32]  # (S_mlp,)
    thresholds: NDArray[np.float32]  # (S,)

    @classmethod
    def of(cls, group: list[FittedSignal], dim: int) -> _Stack:
        linear = [s for s in group if not s.is_mlp]
        mlp = [s for s in group if s.is_mlp]
        widths = [len(s.hidden_bias) for s in mlp]
        output = np.zeros((sum(widths), len(mlp)), dtype=np.float32)
        row = 0
        for j, (signal, width) in enumerate(zip(mlp, widths, strict=True)):
            output[row : row + width, j] = signal.weights
            row += width
        hidden = (
            np.concatenate([np.array(s.hidden_weights, dtype=np.float32) for s in mlp], axis=1)
            if mlp
            else np.zeros((dim, 0), dtype=np.float32)
        )
        ordered = (*linear, *mlp)
        return cls(
            signals=ordered,
            weights=np.array([s.weights for s in linear], dtype=np.float32).reshape(
                len(linear), dim).T.copy(),
            bias=np.array([s.bias for s in linear], dtype=np.float32),
            hidden=hidden,
            hidden_bias=np.concatenate(
                [np.array(s.hidden_bias, dtype=np.float32) for s in mlp]
            ) if mlp else np.zeros(0, dtype=np.float32),
            output=output,
            output_bias=np.array([s.bias for s in mlp], dtype=np.float32),
            thresholds=np.array([s.threshold for s in ordered], dtype=np.float32),
        )  # fmt: skip

    def logits(self, embeddings: NDArray[np.float32]) -> NDArray[np.float32]:
        linear = embeddings @ self.weights + self.bias
        if not self.output_bias.size:
            return linear
        hidden = np.maximum(embeddings @ self.hidden + self.hidden_bias, 0.0)
        return np.concatenate([linear, hidden @ self.output + self.output_bias], axis=1)


class SignalBank:
    """An immutable, stacked set of fitted signals bound to the embedder of each field.

    ``embedder_id`` is one id for every field, or a mapping field → id (text and image fields
    embedded by different models).
    """

    def __init__(
        self, signals: Sequence[FittedSignal], embedder_id: str | Mapping[str, str]
    ) -> None:
        ids = ids_by_field(embedder_id)
        for signal in signals:
            if not signal.usable_with(ids):
                raise EmbedderMismatch(
                    f"signal {signal.name!r} v{signal.version} was trained on "
                    f"{signal.embedder_id}, not {ids.get(signal.field)}; retrain it"
                )
        self.embedder_ids = ids
        self.signals = tuple(signals)
        by_field: dict[str, list[FittedSignal]] = {}
        matchers: dict[str, list[tuple[FittedSignal, TextMatcher]]] = {}
        for signal in self.signals:
            if signal.reads_text:
                matchers.setdefault(signal.field, []).append((signal, matcher_for(signal.spec)))
            else:
                by_field.setdefault(signal.field, []).append(signal)
        self._stacks = {
            name: _Stack.of(group, _input_dim(group[0])) for name, group in by_field.items()
        }
        self._matchers = {name: tuple(group) for name, group in matchers.items()}

    @property
    def fields(self) -> tuple[str, ...]:
        """The embedding fields some signal reads."""
        return tuple(self._stacks)

    @property
    def text_fields(self) -> tuple[str, ...]:
        """The fields some text-kind signal reads."""
        return tuple(self._matchers)

    def score_texts(self, field: str, texts: Sequence[str]) -> TextScores:
        """Score ``texts`` with every text-kind signal on ``field``, keeping the matched spans."""
        group = self._matchers.get(field, ())
        probabilities = np.zeros((len(texts), len(group)), dtype=np.float32)
        matches: list[tuple[tuple[Match, ...], ...]] = []
        for i, text in enumerate(texts):
            found = tuple(tuple(matcher.find(text or "")) for _, matcher in group)
            probabilities[i] = [score_of(m) for m in found]
            matches.append(found)
        thresholds = np.array([s.threshold for s, _ in group], dtype=np.float32)
        return TextScores(tuple(s for s, _ in group), probabilities,
                          probabilities >= thresholds, tuple(matches))  # fmt: skip

    def __len__(self) -> int:
        return len(self.signals)

    def score(self, field: str, embeddings: NDArray[np.float32]) -> FieldScores:
        """Score ``embeddings`` (n × dim) with every signal on ``field``."""
        stack = self._stacks.get(field)
        if stack is None:
            empty = np.zeros((len(embeddings), 0), dtype=np.float32)
            return FieldScores((), empty, empty.astype(bool))
        logits = stack.logits(embeddings)
        probabilities = (1.0 / (1.0 + np.exp(-np.clip(logits, -60, 60)))).astype(np.float32)
        return FieldScores(stack.signals, probabilities, probabilities >= stack.thresholds)

    def score_windows(self, field: str, windows: Windows) -> FieldScores:
        """Score texts given as windows: each signal's probability is the max over windows."""
        stack = self._stacks.get(field)
        if stack is None:
            empty = np.zeros((len(windows), 0), dtype=np.float32)
            return FieldScores((), empty, empty.astype(bool))
        per_window = self.score(field, windows.vectors).probabilities
        probabilities = windows.max_per_text(per_window)
        return FieldScores(stack.signals, probabilities, probabilities >= stack.thresholds)


def _input_dim(signal: FittedSignal) -> int:
    return len(signal.hidden_weights) if signal.is_mlp else len(signal.weights)
