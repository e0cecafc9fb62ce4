"""``telltale signals audit NAME``: draw a sample to label, import the answers, print the
signal's measured errors (sensitivity, specificity, precision per product version)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

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
)

__all__ = ["audit"]


def audit(
    name: str,
    n: Annotated[int | None, typer.Option("--n", min=1, max=10_000, help="labels to draw")] = None,
    since: Annotated[str | None, typer.Option(help="RFC 3339, inclusive")] = None,
    until: Annotated[str | None, typer.Option(help="RFC 3339, exclusive")] = None,
    model: Annotated[str | None, typer.Option(help="only this model")] = None,
    labels: Annotated[
        Path | None,
        typer.Option("--labels", help="import answers: JSON lines {event_id, label, labeller}"),
    ] = None,
    labeller: Annotated[str, typer.Option(help="labeller of answers that name none")] = "human",
    judge: Annotated[
        bool, typer.Option("--judge", help="label the drawn sample with the LLM judge")
    ] = False,
    audit_id: Annotated[
        str | None,
        typer.Option(
            "--audit-id",
            help="name the draw (default: time + random); the same "
            "name draws the same events from the same stored scores",
        ),
    ] = None,
    clickhouse: ClickHouseOpt = None,
    fmt: FormatOpt = "text",
) -> None:
    """Draw a stratified sample of stored events to label (or import the answers with
    ``--labels``) and print the signal's measured errors.

    Strata: product version × score band (flagged; near, the top tenth of the unflagged
    scores; clear). Each drawn event's inclusion probability is recorded, so the estimates
    weigh every label by what it stands for.
    """
    from telltale.trust import (
        error_report,
        import_answers,
        load_errors,
        read_answers,
        record_estimates,
    )

    settings = cli_settings()
    try:
        with open_client(clickhouse) as client:
            if labels is not None:
                answers = read_answers(labels.read_text(encoding="utf-8"))
                new, unchanged, changed = import_answers(client, name, answers,
                                                         labeller=labeller)  # fmt: skip
                result: dict[str, Any] = {
                    "signal": name,
                    "imported": {"new": new, "unchanged": unchanged, "changed": changed},
                }
            else:
                result = _draw(client, name, n or settings.audit.default_labels, since, until,
                               model, judge, audit_id)  # fmt: skip
            errors = load_errors(
                client, name, min_version_labels=settings.audit.min_version_labels,
                include_judge=settings.audit.use_judge_labels,
            )  # fmt: skip
            if errors is not None and (labels is not None or judge):
                record_estimates(client, errors)
            result["estimates"] = error_report(errors)
    except (*CLI_ERRORS, ValueError, OSError) as exc:
        raise fail(exc) from exc
    if fmt == "json":
        print_json(result)
        return
    _print(result)


def _draw(
    client: Any, name: str, n: int, since: str | None, until: str | None, model: str | None,
    judge: bool, audit_id: str | None,
) -> dict[str, Any]:  # fmt: skip
    from telltale.cli_signals_common import current_signal
    from telltale.trust import draw

    fitted = current_signal(client, name)
    drawn = draw(
        client,
        fitted,
        n,
        model=model,
        since=parse_time(since),
        until=parse_time(until),
        audit_id=audit_id,
    )
    if not drawn.samples:
        raise ValueError(f"no stored scores of {name!r} v{fitted.version} in that window")
    result = drawn.as_dict()
    if judge:
        from telltale.judging import judge_sample

        result["judge"] = judge_sample(client, fitted, drawn)
    return result


def _print(result: dict[str, Any]) -> None:
    out = Console(width=160)
    if "events" in result:
        table = Table("event_id", "version", "stratum", "p(incl)", "score", "content")
        for e in result["events"]:
            table.add_row(
                str(e["event_id"]), str(e["model_version"]), str(e["stratum"]),
                f"{e['inclusion_probability']:.4f}", f"{e['score']:.3f}",
                str(e["content"])[:70].replace("\n", " "),
            )  # fmt: skip
        out.print(table)
        console.print(
            f"audit {result['audit_id']}: {len(result['events'])} events drawn from "
            f"{sum(s['size'] for s in result['strata'])}; answer with one JSON line per event "
            f'{{"event_id": ..., "label": 0|1}} and import with '
            f"`telltale signals audit {result['signal']} --labels FILE.jsonl`"
        )
    if "imported" in result:
        i = result["imported"]
        console.print(f"imported: {i['new']} new, {i['changed']} changed, "
                      f"{i['unchanged']} unchanged")  # fmt: skip
    if "judge" in result:
        console.print(f"judge: {result['judge']}")
    est = result["estimates"]
    if not est["audited"]:
        console.print(est["note"])
        return
    rows = [("all versions", est["all_versions"]), *est["by_model_version"].items()]
    table = Table("scope", "labels", "sensitivity", "specificity", "precision", "prevalence")
    for scope, e in rows:
        table.add_row(scope, str(e["labelled"]), *(_fmt(e[k]) for k in
                      ("sensitivity", "specificity", "precision", "prevalence")))  # fmt: skip
    out.print(table)
    for s in est["error_shifts"]:
        if s["changed"]:
            console.print(
                f"the signal's errors changed from {s['before']} to {s['after']}: "
                f"sensitivity {s['sensitivity_difference']['value']:+.2f}, specificity "
                f"{s['specificity_difference']['value']:+.2f} (precision "
                f"{_fmt(s['precision_before'])} → {_fmt(s['precision_after'])})"
            )


def _fmt(i: dict[str, float]) -> str:
    return f"{i['value']:.2f} [{i['low']:.2f}, {i['high']:.2f}]"
