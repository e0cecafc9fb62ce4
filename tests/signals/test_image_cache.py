"""The embedding cache on images: keyed by the decoded pixels, through the pipeline and the
guardrail, on real chDB and the real (tiny) open_clip model. A counting spy around the real
embedder says how many images reached the model."""

from __future__ import annotations

import base64
import io
import random
import threading
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from numpy.typing import NDArray
from PIL import Image

from signals.cache import EmbeddingCache, LruVectorCache, image_key
from signals.embedders import FieldEmbedders, as_field_embedders
from signals.images import ImagePolicy, load_image
from signals.live import LiveSignals
from signals.open_clip_embedder import OpenClipEmbedder
from signals.spec import Examples, SignalSpec
from signals.training import train_signal
from storage.embedding_cache import ClickHouseVectorCache
from storage.writer import ClickHouseWriter
from streams.events import GenerationEvent, validate_event
from streams.pipeline import Pipeline
from streams.scoring import Scorer, ScoreRequest
from telltale.sample_data import image_base64, render_image
from telltale.signal_store import ClickHouseSignalStore

T0 = datetime(2026, 11, 1, 9, 0, tzinfo=UTC)


class CountingEmbedder:
    """The real embedder, counting the images it is asked to embed (a spy, not a fake)."""

    def __init__(self, real: OpenClipEmbedder) -> None:
        self.real = real
        self.images = 0
        self.calls = 0

    @property
    def id(self) -> str:
        return self.real.id

    @property
    def dim(self) -> int:
        return self.real.dim

    def embed_texts(self, texts: Sequence[str]) -> NDArray[np.float32]:
        return self.real.embed_texts(texts)

    def embed_images(self, images: Sequence[Image.Image]) -> NDArray[np.float32]:
        self.calls += 1
        self.images += len(images)
        return self.real.embed_images(images)


def _event(i: int, image: str) -> GenerationEvent:
    return validate_event({
        "event_id": f"img{i}", "timestamp": (T0 + timedelta(seconds=i)).isoformat(),
        "model": "imagegen", "model_version": "3", "prompt": {"text": "a product shot"},
        "output": {"image": image},
    })  # fmt: skip


def _jpeg(image: Image.Image) -> bytes:
    return base64.b64decode(image_base64(image))


def _signals(ch: Any, real: OpenClipEmbedder) -> LiveSignals:
    rng = random.Random(0)
    watermark = SignalSpec(name="watermark", modality="image", examples=Examples(
        positive=tuple(image_base64(render_image(rng, True, 96)) for _ in range(6)),
        negative=tuple(image_base64(render_image(rng, False, 96)) for _ in range(6)),
    ))  # fmt: skip
    ClickHouseSignalStore(ch).save(train_signal(watermark, real))  # the real one: not counted
    return LiveSignals(ClickHouseSignalStore(ch), real.id, refresh_s=0)


def _stats(ch: Any) -> list[tuple[int, ...]]:
    rows = ch.query(
        "SELECT lookups, memory_hits, shared_hits, batch_repeats, model_texts "
        "FROM embedding_cache_stats WHERE field = 'output.image'"
    ).result_rows
    return sorted(tuple(int(v) for v in r) for r in rows)


def _stored(ch: Any) -> dict[str, NDArray[np.float32]]:
    rows = ch.query(
        "SELECT event_id, vector FROM embeddings WHERE field = 'output.image'"
    ).result_rows
    return {str(r[0]): np.array(r[1], dtype=np.float32) for r in rows}


def test_image_key_is_the_decoded_pixels_not_the_reference() -> None:
    rng = random.Random(3)
    picture = render_image(rng, True, 64)
    png = io.BytesIO()
    picture.save(png, format="PNG")
    as_data = load_image("data:image/png;base64," + base64.b64encode(png.getvalue()).decode())
    as_b64 = load_image(base64.b64encode(png.getvalue()).decode())
    assert image_key("e", "output.image", as_data) == image_key("e", "output.image", as_b64)
    assert image_key("e", "output.image", as_data) == image_key("e", "output.image", picture)
    changed = picture.copy()
    changed.putpixel((10, 10), tuple(255 - c for c in changed.getpixel((10, 10))))  # type: ignore[union-attr, arg-type]
    assert image_key("e", "output.image", changed) != image_key("e", "output.image", picture)
    # same pixel bytes, other shape; other embedder; other field: all other keys
    wide = Image.frombytes("RGB", (6, 2), bytes(range(36)))
    tall = Image.frombytes("RGB", (3, 4), bytes(range(36)))
    assert image_key("e", "output.image", wide) != image_key("e", "output.image", tall)
    assert image_key("f", "output.image", picture) != image_key("e", "output.image", picture)
    assert image_key("e", "prompt.image", picture) != image_key("e", "output.image", picture)


