"""A ClickHouse client from a DSN: embedded chDB (default) or a ClickHouse server.

``chdb:///path`` or ``chdb://./relative/path`` opens the real ClickHouse engine in-process
(one process per data path); ``http(s)://`` and ``clickhouse://`` reach a server through
clickhouse-connect's HTTP interface.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from pydantic import SecretStr

from storage.errors import StorageError, classify

if TYPE_CHECKING:
    from clickhouse_connect.driver.client import Client

__all__ = ["connect", "redact_dsn"]


_SECRET_PARAMS = frozenset({"password", "pass", "pwd", "secret", "token", "access_token"})


def redact_dsn(dsn: str) -> str:
    """The DSN with any password (userinfo or query parameter) replaced by ``***``, safe to
    log. A DSN that cannot be parsed is reduced to its scheme: it may hide a password anywhere.
    """
    try:
        parts = urlsplit(dsn)
        password = parts.password
    except ValueError:
        scheme = dsn.partition("://")[0] if "://" in dsn else "dsn"
        return f"{scheme}://*** (unparseable)"
    netloc, query = parts.netloc, parts.query
    if password is not None:
        netloc = netloc.replace(f":{password}@", ":***@")
    pairs = parse_qsl(query, keep_blank_values=True)
    if any(key.lower() in _SECRET_PARAMS for key, _ in pairs):
        query = urlencode(
            [(k, "***" if k.lower() in _SECRET_PARAMS else v) for k, v in pairs], safe="*"
        )
    if (netloc, query) == (parts.netloc, parts.query):
        return dsn
    return urlunsplit(parts._replace(netloc=netloc, query=query))


def _chdb_path(dsn: str) -> str:
    rest = dsn[len("chdb://") :]
    path = rest.split("?", 1)[0]
    if path in ("", "memory", ":memory:"):
        return ":memory:"
    return os.path.abspath(path)


def connect(dsn: str, password: SecretStr | None = None, database: str | None = None) -> Client:
    """Open a client for ``dsn``; raise :class:`~storage.errors.StorageUnavailable` if it
    cannot be reached, :class:`~storage.errors.StorageMisconfigured` if it refuses the
    credentials."""
    try:
        import clickhouse_connect
    except ImportError as exc:  # pragma: no cover - install problem
        raise StorageError(
            "clickhouse-connect is missing: pip install 'clickhouse-connect[chdb]'"
        ) from exc
    try:
        if dsn.startswith("chdb:"):
            path = _chdb_path(dsn)
            if path != ":memory:":
                os.makedirs(path, exist_ok=True)
            return clickhouse_connect.get_client(
                interface="chdb", path=path, database=database, tz_mode="aware"
            )
        parts = urlsplit(dsn)
        secure = parts.scheme == "https"
        secret = password.get_secret_value() if password else (parts.password or "")
        clean = urlunsplit(parts._replace(scheme="https" if secure else "http"))
        return clickhouse_connect.get_client(
            dsn=clean,
            password=secret,
            database=database or None,
            secure=secure,
            tz_mode="aware",
        )
    except StorageError:
        raise
    except Exception as exc:
        # Only the error's class and code are kept: a driver message may echo the DSN.
        typed = classify(exc, f"opening ClickHouse at {redact_dsn(dsn)}")
        raise type(typed)(
            f"cannot open ClickHouse at {redact_dsn(dsn)}: {type(exc).__name__}", typed.code
        ) from exc
