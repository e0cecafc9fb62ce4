"""Privacy end to end (issue 21): personal data planted in 320 events (e-mail addresses as user
ids, phone and card numbers in answers, a free-text attribute) goes through the real worker on
the real broker and through `telltale replay`; afterwards no planted value is in any column of
any table, in the dead-letter topic, the reject file or the worker's log, while a `pii` leak
signal's stored rate equals the planted leak rate (it scored the raw text)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from kafka import KafkaAdminClient
from kafka.admin import NewTopic
from kafka_io import read_topic, wait_committed
from stored_values import every_stored_value
from testenv import TINY_ENV

from signals.open_clip_embedder import OpenClipEmbedder
from signals.redaction import Redactor
from signals.spec import SignalSpec
from signals.training import train_signal
from storage.client import connect
from storage.migrate import migrate
from storage.queries import failure_rates
from streams.dead_letter import MAX_REDACTED_CHARS, DeadLetter
from streams.emitter import Emitter
from streams.privacy import ContentPolicy
from telltale.signal_store import ClickHouseSignalStore

pytestmark = pytest.mark.integration

KEY = "privacy-e2e-key-0123456789abcdef"
N_EVENTS, N_BAD = 320, 6
PHONES = ["+1 415 555 0132", "+44 20 7946 0958", "(212) 555-0147"]
CARDS = ["4111 1111 1111 1111", "5500 0055 5555 5559"]


def planted() -> tuple[list[dict[str, Any]], list[bytes], set[str], int]:
    """Events, invalid payloads, every planted value, and how many answers leak a contact."""
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=40)
    events, values, leaks = [], set(), 0
    for i in range(N_EVENTS):
        user = f"customer{i % 37}@planted-mail.net"
        values.add(user)
        answer = f"Your order {i} has shipped."
        if i % 4 == 1:
            email = f"agent{i}@support-desk.net"
            answer += f" Questions? Write to {email}."
            values.add(email)
        if i % 5 == 2:
            phone = PHONES[i % 3]
            answer += f" Or call {phone} after six."
            values.add(phone)
        leaks += i % 4 == 1 or i % 5 == 2
        if i % 7 == 3:
            card = CARDS[i % 2]
            answer += f" We charged the card {card}."
            values.add(card)
        note = f"callback requested on {PHONES[(i + 1) % 3]}" if i % 6 == 0 else "none"
        events.append({
            "event_id": f"pv-{i:04d}", "timestamp": (start + timedelta(seconds=5 * i)).isoformat(),
            "model": "support-bot", "model_version": "v1",
            "prompt": {"text": f"Where is order {i}? Reach me at {user}"},
            "output": {"text": answer}, "user_id": user, "session_id": f"s-{user}",
            "attributes": {"locale": "en-US", "note": note},
        })  # fmt: skip
    bad = [json.dumps({"event_id": f"bad-{k}", "output": {"text": f"mail bad{k}@planted-mail.net"
                                                          f" or {PHONES[k % 3]}"}}).encode()
           for k in range(N_BAD)]  # fmt: skip
    values |= {f"bad{k}@planted-mail.net" for k in range(N_BAD)}
    return events, bad, values, leaks


def leak_signal(client: Any, embedder: OpenClipEmbedder) -> None:
    spec = SignalSpec(name="contact_leak", kind="pii", entities=("EMAIL_ADDRESS", "PHONE_NUMBER"))
    ClickHouseSignalStore(client).save(train_signal(spec, embedder))


def leak_rate(client: Any) -> tuple[int, int]:
    rows = [r for r in failure_rates(client) if r.signal == "contact_leak"]
    return sum(r.events for r in rows), sum(r.failures for r in rows)


def missing_values(text: str, values: set[str]) -> list[str]:
    return sorted(v for v in values if v in text)


def test_the_policy_redacts_what_it_must_and_nothing_else() -> None:
    policy = ContentPolicy("redacted", "drop", "redacted", frozenset({"locale"}), Redactor())
    assert policy.prompt("reach me at ana@silva-mail.net") == "reach me at <EMAIL_ADDRESS>"
    assert policy.output("anything") == ""
    stored = policy.attribute_values({"locale": "ana@silva-mail.net", "note": "call 212 555 0147"})
    assert stored == {"locale": "ana@silva-mail.net", "note": "call <PHONE_NUMBER>"}
    assert policy.free_text("card 4111 1111 1111 1111") == ""  # a dropped field drops free text
    with pytest.raises(ValueError, match="needs a redactor"):
        ContentPolicy(prompt_text="redacted")


def test_the_workers_policy_loads_its_recognizers_before_the_first_batch(
    tiny_env: dict[str, str], ch: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Loading Presidio took 4–7 s inside the first measured batch of ``bench/pipeline.py``:
    the worker's parts load it when built (its warm-up), other callers on first use, and a
    policy that stores everything raw never."""
    from telltale.settings import load_settings
    from telltale.wiring import content_policy, make_parts

    settings = load_settings()
    assert settings.privacy.prompt_text != "raw"  # the default redacts
    worker = make_parts(settings, ch, worker=True).pipeline.content
    assert worker is not None and isinstance(worker.redact, Redactor) and worker.redact.loaded
    lazy = content_policy(settings)
    assert isinstance(lazy.redact, Redactor) and not lazy.redact.loaded
    assert lazy.prompt("write to ann@corp.io") == "write to <EMAIL_ADDRESS>"
    assert lazy.redact.loaded
    for key in ("PROMPT_TEXT", "OUTPUT_TEXT", "ATTRIBUTES"):
        monkeypatch.setenv(f"TELLTALE_PRIVACY_{key}", "raw")
    raw = content_policy(load_settings(), load=True)
    assert isinstance(raw.redact, Redactor) and not raw.redact.loaded