def test_repeated_images_reach_the_model_once_within_and_across_batches_and_workers(
    ch: Any, tiny_embedder: OpenClipEmbedder, tmp_path: Path
) -> None:
    rng = random.Random(7)
    shoe, lamp = render_image(rng, False, 96), render_image(rng, True, 96)
    shoe_jpeg = _jpeg(shoe)
    shoe_file = tmp_path / "shoe.jpg"
    shoe_file.write_bytes(shoe_jpeg)
    shoe_b64 = base64.b64encode(shoe_jpeg).decode()
    lamp_b64 = image_base64(lamp)
    spy = CountingEmbedder(tiny_embedder)
    embedders = FieldEmbedders(spy, as_field_embedders(tiny_embedder).text)
    live = _signals(ch, tiny_embedder)

    def pipeline() -> Pipeline:  # a worker: its own LRU, the shared ClickHouse table
        cache = EmbeddingCache(LruVectorCache(100), ClickHouseVectorCache(ch))
        return Pipeline(embedders, live, ClickHouseWriter(ch), cache=cache)

    first = pipeline()
    # the same shoe inline and as a file: one image for the model; the lamp is another
    result = first.process([_event(1, shoe_b64), _event(2, str(shoe_file)), _event(3, lamp_b64)])
    assert result.written == 3 and (spy.images, spy.calls) == (2, 1)
    # a retry-like later batch: both pictures again, under other references
    result = first.process([_event(4, f"data:image/jpeg;base64,{shoe_b64}"), _event(5, lamp_b64)])
    assert result.written == 2 and spy.images == 2
    # another worker (or a restart): empty LRU, the vector comes from ClickHouse
    result = pipeline().process([_event(6, f"file://{shoe_file}")])
    assert result.written == 1 and spy.images == 2
    # result.cache sums every field (the prompt is cached too); the stats rows are per field:
    # (lookups, memory_hits, shared_hits, batch_repeats, model_texts) per batch
    assert _stats(ch) == [(1, 0, 1, 0, 0), (2, 2, 0, 0, 0), (3, 0, 0, 1, 2)]
    # every stored vector is what the model gives for that picture
    want_shoe, want_lamp = tiny_embedder.embed_images([load_image(shoe_b64), load_image(lamp_b64)])
    stored = _stored(ch)
    for event_id in ("img1", "img2", "img4", "img6"):
        np.testing.assert_allclose(stored[event_id], want_shoe, atol=1e-5)
    for event_id in ("img3", "img5"):
        np.testing.assert_allclose(stored[event_id], want_lamp, atol=1e-5)
    scores = dict(ch.query("SELECT event_id, score FROM signal_scores").result_rows)
    assert len(scores) == 6 and scores["img1"] == pytest.approx(scores["img6"], abs=1e-6)


class _Catalogue(BaseHTTPRequestHandler):
    """Serves the current bytes of /product.jpg and counts the fetches."""

    content: bytes = b""
    fetches = 0

    def do_GET(self) -> None:  # http.server calls it by this name
        type(self).fetches += 1
        self.send_response(200)
        self.send_header("Content-Type", "image/jpeg")
        self.send_header("Content-Length", str(len(self.content)))
        self.end_headers()
        self.wfile.write(self.content)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def catalogue() -> Iterator[tuple[str, type[_Catalogue]]]:
    handler = type("Catalogue", (_Catalogue,), {"content": b"", "fetches": 0})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/product.jpg", handler
    finally:
        server.shutdown()
        server.server_close()


def test_a_new_image_behind_the_same_url_misses_and_every_event_is_fetched(
    ch: Any, tiny_embedder: OpenClipEmbedder, catalogue: tuple[str, type[_Catalogue]]
) -> None:
    url, server = catalogue
    rng = random.Random(11)
    old, new = _jpeg(render_image(rng, False, 96)), _jpeg(render_image(rng, True, 96))
    spy = CountingEmbedder(tiny_embedder)
    policy = ImagePolicy(allowed_schemes=frozenset({"http"}),
                         allowed_hosts=frozenset({"127.0.0.1"}))  # fmt: skip
    cache = EmbeddingCache(LruVectorCache(100), ClickHouseVectorCache(ch))
    pipeline = Pipeline(FieldEmbedders(spy, as_field_embedders(tiny_embedder).text),
                        _signals(ch, tiny_embedder), ClickHouseWriter(ch), image_policy=policy,
                        cache=cache)  # fmt: skip
    server.content = old
    assert pipeline.process([_event(1, url)]).written == 1
    assert pipeline.process([_event(2, url)]).written == 1  # same URL, same picture
    assert spy.images == 1
    server.content = new  # the product photo was replaced: same URL, new picture
    result = pipeline.process([_event(3, url)])
    assert result.written == 1 and spy.images == 2
    assert server.fetches == 3  # the cache saves the model, not the fetch
    stored = _stored(ch)
    want_old, want_new = tiny_embedder.embed_images(
        [Image.open(io.BytesIO(old)).convert("RGB"), Image.open(io.BytesIO(new)).convert("RGB")]
    )
    np.testing.assert_allclose(stored["img2"], want_old, atol=1e-5)
    np.testing.assert_allclose(stored["img3"], want_new, atol=1e-5)
    assert not np.allclose(stored["img3"], stored["img1"], atol=1e-3)
    assert _stats(ch) == [(1, 0, 0, 0, 1), (1, 0, 0, 0, 1), (1, 1, 0, 0, 0)]


def test_guardrail_scores_repeated_images_from_the_cache(
    ch: Any, tiny_embedder: OpenClipEmbedder
) -> None:
    rng = random.Random(5)
    picture = image_base64(render_image(rng, True, 96))
    spy = CountingEmbedder(tiny_embedder)
    cache = EmbeddingCache(LruVectorCache(100), ClickHouseVectorCache(ch))
    scorer = Scorer(FieldEmbedders(spy, as_field_embedders(tiny_embedder).text),
                    _signals(ch, tiny_embedder), cache=cache)  # fmt: skip
    first = scorer.score([ScoreRequest(_event(1, picture)), ScoreRequest(_event(2, picture))])
    again = scorer.score([ScoreRequest(_event(3, picture))])
    assert spy.images == 1
    counts = scorer.cache_counts()  # the image alone: no signal reads the prompt
    assert (counts.lookups, counts.batch_repeats, counts.memory_hits, counts.saved) == (3, 1, 1, 2)
    scores = [s.signals[0].score for s in (*first, *again)]  # type: ignore[union-attr]
    assert scores == pytest.approx([scores[0]] * 3, abs=1e-6)
