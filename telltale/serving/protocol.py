"""A deadline for each request head on ``telltale serve``'s connections.

uvicorn (over h11) waits for a request's line and headers as long as the client likes:
``timeout_keep_alive`` only covers the silence *between* requests, and h11 has no header
timeout. 800 connections that each send a header byte now and then hold 800 sockets and file
descriptors indefinitely (slowloris). :func:`header_deadline_protocol` gives uvicorn a protocol
that closes a connection whose request head is not complete ``timeout_s`` after the connection
opened, or after the first byte of a later request on a kept-alive connection. Bodies are read
by the application under its own size limit.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

__all__ = ["header_deadline_protocol"]

log = logging.getLogger(__name__)


class _HeaderDeadlineH11(H11Protocol):
    """uvicorn's h11 protocol, closing connections whose request head is too slow."""

    header_timeout_s: float = 10.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._head_deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        # h11 leaves the client IDLE until a whole request head has been parsed.
        if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
            if self._head_deadline is None:
                self._arm()
        else:
            self._disarm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _arm(self) -> None:
        self._head_deadline = self.loop.call_later(self.header_timeout_s, self._head_too_slow)

    def _disarm(self) -> None:
        if self._head_deadline is not None:
            self._head_deadline.cancel()
            self._head_deadline = None

    def _head_too_slow(self) -> None:
        self._head_deadline = None
        if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
            log.debug("closing %s: no complete request head within %g s", self.client,
                      self.header_timeout_s)  # fmt: skip
            self.transport.close()


def header_deadline_protocol(timeout_s: float) -> type[H11Protocol]:
    """An HTTP protocol class for ``uvicorn.Config(http=...)`` with a ``timeout_s`` deadline
    for every request head."""
    if timeout_s <= 0:
        raise ValueError("the header timeout must be positive")
    return type("HeaderDeadlineH11", (_HeaderDeadlineH11,), {"header_timeout_s": timeout_s})
