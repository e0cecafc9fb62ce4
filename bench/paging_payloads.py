"""Example pages: one incident's trigger and resolve as PagerDuty and Slack receive them.

Runs the stand-ins of ``tests/support/paging_services.py`` on 127.0.0.1 (each checks every body
against the service's documented schema and answers as the service does), sends one release-spike
incident (firing, then resolved) through :class:`PagerDutyNotifier` and :class:`SlackNotifier`,
and prints what each service received with the number of schema problems found (0 expected).

    python bench/paging_payloads.py            # JSON on stdout
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

from pydantic import SecretStr

# ``python bench/...`` puts bench/ first on sys.path (where bench/alerts.py would shadow the
# package); the repository root goes there instead.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]
sys.path.insert(0, str(_HERE.parent))

from alerts import PagerDutyNotifier, SlackNotifier  # noqa: E402
from alerts.settings import NotifyConfig  # noqa: E402

ROOT = _HERE.parent
ROUTING_KEY = "0123456789abcdef0123456789abcdef"  # an example key: 32 characters
SLACK_PATH = "/services/T00000000/B00000000/XXXXXXXXXXXXXXXXXXXXXXXX"
RUNBOOKS = "http://localhost:8080/runbooks"  # TELLTALE_GRAFANA_RUNBOOK_BASE_URL's default
DASHBOARD = "http://localhost:3000/d/telltale-overview"


def _services() -> ModuleType:
    path = ROOT / "tests" / "support" / "paging_services.py"
    spec = importlib.util.spec_from_file_location("paging_services", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def main() -> dict[str, Any]:
    services = _services()
    firing, resolved = services.incident("firing"), services.incident("resolved")
    out: dict[str, Any] = {}
    with services.service("pagerduty") as pd, services.service("slack") as slack:
        settings = NotifyConfig(
            pagerduty_routing_key=SecretStr(ROUTING_KEY), pagerduty_url=pd.url("/v2/enqueue"),
            slack_webhook_url=SecretStr(slack.url(SLACK_PATH)), dashboard_url=DASHBOARD,
        )  # fmt: skip
        pagerduty = PagerDutyNotifier(
            settings, severities={"stock_advice": "critical"}, runbook_base_url=RUNBOOKS
        )
        to_slack = SlackNotifier(settings, runbook_base_url=RUNBOOKS)
        for notifier in (pagerduty, to_slack):
            notifier.send("trigger", firing)
            notifier.send("resolve", resolved)
    for name, svc in (("pagerduty", pd), ("slack", slack)):
        trigger, resolve = svc.requests
        out[name] = {
            "trigger": trigger,
            "resolve": resolve,
            "schema_problems": sum(len(found) for found in svc.invalid),
        }
    return out


if __name__ == "__main__":
    print(json.dumps(main(), indent=2, ensure_ascii=False))
