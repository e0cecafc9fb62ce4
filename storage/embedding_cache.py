"""The shared embedding cache in ClickHouse: content key → window vectors.

Workers keep an in-process LRU (``signals.cache``) and look here for what it misses before they
run the model, so a prompt template embedded by one worker is not embedded again by another, or
after a restart. Keys are content hashes computed by the caller (embedder id + field + content;
for ``output.image`` the content is a hash of the decoded pixels, one window per image); this
table never sees the content itself. Storage knows no numpy: vectors are float lists.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from storage.errors import StorageUnavailable

if TYPE_CHECKING:
    from clickhouse_connect.driver.client import Client

__all__ = ["ClickHouseVectorCache"]

_CHUNK = 2_000


class ClickHouseVectorCache:
    """``get_many`` / ``put_many`` over the ``embedding_cache`` table.

    Raises :class:`StorageUnavailable` when ClickHouse cannot be reached; the caller treats a
    failed lookup as a miss (the model still answers) and a failed store as nothing lost.
    """

    def __init__(self, client: Client) -> None:
        self._client = client

    def get_many(self, keys: Sequence[str]) -> dict[str, list[list[float]]]:
        found: dict[str, list[list[float]]] = {}
        unique = list(dict.fromkeys(keys))
        for start in range(0, len(unique), _CHUNK):
            try:
                rows = self._client.query(
                    "SELECT key, any(windows) FROM embedding_cache "
                    "WHERE key IN {keys:Array(String)} GROUP BY key",
                    parameters={"keys": unique[start : start + _CHUNK]},
                ).result_rows
            except Exception as exc:
                raise StorageUnavailable(f"embedding cache lookup failed: {exc}") from exc
            found.update((str(r[0]), [list(w) for w in r[1]]) for r in rows)
        return found

    def put_many(
        self, items: Mapping[str, Sequence[Sequence[float]]], *, embedder_id: str, field: str
    ) -> None:
        """Store window vectors by key; ``embedder_id`` and ``field`` are kept for inspection."""
        if not items:
            return
        rows = [
            [key, embedder_id, field, [list(map(float, w)) for w in windows]]
            for key, windows in items.items()
        ]
        try:
            self._client.insert(
                "embedding_cache", rows, column_names=["key", "embedder_id", "field", "windows"]
            )
        except Exception as exc:
            raise StorageUnavailable(f"embedding cache insert failed: {exc}") from exc
