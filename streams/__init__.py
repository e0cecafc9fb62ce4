"""Events, the Emitter, the in-process pipeline, the faust worker and dead-letter handling."""

from __future__ import annotations

from streams.dead_letter import DeadLetter
from streams.emitter import Emitter
from streams.errors import EmitError, InvalidEvent, StreamError
from streams.events import GenerationEvent, Output, Prompt, decode_event, encode_event
from streams.pipeline import BatchResult, Pipeline

__all__ = [
    "BatchResult",
    "DeadLetter",
    "EmitError",
    "Emitter",
    "GenerationEvent",
    "InvalidEvent",
    "Output",
    "Pipeline",
    "Prompt",
    "StreamError",
    "decode_event",
    "encode_event",
]
