from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from storage.client import redact_dsn
from storage.dead_letters import DeadLetterRow, record_dead_letters
from storage.embedding_cache import ClickHouseVectorCache
from storage.migrate import applied_versions, migrate
from storage.queries import failure_rates, table_counts
from storage.registry import SignalRecord, delete_signal, latest_signals, save_signal
from storage.releases import add_release, list_releases
from storage.rows import EmbeddingRow, EventRow, ScoreRow, WriteBatch
from storage.schema import MIGRATIONS
from storage.writer import BackPressure, ClickHouseWriter

T0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)


def batch(
    ids: list[str],
    flagged: set[str],
    signal: str = "sig",
    model: str = "m",
    version: str = "v1",
    when: datetime = T0,
) -> WriteBatch:
    b = WriteBatch()
    for i, event_id in enumerate(ids):
        ts = when + timedelta(seconds=i)
        b.events.append(EventRow(event_id, ts, model, version, output_text="x"))
        b.embeddings.append(
            EmbeddingRow(event_id, "output.text", "emb", ts, model, version, [0.1, 0.2])
        )
        b.scores.append(
            ScoreRow(
                event_id,
                signal,
                1,
                ts,
                model,
                version,
                0.9 if event_id in flagged else 0.1,
                event_id in flagged,
            )
        )
    return b


def test_migrate_is_idempotent(ch: Any) -> None:
    assert migrate(ch) == []
    assert applied_versions(ch) == {m.version for m in MIGRATIONS}


def test_writer_counts_redelivered_events_once(ch: Any) -> None:
    writer = ClickHouseWriter(ch)
    ids = [f"e{i}" for i in range(50)]
    flagged = {"e1", "e7", "e9"}
    assert writer.write(batch(ids, flagged)) == 50
    # a redelivery in a different batch composition, before any merge: still counted once
    assert writer.write(batch(ids[10:30], flagged)) == 20
    counts = table_counts(ch)
    assert (counts.events, counts.distinct_events, counts.scores) == (50, 50, 50)
    [row] = failure_rates(ch)
    assert (row.events, row.failures) == (50, 3)
    assert writer.existing_event_ids(["e1", "nope", "e49"]) == {"e1", "e49"}


def test_a_dead_letter_recorded_again_is_one_row_even_in_another_month(ch: Any) -> None:
    """A redelivered record is refused again later (after a restart, possibly next month, so
    in another partition, where ``FINAL`` does not merge): its coordinates are stored once."""
    first = T0.replace(month=10, day=31, hour=23, minute=59)
    rows = [DeadLetterRow("generations", 0, offset, "not valid JSON", 10, first)
            for offset in (3, 7)]  # fmt: skip
    record_dead_letters(ch, rows)
    again = [DeadLetterRow(r.topic, r.partition, r.offset, r.reason, r.payload_bytes, T0)
             for r in (*rows, DeadLetterRow("generations", 1, 3, "new", 1, T0))]  # fmt: skip
    record_dead_letters(ch, again)
    record_dead_letters(ch, [again[-1], again[-1]])  # twice in one insert, too
    for table in ("dead_letters", "dead_letters FINAL"):
        stored = ch.query(f"SELECT partition, offset, failed_at FROM {table} "
                          "ORDER BY partition, offset").result_rows  # fmt: skip
        assert [(p, o, f.month) for p, o, f in stored] == [(0, 3, 10), (0, 7, 10), (1, 3, 11)]


def test_failure_rates_filter_and_bucket(ch: Any) -> None:
    writer = ClickHouseWriter(ch)
    writer.write(batch(["a1", "a2"], {"a1"}, model="m1", when=T0))
    writer.write(
        batch(
            ["b1", "b2", "b3"], {"b1", "b2"}, model="m2", version="v2", when=T0 + timedelta(hours=2)
        )
    )
    only_m2 = failure_rates(ch, model="m2")
    assert [(r.model_version, r.events, r.failures) for r in only_m2] == [("v2", 3, 2)]
    early = failure_rates(ch, until=T0 + timedelta(hours=1))
    assert [(r.model, r.events) for r in early] == [("m1", 2)]
    hourly = failure_rates(ch, bucket="hour")
    assert {r.bucket for r in hourly} == {T0, T0 + timedelta(hours=2)}
    assert failure_rates(ch, signal="other") == []


