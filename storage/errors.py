"""Errors raised by the storage layer.

Hierarchy::

    StorageError
    ├── StorageUnavailable   the database cannot be reached or is locked; retry with back-off
    ├── BackPressure         a writer's buffer is full; flush before adding more
    └── MigrationError       the schema could not be brought up to date
"""

from __future__ import annotations

__all__ = ["BackPressure", "MigrationError", "StorageError", "StorageUnavailable"]


class StorageError(Exception):
    """Root of every error raised by :mod:`storage`."""


class StorageUnavailable(StorageError):
    """The database is unreachable or busy. Nothing was written; the caller should retry."""


class BackPressure(StorageError):
    """A batching writer holds as many rows as it may; call ``flush()`` first."""


class MigrationError(StorageError):
    """A schema migration failed."""
