"""A fitted signal: the trained parameters of one spec version, bound to one embedder."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict

from signals.spec import SignalSpec

__all__ = ["FittedSignal"]


class FittedSignal(BaseModel):
    """Everything needed to score embeddings, and how good the signal was when trained.

    Logistic: ``probability = sigmoid(embedding · weights + bias)``. MLP: the embedding first
    goes through one ReLU layer, ``h = relu(embedding · hidden_weights + hidden_bias)``, and
    ``weights``/``bias`` apply to ``h``. An event is flagged when the probability reaches
    ``threshold``. ``metrics`` are stratified k-fold estimates.

    The text kinds (``pattern``, ``pii``; :mod:`signals.matchers`) have no weights: their score
    is the matcher's, ``embedder_id`` names the matcher (``regex``, ``presidio-2.2.366``), and
    ``metrics`` are their precision and recall on the spec's examples, when it has some.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    spec: SignalSpec
    version: int
    embedder_id: str
    kind: Literal["few_shot", "zero_shot", "pattern", "pii"]
    weights: tuple[float, ...]
    bias: float
    hidden_weights: tuple[tuple[float, ...], ...] = ()  # (dim, hidden) for the MLP classifier
    hidden_bias: tuple[float, ...] = ()
    threshold: float
    metrics: dict[str, float]
    n_positive: int
    n_negative: int
    trained_at: datetime
    train_ms: float
    degenerate: bool = False  # kept with --force although judged useless (signals.verdict)
    degenerate_reason: str = ""

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def field(self) -> str:
        return self.spec.field

    @property
    def is_mlp(self) -> bool:
        return bool(self.hidden_bias)

    @property
    def reads_text(self) -> bool:
        """Whether the signal scores the text itself rather than its embedding."""
        return self.spec.reads_text

    def usable_with(self, embedder_ids: Mapping[str, str]) -> bool:
        """Whether this version can score under these field embedders (text kinds always can)."""
        return self.reads_text or self.embedder_id == embedder_ids.get(self.field)
