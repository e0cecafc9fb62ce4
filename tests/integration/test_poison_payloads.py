"""End to end: a real worker on the real broker dead-letters a mix of poison (every named bad
payload of the contract, images only the pipeline can reject, payloads whose dead letters must
be cut to fit one Kafka request) and still stores every good event exactly once."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from poison_payloads import MAX_PAYLOAD_E2E, N_GOOD, poison_mix

from signals.open_clip_embedder import OpenClipEmbedder
from streams.dead_letter import MAX_RECORD_BYTES, DeadLetter
from streams.emitter import Emitter


@pytest.fixture
def poison_stack(
    kafka_bootstrap: str, tmp_path: Path, tiny_embedder: OpenClipEmbedder
) -> Iterator[Any]:
    from test_reliability import new_stack

    with new_stack(kafka_bootstrap, tmp_path, tiny_embedder) as stack:
        yield stack


@pytest.mark.integration
def test_worker_dead_letters_every_poison_payload_and_keeps_running(poison_stack: Any) -> None:
    from test_reliability import load_events, read_topic, stored, wait_for

    stack = poison_stack
    poison = poison_mix()
    good = load_events(N_GOOD, prefix="good")
    # Content stored raw, so each letter's payload can be compared with what was sent; the
    # redacted letters are checked in test_privacy_end_to_end and test_dead_letter_redaction.
    raw = {f"TELLTALE_PRIVACY_{k}": "raw" for k in ("PROMPT_TEXT", "OUTPUT_TEXT", "ATTRIBUTES")}
    worker = stack.start(TELLTALE_WORKER_MAX_PAYLOAD_BYTES=str(MAX_PAYLOAD_E2E), **raw)
    try:
        messages = [p for p, _ in poison]
        for i, event in enumerate(good):  # interleaved, so poison and good share batches
            messages.insert(2 * i, json.dumps(event).encode())
        with Emitter(stack.bootstrap, stack.topic, max_request_size=4_000_000) as emitter:
            for i, payload in enumerate(messages):
                emitter.emit_raw(payload, key=f"m-{i}")
        total = len(poison) + N_GOOD
        wait_for(
            f"{total} committed offsets", lambda: stack.committed() >= total, 180, worker.alive
        )
        worker.alive()  # still running after all of it
    except BaseException:
        worker.stop_quietly()
        raise
    code, _ = worker.terminate()
    assert code == 0, worker.text()[-3000:]

    dead = [DeadLetter.from_json(v) for v in read_topic(stack.bootstrap, stack.dlq)]
    assert len(dead) == len(poison), f"{len(dead)} dead letters for {len(poison)} poison payloads"
    by_offset = {(d.partition, d.offset): d for d in dead}
    assert len(by_offset) == len(poison)  # each poison payload once, none twice
    truncated = 0
    for payload, reason in poison:
        [letter] = [
            d for d in dead if d.payload_bytes == len(payload) and payload.startswith(d.original())
        ]
        assert reason in letter.reason, (letter.reason, payload[:120])
        assert letter.topic == stack.topic and letter.offset >= 0
        assert len(letter.to_json()) <= MAX_RECORD_BYTES
        assert letter.truncated == (letter.original() != payload)
        truncated += letter.truncated
    # Cut: the payloads whose base64 alone exceeds 900 kB (the 300 kB of NULs fits as base64).
    assert truncated == sum(len(p) * 4 / 3 > MAX_RECORD_BYTES for p, _ in poison) == 3
    image_letters = [d for d in dead if d.reason.startswith("output.image: ")]
    assert len(image_letters) == len([p for p, _ in poison if p.startswith(b'{"event_id": "img-')])
    s = stored(stack.db)
    assert (s.events_final, s.events_physical, s.scores) == (N_GOOD, N_GOOD, N_GOOD)
    print(
        f"{len(poison)} poison payloads dead-lettered ({truncated} cut to fit,"
        f" {len(image_letters)} by the pipeline's image check), {N_GOOD} good events stored once"
    )
