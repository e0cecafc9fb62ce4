"""Pseudonymous ids (issue 21, item 2): with TELLTALE_PRIVACY_ID_KEY set, no user or session id
reaches storage in clear on the per-event or the columnar path, units still count once per
user, and the key never shows in a repr."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr
from stored_values import every_stored_value
from test_columnar import build_log, dump

from signals.live import LiveSignals
from signals.open_clip_embedder import OpenClipEmbedder
from storage.client import connect
from storage.migrate import migrate
from storage.writer import ClickHouseWriter
from streams.events import GenerationEvent, validate_event
from streams.pipeline import Pipeline
from streams.pseudonyms import PSEUDONYM_PREFIX, Pseudonyms
from streams.replay import RejectWriter, Replayer, Vectors
from telltale.settings import PrivacySettings, Settings, SettingsError, load_settings
from telltale.signal_store import ClickHouseSignalStore
from telltale.wiring import feedback_rows

KEY = SecretStr("a-test-key-of-32-characters-long")
T0 = datetime(2026, 11, 2, tzinfo=UTC)


def test_pseudonyms_are_stable_keyed_and_say_nothing_of_the_key() -> None:
    ids = Pseudonyms(KEY)
    assert ids("ana@example.net") == ids("ana@example.net") != ids("bo@example.net")
    other = Pseudonyms(SecretStr("another-key-16-chars"))
    assert ids("ana@example.net") != other("ana@example.net")
    assert ids("ana@example.net").startswith(PSEUDONYM_PREFIX) and len(ids("x")) == 29
    assert ids("") == ""
    assert KEY.get_secret_value() not in repr(ids)
    with pytest.raises(ValueError, match="at least 16"):
        Pseudonyms(SecretStr("short"))


def test_the_key_setting_is_secret_and_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TELLTALE_PRIVACY_ID_KEY", KEY.get_secret_value())
    settings = load_settings()
    assert settings.privacy.id_key == KEY
    assert KEY.get_secret_value() not in repr(settings) + str(settings.model_dump())
    monkeypatch.setenv("TELLTALE_PRIVACY_ID_KEY", "short")
    with pytest.raises(SettingsError, match="TELLTALE_PRIVACY_ID_KEY"):
        load_settings()
    assert Settings(privacy=PrivacySettings(id_key=None)).privacy.id_key is None


def planted_events(n: int) -> tuple[list[GenerationEvent], set[str]]:
    """Chat events whose ids are e-mail addresses and phone-number-like session ids, also in
    the attributes they are promoted from; one user retries, as real users do."""
    rng = random.Random(2)
    users = [f"user{k}.planted@mail-{k}.example.net" for k in range(12)]
    events, planted = [], set(users)
    for i in range(n):
        user = users[0] if i % 4 == 0 else rng.choice(users)  # user 0 retries a lot
        session = f"+1-555-01{i % 7:02d}-session"
        planted.add(session)
        attributes: dict[str, Any] = {"locale": "en", "enduser.id": user}
        if i % 3 == 0:
            attributes["gen_ai.conversation.id"] = session
        events.append(validate_event({
            "event_id": f"p{i:04d}", "timestamp": (T0 + timedelta(seconds=i)).isoformat(),
            "model": "chat", "model_version": "v1", "prompt": {"text": "hi"},
            "output": {"text": f"answer {i}"},
            "user_id": user if i % 2 else None,  # else promoted from enduser.id
            "session_id": session if i % 3 else None, "attributes": attributes,
        }))  # fmt: skip
    return events, planted


def test_no_id_is_stored_in_clear_and_units_still_count_once_per_user(
    ch: Any, tiny_embedder: OpenClipEmbedder
) -> None:
    events, planted = planted_events(120)
    live = LiveSignals(ClickHouseSignalStore(ch), tiny_embedder.id, 0)
    pipeline = Pipeline(tiny_embedder, live, ClickHouseWriter(ch), pseudonyms=Pseudonyms(KEY))
    assert pipeline.process(events).written == 120
    from storage import record_feedback
    from streams.feedback import validate_feedback

    rater = "rater@corp.example.net"
    rated = validate_feedback({"event_id": "p0001", "value": -1, "user_id": rater,
                               "timestamp": T0.isoformat()})  # fmt: skip
    record_feedback(ch, feedback_rows([rated], Pseudonyms(KEY)))
    stored = every_stored_value(ch)
    leaked = sorted(v for v in (*planted, rater) if v in stored)
    assert leaked == []
    ids = Pseudonyms(KEY)
    retrier = "user0.planted@mail-0.example.net"
    users = ch.query(
        "SELECT uniqExact(user_id), countIf(user_id = {u:String}) FROM events FINAL",
        parameters={"u": ids(retrier)},
    ).result_rows[0]
    assert users == (len({e.user_id for e in events}), sum(e.user_id == retrier for e in events))
    [(attribute,)] = ch.query("SELECT attributes['enduser.id'] FROM events FINAL "
                              "WHERE event_id = 'p0000'").result_rows  # fmt: skip
    assert attribute == ids(events[0].attributes["enduser.id"])
    assert ch.query("SELECT user_id FROM feedback FINAL").result_rows == [(ids(rater),)]
    # the record id is derived from the rater's id: stored unkeyed it would confirm a guess
    [(stored_id,)] = ch.query("SELECT feedback_id FROM feedback FINAL").result_rows
    assert stored_id == ids(rated.feedback_id) != rated.feedback_id


class _Store:
    def __init__(self, client: Any, embedder: OpenClipEmbedder) -> None:
        live = LiveSignals(ClickHouseSignalStore(client), embedder.id, refresh_s=3600)
        self.pipeline = Pipeline(embedder, live, ClickHouseWriter(client),
                                 pseudonyms=Pseudonyms(KEY))  # fmt: skip

    def __call__(
        self, batch: list[GenerationEvent], vectors: Vectors
    ) -> tuple[int, int, list[tuple[str, str]]]:
        result = self.pipeline.process(batch, vectors)
        return result.written, result.skipped_existing, [(e.event_id, r) for e, r in
                                                          result.rejected]  # fmt: skip


def test_the_columnar_replay_pseudonymises_as_the_per_event_path_does(
    tmp_path: Path, tiny_embedder: OpenClipEmbedder
) -> None:
    log = tmp_path / "log.parquet"
    build_log(log, tiny_embedder, string_times=False)
    stored = {}
    for columnar in (False, True):
        client = connect(f"chdb://{tmp_path / f'db-{columnar}'}")
        migrate(client)
        store = _Store(client, tiny_embedder)
        Replayer(store, RejectWriter(tmp_path / f"rejects-{columnar}.jsonl"),
                 embedder_id=tiny_embedder.id, batch_size=128,
                 columnar=store.pipeline if columnar else None).replay([log])  # fmt: skip
        stored[columnar] = dump(client)["events"]
        raw = {f"u{k}" for k in range(13)} | {f"s{k}" for k in range(11)} | {"e49"}
        ids_seen = client.query(
            "SELECT arrayJoin(arrayConcat([user_id, session_id], mapValues(mapFilter("
            "(k, v) -> k IN ('user.id', 'enduser.id'), attributes)))) AS v FROM events FINAL "
            "WHERE v != ''").result_rows  # fmt: skip
        assert ids_seen and not raw & {v for (v,) in ids_seen}
        assert all(v.startswith(PSEUDONYM_PREFIX) for (v,) in ids_seen)
        client.close()
    assert stored[True] == stored[False]
