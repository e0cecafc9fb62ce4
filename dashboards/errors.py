"""The exceptions of the dashboards package, under one root.

``DashboardsError``
  ├─ ``MacroError`` (also a ``ValueError``): dashboard SQL uses a macro form that cannot be
  │  rendered outside Grafana, or is malformed
  └─ ``ProvisioningError``: Grafana refused or could not be reached while pushing
"""

from __future__ import annotations

__all__ = ["DashboardsError", "MacroError", "ProvisioningError"]


class DashboardsError(Exception):
    """Root of every error raised by the dashboards package."""


class MacroError(DashboardsError, ValueError):
    """The SQL uses a macro or variable form the renderer does not support, or is malformed."""


class ProvisioningError(DashboardsError):
    """A Grafana API call failed; the message names the object and the HTTP status."""
