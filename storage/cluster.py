"""Render the schema for a ClickHouse cluster: ReplicatedMergeTree shards behind Distributed.

On one server (and in chDB) each statement of ``storage.schema`` runs as written. With
``TELLTALE_CLICKHOUSE_CLUSTER=name`` every table ``t`` becomes

* ``t_local`` on every node (``ON CLUSTER``), with the ``Replicated`` variant of its engine,
  replicated through ClickHouse Keeper under ``/clickhouse/tables/{shard}/{database}/t_local``;
* ``t``, a ``Distributed`` table over the ``t_local`` shards, which everything reads and writes.

Event tables are sharded by ``cityHash64(event_id)``: every copy of an event, and all its
embeddings and scores, land on one shard, where ``ReplacingMergeTree`` merges duplicates and
the materialized views (attached to the local tables) count it once. Reads through the
Distributed tables merge the ``uniqExact`` states of all shards, which is still exact.
See ``docs/scaling.md``.
"""

from __future__ import annotations

import re

__all__ = ["SHARD_KEYS", "render"]

SHARD_KEYS = {
    "events": "cityHash64(event_id)",
    "embeddings": "cityHash64(event_id)",
    "signal_scores": "cityHash64(event_id)",
    "embedding_cache": "cityHash64(key)",
    "feedback": "cityHash64(event_id)",
}
"""Tables written per event; all others are small or written only by views (``rand()``)."""

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_TABLE = re.compile(
    r"\s*CREATE TABLE IF NOT EXISTS (?P<name>\w+) \((?P<body>.*)\) ENGINE = "
    r"(?P<engine>\w*MergeTree)(?:\((?P<args>[^)]*)\))?(?P<rest>.*)",
    re.DOTALL,
)
_ALTER = re.compile(
    r"\s*ALTER TABLE (?P<name>\w+) (?P<action>ADD COLUMN IF NOT EXISTS .*)", re.DOTALL
)
_TTL = re.compile(
    r"\s*ALTER TABLE (?P<name>\w+) (?P<action>(?:MODIFY TTL .*|REMOVE TTL\s*))", re.DOTALL
)
_DELETE = re.compile(r"\s*ALTER TABLE (?P<name>\w+) (?P<action>DELETE WHERE .*)", re.DOTALL)
_VIEW = re.compile(
    r"\s*CREATE MATERIALIZED VIEW IF NOT EXISTS (?P<name>\w+) TO (?P<target>\w+) AS"
    r"(?P<select>.*\bFROM )(?P<source>\w+)(?P<rest>.*)",
    re.DOTALL,
)


def render(statement: str, cluster: str | None) -> list[str]:
    """The statements that create ``statement``'s object on ``cluster`` (or as is, if None)."""
    if cluster is None:
        return [statement]
    if not _IDENTIFIER.fullmatch(cluster):
        raise ValueError(f"cluster name {cluster!r} is not a plain identifier")
    table = _TABLE.fullmatch(statement)
    if table is not None:
        name, local = table["name"], f"{table['name']}_local"
        args = f", {table['args']}" if table["args"] else ""
        engine = (
            f"Replicated{table['engine']}('/clickhouse/tables/{{shard}}/{{database}}/{local}', "
            f"'{{replica}}'{args})"
        )
        shard_key = SHARD_KEYS.get(name, "rand()")
        return [
            f"CREATE TABLE IF NOT EXISTS {local} ON CLUSTER {cluster} ({table['body']}) "
            f"ENGINE = {engine}{table['rest']}",
            f"CREATE TABLE IF NOT EXISTS {name} ON CLUSTER {cluster} AS {local} "
            f"ENGINE = Distributed({cluster}, currentDatabase(), {local}, {shard_key})",
        ]
    view = _VIEW.fullmatch(statement)
    if view is not None:
        return [
            f"CREATE MATERIALIZED VIEW IF NOT EXISTS {view['name']} ON CLUSTER {cluster} "
            f"TO {view['target']}_local AS{view['select']}{view['source']}_local{view['rest']}"
        ]
    alter = _ALTER.fullmatch(statement)
    if alter is not None:
        # The column goes on the local shards and on the Distributed table that reads them.
        return [
            f"ALTER TABLE {alter['name']}_local ON CLUSTER {cluster} {alter['action']}",
            f"ALTER TABLE {alter['name']} ON CLUSTER {cluster} {alter['action']}",
        ]
    ttl = _TTL.fullmatch(statement)
    if ttl is not None:
        # Rows live on the local shards; the Distributed table stores nothing to expire.
        return [f"ALTER TABLE {ttl['name']}_local ON CLUSTER {cluster} {ttl['action']}"]
    delete = _DELETE.fullmatch(statement)
    if delete is not None:
        # A mutation runs where the rows are: on every shard's replicated local table.
        return [f"ALTER TABLE {delete['name']}_local ON CLUSTER {cluster} {delete['action']}"]
    raise ValueError(f"cannot render for a cluster: {statement.strip()[:80]}")
