"""What the ONNX Runtime backends share: a locally made, cached export and a session over it.

:mod:`signals.onnx_text` (the text model) and :mod:`signals.onnx_image` (open_clip's image
tower) each turn a torch module into an ONNX graph once and keep the file in a cache folder;
nothing is downloaded. This module holds the steps they have in common:

* :func:`cached_export`: builds the file only when it is missing, under a process-wide lock,
  in a temporary folder next to the cache, renamed into place when complete (so concurrent
  processes never read half a file), with errors turned into :class:`EmbedderError` that name
  the setting to change;
* :func:`export_module`: ``torch.onnx.export`` (the TorchScript exporter, ``dynamo=False``,
  opset 17) with torch's fused attention fast path off, so ``nn.MultiheadAttention`` is traced
  as plain operators;
* :func:`quantize_int8`: dynamic quantisation of the weights to int8, per output channel;
* :func:`open_session`: an ORT session with every graph optimisation on, on the CPU.
"""

from __future__ import annotations

import logging
import os
import tempfile
import threading
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from signals.errors import EmbedderError

__all__ = [
    "OPSET",
    "cached_export",
    "default_cache_dir",
    "export_module",
    "import_onnx",
    "open_session",
    "quantize_int8",
]

log = logging.getLogger(__name__)

OPSET = 17
_export_lock = threading.Lock()


def default_cache_dir() -> Path:
    """``~/.cache/telltale/onnx`` (the environment is read by :mod:`telltale.settings` only:
    ``TELLTALE_TEXT_EMBEDDER_ONNX_CACHE_DIR`` and ``TELLTALE_IMAGE_EMBEDDER_ONNX_CACHE_DIR`` set
    another folder)."""
    return Path.home() / ".cache" / "telltale" / "onnx"


def import_onnx(what: str = "text", backend_env: str = "TELLTALE_TEXT_EMBEDDER_BACKEND") -> Any:
    """``onnxruntime``, or an :class:`EmbedderError` that names the missing packages."""
    try:
        import onnx  # noqa: F401  (the export and the quantiser need it)
        import onnxruntime
    except ImportError as exc:
        raise EmbedderError(
            f"the onnx {what} backend needs onnxruntime and onnx ({exc}): pip install "
            f"onnxruntime onnx, or set {backend_env}=torch"
        ) from exc
    return onnxruntime


def cached_export(path: Path, build: Callable[[Path], Path], *, what: str, cache_env: str) -> bool:
    """Make ``path`` with ``build`` unless it exists; True when this call made it.

    ``build`` gets a temporary folder on the cache's file system and returns the finished graph
    in it; that file is renamed to ``path``. ``what`` names the model in log lines and errors,
    ``cache_env`` the setting that moves the cache.
    """
    with _export_lock:
        if path.exists():
            return False
        log.info("exporting the %s to ONNX (%s), once", what, path.name)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryDirectory(dir=path.parent, prefix=".export-") as tmp:
                os.replace(build(Path(tmp)), path)
        except OSError as exc:
            raise EmbedderError(
                f"cannot write the ONNX {what} to {path.parent} ({exc}); set {cache_env} to a "
                "writable folder"
            ) from exc
        except Exception as exc:
            raise EmbedderError(f"cannot export the {what} to ONNX: {exc}") from exc
        return True


def export_module(
    module: Any,
    inputs: tuple[Any, ...],
    path: Path,
    *,
    input_names: Sequence[str],
    output_names: Sequence[str],
    dynamic_axes: dict[str, dict[int, str]],
) -> Path:
    """``module`` (in eval mode) traced on ``inputs`` and written to ``path`` as ONNX."""
    import torch

    fast_path = torch.backends.mha.get_fastpath_enabled()
    # The tracer's warnings (shape checks frozen as constants, the legacy exporter's
    # deprecation) are about paths these models do not take; the tests compare the result
    # with torch. The fused attention kernel has no ONNX form: trace the plain operators.
    try:
        torch.backends.mha.set_fastpath_enabled(False)
        with torch.inference_mode(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                module.eval(),
                inputs,
                str(path),
                input_names=list(input_names),
                output_names=list(output_names),
                dynamic_axes=dynamic_axes,
                opset_version=OPSET,
                dynamo=False,
            )
    finally:
        torch.backends.mha.set_fastpath_enabled(fast_path)
    return path


def quantize_int8(path: Path, out: Path, *, keep_fp32: Sequence[str] = ()) -> Path:
    """Dynamic int8 quantisation of ``path``'s weights per output channel, except the nodes
    named in ``keep_fp32``."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(
        str(path),
        str(out),
        weight_type=QuantType.QInt8,
        per_channel=True,
        nodes_to_exclude=list(keep_fp32) or None,
        # Fused nodes (com.microsoft) defeat shape inference: their outputs are float.
        extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
    )
    return out


def open_session(ort: Any, path: Path, threads: int | None, what: str) -> Any:
    """An ORT session over ``path`` on the CPU, every graph optimisation on."""
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3  # warnings about unused initialisers are noise here
    if threads:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    try:
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as exc:
        raise EmbedderError(f"cannot open the ONNX {what} {path}: {exc}") from exc
