"""The contract every signal kind keeps, as a check a new kind can be run through:
``check_signal(name, score, texts)`` raises AssertionError naming the broken rule.

``score(texts)`` returns the (n × 1) probabilities and flags the pipeline stores for one
signal. The rules: one row per text, one column; probabilities finite and in [0, 1]; a flag is
exactly a probability at or above the signal's threshold; the same texts score the same every
time; a text's score does not depend on the batch it came in (alone, or in another order);
an empty batch and an empty text are scored, not refused; a stored and reloaded signal scores
as the one that was saved (``reloaded``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
from numpy.typing import NDArray

Scores = tuple[NDArray[np.float32], NDArray[np.bool_]]
Scorer = Callable[[Sequence[str]], Scores]


def check_signal(
    name: str, score: Scorer, texts: Sequence[str], threshold: float,
    reloaded: Scorer | None = None,
) -> None:  # fmt: skip
    probs, flagged = score(texts)
    assert probs.shape == (len(texts), 1) == flagged.shape, f"{name}: shape {probs.shape}"
    assert np.isfinite(probs).all() and ((probs >= 0) & (probs <= 1)).all(), (
        f"{name}: a probability outside [0, 1]"
    )
    assert (flagged == (probs >= threshold)).all(), f"{name}: a flag is not score >= threshold"
    again, _ = score(texts)
    assert np.array_equal(probs, again), f"{name}: not deterministic"
    alone = np.vstack([score([t])[0] for t in texts])
    assert np.allclose(alone, probs, atol=1e-5), f"{name}: a score depends on its batch"
    order = np.random.default_rng(0).permutation(len(texts))
    shuffled, _ = score([texts[i] for i in order])
    assert np.allclose(shuffled, probs[order], atol=1e-5), f"{name}: a score depends on order"
    empty, empty_flags = score([])
    assert empty.shape == (0, 1) == empty_flags.shape, f"{name}: an empty batch is refused"
    blank, _ = score([""])
    assert blank.shape == (1, 1) and np.isfinite(blank).all(), f"{name}: an empty text failed"
    if reloaded is not None:
        assert np.allclose(reloaded(texts)[0], probs, atol=1e-6), (
            f"{name}: the reloaded signal scores differently"
        )
