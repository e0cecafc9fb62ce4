from __future__ import annotations

import base64
import io
import json
import random
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from signals.bank import SignalBank
from signals.errors import (
    EmbedderMismatch,
    ImageError,
    SpecError,
    TrainingError,
)
from signals.images import ImagePolicy, load_image
from signals.open_clip_embedder import OpenClipEmbedder
from signals.spec import Examples, SignalSpec, load_spec, parse_spec
from signals.training import fit_signal, train_signal
from telltale.sample_data import advice_text, image_base64, neutral_text, render_image

RNG = np.random.default_rng(0)


def spec(name: str = "s", **kw: object) -> SignalSpec:
    return SignalSpec(name=name, **kw)  # type: ignore[arg-type]


def clusters(n: int, dim: int = 16, shift: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(1)
    pos = rng.normal(shift, 1, (n, dim)).astype(np.float32)
    neg = rng.normal(-shift, 1, (n, dim)).astype(np.float32)
    return pos, neg


# --- spec -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"name": ""}, "name"),
        ({"name": "a\x00b"}, "name"),
        ({"name": "s", "target": "input"}, "target"),
        ({"name": "s", "threshold": 1.5}, "threshold"),
        ({"name": "s", "kind": "zero_shot"}, "query"),
        ({"name": "s", "target": "prompt", "modality": "image"}, "prompt"),
        ({"name": "s", "examples": {"positive": ["a"], "maybe": ["b"]}}, "examples.maybe"),
        ({"name": "s", "colour": "red"}, "colour"),
    ],
)
def test_invalid_specs_name_the_field(data: dict[str, object], field: str) -> None:
    with pytest.raises(SpecError, match=field):
        parse_spec(data)


def test_load_spec_from_yaml_resolves_relative_images(tmp_path: Path) -> None:
    render_image(random.Random(0), True, 32).save(tmp_path / "wm.png")
    (tmp_path / "s.yaml").write_text(
        "name: wm\nmodality: image\nexamples:\n  positive: [wm.png, wm.png]\n  negative: []\n"
    )
    loaded = load_spec(tmp_path / "s.yaml")
    assert loaded.examples.positive[0] == str(tmp_path / "wm.png")


def test_load_spec_rejects_bad_yaml_and_python_tags(tmp_path: Path) -> None:
    (tmp_path / "bad.yaml").write_text("name: [unclosed\n")
    with pytest.raises(SpecError, match="not valid YAML"):
        load_spec(tmp_path / "bad.yaml")
    (tmp_path / "evil.yaml").write_text("!!python/object/apply:os.system ['true']\n")
    with pytest.raises(SpecError):
        load_spec(tmp_path / "evil.yaml")


def test_load_spec_joins_json_escaped_surrogate_pairs(tmp_path: Path) -> None:
    # json.dumps escapes an emoji as a surrogate pair; YAML decodes each half on its own.
    written = json.dumps(
        {
            "name": "emoji",
            "description": "grin \U0001f600",
            "examples": {"positive": ["buy \U0001f680 now"], "negative": []},
        }
    )
    assert "\\ud83d\\ude00" in written
    (tmp_path / "s.yaml").write_text(written)
    loaded = load_spec(tmp_path / "s.yaml")
    assert loaded.description == "grin \U0001f600"
    assert loaded.examples.positive == ("buy \U0001f680 now",)
    loaded.examples.positive[0].encode("utf-8")  # whole characters: strict UTF-8 accepts them


@pytest.mark.parametrize("text", ["half \\ud83d only", "\\ude00 first", "\\ude00\\ud83d"])
def test_load_spec_refuses_a_lone_surrogate_naming_the_field(tmp_path: Path, text: str) -> None:
    positive = '["ok", "' + text + '"]'
    (tmp_path / "s.yaml").write_text(f'{{"name": "s", "examples": {{"positive": {positive}}}}}')
    with pytest.raises(SpecError, match=r"examples\.positive\.1: lone UTF-16 surrogate"):
        load_spec(tmp_path / "s.yaml")


def test_load_spec_refuses_a_list_that_holds_itself(tmp_path: Path) -> None:
    (tmp_path / "s.yaml").write_text("name: s\nexamples:\n  positive: &a [x, *a]\n")
    with pytest.raises(SpecError, match=r"examples\.positive\.1"):  # not a RecursionError
        load_spec(tmp_path / "s.yaml")


# --- training ---------------------------------------------------------------------------


@pytest.mark.parametrize(("n_pos", "n_neg", "label"), [(1, 5, "positive"), (5, 0, "negative")])
def test_too_few_examples_is_a_clear_error(n_pos: int, n_neg: int, label: str) -> None:
    pos, neg = clusters(5)
    with pytest.raises(TrainingError, match=f"{label} example"):
        fit_signal(spec(), pos[:n_pos], neg[:n_neg], "emb")


