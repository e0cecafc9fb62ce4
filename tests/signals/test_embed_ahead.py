"""EmbedAhead answers texts embedded ahead with what the model returned for them, waits for a
job still running, and sends everything else to the model on the caller's thread."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence

import numpy as np
import pytest

from signals import EmbedAhead, FieldEmbedders, TextEmbedder, Windows
from signals.open_clip_embedder import OpenClipEmbedder


class _Spy:
    """The real text tower, recording which thread asked for which texts."""

    def __init__(
        self, inner: TextEmbedder, fail_first: bool | str = False, slow_s: float = 0.0
    ) -> None:
        self.inner, self.fail_first, self.slow_s = inner, fail_first, slow_s
        self.calls: list[tuple[str, tuple[str, ...]]] = []
        self.id, self.dim = inner.id, inner.dim

    def embed_texts(self, texts: Sequence[str]) -> np.ndarray:
        return self.embed_windows(texts).documents()

    def embed_windows(self, texts: Sequence[str]) -> Windows:
        self.calls.append((threading.current_thread().name, tuple(texts)))
        if self.fail_first and len(self.calls) == 1:
            raise RuntimeError("the model ran out of memory")
        time.sleep(self.slow_s)
        if self.fail_first == "short" and len(self.calls) == 2:
            return self.inner.embed_windows(texts[:-1])  # one text short: not a model error
        return self.inner.embed_windows(texts)


def _spy(tiny: OpenClipEmbedder, fail_first: bool | str = False, slow_s: float = 0.0) -> _Spy:
    return _Spy(FieldEmbedders(tiny).text, fail_first, slow_s)


TEXTS = [f"text number {i}, about savings" for i in range(12)]


def test_texts_submitted_ahead_are_embedded_once_on_the_ahead_thread(
    tiny_embedder: OpenClipEmbedder,
) -> None:
    spy = _spy(tiny_embedder)
    ahead = EmbedAhead(spy)
    ahead.submit(TEXTS[:8])
    got = ahead.embed_windows([TEXTS[3], TEXTS[0], TEXTS[3]])
    assert [name.startswith("telltale-ahead") for name, _ in spy.calls] == [True]
    expected = spy.inner.embed_windows([TEXTS[3], TEXTS[0], TEXTS[3]])
    np.testing.assert_allclose(got.vectors, expected.vectors, atol=1e-5)
    np.testing.assert_array_equal(got.offsets, expected.offsets)
    assert ahead.answered == 3 and (ahead.id, ahead.dim) == (spy.id, spy.dim)
    ahead.close()


def test_texts_not_submitted_go_to_the_model_in_order(tiny_embedder: OpenClipEmbedder) -> None:
    spy = _spy(tiny_embedder)
    ahead = EmbedAhead(spy)
    ahead.submit(TEXTS[:4])
    asked = [TEXTS[9], TEXTS[1], TEXTS[10]]
    got = ahead.embed_windows(asked)
    here = [texts for name, texts in spy.calls if not name.startswith("telltale-ahead")]
    assert here == [(TEXTS[9], TEXTS[10])]  # only what no job holds, once each
    np.testing.assert_allclose(got.documents(), spy.inner.embed_texts(asked), atol=1e-5)
    assert ahead.answered == 1
    ahead.close()


def test_a_failed_job_only_means_the_texts_are_embedded_when_asked_for(
    tiny_embedder: OpenClipEmbedder,
) -> None:
    spy = _spy(tiny_embedder, fail_first=True)
    ahead = EmbedAhead(spy)
    ahead.submit(TEXTS[:4])
    got = ahead.embed_texts(TEXTS[:4])
    np.testing.assert_allclose(got, spy.inner.embed_texts(TEXTS[:4]), atol=1e-5)
    assert len(spy.calls) == 2 and ahead.answered == 0
    ahead.close()


def test_only_the_last_jobs_are_kept(tiny_embedder: OpenClipEmbedder) -> None:
    spy = _spy(tiny_embedder)
    ahead = EmbedAhead(spy, keep_jobs=2)
    for i in range(3):
        ahead.submit(TEXTS[4 * i : 4 * i + 4])
    ahead.embed_windows(TEXTS)
    here = [texts for name, texts in spy.calls if not name.startswith("telltale-ahead")]
    assert here == [tuple(TEXTS[:4])]  # the first job was dropped
    assert ahead.answered == 8
    ahead.close()
    ahead.submit(["after close"])  # closed: nothing queued, nothing raised
    assert ahead.embed_texts(["after close"]).shape == (1, spy.dim)
    with pytest.raises(ValueError, match="keep_jobs"):
        EmbedAhead(spy, keep_jobs=0)


def test_a_job_that_breaks_after_the_model_never_leaves_a_waiter_hanging(
    tiny_embedder: OpenClipEmbedder,
) -> None:
    spy = _spy(tiny_embedder, fail_first="short")
    ahead = EmbedAhead(spy)
    spy.calls.append(("setup", ()))  # the next call (the job) returns one text short
    ahead.submit(TEXTS[:4])
    got = ahead.embed_texts(TEXTS[:4])  # returns: the texts are embedded here instead
    np.testing.assert_allclose(got, spy.inner.embed_texts(TEXTS[:4]), atol=1e-5)
    assert ahead.answered == 0
    ahead.close()


def test_a_text_held_by_a_kept_job_is_not_queued_again_and_close_drops_queued_jobs(
    tiny_embedder: OpenClipEmbedder,
) -> None:
    spy = _spy(tiny_embedder, slow_s=0.3)
    ahead = EmbedAhead(spy)
    assert ahead.submit(TEXTS[:4]) == 4
    assert ahead.submit(TEXTS[2:6]) == 2  # 2 and 3 are in the first job
    assert ahead.queued == 6
    ahead.close()  # the second job has not started: dropped, its texts embedded when asked
    got = ahead.embed_texts(TEXTS[:6])
    np.testing.assert_allclose(got, spy.inner.embed_texts(TEXTS[:6]), atol=1e-5)
    ahead_calls = [t for name, t in spy.calls if name.startswith("telltale-ahead")]
    assert ahead_calls == [tuple(TEXTS[:4])]
    assert ahead.answered == 4
