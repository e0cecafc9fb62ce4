"""What goes into and out of a batch of the worker: the records, a payload's decoded events
with the vectors they carry, the outcome, the callables :class:`~streams.batch_handler.
BatchHandler` is given (decode, process, accept a signal or feedback, send a dead letter), and
the worker's health."""

from __future__ import annotations

import enum
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

from streams.errors import PartlyInvalid
from streams.events import MAX_PAYLOAD_BYTES, Carried, GenerationEvent, decode_record
from streams.feedback import Feedback
from streams.pipeline import BatchResult, Pipeline

__all__ = [
    "AcceptFeedback",
    "AcceptSignal",
    "Carrying",
    "Decoder",
    "Outcome",
    "Process",
    "Record",
    "SendDeadLetter",
    "WorkerHealth",
    "json_decoder",
    "pipeline_process",
]


@dataclass(frozen=True)
class Carrying:
    """An event whose payload carried vectors (``embedder_id`` names the model that made them)."""

    event: GenerationEvent
    embedder_id: str
    vectors: Carried


Decoder = Callable[[bytes], Sequence[GenerationEvent | Carrying]]
"""Turns one record's value into its events (one JSON event; an OTLP export may hold many),
or raises :class:`~streams.errors.InvalidEvent` with the reason."""

Process = Callable[[Sequence[GenerationEvent], Mapping[str, Carrying]], BatchResult]
"""Runs the pipeline on events; the mapping holds, by event id, the vectors some carried."""

AcceptSignal = Callable[[bytes], str]
"""Store one signal published on the control topic; return what was stored (for the log)."""

AcceptFeedback = Callable[[list[Feedback]], int]
"""Store decoded feedback records; return how many were stored."""

SendDeadLetter = Callable[[bytes | None, bytes], Awaitable[None]]
"""Deliver ``(key, value)`` to the dead-letter topic; returns once the broker has it."""


def pipeline_process(pipeline: Callable[[], Pipeline]) -> Process:
    """:data:`Process` over the pipeline that ``pipeline()`` returns at the time of the call.

    Carried vectors skip the model only when the pipeline's embedder made them (the guardrail
    API records scored events with their vectors); others are embedded as usual.
    """

    def process(events: Sequence[GenerationEvent], carried: Mapping[str, Carrying]) -> BatchResult:
        current = pipeline()
        given = {
            event_id: c.vectors
            for event_id, c in carried.items()
            if c.embedder_id == current.embedder_id
        }
        return current.process(events, given)

    return process


def plain_events(values: Iterable[tuple[str, bytes]], decoders: Mapping[str, Decoder],
                 default: Decoder) -> list[GenerationEvent]:  # fmt: skip
    """The events of ``(topic, value)`` records that decode, without vectors (what the worker
    embeds ahead); records that do not decode are left out (the batch dead-letters them)."""
    events: list[GenerationEvent] = []
    for topic, value in values:
        try:
            decoded: Sequence[GenerationEvent | Carrying] = decoders.get(topic, default)(value)
        except PartlyInvalid as exc:  # its valid events are stored
            decoded = exc.events
        except Exception:  # the batch's own decoding reports it
            decoded = ()
        events.extend(e for e in decoded if isinstance(e, GenerationEvent))
    return events


def json_decoder(max_bytes: int = MAX_PAYLOAD_BYTES) -> Decoder:
    """The decoder of the ``generations`` topic: one JSON generation event per record."""

    def decode(raw: bytes) -> Sequence[GenerationEvent | Carrying]:
        event, embedder_id, vectors = decode_record(raw, max_bytes)
        return [Carrying(event, embedder_id, vectors) if vectors else event]

    return decode


@dataclass(frozen=True)
class Record:
    """One Kafka record, as much of it as the handler needs."""

    topic: str
    partition: int
    offset: int
    value: bytes | None
    key: bytes | None = None


class Outcome(enum.Enum):
    ACKNOWLEDGE = "acknowledge"  # every record is stored or dead-lettered: commit the offsets
    HOLD = "hold"  # shutting down with storage unavailable: leave unacknowledged, redelivered
    HALT = "halt"  # the database is misconfigured: leave unacknowledged and stop consuming


class WorkerHealth:
    """Whether the worker can make progress; a health endpoint reports :attr:`failure`."""

    def __init__(self) -> None:
        self._failure: str | None = None
        self._waiting: str | None = None

    @property
    def ok(self) -> bool:
        return self._failure is None

    @property
    def failure(self) -> str | None:
        """Why consumption stopped, or None while healthy."""
        return self._failure

    def fail(self, reason: str) -> None:
        if self._failure is None:
            self._failure = reason

    @property
    def waiting(self) -> str | None:
        """What the worker is waiting out right now (storage or the broker unavailable, with
        the last error), or None: the worker is healthy but not making progress meanwhile."""
        return self._waiting

    def wait(self, reason: str | None) -> None:
        """Record what a retry loop waits on; ``None`` once it got through."""
        self._waiting = reason