def test_training_is_deterministic_and_does_not_mutate_inputs() -> None:
    pos, neg = clusters(10)
    pos_copy, neg_copy = pos.copy(), neg.copy()
    a = fit_signal(spec(), pos, neg, "emb")
    b = fit_signal(spec(), pos, neg, "emb")
    assert a.weights == b.weights and a.threshold == b.threshold
    np.testing.assert_array_equal(pos, pos_copy)
    np.testing.assert_array_equal(neg, neg_copy)
    assert a.metrics["f1"] > 0.9 and a.metrics["roc_auc"] > 0.9
    assert 0 < a.threshold < 1 and a.train_ms > 0


def test_fixed_threshold_is_kept() -> None:
    pos, neg = clusters(6)
    assert fit_signal(spec(threshold=0.8), pos, neg, "emb").threshold == 0.8


def test_zero_shot_signal_scores_by_cosine_to_query(tiny_embedder: OpenClipEmbedder) -> None:
    query = "buy shares of ACME stock now"
    texts = [query, "a pancake recipe"]
    fitted = train_signal(spec(kind="zero_shot", query=query), tiny_embedder)
    assert fitted.metrics == {"calibrated": 0.0}
    vectors = tiny_embedder.embed_texts(texts)
    logits = vectors @ np.array(fitted.weights) + fitted.bias
    cosines = vectors @ tiny_embedder.embed_texts([query])[0]
    np.testing.assert_allclose(logits, 100 * cosines - 25, rtol=1e-4)
    assert logits[0] > logits[1]


def test_zero_shot_is_calibrated_when_labels_exist(tiny_embedder: OpenClipEmbedder) -> None:
    rng = random.Random(2)
    calibrated = spec(
        kind="zero_shot",
        query="buy this stock now",
        examples=Examples(
            positive=tuple(advice_text(rng) for _ in range(6)),
            negative=tuple(neutral_text(rng) for _ in range(6)),
        ),
    )
    fitted = train_signal(calibrated, tiny_embedder)
    assert fitted.metrics["calibrated"] == 1.0 and "f1" in fitted.metrics
    scores = SignalBank([fitted], tiny_embedder.id).score(
        "output.text", tiny_embedder.embed_texts([advice_text(rng), neutral_text(rng)])
    )
    assert 0 < scores.probabilities[1, 0] < scores.probabilities[0, 0] < 1


# --- bank and registry ------------------------------------------------------------------


def test_bank_equals_per_signal_logistic_scores() -> None:
    signals = []
    for i in range(5):
        pos, neg = clusters(8, shift=0.5 + i)
        signals.append(fit_signal(spec(f"s{i}"), pos, neg, "emb"))
    bank = SignalBank(signals, "emb")
    x = RNG.normal(0, 1, (20, 16)).astype(np.float32)
    scored = bank.score("output.text", x)
    assert scored.probabilities.shape == (20, 5)
    for j, s in enumerate(scored.signals):
        expected = 1 / (1 + np.exp(-(x.astype(np.float64) @ np.array(s.weights) + s.bias)))
        np.testing.assert_allclose(scored.probabilities[:, j], expected, rtol=1e-4, atol=1e-6)
        np.testing.assert_array_equal(
            scored.flagged[:, j], scored.probabilities[:, j] >= s.threshold
        )
    assert bank.score("output.image", x).probabilities.shape == (20, 0)


def test_bank_refuses_signals_of_another_embedder() -> None:
    pos, neg = clusters(4)
    with pytest.raises(EmbedderMismatch, match="retrain"):
        SignalBank([fit_signal(spec(), pos, neg, "emb-a")], "emb-b")


def test_fitted_signal_round_trips_through_json() -> None:
    pos, neg = clusters(4)
    fitted = fit_signal(spec(), pos, neg, "emb")
    assert type(fitted).model_validate_json(fitted.model_dump_json()) == fitted


# --- embedder ---------------------------------------------------------------------------


def test_embedder_is_normalised_deterministic_and_identified(
    tiny_embedder: OpenClipEmbedder,
) -> None:
    texts = ["hello", "a watermark", ""]
    a = tiny_embedder.embed_texts(texts)
    assert a.shape == (3, tiny_embedder.dim) and a.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(a, axis=1), 1.0, rtol=1e-5)
    other = OpenClipEmbedder(model_name="telltale-tiny", pretrained=None, seed=0)
    np.testing.assert_allclose(other.embed_texts(texts), a, atol=1e-5)
    assert other.id == tiny_embedder.id == "open_clip/telltale-tiny/random-seed0"
    assert OpenClipEmbedder(model_name="telltale-tiny", pretrained=None, seed=1).id != other.id
    images = [render_image(random.Random(i), i % 2 == 0, 64) for i in range(3)]
    assert tiny_embedder.embed_images(images).shape == (3, tiny_embedder.dim)
    assert tiny_embedder.embed_texts([]).shape == (0, tiny_embedder.dim)


