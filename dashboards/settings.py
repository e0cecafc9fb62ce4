"""Grafana settings: where ``dashboards push`` / ``alerts push`` send things, and how Grafana
reaches ClickHouse. A plain pydantic model: :mod:`telltale.settings` binds it to the
``TELLTALE_GRAFANA_*`` variables and the CLI builds it once; this package reads no environment.
Secrets are :class:`~pydantic.SecretStr` and never printed or logged.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from pydantic import BaseModel, Field, SecretStr, field_validator

__all__ = ["GrafanaConfig"]


class GrafanaConfig(BaseModel):
    """``TELLTALE_GRAFANA_URL``, ``_TOKEN`` (a service-account token), ``_ORG_ID``, ``_FOLDER_UID``
    and ``_FOLDER_TITLE`` address Grafana. ``_CLICKHOUSE_*`` describe the ClickHouse server *as
    Grafana sees it* (``http://clickhouse:8123`` inside docker-compose), which can differ from
    telltale's own ``TELLTALE_CLICKHOUSE_DSN``. ``_WEBHOOK_URL`` is the example contact point.
    """

    url: str = "http://localhost:3000"
    token: SecretStr | None = None
    org_id: int = Field(default=1, ge=1)
    folder_uid: str = Field(default="telltale", pattern=r"^[A-Za-z0-9_-]{1,40}$")
    folder_title: str = "Telltale"
    timeout_s: float = Field(default=10.0, gt=0)
    disable_provenance: bool = Field(
        default=True,
        description="send X-Disable-Provenance so pushed alerting objects stay editable in the UI",
    )
    clickhouse_url: str = "http://clickhouse:8123"
    clickhouse_username: str = "default"
    clickhouse_password: SecretStr | None = None
    clickhouse_database: str = "default"
    webhook_url: SecretStr = SecretStr("http://alert-receiver:8080/telltale")
    runbook_base_url: str = Field(
        default="http://localhost:8080/runbooks",
        description="absolute URL of the runbook page (telltale alerts receiver serves one); "
        "each rule links to <this>#<rule uid>",
    )

    @field_validator("url", "clickhouse_url", "runbook_base_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"{value!r} is not an http(s) URL")
        return value.rstrip("/")
