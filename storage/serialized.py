"""One client shared by several threads, one call at a time (for an embedded chDB).

chDB allows one process per data path and its client is synchronous: ``telltale serve --all``
runs the Kafka worker, the monitor, the guardrail API and the report in one process over one
embedded database, so they share one client and take turns through a lock. Only the database
calls wait for each other; embedding and scoring run outside the lock.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

__all__ = ["SerializedClient"]

_GUARDED = frozenset({"query", "insert", "command", "query_df", "query_arrow", "raw_query"})


class SerializedClient:
    """Wraps a clickhouse-connect client; its query/insert/command calls hold one lock.

    Every other attribute is passed through. ``close`` closes the wrapped client once.
    """

    def __init__(self, client: Any) -> None:
        self._client = client
        self._lock = threading.RLock()
        self._closed = False

    @property
    def lock(self) -> threading.RLock:
        """Held while a call runs; take it to run several calls without another in between."""
        return self._lock

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._client, name)
        if name not in _GUARDED or not callable(attribute):
            return attribute
        return self._guarded(attribute)

    def _guarded(self, call: Callable[..., Any]) -> Callable[..., Any]:
        def guarded(*args: Any, **kwargs: Any) -> Any:
            with self._lock:
                return call(*args, **kwargs)

        return guarded

    def close(self) -> None:
        with self._lock:
            if not self._closed:
                self._closed = True
                self._client.close()
