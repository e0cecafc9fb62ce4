"""Import torchvision beside a CPU-only torch whose version lacks torchvision's compiled ops.

PyPI's torchvision wheels are CUDA builds; next to the CPU torch wheel their C extension does not
load, and ``import torchvision`` then fails with ``operator torchvision::nms does not exist``
because a fake-tensor registration refers to an operator that was never defined. open_clip only
uses torchvision's transforms, so declaring the schemas of the operators torchvision registers
unconditionally is enough. Where the extension loads, the operators exist and nothing is done.
"""

from __future__ import annotations

from typing import Any

__all__ = ["import_torchvision"]

_SCHEMAS = {
    "nms": "nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
    "qnms": "qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
}
_library: Any = None  # keeps the definitions alive for the process's lifetime


def import_torchvision() -> Any:
    """Return the ``torchvision`` module, declaring missing operator schemas first if needed."""
    global _library
    import torch

    missing = [name for name in _SCHEMAS if not _has_op(torch, name)]
    if missing and _library is None:
        _library = torch.library.Library("torchvision", "DEF")  # type: ignore[no-untyped-call]
        for name in missing:
            _library.define(_SCHEMAS[name])
    import torchvision

    return torchvision


def _has_op(torch: Any, name: str) -> bool:
    try:
        getattr(torch.ops.torchvision, name)
    except (AttributeError, RuntimeError):
        return False
    return True
