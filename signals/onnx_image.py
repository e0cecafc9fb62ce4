"""open_clip's image tower run by ONNX Runtime: exported locally on first use, cached by digest.

:class:`OnnxImageModel` turns the loaded model's visual tower (``model.visual``, whatever its
weights: a pretrained tag, a checkpoint, a seeded random initialisation) into an ONNX graph
from preprocessed pixels to the projected image features, once, and keeps it in a cache folder;
nothing is downloaded. The steps (:mod:`signals.onnx_export`, shared with the text backend):

1. ``torch.onnx.export`` (the TorchScript exporter) of the tower with a dynamic batch axis;
2. the session's own graph optimisation (``ORT_ENABLE_ALL``); ORT's offline transformer
   optimiser does not recognise open_clip's attention and gained nothing when tried, so it is
   not run;
3. with ``weights="int8"``: dynamic quantisation of the weights to int8, per output channel.

The cached file's name carries the model's name and a digest of its open_clip config and of
every tensor of the tower (:func:`tower_digest`), the weights option, this module's export
format and the onnxruntime version, so other weights, another option or runtime export again.
Preprocessing and normalisation stay with the caller (:mod:`signals.open_clip_embedder`).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from signals.onnx_export import (
    cached_export,
    default_cache_dir,
    export_module,
    import_onnx,
    open_session,
    quantize_int8,
)

if TYPE_CHECKING:
    from numpy.typing import NDArray

__all__ = ["EXPORT_FORMAT", "ImageOnnxWeights", "OnnxImageModel", "tower_digest"]

ImageOnnxWeights = Literal["fp32", "int8"]

EXPORT_FORMAT = 1
"""Bumped whenever the export or the quantisation changes their output."""
_CACHE_ENV = "TELLTALE_IMAGE_EMBEDDER_ONNX_CACHE_DIR"
_BACKEND_ENV = "TELLTALE_IMAGE_EMBEDDER_BACKEND"


def tower_digest(visual: Any, model_config: dict[str, Any] | None, length: int = 16) -> str:
    """SHA-256 of the model's open_clip config and of every tensor of ``visual`` (names, shapes,
    dtypes and bytes, in ``state_dict`` order): the weights that make the vectors, whatever
    their source (a random initialisation has no file to digest)."""
    sha = hashlib.sha256(json.dumps(model_config or {}, sort_keys=True).encode())
    for name, tensor in visual.state_dict().items():
        data = tensor.detach().cpu().contiguous()
        sha.update(f"{name}:{tuple(data.shape)}:{data.dtype}".encode())
        sha.update(data.numpy().tobytes())
    return sha.hexdigest()[:length]


class OnnxImageModel:
    """An ONNX Runtime session over a cached export of open_clip's ``visual`` tower.

    ``visual`` is exported only when the cached file is missing; ``image_size`` is the side of
    the preprocessed square image it takes. ``exports`` counts this process's exports (tests).
    """

    exports = 0

    def __init__(
        self,
        visual: Any,
        name: str,
        digest: str,
        image_size: int,
        *,
        weights: ImageOnnxWeights = "fp32",
        cache_dir: Path | None = None,
        threads: int | None = None,
    ) -> None:
        ort = import_onnx("image", _BACKEND_ENV)
        cache = (cache_dir or default_cache_dir()).expanduser()
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in name)
        self.path = cache / (
            f"open_clip-{safe}-visual-{digest}-{weights}-f{EXPORT_FORMAT}-ort{ort.__version__}.onnx"
        )

        def build(work: Path) -> Path:
            graph = _export(visual, image_size, work / "visual.onnx")
            if weights == "int8":
                graph = quantize_int8(graph, work / "int8.onnx")
            return graph

        if cached_export(self.path, build, what="image tower", cache_env=_CACHE_ENV):
            OnnxImageModel.exports += 1
        self._session = open_session(ort, self.path, threads, "image tower")

    def features(self, pixels: NDArray[np.float32]) -> NDArray[np.float32]:
        """The tower's output, (batch, dim), for preprocessed pixels (batch, 3, side, side)."""
        out = self._session.run(None, {"pixels": np.ascontiguousarray(pixels, np.float32)})[0]
        return np.asarray(out, dtype=np.float32)


def _export(visual: Any, image_size: int, path: Path) -> Path:
    import torch

    dummy = torch.zeros((2, 3, image_size, image_size), dtype=torch.float32)
    axes = {0: "batch"}
    return export_module(
        visual,
        (dummy,),
        path,
        input_names=["pixels"],
        output_names=["features"],
        dynamic_axes={"pixels": axes, "features": axes},
    )
