"""The micro-batcher of ``telltale serve``: concurrent requests become one model call.

The first request waits at most ``max_wait_s`` for others to join (up to ``max_batch``), and
while the model runs new requests queue up for the next call. Under load the batch grows by
itself; a lone request pays at most ``max_wait_s``. HTTP-serving machinery: the worker gets its
batches from Kafka and never uses it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Generic, TypeVar

__all__ = ["BatchStats", "GuardrailClosed", "MicroBatcher"]

log = logging.getLogger(__name__)

_I = TypeVar("_I")
_R = TypeVar("_R")


class GuardrailClosed(RuntimeError):
    """The batcher is stopping and takes no new requests."""


@dataclass
class _Pending(Generic[_I, _R]):
    item: _I
    future: asyncio.Future[_R]


@dataclass
class BatchStats:
    """What the batcher has done: read by metrics."""

    batches: int = 0
    items: int = 0
    last_size: int = 0
    last_seconds: float = 0.0


class MicroBatcher(Generic[_I, _R]):
    """Collects concurrent :meth:`submit` calls into batches for one synchronous function.

    ``run`` receives a list of items and returns one result per item, in order; it runs on
    ``executor`` (off the event loop; give it one thread, the model runs one batch at a time).
    ``max_batch=1`` turns batching off. ``on_batch(size, seconds)`` is called after each batch.
    """

    def __init__(
        self,
        run: Callable[[list[_I]], list[_R]],
        executor: Executor,
        *,
        max_batch: int = 64,
        max_wait_s: float = 0.005,
        on_batch: Callable[[int, float], None] | None = None,
    ) -> None:
        if max_batch < 1:
            raise ValueError("max_batch must be at least 1")
        if max_wait_s < 0:
            raise ValueError("max_wait_s must not be negative")
        self._run = run
        self._executor = executor
        self._max_batch = max_batch
        self._max_wait_s = max_wait_s
        self._on_batch = on_batch
        self._queue: asyncio.Queue[_Pending[_I, _R]] | None = None
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        self.stats = BatchStats()

    def start(self) -> None:
        """Start the batching task on the running loop."""
        self._queue = asyncio.Queue()
        self._task = asyncio.get_running_loop().create_task(self._loop())

    async def submit(self, item: _I) -> _R:
        """Queue ``item``; return its result once its batch ran (its exception, if it failed)."""
        if self._closed or self._queue is None:
            raise GuardrailClosed("the scorer is not accepting requests")
        future: asyncio.Future[_R] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait(_Pending(item, future))
        return await future

    async def stop(self) -> None:
        """Take no new items; finish every queued one, then end the batching task."""
        self._closed = True
        if self._queue is None or self._task is None:
            return
        await self._queue.join()
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task

    async def _loop(self) -> None:
        assert self._queue is not None
        queue = self._queue
        loop = asyncio.get_running_loop()
        while True:
            batch = [await queue.get()]
            deadline = loop.time() + self._max_wait_s
            while len(batch) < self._max_batch:
                if not queue.empty():
                    batch.append(queue.get_nowait())
                    continue
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                try:
                    batch.append(await asyncio.wait_for(queue.get(), remaining))
                except TimeoutError:
                    break
            await self._execute(batch)
            for _ in batch:
                queue.task_done()

    async def _execute(self, batch: list[_Pending[_I, _R]]) -> None:
        loop = asyncio.get_running_loop()
        started = time.perf_counter()
        try:
            results = await loop.run_in_executor(self._executor, self._run,
                                                 [p.item for p in batch])  # fmt: skip
            if len(results) != len(batch):
                raise RuntimeError(f"batch of {len(batch)} gave {len(results)} results")
        except Exception as exc:
            log.warning("guardrail batch of %d failed: %s: %s", len(batch),
                        type(exc).__name__, exc)  # fmt: skip
            for pending in batch:
                if not pending.future.done():
                    pending.future.set_exception(exc)
            return
        finally:
            seconds = time.perf_counter() - started
            self.stats.batches += 1
            self.stats.items += len(batch)
            self.stats.last_size, self.stats.last_seconds = len(batch), seconds
            if self._on_batch is not None:
                self._on_batch(len(batch), seconds)
        for pending, result in zip(batch, results, strict=True):
            if not pending.future.done():  # a client that went away cancelled its future
                pending.future.set_result(result)
