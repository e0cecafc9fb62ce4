"""How the worker's agents wait out storage and the broker: bounded exponential back-off, cut
short by shutdown.

Only :class:`~storage.errors.StorageUnavailable` (transient) is retried. Rows the database
rejects and a misconfigured database propagate at once: retrying them cannot help. One kind of
transient error may be the write's own fault: :class:`~storage.errors.StorageOverloaded` (a
memory limit, a timeout) can clear for a smaller write and never for this one, so a caller that
can split its work (``split=True``) gets it raised after :attr:`RetryPolicy.split_after` retries
instead of retrying the same write forever.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from storage import StorageOverloaded, StorageUnavailable

__all__ = ["RetryPolicy", "ShuttingDown", "Waiting"]

log = logging.getLogger(__name__)

_T = TypeVar("_T")

Waiting = Callable[[str | None], None]
"""Told what a retry loop waits on (``None`` once it got through): for the worker's health."""


class ShuttingDown(Exception):
    """The worker is stopping while storage is unavailable: leave the work unacknowledged."""


@dataclass(frozen=True)
class RetryPolicy:
    """Back-off of ``initial_s``, doubling up to ``max_s``; without bound in attempts, because
    offsets are held meanwhile and nothing is lost by waiting for storage to come back.

    ``split_after``: retries of a :class:`~storage.errors.StorageOverloaded` error before a
    caller that can split its write (``run(..., split=True)``) gets the error to split on.
    ``lone_overload_patience_s``: how long a batch of one record that overloads the database is
    retried before its event is dead-lettered. One record cannot tell a busy server from an
    event too large for it (a batch of several can: see the batch handler), and low-traffic
    products send batches of one, so it waits this long for the server first.
    """

    initial_s: float = 0.5
    max_s: float = 30.0
    split_after: int = 3
    lone_overload_patience_s: float = 120.0

    async def run(
        self,
        attempt: Callable[[], Awaitable[_T]],
        stopping: asyncio.Event,
        what: str = "",
        *,
        split: bool = False,
        waiting: Waiting | None = None,
        overload_patience_s: float | None = None,
    ) -> _T:
        """Await ``attempt()`` until it does not raise :class:`StorageUnavailable`.

        Raises :class:`ShuttingDown` when ``stopping`` is set while storage is unavailable
        (a shutdown also cuts the current wait short). With ``split``, a
        :class:`StorageOverloaded` error is raised once it failed ``split_after + 1`` times in
        a row; with ``overload_patience_s``, once it kept failing that way after that many
        seconds of waiting (for a write that cannot be split: one record).
        """
        return await self._loop(attempt, stopping, what, split, waiting, broker=False,
                                overload_patience_s=overload_patience_s)  # fmt: skip

    async def run_broker(
        self,
        attempt: Callable[[], Awaitable[_T]],
        stopping: asyncio.Event,
        what: str = "",
        *,
        waiting: Waiting | None = None,
        fatal: Callable[[Exception], bool] | None = None,
    ) -> _T:
        """Await ``attempt()`` (a send to Kafka) until it does not raise, with the same back-off
        and shutdown: any exception of the producer is taken for an outage of the broker, since
        the caller holds its offsets until the send succeeds and nothing is lost by waiting.
        An exception for which ``fatal`` is true is raised at once (the caller changes what it
        sends: waiting cannot help)."""
        return await self._loop(attempt, stopping, what, False, waiting, broker=True, fatal=fatal)

    async def _loop(
        self,
        attempt: Callable[[], Awaitable[_T]],
        stopping: asyncio.Event,
        what: str,
        split: bool,
        waiting: Waiting | None,
        *,
        broker: bool,
        fatal: Callable[[Exception], bool] | None = None,
        overload_patience_s: float | None = None,
    ) -> _T:
        delay = self.initial_s
        overloaded = 0
        overloaded_s = 0.0  # waited while the current run of overload errors lasts
        waited = False
        while True:
            try:
                result = await attempt()
            except (asyncio.CancelledError, ShuttingDown):
                raise
            except Exception as exc:
                if not broker and not isinstance(exc, StorageUnavailable):
                    raise
                if fatal is not None and fatal(exc):
                    if waiting is not None and waited:
                        waiting(None)
                    raise
                overloaded = overloaded + 1 if isinstance(exc, StorageOverloaded) else 0
                overloaded_s = overloaded_s if overloaded else 0.0
                patience_over = (
                    overload_patience_s is not None
                    and overloaded > 0
                    and overloaded_s >= overload_patience_s
                )
                if (split and overloaded > self.split_after) or patience_over:
                    log.warning("storage overloaded by a write %d times in a row; %s: %s",
                                overloaded, "giving up on it" if patience_over else "splitting it",
                                exc)  # fmt: skip
                    if waiting is not None and waited:
                        waiting(None)
                    raise
                if stopping.is_set():
                    raise ShuttingDown(str(exc)) from exc
                source = "the broker" if broker else "storage"
                message = f"{source} unavailable, retrying{f' {what}' if what else ''}"
                log.warning("%s in %.1fs (offsets held): %s", message, delay, exc)
                if waiting is not None:
                    waiting(f"{message}: {type(exc).__name__}: {exc}"[:1000])
                    waited = True
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stopping.wait(), delay)
                overloaded_s += delay if overloaded else 0.0
                delay = min(delay * 2, self.max_s)
            else:
                if waiting is not None and waited:
                    waiting(None)
                return result
