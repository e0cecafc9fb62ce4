"""The open_clip embedder: text and images in one CLIP space, batched, on a configurable device.

Weights come from open_clip's pretrained tag (downloaded on first use), from a local checkpoint
file, or, for tests and offline use, from a seeded random initialisation. The id records which,
so signals trained on one set of weights are never applied to another.

``image_backend="onnx"`` runs the image tower with ONNX Runtime (:mod:`signals.onnx_image`:
exported from the loaded tower on first use, cached in ``image_onnx_cache_dir`` by a digest of
its weights and config, fp32 or int8 weights per ``image_onnx_weights``); preprocessing is the
same torch/PIL code, and the text tower stays on torch. The id records the backend, so signals
fitted on one backend's vectors are retrained on a switch.

>>> embedder = OpenClipEmbedder(model_name="telltale-tiny", seed=0)  # doctest: +SKIP
>>> embedder.embed_texts(["hello"]).shape  # doctest: +SKIP
(1, 128)
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator

from signals._digest import file_digest
from signals._torchvision_fix import import_torchvision
from signals.errors import EmbedderError
from signals.onnx_image import ImageOnnxWeights, OnnxImageModel, tower_digest
from signals.windows import Windows

if TYPE_CHECKING:
    from numpy.typing import NDArray
    from PIL import Image

__all__ = ["BUNDLED_CONFIGS", "EmbedderConfig", "LazyOpenClipEmbedder", "OpenClipEmbedder"]

log = logging.getLogger(__name__)

_INIT_LOCK = threading.Lock()

BUNDLED_CONFIGS = Path(__file__).parent / "model_configs"
"""Model configs shipped with telltale (``telltale-tiny``: a 4-layer, width-256 test model)."""


class EmbedderConfig(BaseModel):
    """Which open_clip model and weights, where it runs, and in what batches.

    The ``image_*`` fields choose how the image tower runs: torch (the default: ONNX Runtime
    measured too small a gain to pay for a retrain, docs/signals/embedders.md, "Backends") or
    ONNX Runtime. A plain model (no environment): :mod:`telltale.settings` binds it to
    ``TELLTALE_EMBEDDER_*``, and the ``image_*`` fields to ``TELLTALE_IMAGE_EMBEDDER_*``.
    """

    model_config = ConfigDict(frozen=True)

    model_name: str = "ViT-B-32"
    pretrained: str | None = Field(
        default="laion2b_s34b_b79k",
        description="open_clip pretrained tag; empty or 'none' for seeded random weights",
    )
    checkpoint_path: str | None = None
    device: str = "cpu"
    threads: int | None = None
    batch_size: int = Field(default=64, ge=1)
    seed: int = 0
    quantize: bool = False
    image_backend: Literal["torch", "onnx"] = Field(
        default="torch",
        description="how the image tower runs: torch or ONNX Runtime over a local export of "
        "the tower (cpu only; docs/signals/embedders.md, Backends)",
    )
    image_onnx_weights: ImageOnnxWeights = Field(
        default="fp32", description="with image_backend=onnx: fp32 or int8 (per channel)"
    )
    image_onnx_cache_dir: Path | None = Field(
        default=None, description="exported ONNX models (default ~/.cache/telltale/onnx)"
    )

    @field_validator("pretrained", "checkpoint_path", mode="before")
    @classmethod
    def _empty_is_none(cls, value: object) -> object:
        if isinstance(value, str) and value.strip().lower() in ("", "none", "random"):
            return None
        return value


class OpenClipEmbedder:
    """An :class:`~signals.base.Embedder` backed by open_clip."""

    def __init__(self, config: EmbedderConfig | None = None, **overrides: Any) -> None:
        cfg = config or EmbedderConfig()
        if overrides:
            cfg = EmbedderConfig.model_validate({**cfg.model_dump(), **overrides})
        self.config = cfg
        _check_onnx(cfg)
        torch, open_clip = _import_backends()
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        open_clip.add_model_config(BUNDLED_CONFIGS)
        if cfg.model_name not in open_clip.list_models():
            raise EmbedderError(f"unknown open_clip model {cfg.model_name!r}")
        weights: str | None = cfg.checkpoint_path or cfg.pretrained
        try:
            # Random weights must be identical in every process (a signal trained in the CLI is
            # applied by the worker), so initialisation runs seeded, serialised, and on a forked
            # RNG that leaves the caller's random state alone.
            with _INIT_LOCK, torch.random.fork_rng(devices=[]):
                torch.manual_seed(cfg.seed)
                model, _, preprocess = open_clip.create_model_and_transforms(
                    cfg.model_name, pretrained=weights, device=cfg.device
                )
        except Exception as exc:
            raise EmbedderError(
                f"cannot load open_clip {cfg.model_name} with weights {weights!r}: {exc}"
            ) from exc
        model.eval()
        self._onnx = _onnx_tower(cfg, model, open_clip) if cfg.image_backend == "onnx" else None
        if cfg.quantize:
            model = torch.ao.quantization.quantize_dynamic(
                model, {torch.nn.Linear}, dtype=torch.qint8
            )
        self._torch = torch
        self._model = model
        self._preprocess = preprocess
        self._tokenizer = open_clip.get_tokenizer(cfg.model_name)
        self._dim = (
            int(model.text_projection.shape[1])
            if hasattr(model, "text_projection")
            else int(self.embed_texts(["x"]).shape[1])
        )
        self._id = _embedder_id(cfg)
        # torch releases the GIL but one model must not run two batches at once.
        self._lock = threading.Lock()

    @property
    def id(self) -> str:
        return self._id

    @property
    def dim(self) -> int:
        return self._dim

    def embed_texts(self, texts: Sequence[str]) -> NDArray[np.float32]:
        return self._run(list(texts), self._encode_texts)

    def embed_windows(self, texts: Sequence[str]) -> Windows:
        """One window per text: CLIP's tokenizer keeps the first 77 tokens and drops the rest."""
        return Windows.single(self.embed_texts(texts))

    def embed_images(self, images: Sequence[Image.Image]) -> NDArray[np.float32]:
        return self._run(list(images), self._encode_images)

    def _run(self, items: list[Any], encode: Any) -> NDArray[np.float32]:
        if not items:
            return np.zeros((0, getattr(self, "_dim", 0)), dtype=np.float32)
        parts = []
        with self._lock, self._torch.inference_mode():
            for start in range(0, len(items), self.config.batch_size):
                features = encode(items[start : start + self.config.batch_size])
                features = features / features.norm(dim=-1, keepdim=True).clamp_min(1e-12)
                parts.append(features.float().cpu().numpy())
        return np.ascontiguousarray(np.concatenate(parts), dtype=np.float32)

    def _encode_texts(self, texts: list[str]) -> Any:
        tokens = self._tokenizer(texts).to(self.config.device)
        return self._model.encode_text(tokens)

    def _encode_images(self, images: list[Image.Image]) -> Any:
        batch = self._torch.stack([self._preprocess(img) for img in images])
        if self._onnx is not None:
            return self._torch.from_numpy(self._onnx.features(batch.numpy()))
        return self._model.encode_image(batch.to(self.config.device))