def test_numbers_in_a_row_are_all_redacted_and_a_dense_text_stays_cheap() -> None:
    """Phones listed one after another (the leak signal's rule would take them for the tail
    of a longer number) are each redacted; a text holding thousands of numbers has every one
    replaced by <NUMBER> without running the phone matcher over each."""
    redact = Redactor()
    listed = "Call " + ", ".join(PHONES) + " or 415 555 0100 415 555 0101."
    assert not any(ch.isdigit() for ch in redact(listed)), redact(listed)
    dense = " ".join(f"+1 415 555 {1000 + i:04d}" for i in range(5000)) + " ana@silva-mail.net"
    stored = redact(dense)
    assert not any(ch.isdigit() for ch in stored) and "silva" not in stored
    assert stored.count("<NUMBER>") == 5000


def test_no_planted_value_survives_the_worker_or_replay(
    kafka_bootstrap: str, tmp_path: Path, tiny_embedder: OpenClipEmbedder
) -> None:
    events, bad, values, leaks = planted()
    topic = f"private-{uuid.uuid4().hex[:8]}"
    dlq, group = f"{topic}.dlq", f"telltale-test-{uuid.uuid4().hex[:8]}"
    admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    admin.create_topics([NewTopic(topic, 2, 1), NewTopic(dlq, 1, 1)])
    admin.close()
    db = tmp_path / "worker-db"
    client = connect(f"chdb://{db}")
    migrate(client)
    leak_signal(client, tiny_embedder)
    client.close()
    env = {**os.environ, **TINY_ENV, "TELLTALE_KAFKA_TOPIC": topic, "TELLTALE_KAFKA_DLQ_TOPIC": dlq,
           "TELLTALE_KAFKA_GROUP_ID": group, "TELLTALE_KAFKA_SESSION_TIMEOUT_S": "6",
           "TELLTALE_WORKER_BATCH_SIZE": "100", "TELLTALE_PRIVACY_ID_KEY": KEY}  # fmt: skip
    log_path = tmp_path / "worker.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "telltale.cli", "-v", "worker", "--clickhouse", f"chdb://{db}",
             "--kafka", kafka_bootstrap],
            cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        try:
            with Emitter(kafka_bootstrap, topic) as emitter:
                for payload in events:
                    emitter.emit_raw(json.dumps(payload).encode(), key=payload["event_id"])
                for i, raw in enumerate(bad):
                    emitter.emit_raw(raw, key=f"bad-{i}")
            wait_committed(kafka_bootstrap, group, topic, N_EVENTS + N_BAD, proc)
            dead = [json.loads(v) for v in read_topic(kafka_bootstrap, dlq, N_BAD)]
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=60)
    assert len(dead) == N_BAD and all(d["redacted"] for d in dead)
    assert "<EMAIL_ADDRESS>" in dead[0]["payload"]
    client = connect(f"chdb://{db}")
    try:
        stored = every_stored_value(client)
        assert stored.count("pv-") >= N_EVENTS  # the events are there...
        assert missing_values(stored, values) == []  # ...without what was planted in them
        assert "<CREDIT_CARD>" in stored and "<PHONE_NUMBER>" in stored
        assert leak_rate(client) == (N_EVENTS, leaks)  # scored on the raw text
    finally:
        client.close()
    assert missing_values(json.dumps(dead), values) == []
    assert missing_values(log_path.read_text(errors="replace"), values) == []

    # the same log replayed, with two lines that are rejected
    log_file = tmp_path / "log.jsonl"
    lines = [json.dumps(e) for e in events] + [raw.decode() for raw in bad[:2]]
    log_file.write_text("\n".join(lines) + "\n", encoding="utf-8")
    replay_db = tmp_path / "replay-db"
    client = connect(f"chdb://{replay_db}")
    migrate(client)
    leak_signal(client, tiny_embedder)
    client.close()
    rejects = tmp_path / "rejects.jsonl"
    done = subprocess.run(
        [sys.executable, "-m", "telltale.cli", "replay", str(log_file), "--clickhouse",
         f"chdb://{replay_db}", "--reject-file", str(rejects)],
        cwd=tmp_path, env={**env}, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert missing_values(done.stdout + done.stderr, values) == []
    assert len(rejects.read_text().splitlines()) == 2
    assert missing_values(rejects.read_text(), values) == []
    client = connect(f"chdb://{replay_db}")
    try:
        assert missing_values(every_stored_value(client), values) == []
        assert leak_rate(client) == (N_EVENTS, leaks)
    finally:
        client.close()


def test_dead_letter_redaction_keeps_a_bounded_redacted_prefix_and_withholds_binary() -> None:
    redact = ContentPolicy("redacted", "redacted", "redacted", frozenset(), Redactor()).free_text
    text = json.dumps({"output": {"text": "call 212 555 0147 " * 5000}}).encode()
    letter = DeadLetter.of(text, "bad", "t", 0, 7, redact=redact)
    assert letter.redacted and letter.truncated and letter.payload_bytes == len(text)
    # 5,000 numbers in one text: each is replaced by <NUMBER> (the dense-text rule)
    assert "555 0147" not in letter.payload and "<NUMBER>" in letter.payload
    assert len(letter.payload) < MAX_REDACTED_CHARS * 1.2  # a prefix, redacted
    binary = DeadLetter.of(b"\x08\x96\x01\xff" * 100, "bad protobuf", "t", 0, 8, redact=redact)
    assert (binary.payload, binary.redacted, binary.truncated) == ("", True, True)
    plain = DeadLetter.of(b'{"a": "call 212 555 0147"}', "bad", "t", 0, 9)  # raw policy
    assert plain.original() == b'{"a": "call 212 555 0147"}' and not plain.redacted


@pytest.mark.parametrize("store_windows", [True, False])
def test_store_windows_false_keeps_only_the_document_vector(
    ch: Any, minilm: Any, store_windows: bool
) -> None:
    """TELLTALE_PRIVACY_STORE_WINDOWS=false: a long answer's window vectors are scored (the
    signal sees them) but only its document vector is stored."""
    from signals.live import LiveSignals
    from storage.writer import ClickHouseWriter
    from streams.events import validate_event
    from streams.pipeline import Pipeline

    sentence = "The refund for your order was approved and will reach your account soon. "
    event = validate_event({
        "event_id": "long-1", "timestamp": datetime.now(UTC).isoformat(), "model": "m",
        "model_version": "v1", "prompt": {"text": "Where is my refund?"},
        "output": {"text": sentence * 40},
    })  # fmt: skip
    live = LiveSignals(ClickHouseSignalStore(ch), minilm.id, 0)
    policy = ContentPolicy(store_windows=store_windows)
    pipeline = Pipeline(minilm, live, ClickHouseWriter(ch), content=policy)
    assert pipeline.process([event]).written == 1
    [(vector, windows)] = ch.query(
        "SELECT vector, windows FROM embeddings WHERE field = 'output.text'"
    ).result_rows
    assert len(vector) == 384
    assert (len(windows) > 1) is store_windows


def test_image_references_are_stored_without_credentials_query_or_personal_data() -> None:
    from streams.events import validate_event
    from streams.pipeline import _event_row

    url = ("https://bob:hunter2@cdn.img-host.net/u/ana.silva@silva-mail.net/cat.png"
           "?X-Amz-Signature=f00d&user=42#top")  # fmt: skip
    redacting = ContentPolicy(output_text="redacted", redact=Redactor())
    stored = redacting.image_reference(url)
    assert stored.startswith("https://") and stored.endswith("/cat.png")
    assert not any(v in stored for v in ("hunter2", "bob", "silva", "f00d", "user=42", "#top"))
    assert redacting.image_reference("s3://renders/2026/cat.png") == "s3://renders/2026/cat.png"
    assert ContentPolicy(output_text="drop").image_reference(url) == ""
    assert ContentPolicy().image_reference(url) == url  # raw: as sent
    event = validate_event(
        {
            "event_id": "img-1",
            "timestamp": datetime.now(UTC).isoformat(),
            "model": "m",
            "model_version": "v1",
            "output": {"image": url},
        }
    )
    assert _event_row(event, "e", redacting).output_image == stored
