"""The Emitter: how an application sends generation events to Kafka (kafka-python).

>>> with Emitter("localhost:9092") as emitter:  # doctest: +SKIP
...     emitter.emit(event)
... # leaving the block flushes; undelivered events raise EmitError

Events are keyed by ``event_id`` so a re-sent event lands on the same partition as the first
copy and is handled by the same worker, in order. An event the producer refuses outright
(larger than ``max_request_size``, say) raises :class:`EmitError` from ``emit`` at once.
The producer batches (``linger_ms``, ``batch_size``); ``flush()`` waits for every send and
raises :class:`EmitError` listing the events that could not be delivered, so an application
never loses one silently.
"""

from __future__ import annotations

import threading
from types import TracebackType
from typing import Any

from streams.errors import EmitError
from streams.events import GenerationEvent, encode_event
from streams.feedback import Feedback, encode_feedback
from streams.kafka_security import KafkaSecurity, check_credentials

__all__ = ["Emitter"]


class Emitter:
    def __init__(
        self,
        bootstrap: str,
        topic: str = "generations",
        *,
        linger_ms: int = 20,
        batch_size: int = 256 * 1024,
        acks: int | str = "all",
        request_timeout_ms: int = 30_000,
        feedback_topic: str = "generations.feedback",
        security: KafkaSecurity | None = None,
        **producer_options: Any,
    ) -> None:
        """``security``: SASL / TLS settings; the credentials are checked here, so a wrong
        password raises :class:`~streams.kafka_security.KafkaAuthError` at once instead of
        the producer retrying until it times out."""
        from kafka import KafkaProducer

        self.topic = topic
        self.feedback_topic = feedback_topic
        if security is not None:
            check_credentials(bootstrap, security)
            producer_options = {**security.kafka_python(), **producer_options}
        self._producer = KafkaProducer(
            bootstrap_servers=bootstrap,
            linger_ms=linger_ms,
            batch_size=batch_size,
            acks=acks,
            request_timeout_ms=request_timeout_ms,
            **producer_options,
        )
        self._lock = threading.Lock()
        self._failed: list[tuple[str, BaseException]] = []
        self._sent = 0

    def emit(self, event: GenerationEvent) -> None:
        """Queue one validated event for delivery."""
        self.emit_raw(encode_event(event), key=event.event_id)

    def feedback(self, record: Feedback) -> None:
        """Queue one user judgement of an event for ``feedback_topic`` (keyed by event id)."""
        self.emit_raw(encode_feedback(record), key=record.event_id, topic=self.feedback_topic)

    def emit_raw(self, payload: bytes, key: str | None = None, topic: str | None = None) -> None:
        """Queue pre-serialised bytes (replay of logs, tests of the dead-letter path)."""
        from kafka.errors import KafkaError

        try:
            future = self._producer.send(
                topic or self.topic, value=payload, key=key.encode() if key is not None else None
            )
        except KafkaError as exc:  # refused before queuing (too large, no metadata, ...)
            raise EmitError(f"event {key!r} was not queued: {exc}", [(key or "", exc)]) from exc
        future.add_errback(self._record_failure, key or "")
        self._sent += 1

    def _record_failure(self, key: str, exc: BaseException) -> None:
        with self._lock:
            self._failed.append((key, exc))

    def flush(self, timeout: float | None = None) -> int:
        """Wait for every queued event; return how many were sent since the last flush."""
        self._producer.flush(timeout=timeout)
        with self._lock:
            failed, self._failed = self._failed, []
        sent, self._sent = self._sent, 0
        if failed:
            raise EmitError(
                f"{len(failed)} of {sent} events were not delivered; first: {failed[0][1]!r}",
                failed,
            )
        return sent

    def close(self, timeout: float | None = None) -> None:
        try:
            self.flush(timeout)
        finally:
            self._producer.close(timeout=timeout)

    def __enter__(self) -> Emitter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