class LazyOpenClipEmbedder:
    """An :class:`OpenClipEmbedder` built on first use.

    Its id follows from the configuration alone, so a command that only embeds text (training a
    text signal with ``telltale signals add``) records the image field's id without loading, or
    downloading, CLIP's weights. An error in those weights surfaces at the first image.
    """

    def __init__(self, config: EmbedderConfig) -> None:
        self.config = config
        self._id = _embedder_id(config)
        self._embedder: OpenClipEmbedder | None = None
        self._lock = threading.Lock()

    @property
    def loaded(self) -> bool:
        return self._embedder is not None

    @property
    def id(self) -> str:
        return self._id

    @property
    def dim(self) -> int:
        return self._get().dim

    def embed_texts(self, texts: Sequence[str]) -> NDArray[np.float32]:
        return self._get().embed_texts(texts)

    def embed_windows(self, texts: Sequence[str]) -> Windows:
        return self._get().embed_windows(texts)

    def embed_images(self, images: Sequence[Image.Image]) -> NDArray[np.float32]:
        return self._get().embed_images(images)

    def _get(self) -> OpenClipEmbedder:
        with self._lock:
            if self._embedder is None:
                self._embedder = OpenClipEmbedder(self.config)
            return self._embedder


def _check_onnx(cfg: EmbedderConfig) -> None:
    if cfg.image_backend != "onnx":
        return
    if cfg.device != "cpu":
        raise EmbedderError(f"image_backend=onnx runs on the cpu, not {cfg.device!r}")
    if cfg.quantize:
        raise EmbedderError(
            "quantize is torch's int8 and image_backend=onnx has its own: set "
            "image_onnx_weights=int8 instead of quantize"
        )


def _onnx_tower(cfg: EmbedderConfig, model: Any, open_clip: Any) -> OnnxImageModel:
    side = model.visual.image_size
    side = int(side[0] if isinstance(side, (tuple, list)) else side)
    digest = tower_digest(model.visual, open_clip.get_model_config(cfg.model_name))
    return OnnxImageModel(model.visual, cfg.model_name, digest, side,
                          weights=cfg.image_onnx_weights, cache_dir=cfg.image_onnx_cache_dir,
                          threads=cfg.threads)  # fmt: skip


def _embedder_id(cfg: EmbedderConfig) -> str:
    if cfg.checkpoint_path:
        digest = file_digest(Path(cfg.checkpoint_path))
        weights = f"checkpoint-{digest}"
    elif cfg.pretrained:
        weights = cfg.pretrained
    else:
        weights = f"random-seed{cfg.seed}"
    suffix = "+int8" if cfg.quantize else ""
    # torch: as before, so stored signals stay valid; onnx vectors are another embedder's.
    backend = f"/onnx-{cfg.image_onnx_weights}" if cfg.image_backend == "onnx" else ""
    return f"open_clip/{cfg.model_name}/{weights}{suffix}{backend}"


def _import_backends() -> tuple[Any, Any]:
    try:
        import torch

        import_torchvision()
        import open_clip
    except ImportError as exc:  # pragma: no cover - install problem
        raise EmbedderError(
            "the embedder needs torch and open_clip: pip install torch open_clip_torch"
        ) from exc
    return torch, open_clip
