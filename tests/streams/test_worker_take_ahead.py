"""The worker's agent takes batch k+1 while batch k is stored, but hands batches to the
handler one at a time, in the order taken, each acknowledged before the next starts; a batch
taken ahead is not started after a halt or once the shutdown began (left unacknowledged)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

from streams.batch_handler import Outcome, Record
from streams.settings import WorkerConfig
from streams.worker import _Runtime


@dataclass(frozen=True)
class _Message:
    topic: str
    partition: int
    offset: int
    value: bytes
    key: bytes | None = None


@dataclass(frozen=True)
class _Event:
    message: _Message


class _Stream:
    """``noack_take`` yielding fixed batches; records when each is taken and acked."""

    def __init__(self, batches: int, size: int = 3) -> None:
        self.batches = [
            [_Event(_Message("t", 0, b * size + i, b"{}")) for i in range(size)]
            for b in range(batches)
        ]
        self.log: list[str] = []

    async def noack_take(self, max_: int, within: float) -> AsyncIterator[list[_Event]]:
        for k, batch in enumerate(self.batches):
            self.log.append(f"take {k}")
            yield batch
        await asyncio.Event().wait()  # the topic is quiet: wait for more, like faust

    async def ack(self, event: _Event) -> None:
        self.log.append(f"ack {event.message.offset}")


class _Handler:
    """Stands in for the batch handler: records each batch's start and end."""

    def __init__(self, log: list[str], outcomes: dict[int, Outcome], runtime: _Runtime) -> None:
        self.log, self.outcomes, self.runtime = log, outcomes, runtime
        self.running = 0

    async def handle(self, batch: Sequence[Record]) -> Outcome:
        k = batch[0].offset // len(batch)
        self.running += 1
        assert self.running == 1, "two batches handled at once"
        self.log.append(f"start {k}")
        await asyncio.sleep(0.05)  # the model and the write
        self.log.append(f"end {k}")
        self.running -= 1
        outcome = self.outcomes.get(k, Outcome.ACKNOWLEDGE)
        if k == 0 and self.outcomes.get(-1) is Outcome.HOLD:
            self.runtime.stopping.set()  # SIGTERM arrived while batch 0 was stored
        return outcome


def _runtime() -> _Runtime:
    async def send(key: bytes | None, value: bytes) -> None:
        raise AssertionError("nothing is dead-lettered here")

    def factory() -> Any:
        raise AssertionError("the stand-in handler builds no pipeline")

    return _Runtime(WorkerConfig(), factory, send, None, None, None)


def _run(batches: int, outcomes: dict[int, Outcome]) -> tuple[list[str], _Runtime]:
    async def main() -> tuple[list[str], _Runtime]:
        runtime = _runtime()
        stream = _Stream(batches)
        runtime.handler = _Handler(stream.log, outcomes, runtime)  # type: ignore[assignment]
        agent = asyncio.ensure_future(runtime.consume(stream))
        await asyncio.sleep(0.5)
        await runtime.drain()
        agent.cancel()
        return stream.log, runtime

    return asyncio.run(main())


def test_the_next_batch_is_taken_while_one_is_stored_and_handled_after_its_ack() -> None:
    log, _ = _run(3, {})
    assert log.index("take 1") < log.index("end 0")  # taken ahead
    for k in range(3):
        assert log.index(f"end {k}") < log.index(f"ack {k * 3}")  # acknowledged once stored
        if k:  # the previous batch is acknowledged before this one starts
            assert log.index(f"ack {k * 3 - 1}") < log.index(f"start {k}")
    assert [e for e in log if e.startswith("start")] == ["start 0", "start 1", "start 2"]


def test_a_batch_taken_ahead_is_not_started_after_a_halt() -> None:
    log, _ = _run(3, {0: Outcome.HALT})
    assert "start 1" not in log and not any(e.startswith("ack") for e in log)
    assert "take 2" not in log  # consumption stopped: nothing more is taken


def test_a_batch_taken_ahead_is_not_started_once_the_shutdown_began() -> None:
    log, runtime = _run(3, {-1: Outcome.HOLD})
    assert "end 0" in log and "ack 2" in log  # the batch in flight finished and was acked
    assert "start 1" not in log and "ack 3" not in log  # the one taken ahead: unacknowledged
    assert not runtime.in_flight
