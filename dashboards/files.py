"""Generated provisioning files: render them, write them, and tell which ones are stale.

``telltale dashboards build`` writes what :func:`dashboard_files` (and the alerting and data
source renderers) produce; ``--check`` and a test fail when the committed files differ, so the
files docker-compose mounts never drift from the code.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import dashboard as models

__all__ = ["dashboard_document", "dashboard_files", "plain", "stale_files", "write_files"]


def plain(model: object) -> dict[str, Any]:
    """An SDK model as plain JSON data (the SDK serialises through its ``to_json`` methods)."""
    document: dict[str, Any] = json.loads(json.dumps(model, cls=JSONEncoder))
    return document


def dashboard_document(dashboard: models.Dashboard) -> dict[str, Any]:
    """The dashboard JSON model as plain data, as Grafana stores it."""
    return plain(dashboard)


def dashboard_files(dashboards: list[models.Dashboard]) -> dict[str, str]:
    """File name (``<uid>.json``) to content, for Grafana's file dashboard provider."""
    files = {}
    for dashboard in dashboards:
        text = json.dumps(dashboard_document(dashboard), indent=2, ensure_ascii=False)
        files[f"{dashboard.uid}.json"] = text + "\n"
    return files


def stale_files(files: Mapping[Path, str]) -> list[Path]:
    """The paths whose content on disk is missing or differs from ``files``."""
    return [
        path
        for path, content in files.items()
        if not path.is_file() or path.read_text(encoding="utf-8") != content
    ]


def write_files(files: Mapping[Path, str]) -> list[Path]:
    """Write the stale paths of ``files`` (creating folders); return the paths written."""
    written = stale_files(files)
    for path in written:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(files[path], encoding="utf-8")
    return written
