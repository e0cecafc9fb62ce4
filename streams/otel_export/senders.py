"""How an encoded OTLP logs request leaves the process: OTLP/HTTP, or a Kafka topic.

Both take the protobuf bytes of one ``ExportLogsServiceRequest`` (for Kafka that is also the
``LogsData`` message the Collector's kafka receiver reads with ``encoding: otlp_proto``: both are
``repeated ResourceLogs resource_logs = 1``). A send returns once the other side has the records
or raises :class:`SendFailed`; its ``retryable`` says whether trying again may help (the OTLP/HTTP
specification's retryable codes: 429, 502, 503, 504; network errors; a broker that is down).
"""

from __future__ import annotations

import http.client
import threading
import urllib.error
import urllib.request
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from streams.kafka_security import KafkaSecurity

__all__ = ["KafkaSender", "OtlpHttpSender", "SendFailed", "Sender"]

RETRYABLE_STATUS = frozenset({429, 502, 503, 504})
"""OTLP/HTTP: the responses after which the client may retry (specification, "Retryable
Response Codes"); any other failed status drops the request."""


class SendFailed(Exception):
    """A request was not delivered; ``retryable`` says whether a retry may succeed."""

    def __init__(self, reason: str, *, retryable: bool) -> None:
        super().__init__(reason)
        self.retryable = retryable


class Sender(Protocol):
    def send(self, payload: bytes) -> None:
        """Deliver one encoded request, or raise :class:`SendFailed`."""

    def close(self) -> None: ...


class OtlpHttpSender:
    """``POST {url}`` with ``Content-Type: application/x-protobuf`` (OTLP/HTTP, binary)."""

    def __init__(self, url: str, headers: dict[str, str], timeout_s: float) -> None:
        self._url = url
        self._headers = {**headers, "Content-Type": "application/x-protobuf"}
        self._timeout_s = timeout_s

    def send(self, payload: bytes) -> None:
        # The scheme is checked in OtelExportConfig: http or https only.
        request = urllib.request.Request(  # noqa: S310
            self._url, data=payload, headers=self._headers, method="POST"
        )
        try:
            with urllib.request.urlopen(request, timeout=self._timeout_s) as answer:  # noqa: S310
                answer.read()
        except urllib.error.HTTPError as exc:
            raise SendFailed(f"HTTP {exc.code} from the OTLP endpoint",
                             retryable=exc.code in RETRYABLE_STATUS) from exc  # fmt: skip
        except (OSError, http.client.HTTPException) as exc:  # refused, reset, timed out, DNS
            raise SendFailed(f"OTLP endpoint unreachable: {type(exc).__name__}: {exc}",
                             retryable=True) from exc  # fmt: skip

    def close(self) -> None:
        return None


class KafkaSender:
    """One Kafka record per request on ``topic`` (kafka-python), the producer made on first use
    so that a broker that is down never delays the caller that built the exporter."""

    def __init__(
        self, bootstrap: str, topic: str, timeout_s: float, security: KafkaSecurity | None = None
    ) -> None:
        self._bootstrap = bootstrap
        self._topic = topic
        self._timeout_s = timeout_s
        self._security = security
        self._producer: Any = None
        self._lock = threading.Lock()

    def send(self, payload: bytes) -> None:
        from kafka.errors import KafkaError

        try:
            producer = self._get_producer()
            producer.send(self._topic, value=payload).get(timeout=self._timeout_s)
        except KafkaError as exc:
            retryable = bool(getattr(exc, "retriable", False)) or _unreachable(exc)
            raise SendFailed(f"Kafka refused the export: {type(exc).__name__}: {exc}",
                             retryable=retryable) from exc  # fmt: skip
        except OSError as exc:
            raise SendFailed(f"Kafka unreachable: {exc}", retryable=True) from exc

    def _get_producer(self) -> Any:
        with self._lock:
            if self._producer is None:
                from kafka import KafkaProducer

                options = self._security.kafka_python() if self._security is not None else {}
                timeout_ms = int(self._timeout_s * 1000)
                self._producer = KafkaProducer(
                    bootstrap_servers=self._bootstrap, acks="all", linger_ms=0,
                    max_block_ms=timeout_ms, request_timeout_ms=max(timeout_ms, 1000),
                    **options,
                )  # fmt: skip
            return self._producer

    def close(self) -> None:
        with self._lock:
            producer, self._producer = self._producer, None
        if producer is not None:
            producer.close(timeout=self._timeout_s)


def _unreachable(exc: Exception) -> bool:
    """No broker answered (kafka-python raises these before any request is made)."""
    return type(exc).__name__ in {"NoBrokersAvailable", "KafkaTimeoutError"}
