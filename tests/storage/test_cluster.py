"""The cluster rendering of the schema: every statement parses, and the layout is right."""

from __future__ import annotations

from typing import Any

import pytest

from storage.cluster import render
from storage.migrate import _LEDGER
from storage.schema import MIGRATIONS

STATEMENTS = [_LEDGER, *(s for m in MIGRATIONS for s in m.statements)]


def test_single_node_statements_are_unchanged() -> None:
    assert all(render(s, None) == [s] for s in STATEMENTS)


def test_every_cluster_statement_parses_in_clickhouse(ch: Any) -> None:
    rendered = [r for s in STATEMENTS for r in render(s, "telltale")]
    for sql in rendered:
        formatted = ch.query("SELECT formatQuery({sql:String})", parameters={"sql": sql})
        assert "ON CLUSTER telltale" in formatted.result_rows[0][0]


def test_cluster_layout() -> None:
    local, distributed = render(next(s for s in STATEMENTS if "TABLE IF NOT EXISTS events " in s
                                     or "EXISTS events (" in s), "prod")  # fmt: skip
    assert "CREATE TABLE IF NOT EXISTS events_local ON CLUSTER prod" in local
    assert ("ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/{database}/"
            "events_local', '{replica}', ingested_at)") in local  # fmt: skip
    assert "ORDER BY (event_id)" in local and "PARTITION BY toYYYYMM(timestamp)" in local
    assert distributed.endswith(
        "ENGINE = Distributed(prod, currentDatabase(), events_local, cityHash64(event_id))"
    )
    [view] = render(next(s for s in STATEMENTS if "failure_rates_1m_mv" in s), "prod")
    assert "TO failure_rates_1m_local AS" in view and "FROM signal_scores_local" in view
    [aggregating, _] = render(next(s for s in STATEMENTS if "EXISTS failure_rates_1m (" in s),
                              "prod")  # fmt: skip
    assert "ReplicatedAggregatingMergeTree('/clickhouse/tables/{shard}/{database}/" \
           "failure_rates_1m_local', '{replica}')" in aggregating  # fmt: skip


def test_bad_cluster_names_and_unknown_statements_are_refused() -> None:
    with pytest.raises(ValueError, match="identifier"):
        render(STATEMENTS[0], "prod; DROP TABLE events")
    with pytest.raises(ValueError, match="cannot render"):
        render("ALTER TABLE events ADD COLUMN x UInt8", "prod")


def test_added_columns_go_on_the_shards_and_the_distributed_table() -> None:
    local, distributed = render(
        "ALTER TABLE events ADD COLUMN IF NOT EXISTS user_id String DEFAULT ''", "prod"
    )
    assert local.startswith("ALTER TABLE events_local ON CLUSTER prod ADD COLUMN IF NOT EXISTS")
    assert local.endswith("user_id String DEFAULT ''")
    assert distributed.startswith("ALTER TABLE events ON CLUSTER prod ADD COLUMN")


def test_erasure_deletes_run_on_every_shard(ch: Any) -> None:
    """`telltale forget` on a cluster: each table's delete is a mutation of its replicated local
    table on every node, and it parses as ClickHouse SQL with its bound parameters."""
    from storage.erasure import ERASED_TABLES

    for table, where in ERASED_TABLES.items():
        [statement] = render(f"ALTER TABLE {table} DELETE WHERE {where}", "prod")
        assert statement.startswith(f"ALTER TABLE {table}_local ON CLUSTER prod DELETE WHERE")
        formatted = ch.query("SELECT formatQuery({sql:String})", parameters={"sql": statement})
        assert f"{table}_local ON CLUSTER prod" in formatted.result_rows[0][0]
