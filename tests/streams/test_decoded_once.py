"""A record decoded as its batch is taken is not decoded again by the batch's handler: the
handler gets the same events, or the same error, once; anything else is decoded as before."""

from __future__ import annotations

import json
from collections.abc import Sequence

import pytest

from streams.batch_io import Carrying, json_decoder
from streams.decoded_once import DecodedOnce
from streams.errors import InvalidEvent
from streams.events import GenerationEvent


class _Counted:
    def __init__(self) -> None:
        self.calls = 0
        self.inner = json_decoder()

    def __call__(self, raw: bytes) -> Sequence[GenerationEvent | Carrying]:
        self.calls += 1
        return self.inner(raw)


def _raw(i: int) -> bytes:
    return json.dumps({"event_id": f"e{i}", "model": "m", "model_version": "v1",
                       "timestamp": "2026-12-07T10:00:00+00:00",
                       "output": {"text": f"answer {i}"}}).encode()  # fmt: skip


def test_the_handler_takes_what_was_decoded_ahead_once() -> None:
    once, decoder = DecodedOnce(), _Counted()
    (_, keep), (_, take) = once.split({}, decoder)
    raws = [_raw(i) for i in range(3)]
    ahead = [keep(r) for r in raws]
    assert decoder.calls == 3 and len(once) == 3
    taken = [take(r) for r in raws]
    assert decoder.calls == 3 and len(once) == 0
    assert all(a is t for a, t in zip(ahead, taken, strict=True))  # the very same events
    assert take(raws[0])[0] == ahead[0][0] and decoder.calls == 4  # taken once: decoded again
    assert take(_raw(9))[0].event_id == "e9" and decoder.calls == 5  # never kept: decoded


def test_an_error_is_kept_and_raised_to_the_handler_with_its_reason() -> None:
    once, decoder = DecodedOnce(), _Counted()
    keep, take = once.keeping(decoder), once.taking(decoder)
    bad = b'{"event_id": "x"}'
    with pytest.raises(InvalidEvent) as ahead:
        keep(bad)
    with pytest.raises(InvalidEvent) as taken:
        take(bad)
    assert taken.value is ahead.value and decoder.calls == 1


def test_results_never_taken_are_bounded_and_can_be_dropped() -> None:
    once, decoder = DecodedOnce(limit=2), _Counted()
    keep, take = once.keeping(decoder), once.taking(decoder)
    raws = [_raw(i) for i in range(3)]
    for r in raws:
        keep(r)
    assert len(once) == 2  # the oldest went first
    take(raws[0])
    assert decoder.calls == 4
    once.clear()
    assert len(once) == 0
    with pytest.raises(ValueError, match="at least 1"):
        DecodedOnce(limit=0)
