"""Where evaluation results go, declared once as a plain pydantic model.

:mod:`telltale.settings` binds it to ``TELLTALE_OTEL_*`` (the field ``export`` is
``TELLTALE_OTEL_EXPORT``, ``export_endpoint`` is ``TELLTALE_OTEL_EXPORT_ENDPOINT`` and so on), so
the names stay the same from the variable to the field. The headers are a
:class:`~pydantic.SecretStr` (they usually hold an API key): never printed or logged.
"""

from __future__ import annotations

from typing import Literal
from urllib.parse import unquote, urlsplit

from pydantic import BaseModel, Field, SecretStr, field_validator

__all__ = ["OtelExportConfig", "logs_url", "parse_headers"]

LOGS_PATH = "/v1/logs"


class OtelExportConfig(BaseModel):
    """``gen_ai.evaluation.result`` events: off, over OTLP/HTTP, or onto a Kafka topic."""

    export: Literal["off", "otlp_http", "kafka"] = Field(
        default="off",
        description="where each score goes as a gen_ai.evaluation.result log record: nowhere, "
        "an OTLP/HTTP endpoint (protobuf) or a Kafka topic a Collector reads (otlp_proto)",
    )
    export_endpoint: str = Field(
        default="http://127.0.0.1:4318",
        description="OTLP/HTTP base URL; /v1/logs is appended unless the URL already ends in it",
    )
    export_headers: SecretStr | None = Field(
        default=None,
        description="HTTP headers of every export request, key=value,key2=value2 "
        "(values URL-encoded, as OTEL_EXPORTER_OTLP_HEADERS)",
    )
    export_topic: str = Field(
        default="telltale.evaluations",
        description="Kafka topic of the export (the Collector's kafka receiver, encoding "
        "otlp_proto); never one of the worker's own OTLP input topics",
    )
    export_queue_size: int = Field(
        default=10_000, ge=1, description="records held for the sender; beyond it they drop"
    )
    export_batch_size: int = Field(default=512, ge=1, description="records per request")
    export_batch_timeout_s: float = Field(
        default=2.0, gt=0, description="longest wait for a full batch before sending a partial"
    )
    export_timeout_s: float = Field(default=5.0, gt=0, description="time limit of one request")
    export_retries: int = Field(
        default=3, ge=0, description="retries of a failed request (with back-off) before its "
        "records are dropped",
    )  # fmt: skip
    export_retry_initial_s: float = Field(default=0.5, gt=0, description="first back-off")
    export_retry_max_s: float = Field(default=5.0, gt=0, description="longest back-off")
    export_shutdown_timeout_s: float = Field(
        default=5.0, ge=0, description="how long shutdown waits to send what is queued"
    )

    @field_validator("export_endpoint")
    @classmethod
    def _http_only(cls, value: str) -> str:
        if urlsplit(value).scheme not in ("http", "https"):
            raise ValueError("the OTLP/HTTP endpoint must be an http:// or https:// URL")
        return value

    @field_validator("export_headers")
    @classmethod
    def _headers_parse(cls, value: SecretStr | None) -> SecretStr | None:
        parse_headers(value)  # a malformed value fails at start, not at the first send
        return value


def logs_url(endpoint: str) -> str:
    """The URL logs are POSTed to: ``{endpoint}/v1/logs``, or ``endpoint`` when it names the
    logs path itself (as ``OTEL_EXPORTER_OTLP_ENDPOINT`` and ``..._LOGS_ENDPOINT`` differ)."""
    base = endpoint.rstrip("/")
    return base if base.endswith(LOGS_PATH) else base + LOGS_PATH


def parse_headers(headers: SecretStr | None) -> dict[str, str]:
    """``key=value,key2=value2`` (values URL-encoded) as a dict; raises ValueError naming the
    malformed entry's position, never its value."""
    if headers is None:
        return {}
    parsed: dict[str, str] = {}
    for i, item in enumerate(headers.get_secret_value().split(",")):
        if not item.strip():
            continue
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"export_headers entry {i + 1} is not key=value")
        parsed[key.strip()] = unquote(value.strip())
    return parsed
