"""Each record decoded once, though two readers want it.

The worker decodes a batch as soon as it takes it, to queue its texts for the model
(:mod:`signals.ahead`), and the batch's handler decodes the same records again when the batch
before it is done (validation, dead letters, counting). :class:`DecodedOnce` keeps what the
first decode gave, the events or the error, and hands it to the second, so JSON parsing and
validation (about 0.1 ms an event, a point of a MiniLM worker's throughput) run once:

>>> once = DecodedOnce()
>>> ahead = once.keeping(json_decoder())      # the decode done when the batch is taken
>>> handler = once.taking(json_decoder())     # the handler's: what was kept, or a decode

A record is known by its value object (the same ``bytes`` faust hands to both readers), held
until taken. A batch taken but never handled (the worker stopped first) leaves its results
behind: at most ``limit`` are kept, oldest dropped first, and :meth:`clear` drops them all.
Counting wraps the taking decoder, so the events seen are counted once, when the handler
decodes them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from streams.batch_io import Carrying, Decoder
from streams.events import GenerationEvent

__all__ = ["DecodedOnce"]

_Result = Sequence[GenerationEvent | Carrying] | BaseException
Decoders = tuple[dict[str, Decoder], Decoder]
"""Decoders by topic, and the one for every other topic."""


class DecodedOnce:
    """What :meth:`keeping` decoders decoded, for :meth:`taking` decoders to hand on once."""

    def __init__(self, limit: int = 20_000) -> None:
        if limit < 1:
            raise ValueError("limit must be at least 1")
        self._held: dict[int, tuple[bytes, _Result]] = {}
        self._limit = limit

    def __len__(self) -> int:
        return len(self._held)

    def keeping(self, decoder: Decoder) -> Decoder:
        """``decoder``, keeping each result (its events or its error) for one later take."""

        def decode(raw: bytes) -> Sequence[GenerationEvent | Carrying]:
            try:
                events = decoder(raw)
            except Exception as exc:
                self._keep(raw, exc)
                raise
            self._keep(raw, events)
            return events

        return decode

    def taking(self, decoder: Decoder) -> Decoder:
        """``decoder``, answering from what was kept for this very record (once) if anything."""

        def decode(raw: bytes) -> Sequence[GenerationEvent | Carrying]:
            held = self._held.pop(id(raw), None)  # held: ``raw`` itself, alive since kept
            if held is None:
                return decoder(raw)
            result = held[1]
            if isinstance(result, BaseException):
                raise result
            return result

        return decode

    def split(self, by_topic: Mapping[str, Decoder], default: Decoder) -> tuple[Decoders, Decoders]:
        """The keeping decoders and the taking ones, for the same decoders."""
        keeping = ({t: self.keeping(d) for t, d in by_topic.items()}, self.keeping(default))
        taking = ({t: self.taking(d) for t, d in by_topic.items()}, self.taking(default))
        return keeping, taking

    def clear(self) -> None:
        self._held.clear()

    def _keep(self, raw: bytes, result: _Result) -> None:
        # the value object is held with its result, so its id cannot be reused meanwhile
        self._held[id(raw)] = (raw, result)
        while len(self._held) > self._limit:
            del self._held[next(iter(self._held))]
