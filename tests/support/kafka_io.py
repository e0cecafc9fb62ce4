"""A worker's topics on the real broker, and what it did there: committed offsets, a topic's
records."""

from __future__ import annotations

import subprocess
import time
import uuid

from kafka import KafkaConsumer, TopicPartition
from kafka.admin import KafkaAdminClient, NewTopic


def fresh_topics(bootstrap: str, partitions: int = 3) -> tuple[str, str, str]:
    """A new generations topic and its dead-letter topic, created; and a new group id."""
    topic = f"generations-{uuid.uuid4().hex[:8]}"
    dlq = f"{topic}.dlq"
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    admin.create_topics([NewTopic(topic, partitions, 1), NewTopic(dlq, partitions, 1)])
    admin.close()
    return topic, dlq, f"telltale-test-{uuid.uuid4().hex[:8]}"


def committed(bootstrap: str, group: str, topic: str) -> int:
    """Sum of the group's committed offsets on ``topic`` (OffsetFetch; does not join)."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    try:
        partitions = consumer.partitions_for_topic(topic) or set()
        return sum(consumer.committed(TopicPartition(topic, p)) or 0 for p in partitions)
    finally:
        consumer.close(autocommit=False)


def wait_committed(
    bootstrap: str,
    group: str,
    topic: str,
    expected: int,
    proc: subprocess.Popen[bytes],
    timeout: float = 180.0,
) -> None:
    deadline = time.monotonic() + timeout
    seen = -1
    while time.monotonic() < deadline:
        assert proc.poll() is None, "worker exited early"
        seen = committed(bootstrap, group, topic)
        if seen >= expected:
            return
        time.sleep(1.0)
    raise AssertionError(f"only {seen} of {expected} offsets committed within {timeout}s")


def read_topic(bootstrap: str, topic: str, expected: int, timeout: float = 30.0) -> list[bytes]:
    consumer = KafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        auto_offset_reset="earliest",
        group_id=None,
        consumer_timeout_ms=2000,
    )
    values: list[bytes] = []
    deadline = time.monotonic() + timeout
    try:
        while len(values) < expected and time.monotonic() < deadline:
            values += [message.value for message in consumer]
    finally:
        consumer.close()
    return values
