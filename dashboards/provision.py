"""Push dashboards, the data source and alerting objects to Grafana, idempotent by uid.

A push is a *plan* of :class:`Upsert` items, applied in order by :class:`Provisioner` through
grafana-client (the maintained fork of ``grafana-api``). Every object carries a fixed uid:
the provisioner asks Grafana whether it exists and creates or updates it accordingly, so a
second push changes nothing but versions. ``--dry-run`` prints the plan and contacts nobody.

Endpoints (Grafana HTTP API): ``GET/POST /api/folders``, ``PUT /api/folders/:uid``;
``GET /api/datasources/uid/:uid``, ``POST /api/datasources``, ``PUT /api/datasources/uid/:uid``;
``GET /api/dashboards/uid/:uid``, ``POST /api/dashboards/db``; and the alerting provisioning
API ``/api/v1/provisioning/alert-rules[/:uid]``, ``/contact-points[/:uid]``, ``/policies``,
sent with ``X-Disable-Provenance: true`` unless configured otherwise.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import urlsplit

from dashboards.errors import ProvisioningError
from dashboards.settings import GrafanaConfig

__all__ = [
    "Outcome",
    "Provisioner",
    "Upsert",
    "connect_grafana",
    "dashboard_upsert",
    "folder_upsert",
]

log = logging.getLogger(__name__)

Kind = Literal["folder", "datasource", "dashboard", "alert-rule", "contact-point", "policy-tree"]
Action = Literal["created", "updated", "unchanged"]


@dataclass(frozen=True)
class Upsert:
    """One object to create or update, identified by ``uid`` within its ``kind``."""

    kind: Kind
    uid: str
    payload: Mapping[str, Any]

    def as_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "uid": self.uid, "payload": dict(self.payload)}


@dataclass(frozen=True)
class Outcome:
    kind: Kind
    uid: str
    action: Action

    def as_dict(self) -> dict[str, str]:
        return {"kind": self.kind, "uid": self.uid, "action": self.action}


def folder_upsert(settings: GrafanaConfig) -> Upsert:
    body = {"uid": settings.folder_uid, "title": settings.folder_title}
    return Upsert("folder", settings.folder_uid, body)


def dashboard_upsert(dashboard: Mapping[str, Any], folder_uid: str) -> Upsert:
    """``POST /api/dashboards/db`` body: overwrite by uid, into the folder."""
    uid = str(dashboard["uid"])
    body = {
        "dashboard": {**dashboard, "id": None},
        "folderUid": folder_uid,
        "overwrite": True,
        "message": "telltale dashboards push",
    }
    return Upsert("dashboard", uid, body)


def connect_grafana(settings: GrafanaConfig) -> Any:
    """A grafana-client ``GrafanaApi`` for ``settings``: the token as a bearer credential (or,
    without one, basic auth from the URL's ``user:password@``), the org header, the timeout."""
    from grafana_client.api import GrafanaApi

    parts = urlsplit(settings.url)
    auth: str | tuple[str, str] | None = None
    if settings.token is not None:
        auth = settings.token.get_secret_value()
    elif parts.username:
        auth = (parts.username, parts.password or "")
    return GrafanaApi(
        auth=auth,
        host=parts.hostname,
        port=parts.port,
        url_path_prefix=parts.path.strip("/") + "/" if parts.path.strip("/") else "",
        protocol=parts.scheme,
        timeout=settings.timeout_s,
        organization_id=settings.org_id,
    )


class Provisioner:
    """Applies a plan through a grafana-client ``GrafanaApi``; see the module docstring."""

    def __init__(self, api: Any, *, disable_provenance: bool = True) -> None:
        self._api = api
        self._disable_provenance = disable_provenance
        self._handlers: dict[Kind, Callable[[Upsert], Action]] = {
            "folder": self._folder,
            "datasource": self._datasource,
            "dashboard": self._dashboard,
            "alert-rule": self._alert_rule,
            "contact-point": self._contact_point,
            "policy-tree": self._policy_tree,
        }

    def apply(self, plan: Iterable[Upsert]) -> list[Outcome]:
        """Apply every item in order; stop at the first failure with :class:`ProvisioningError`."""
        from grafana_client.client import GrafanaException

        outcomes = []
        for item in plan:
            try:
                action = self._handlers[item.kind](item)
            except GrafanaException as exc:
                raise ProvisioningError(
                    f"{item.kind} {item.uid!r}: Grafana answered {exc.status_code}: {exc.message}"
                ) from exc
            except OSError as exc:
                raise ProvisioningError(f"{item.kind} {item.uid!r}: {exc}") from exc
            log.info("%s %s %s", action, item.kind, item.uid)
            outcomes.append(Outcome(item.kind, item.uid, action))
        return outcomes

    def _find(self, get: Callable[[], Any]) -> Any | None:
        """What ``get`` returns, or ``None`` when Grafana answers 404."""
        from grafana_client.client import GrafanaClientError

        try:
            return get()
        except GrafanaClientError as exc:
            if exc.status_code == 404:
                return None
            raise

    def _exists(self, get: Callable[[], Any]) -> bool:
        return self._find(get) is not None

    def _folder(self, item: Upsert) -> Action:
        folders = self._api.folder
        title = str(item.payload["title"])
        found = self._find(lambda: folders.get_folder(item.uid))
        if found is None:
            folders.create_folder(title, uid=item.uid)
            return "created"
        if found.get("title") == title:
            return "unchanged"
        folders.update_folder(item.uid, title=title, overwrite=True)
        return "updated"

    def _datasource(self, item: Upsert) -> Action:
        sources = self._api.datasource
        if self._exists(lambda: sources.get_datasource_by_uid(item.uid)):
            sources.update_datasource_by_uid(item.uid, dict(item.payload))
            return "updated"
        sources.create_datasource(dict(item.payload))
        return "created"

    def _dashboard(self, item: Upsert) -> Action:
        dashboards = self._api.dashboard
        existed = self._exists(lambda: dashboards.get_dashboard(item.uid))
        dashboards.update_dashboard(dict(item.payload))
        return "updated" if existed else "created"

    def _alert_rule(self, item: Upsert) -> Action:
        provisioning = self._api.alertingprovisioning
        flag = self._disable_provenance
        if self._exists(lambda: provisioning.get_alertrule(item.uid)):
            provisioning.update_alertrule(item.uid, dict(item.payload), disable_provenance=flag)
            return "updated"
        provisioning.create_alertrule(dict(item.payload), disable_provenance=flag)
        return "created"

    def _contact_point(self, item: Upsert) -> Action:
        provisioning = self._api.alertingprovisioning
        flag = self._disable_provenance
        found: Sequence[Mapping[str, Any]] = provisioning.get_contactpoints(
            name=str(item.payload["name"])
        )
        if any(point.get("uid") == item.uid for point in found):
            provisioning.update_contactpoint(item.uid, dict(item.payload), disable_provenance=flag)
            return "updated"
        provisioning.create_contactpoint(dict(item.payload), disable_provenance=flag)
        return "created"

    def _policy_tree(self, item: Upsert) -> Action:
        self._api.alertingprovisioning.set_notification_policy_tree(
            dict(item.payload), disable_provenance=self._disable_provenance
        )
        return "updated"
