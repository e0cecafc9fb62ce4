"""Errors raised by the storage layer, typed by what they concern.

Hierarchy::

    StorageError
    ├── StorageUnavailable   transient: unreachable, timed out, too many parts; retry with back-off
    │   └── StorageOverloaded transient, but maybe because of this write's size (memory limit,
    │                        query timeout): retry, then split the write if it keeps failing
    ├── RowsRejected         the database refused a value in these rows; retrying cannot help,
    │                        but the other rows of the batch can be stored without them
    ├── StorageMisconfigured the whole system is wrong (a table or column is missing because
    │                        ``telltale migrate`` has not run, authentication, permissions): stop
    ├── BackPressure         a writer's buffer is full; flush before adding more
    └── MigrationError       the schema could not be brought up to date

:func:`classify` maps an exception from the ClickHouse client to one of the first three by the
server's numeric error code (``exc.code``, set by clickhouse-connect for the HTTP interface and
for chDB), never by the text of the message; a memory limit or a query's own time limit is
:class:`StorageOverloaded`. Errors the client raises before anything reaches
the server carry no code and are typed by their DB-API class instead: a ``DataError`` is a value
that cannot be serialised into its column's type (rows), a ``ProgrammingError`` an insert into
columns the table does not have (system). Anything unknown is treated as transient, the safe
choice: the batch is held and retried, nothing is dead-lettered and nothing is lost.
"""

from __future__ import annotations

__all__ = [
    "BackPressure",
    "MigrationError",
    "RowsRejected",
    "StorageError",
    "StorageMisconfigured",
    "StorageOverloaded",
    "StorageUnavailable",
    "classify",
]


class StorageError(Exception):
    """Root of every error raised by :mod:`storage`.

    ``code`` is the ClickHouse error code of the cause when the server reported one.
    """

    def __init__(self, message: str, code: int | None = None) -> None:
        super().__init__(message)
        self.code = code


class StorageUnavailable(StorageError):
    """The database is unreachable or busy. Nothing was written; the caller should retry."""


class StorageOverloaded(StorageUnavailable):
    """The database gave up on this write for its size or cost (a memory limit, a timeout).

    Transient like its parent (a busy server frees memory), but it may never clear for this
    write: one batch of huge rows exceeds the memory limit however long the caller waits. A
    caller that can split its write retries a few times and then splits it; a single event
    that still fails alone is set aside with this error as the reason.
    """


class RowsRejected(StorageError):
    """The database refused a value in the rows of this write (a constraint, a type, a range).

    Retrying the same rows fails again; the caller narrows the write down to the offending
    rows (bisection) and sets those aside with this error as the reason.
    """


class StorageMisconfigured(StorageError):
    """The database is reachable but wrong for every write: missing tables or columns (run
    ``telltale migrate``), failed authentication, missing grants. Retrying cannot help and no
    row is at fault, so nothing may be dead-lettered: consumption stops until an operator acts.
    """


class BackPressure(StorageError):
    """A batching writer holds as many rows as it may; call ``flush()`` first."""


class MigrationError(StorageError):
    """A schema migration failed."""


# ClickHouse error codes (src/Common/ErrorCodes.cpp), by what they concern.
_SYSTEM_CODES = frozenset({
    8,    # THERE_IS_NO_COLUMN
    10,   # NOT_FOUND_COLUMN_IN_BLOCK
    16,   # NO_SUCH_COLUMN_IN_TABLE
    47,   # UNKNOWN_IDENTIFIER
    60,   # UNKNOWN_TABLE
    81,   # UNKNOWN_DATABASE
    164,  # READONLY
    192,  # UNKNOWN_USER
    193,  # WRONG_PASSWORD
    194,  # REQUIRED_PASSWORD
    195,  # IP_ADDRESS_NOT_ALLOWED
    497,  # ACCESS_DENIED
    516,  # AUTHENTICATION_FAILED
})  # fmt: skip
_ROW_CODES = frozenset({
    6,    # CANNOT_PARSE_TEXT
    26,   # CANNOT_PARSE_QUOTED_STRING
    27,   # CANNOT_PARSE_INPUT_ASSERTION_FAILED
    38,   # CANNOT_PARSE_DATE
    41,   # CANNOT_PARSE_DATETIME
    53,   # TYPE_MISMATCH
    69,   # ARGUMENT_OUT_OF_BOUND
    70,   # CANNOT_CONVERT_TYPE
    72,   # CANNOT_PARSE_NUMBER
    117,  # INCORRECT_DATA
    131,  # TOO_LARGE_STRING_SIZE
    190,  # SIZES_OF_ARRAYS_DONT_MATCH
    321,  # VALUE_IS_OUT_OF_RANGE_OF_DATA_TYPE
    349,  # CANNOT_INSERT_NULL_IN_ORDINARY_COLUMN
    395,  # FUNCTION_THROW_IF_VALUE_IS_NON_ZERO (a throwIf in a materialized view)
    469,  # VIOLATED_CONSTRAINT
})  # fmt: skip
_SIZE_CODES = frozenset({
    158,  # TOO_MANY_ROWS
    159,  # TIMEOUT_EXCEEDED (max_execution_time of this query)
    160,  # TOO_SLOW
    173,  # CANNOT_ALLOCATE_MEMORY
    241,  # MEMORY_LIMIT_EXCEEDED
    307,  # TOO_MANY_BYTES
    396,  # TOO_MANY_ROWS_OR_BYTES
})  # fmt: skip
# Transient, listed for the reader; every code in none of the sets above is treated the same way:
# 202 TOO_MANY_SIMULTANEOUS_QUERIES, 209 SOCKET_TIMEOUT (a hung server, not this write), 210
# NETWORK_ERROR, 242 TABLE_IS_READ_ONLY, 252 TOO_MANY_PARTS, 319 UNKNOWN_STATUS_OF_INSERT, 425
# SYSTEM_ERROR, 999 KEEPER_EXCEPTION, 1001 STD_EXCEPTION.


def classify(exc: BaseException, doing: str) -> StorageError:
    """The typed storage error for ``exc``, raised while ``doing`` (e.g. "insert of 5 events").

    Use as ``raise classify(exc, "...") from exc``. A :class:`StorageError` is returned as is.
    """
    if isinstance(exc, StorageError):
        return exc
    code = getattr(exc, "code", None)
    code = code if isinstance(code, int) else None
    message = f"{doing} failed: {type(exc).__name__}: {exc}"
    if code is not None:
        if code in _SYSTEM_CODES:
            return StorageMisconfigured(message, code)
        if code in _ROW_CODES:
            return RowsRejected(message, code)
        if code in _SIZE_CODES:
            return StorageOverloaded(message, code)
        return StorageUnavailable(message, code)
    from clickhouse_connect.driver.exceptions import (
        DataError,
        ProgrammingError,
        StreamClosedError,
    )

    if isinstance(exc, DataError):
        return RowsRejected(message)
    if isinstance(exc, ProgrammingError) and not isinstance(exc, StreamClosedError):
        return StorageMisconfigured(message)
    return StorageUnavailable(message)