def test_checkpoint_path_is_loaded_and_hashed_into_the_id(
    tmp_path: Path, tiny_embedder: OpenClipEmbedder
) -> None:
    import torch

    path = tmp_path / "tiny.pt"
    torch.save(tiny_embedder._model.state_dict(), path)
    loaded = OpenClipEmbedder(
        model_name="telltale-tiny", pretrained=None, checkpoint_path=str(path)
    )
    assert loaded.id.startswith("open_clip/telltale-tiny/checkpoint-")
    np.testing.assert_allclose(
        loaded.embed_texts(["x"]), tiny_embedder.embed_texts(["x"]), atol=1e-5
    )


def test_few_shot_separates_synthetic_failure_modes(tiny_embedder: OpenClipEmbedder) -> None:
    rng = random.Random(5)
    text = SignalSpec(
        name="advice",
        examples=Examples(
            positive=tuple(advice_text(rng) for _ in range(8)),
            negative=tuple(neutral_text(rng) for _ in range(8)),
        ),
    )
    fitted = train_signal(text, tiny_embedder)
    held_out = [advice_text(rng) for _ in range(20)] + [neutral_text(rng) for _ in range(20)]
    scores = SignalBank([fitted], tiny_embedder.id).score(
        "output.text", tiny_embedder.embed_texts(held_out)
    )
    truth = np.array([True] * 20 + [False] * 20)
    accuracy = float(np.mean(scores.flagged[:, 0] == truth))
    assert accuracy >= 0.85, accuracy


# --- images -----------------------------------------------------------------------------


def png_bytes(size: tuple[int, int] = (8, 8)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, "red").save(buffer, format="PNG")
    return buffer.getvalue()


def test_image_references_load(tmp_path: Path) -> None:
    data = png_bytes()
    (tmp_path / "a.png").write_bytes(data)
    b64 = base64.b64encode(data).decode()
    jpeg = image_base64(render_image(random.Random(0), False, 32))
    assert jpeg.startswith("/9j/")  # looks like a path; must still decode as base64
    for ref in (
        str(tmp_path / "a.png"),
        f"file://{tmp_path}/a.png",
        f"data:image/png;base64,{b64}",
        jpeg,
    ):
        assert load_image(ref).mode == "RGB"


@pytest.mark.parametrize(
    ("ref", "reason"),
    [
        ("data:image/png;base64,@@@@", "invalid base64"),
        ("data:image/png,rawbytes", "base64-encoded"),
        ("ftp://example.com/a.png", "scheme"),
        ("http://169.254.169.254/latest/meta-data", "scheme .http. is not allowed"),
        ("https://internal.example/a.png", "allow-list"),
        ("/no/such/file.png", "cannot read"),
        (base64.b64encode(b"not an image at all" * 20).decode(), "not a readable image"),
    ],
)
def test_bad_image_references_are_refused(ref: str, reason: str) -> None:
    with pytest.raises(ImageError, match=reason):
        load_image(ref)


def test_image_size_limits() -> None:
    big = base64.b64encode(png_bytes((300, 300))).decode()
    with pytest.raises(ImageError, match="pixels"):
        load_image(big, ImagePolicy(max_pixels=10_000))
    with pytest.raises(ImageError, match="bytes"):
        load_image(big, ImagePolicy(max_bytes=100))
    with pytest.raises(ImageError, match="not allowed"):
        load_image("/etc/hostname", ImagePolicy(allow_local_files=False))


def test_random_weights_are_identical_when_built_concurrently() -> None:
    # Regression: the worker once built two models at once on two threads, interleaving the
    # global RNG, so its weights differed from the CLI's and every signal misfired.
    from concurrent.futures import ThreadPoolExecutor

    def build() -> np.ndarray:
        return OpenClipEmbedder(model_name="telltale-tiny", pretrained=None, seed=0).embed_texts(
            ["Paris is the capital of France."]
        )

    with ThreadPoolExecutor(2) as pool:
        a, b = pool.submit(build), pool.submit(build)
        np.testing.assert_array_equal(a.result(), b.result())
    np.testing.assert_array_equal(a.result(), build())


def test_short_base64_image_is_decoded_not_taken_for_a_path() -> None:
    tiny = base64.b64encode(png_bytes((1, 1))).decode()
    assert len(tiny) < 256
    assert load_image(tiny).size == (1, 1)