def test_hostile_strings_are_stored_and_queried_verbatim(ch: Any) -> None:
    hostile = "x'); DROP TABLE events; --\"\\\n\t\x01" + "é" * 300
    writer = ClickHouseWriter(ch)
    writer.write(batch(["h1"], {"h1"}, signal=hostile, model=hostile))
    [row] = failure_rates(ch, signal=hostile, model=hostile)
    assert (row.signal, row.model, row.failures) == (hostile, hostile, 1)
    assert table_counts(ch).events == 1


def test_writer_back_pressure_keeps_buffer(ch: Any) -> None:
    writer = ClickHouseWriter(ch, max_rows=5)
    with pytest.raises(BackPressure):
        writer.add(batch(["a", "b"], set()))
    assert writer.pending == 0


def test_signal_versions_are_immutable_and_deletion_is_a_tombstone(ch: Any) -> None:
    record = SignalRecord("s", 1, "few_shot", "emb", "{}", "{}", "me", T0)
    save_signal(ch, record)
    with pytest.raises(ValueError, match="already exists"):
        save_signal(ch, record)
    save_signal(ch, SignalRecord("s", 2, "few_shot", "emb", "{}", '{"v": 2}', "me", T0))
    assert [(r.name, r.version) for r in latest_signals(ch)] == [("s", 2)]
    assert delete_signal(ch, "s")
    assert latest_signals(ch) == []
    assert not delete_signal(ch, "missing")


def test_releases_round_trip_in_utc(ch: Any) -> None:
    add_release(ch, "m", "v2", T0.astimezone(__import__("zoneinfo").ZoneInfo("Europe/Paris")))
    [release] = list_releases(ch, "m")
    assert release.released_at == T0 and release.released_at.tzinfo is not None
    with pytest.raises(ValueError):
        add_release(ch, "m", "v3", datetime(2026, 1, 1))


def test_redact_dsn_hides_password() -> None:
    assert redact_dsn("https://u:s3cret@host:8443/db") == "https://u:***@host:8443/db"
    assert redact_dsn("chdb:///tmp/x") == "chdb:///tmp/x"


def test_embedding_cache_entries_expire_after_30_days(ch: Any) -> None:
    cache = ClickHouseVectorCache(ch)
    cache.put_many({"fresh": [[0.5, 0.5]]}, embedder_id="m", field="output.text")
    now = datetime.now(UTC)
    rows = [[key, "m", "output.text", [[1.0, 0.0]], now - timedelta(days=age)]
            for key, age in (("stale", 31), ("recent", 29))]  # fmt: skip
    ch.insert("embedding_cache", rows,
              column_names=["key", "embedder_id", "field", "windows", "created_at"])  # fmt: skip
    ch.command("OPTIMIZE TABLE embedding_cache FINAL")  # TTL deletes rows when parts merge
    assert set(cache.get_many(["fresh", "recent", "stale"])) == {"fresh", "recent"}


def test_ttl_changes_go_on_the_shards_only() -> None:
    from storage.cluster import render

    [local] = render("ALTER TABLE embedding_cache MODIFY TTL toDateTime(created_at) + "
                     "INTERVAL 30 DAY", "prod")  # fmt: skip
    assert local.startswith("ALTER TABLE embedding_cache_local ON CLUSTER prod MODIFY TTL")


def test_storage_knows_a_column_for_every_embedded_field() -> None:
    """The field list is declared in signals (embedders) and mapped to columns in storage,
    which sit side by side in the layering: the two must agree."""
    from signals import FIELDS, TEXT_FIELDS
    from storage.rows import FIELD_COLUMNS, TEXT_COLUMNS, EventRow

    assert tuple(FIELD_COLUMNS) == FIELDS and tuple(TEXT_COLUMNS) == TEXT_FIELDS
    assert set(FIELD_COLUMNS.values()) <= set(EventRow.COLUMNS)
