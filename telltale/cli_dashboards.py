"""``telltale dashboards build|push``, ``telltale alerts push`` and ``telltale report``.

Wiring only: the dashboards, the alert rules and the report live in ``dashboards`` and
``alerts.delivery.rules``; this module takes :class:`~dashboards.settings.GrafanaConfig` from the
invocation's settings (``TELLTALE_GRAFANA_*``), applies ``--grafana-url``/``--folder``, turns
it into plans and files, and prints results (one JSON document with ``--format json``).
Grafana's token is never printed or logged; ``--dry-run`` redacts the other secrets too.
"""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import SecretStr, ValidationError

from alerts import api_payloads, prometheus_rules_file, provisioning_file
from dashboards import (
    DATASOURCE_UID,
    DashboardsError,
    GrafanaConfig,
    Provisioner,
    QueryContext,
    Upsert,
    build_dashboards,
    connect_grafana,
    dashboard_document,
    dashboard_files,
    dashboard_upsert,
    datasource_file,
    datasource_payload,
    folder_upsert,
    interval_for,
    stale_files,
    write_files,
)
from storage import PriceTable, redact_dsn
from telltale.cli_common import (
    CLI_ERRORS,
    ClickHouseOpt,
    FormatOpt,
    cli_settings,
    console,
    fail,
    open_client,
    parse_time,
    print_json,
    settings_for,
)

__all__ = ["alerts_push", "dashboards_app", "generated_files", "report", "report_window"]

dashboards_app = typer.Typer(
    help="Grafana dashboards as code: write provisioning files, push to Grafana.",
    no_args_is_help=True,
)

GENERATED = Path("dashboards") / "generated"
DATASOURCE_FILE = Path("dashboards") / "datasources" / "clickhouse.yaml"
ALERTING_FILE = Path("alerts") / "provisioning" / "telltale.yaml"
# Not under alerts/provisioning: Grafana loads every file of that folder as alerting provisioning.
PROMETHEUS_RULES_FILE = Path("alerts") / "prometheus" / "telltale-rules.yaml"

DryRunOpt = Annotated[
    bool, typer.Option("--dry-run", help="print what would be sent; contact nobody")
]
GrafanaUrlOpt = Annotated[
    str | None, typer.Option("--grafana-url", help="Grafana base URL [env TELLTALE_GRAFANA_URL]")
]
FolderOpt = Annotated[
    str | None, typer.Option("--folder", help="folder uid [env TELLTALE_GRAFANA_FOLDER_UID]")
]
RootOpt = Annotated[
    Path, typer.Option("--root", help="repository root the files are written under")
]


def _file_options(settings: GrafanaConfig) -> GrafanaConfig:
    """The settings for files: folder, org and runbooks from settings, never a secret (the
    example webhook URL stays; the real one is sent by ``alerts push`` only)."""
    return settings.model_copy(update={"webhook_url": GrafanaConfig().webhook_url})


def generated_files(
    root: Path,
    settings: GrafanaConfig,
    min_slice_users: int = 0,
    prices: PriceTable | None = None,
) -> dict[Path, str]:
    """Every provisioning file ``build`` writes, by path under ``root``."""
    files = {
        root / GENERATED / name: content
        for name, content in dashboard_files(build_dashboards(min_slice_users, prices)).items()
    }
    files[root / DATASOURCE_FILE] = datasource_file(settings)
    files[root / ALERTING_FILE] = provisioning_file(_file_options(settings))
    files[root / PROMETHEUS_RULES_FILE] = prometheus_rules_file(settings.runbook_base_url)
    return files


def _built_with() -> tuple[int, PriceTable]:
    """The settings written into the dashboards' SQL: the small-cell merge and the prices."""
    settings = cli_settings()
    return settings.privacy.min_slice_users, settings.usage.prices


def _leftovers(root: Path, files: dict[Path, str]) -> list[Path]:
    """Dashboard files under ``generated`` that the code no longer produces."""
    return sorted(p for p in (root / GENERATED).glob("*.json") if p not in files)


@dashboards_app.command("build")
def build(
    root: RootOpt = Path("."),
    check: Annotated[
        bool, typer.Option("--check", help="write nothing; exit 1 if a file is stale")
    ] = False,
    fmt: FormatOpt = "text",
) -> None:
    """Write dashboards, the data source and alert rules as Grafana provisioning files."""
    files = generated_files(root, _settings(), *_built_with())
    leftovers = _leftovers(root, files)
    if check:
        stale = [*stale_files(files), *leftovers]
        _report_files("stale", stale, fmt)
        if stale:
            raise typer.Exit(code=1)
        return
    written = write_files(files)
    for path in leftovers:
        path.unlink()
    _report_files("written", [*written, *leftovers], fmt)


def _report_files(what: str, paths: list[Path], fmt: str) -> None:
    if fmt == "json":
        print_json({what: [str(p) for p in paths]})
    elif paths:
        for path in paths:
            console.print(f"{what}: {path}")
    else:
        console.print("provisioning files are up to date")


def _settings(grafana_url: str | None = None, folder: str | None = None) -> GrafanaConfig:
    """The invocation's Grafana settings with the command line's overrides; a bad value is a
    one-line error, not a traceback."""
    settings = cli_settings().grafana
    overrides: dict[str, Any] = {}
    if grafana_url:
        overrides["url"] = grafana_url
    if folder:
        overrides["folder_uid"] = folder
    if not overrides:
        return settings
    try:
        return GrafanaConfig.model_validate({**settings.model_dump(), **overrides})
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise fail(ValueError(f"invalid Grafana settings: {problems}")) from exc


