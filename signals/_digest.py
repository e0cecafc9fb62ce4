"""A file's content digest, the part of an embedder id that says which weights made a vector."""

from __future__ import annotations

import hashlib
from pathlib import Path

__all__ = ["file_digest"]


def file_digest(path: Path, length: int = 16) -> str:
    """The first ``length`` hex digits of the SHA-256 of ``path``, read in 1 MiB chunks."""
    sha = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            sha.update(chunk)
    return sha.hexdigest()[:length]
