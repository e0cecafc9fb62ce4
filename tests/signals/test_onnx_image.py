"""The ONNX Runtime image-tower backend: torch's vectors, a cached export, a distinct id."""

from __future__ import annotations

import random
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from signals.errors import EmbedderError
from signals.onnx_image import OnnxImageModel
from signals.open_clip_embedder import LazyOpenClipEmbedder, OpenClipEmbedder
from telltale.sample_data import render_image

TINY: dict[str, Any] = {"model_name": "telltale-tiny", "pretrained": None, "seed": 0}
INT8_MIN_COSINE = 0.98
"""Lowest cosine of int8 to torch fp32 accepted here: bench/image_embedder_backends.py measured a
minimum of 0.99 on telltale-tiny's random weights (docs/signals/embedders.md, Backends)."""


@pytest.fixture(scope="module")
def images() -> list[Any]:
    rng = random.Random(3)
    return [render_image(rng, i % 2 == 0) for i in range(6)]


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("onnx-image-cache")


@pytest.fixture(scope="module")
def torch_tiny() -> OpenClipEmbedder:
    return OpenClipEmbedder(**TINY)


@pytest.fixture(scope="module")
def onnx_tiny(cache_dir: Path) -> OpenClipEmbedder:
    return OpenClipEmbedder(**TINY, image_backend="onnx", image_onnx_cache_dir=cache_dir)


def test_fp32_gives_torchs_vectors(
    torch_tiny: OpenClipEmbedder, onnx_tiny: OpenClipEmbedder, images: list[Any]
) -> None:
    reference, ours = torch_tiny.embed_images(images), onnx_tiny.embed_images(images)
    assert ours.shape == reference.shape == (len(images), torch_tiny.dim)
    assert np.sum(reference * ours, axis=1).min() > 0.999
    assert np.allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-5)
    # Batches of one and of several give the same vectors (the batch axis is dynamic).
    assert np.allclose(onnx_tiny.embed_images(images[:1]), ours[:1], atol=1e-5)
    # The text tower stays on torch: the same vectors.
    assert np.allclose(onnx_tiny.embed_texts(["a cat"]), torch_tiny.embed_texts(["a cat"]))


def test_int8_stays_close_to_fp32(
    torch_tiny: OpenClipEmbedder, cache_dir: Path, images: list[Any]
) -> None:
    int8 = OpenClipEmbedder(**TINY, image_backend="onnx", image_onnx_weights="int8",
                            image_onnx_cache_dir=cache_dir)  # fmt: skip
    cosine = np.sum(torch_tiny.embed_images(images) * int8.embed_images(images), axis=1)
    assert cosine.min() > INT8_MIN_COSINE
    assert cosine.min() < 0.9999  # really quantised


def test_the_export_is_cached_and_reused(
    onnx_tiny: OpenClipEmbedder, cache_dir: Path, images: list[Any]
) -> None:
    files = sorted(cache_dir.glob("open_clip-telltale-tiny-visual-*-fp32-*.onnx"))
    assert len(files) == 1
    stamp, exports = files[0].stat().st_mtime_ns, OnnxImageModel.exports
    again = OpenClipEmbedder(**TINY, image_backend="onnx", image_onnx_cache_dir=cache_dir)
    assert OnnxImageModel.exports == exports
    assert files[0].stat().st_mtime_ns == stamp
    assert sorted(cache_dir.glob("*-fp32-*.onnx")) == files
    assert not list(cache_dir.glob(".export-*"))  # no temporary left behind
    assert np.allclose(again.embed_images(images[:2]), onnx_tiny.embed_images(images[:2]))


def test_other_weights_export_again(onnx_tiny: OpenClipEmbedder, cache_dir: Path) -> None:
    exports = OnnxImageModel.exports
    OpenClipEmbedder(**{**TINY, "seed": 1}, image_backend="onnx", image_onnx_cache_dir=cache_dir)
    assert OnnxImageModel.exports == exports + 1  # keyed by the weights' digest
    assert len(list(cache_dir.glob("open_clip-telltale-tiny-visual-*-fp32-*.onnx"))) == 2


def test_the_id_records_the_backend(
    torch_tiny: OpenClipEmbedder, onnx_tiny: OpenClipEmbedder
) -> None:
    assert torch_tiny.id == "open_clip/telltale-tiny/random-seed0"  # unchanged: signals stay
    assert onnx_tiny.id == f"{torch_tiny.id}/onnx-fp32"
    lazy = LazyOpenClipEmbedder(onnx_tiny.config.model_copy(update={"image_onnx_weights": "int8"}))
    assert lazy.id == f"{torch_tiny.id}/onnx-int8"
    assert not lazy.loaded


def test_missing_onnxruntime_is_a_clear_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import onnxruntime -> ImportError
    with pytest.raises(EmbedderError, match="TELLTALE_IMAGE_EMBEDDER_BACKEND=torch"):
        OpenClipEmbedder(**TINY, image_backend="onnx", image_onnx_cache_dir=tmp_path)
    assert not list(tmp_path.iterdir())


def test_onnx_needs_the_cpu_and_no_torch_quantisation(tmp_path: Path) -> None:
    with pytest.raises(EmbedderError, match="cpu"):
        OpenClipEmbedder(**TINY, image_backend="onnx", device="cuda", image_onnx_cache_dir=tmp_path)
    with pytest.raises(EmbedderError, match="image_onnx_weights=int8"):
        OpenClipEmbedder(**TINY, image_backend="onnx", quantize=True, image_onnx_cache_dir=tmp_path)


def test_an_unwritable_cache_is_a_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder", encoding="utf-8")
    with pytest.raises(EmbedderError, match="TELLTALE_IMAGE_EMBEDDER_ONNX_CACHE_DIR"):
        OpenClipEmbedder(**TINY, image_backend="onnx", image_onnx_cache_dir=blocker / "onnx")


def test_backend_settings_come_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from telltale.settings import EmbedderSettings, SettingsError, load_settings

    assert EmbedderSettings().image_backend == "torch"  # the default
    monkeypatch.setenv("TELLTALE_IMAGE_EMBEDDER_BACKEND", "onnx")
    monkeypatch.setenv("TELLTALE_IMAGE_EMBEDDER_ONNX_WEIGHTS", "int8")
    monkeypatch.setenv("TELLTALE_IMAGE_EMBEDDER_ONNX_CACHE_DIR", str(tmp_path))
    settings = EmbedderSettings()
    assert (settings.image_backend, settings.image_onnx_weights) == ("onnx", "int8")
    assert settings.image_onnx_cache_dir == tmp_path
    monkeypatch.setenv("TELLTALE_IMAGE_EMBEDDER_BACKEND", "tensorflow")
    with pytest.raises(SettingsError, match="TELLTALE_IMAGE_EMBEDDER_BACKEND"):
        load_settings()
