"""How the worker's agents wait out storage: bounded exponential back-off, cut short by shutdown.

Only :class:`~storage.errors.StorageUnavailable` (transient) is retried. Rows the database
rejects and a misconfigured database propagate at once: retrying them cannot help.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from storage import StorageUnavailable

__all__ = ["RetryPolicy", "ShuttingDown"]

log = logging.getLogger(__name__)

_T = TypeVar("_T")


class ShuttingDown(Exception):
    """The worker is stopping while storage is unavailable: leave the work unacknowledged."""


@dataclass(frozen=True)
class RetryPolicy:
    """Back-off of ``initial_s``, doubling up to ``max_s``; without bound in attempts, because
    offsets are held meanwhile and nothing is lost by waiting for storage to come back."""

    initial_s: float = 0.5
    max_s: float = 30.0

    async def run(
        self, attempt: Callable[[], Awaitable[_T]], stopping: asyncio.Event, what: str = ""
    ) -> _T:
        """Await ``attempt()`` until it does not raise :class:`StorageUnavailable`.

        Raises :class:`ShuttingDown` when ``stopping`` is set while storage is unavailable
        (a shutdown also cuts the current wait short).
        """
        delay = self.initial_s
        while True:
            try:
                return await attempt()
            except StorageUnavailable as exc:
                if stopping.is_set():
                    raise ShuttingDown(str(exc)) from exc
                log.warning(
                    "storage unavailable, retrying%s in %.1fs (offsets held): %s",
                    f" {what}" if what else "",
                    delay,
                    exc,
                )
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stopping.wait(), delay)
                delay = min(delay * 2, self.max_s)