def _apply(plan: list[Upsert], settings: GrafanaConfig, dry_run: bool, fmt: str) -> None:
    if dry_run:
        if fmt == "json":
            items = [item.as_dict() for item in plan]
            print_json({"dry_run": True, "grafana": redact_dsn(settings.url), "items": items})
            return
        for item in plan:
            sys.stdout.write(f"# would upsert {item.kind} {item.uid}\n")
            sys.stdout.write(json.dumps(dict(item.payload), indent=2) + "\n")
        return
    try:
        outcomes = Provisioner(
            connect_grafana(settings), disable_provenance=settings.disable_provenance
        ).apply(plan)
    except DashboardsError as exc:
        raise fail(exc) from exc
    if fmt == "json":
        done = [outcome.as_dict() for outcome in outcomes]
        print_json({"dry_run": False, "grafana": redact_dsn(settings.url), "items": done})
        return
    for outcome in outcomes:
        console.print(f"{outcome.action} {outcome.kind} {outcome.uid}")


@dashboards_app.command("push")
def push(
    dry_run: DryRunOpt = False,
    grafana_url: GrafanaUrlOpt = None,
    folder: FolderOpt = None,
    fmt: FormatOpt = "text",
) -> None:
    """Create or update the folder, the ClickHouse data source and the dashboards, by uid."""
    settings = _settings(grafana_url, folder)
    plan = [
        folder_upsert(settings),
        Upsert("datasource", DATASOURCE_UID, datasource_payload(settings, redact=dry_run)),
        *(
            dashboard_upsert(dashboard_document(d), settings.folder_uid)
            for d in build_dashboards(*_built_with())
        ),
    ]
    _apply(plan, settings, dry_run, fmt)


def alerts_push(
    dry_run: DryRunOpt = False,
    grafana_url: GrafanaUrlOpt = None,
    folder: FolderOpt = None,
    fmt: FormatOpt = "text",
) -> None:
    """Create or update the alert rules, the example contact point and notification policy."""
    settings = _settings(grafana_url, folder)
    shown = settings.model_copy(update={"webhook_url": SecretStr("***")}) if dry_run else settings
    payloads = api_payloads(shown)
    contact = payloads.contact_point
    plan = [
        folder_upsert(settings),
        Upsert("contact-point", str(contact["uid"]), contact),
        Upsert("policy-tree", "root", payloads.policy_tree),
        *(Upsert("alert-rule", str(rule["uid"]), rule) for rule in payloads.rules),
    ]
    _apply(plan, settings, dry_run, fmt)


ListOpt = Annotated[list[str] | None, typer.Option(help="repeatable; default all")]


def report_window(
    client: Any, since: datetime | None, until: datetime | None
) -> tuple[datetime, datetime]:
    """The report's range: ``until`` defaults to the end of the data (its last minute, plus
    one), or now on an empty database; ``since`` to the data's first minute, but at most 24
    hours before ``until`` (the data's own span: 40 minutes of a demo fill the axis, not the
    last hour of a day)."""
    from storage import data_bounds

    bounds = data_bounds(client) if since is None or until is None else None
    if until is None:
        until = bounds[1] + timedelta(minutes=1) if bounds else datetime.now(UTC)
    start = since or until - timedelta(hours=24)
    if since is None and bounds and start < bounds[0] < until:
        start = bounds[0]
    if start >= until:
        raise typer.BadParameter("--since must be before --until")
    return start, until


def report(
    out: Annotated[Path, typer.Option("--out", help="HTML file to write", dir_okay=False)],
    since: Annotated[
        str | None,
        typer.Option(
            help="RFC 3339; default the first minute of data, at most 24 h before --until"
        ),
    ] = None,
    until: Annotated[
        str | None,
        typer.Option(help="RFC 3339; default the last minute of data (now on an empty database)"),
    ] = None,
    app: ListOpt = None,
    model: ListOpt = None,
    version: ListOpt = None,
    signal: ListOpt = None,
    slice_key: ListOpt = None,
    clickhouse: ClickHouseOpt = None,
    fmt: FormatOpt = "text",
) -> None:
    """Render the dashboards' panels from ClickHouse into one self-contained HTML file.

    Without ``--until`` the report ends at the last minute *of data* (a replayed log from
    September is reported as of September), and without ``--since`` it starts at the data's
    first minute, at most 24 hours before. Buckets hold enough events to read a rate (a median
    of 30 per model version where the data allow; see ``dashboards.report``).
    """
    from dashboards import build_report, view

    chosen = {"app": app, "model": model, "version": version, "signal": signal,
              "slice_key": slice_key}  # fmt: skip
    try:
        with open_client(clickhouse) as client:
            start, end = report_window(client, parse_time(since), parse_time(until))
            ctx = QueryContext(
                start=start,
                end=end,
                interval_s=interval_for(start, end),
                variables={name: tuple(v) if v else None for name, v in chosen.items()},
            )
            result = build_report(
                client,
                [view(d) for d in build_dashboards(*_built_with())],
                ctx,
                source=redact_dsn(settings_for(clickhouse).clickhouse.dsn),
                generated_at=datetime.now(UTC),
            )
    except (*CLI_ERRORS, DashboardsError) as exc:
        raise fail(exc) from exc
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(result.html, encoding="utf-8")
    if fmt == "json":
        print_json({"out": str(out), "panels": result.summary()})
    else:
        console.print(f"report with {len(result.panels)} panels written to {out}")
