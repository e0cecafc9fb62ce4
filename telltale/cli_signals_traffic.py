"""``telltale signals backfill|suggest|label``: the signal commands that work on stored traffic
(registered on the ``signals`` group by :mod:`telltale.cli_signals`)."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from telltale.cli_common import (
    CLI_ERRORS,
    ClickHouseOpt,
    FormatOpt,
    console,
    fail,
    open_client,
    parse_time,
    print_json,
    settings_for,
)
from telltale.cli_signals_common import (
    SinceOpt,
    UntilOpt,
    WeakWindow,
    current_signal,
    field_embedders,
    label_drawn_event,
    signal_summary,
    trained,
)

if TYPE_CHECKING:
    from signals import FittedSignal

__all__ = ["backfill", "label", "suggest"]


def backfill(
    name: str,
    since: SinceOpt = None,
    until: UntilOpt = None,
    clickhouse: ClickHouseOpt = None,
    fmt: FormatOpt = "text",
) -> None:
    """Score stored embeddings with the current version; idempotent, no re-embedding.

    For a signal group (TELLTALE_SIGNAL_GROUPS_FILE), write its rows from the members' stored
    scores instead.
    """
    from telltale.backfill import backfill as run_backfill
    from telltale.backfill import backfill_total
    from telltale.wiring import make_groups, make_slicer

    start, end = parse_time(since), parse_time(until)
    settings = settings_for(clickhouse)
    try:
        groups = {g.name: g for g in make_groups(settings.groups)}
    except CLI_ERRORS as exc:
        raise fail(exc) from exc
    if name in groups:
        from storage import backfill_group

        group = groups[name]
        try:
            with open_client(clickhouse) as client:
                make_groups(settings.groups, client)  # record the definition
                written = backfill_group(client, group.name, group.members, group.version)
        except CLI_ERRORS as exc:
            raise fail(exc) from exc
        if fmt == "json":
            print_json({"group": name, "version": group.version, "events": written})
        else:
            console.print(f"group {name}: {written} events scored from its members")
        return
    columns = (TextColumn("back-fill {task.description}"), BarColumn(), MofNCompleteColumn(),
               TimeElapsedColumn())  # fmt: skip
    try:
        with open_client(clickhouse) as client:
            fitted = current_signal(client, name)
            total = backfill_total(client, fitted, start, end)
            with Progress(*columns, console=console, disable=fmt == "json") as progress:
                task = progress.add_task(f"{name} v{fitted.version}", total=total)
                result = run_backfill(
                    client, fitted, since=start, until=end,
                    progress=lambda n: progress.advance(task, n),
                    slicer=make_slicer(settings.slices, client),
                )  # fmt: skip
    except CLI_ERRORS as exc:
        raise fail(exc) from exc
    document = {"name": name, "version": fitted.version, "scored": result.scored,
                "flagged": result.flagged}  # fmt: skip
    if fmt == "json":
        print_json(document)
    else:
        console.print(f"scored {result.scored} stored events ({result.flagged} flagged)")


def suggest(
    name: str,
    limit: Annotated[int, typer.Option(min=1, max=1000)] = 10,
    since: SinceOpt = None,
    from_feedback: Annotated[
        bool,
        typer.Option(
            "--from-feedback",
            help="negatively rated events as candidate positives (NAME need not exist yet)",
        ),
    ] = False,
    model: Annotated[str | None, typer.Option(help="only this model (--from-feedback)")] = None,
    clickhouse: ClickHouseOpt = None,
    fmt: FormatOpt = "text",
) -> None:
    """Events worth labelling: nearest the decision boundary, and nearest the positives."""
    from signals import suggest as run_suggest
    from telltale.signal_store import ClickHouseEmbeddings, stored_examples

    if from_feedback:
        _suggest_from_feedback(name, limit, since, model, clickhouse, fmt)
        return
    try:
        embedder = field_embedders()
        with open_client(clickhouse) as client:
            fitted = current_signal(client, name)
            weak = _weak_labels(client, fitted, embedder, parse_time(since))
            found = run_suggest(
                ClickHouseEmbeddings(client), fitted, embedder, stored_examples(client),
                limit=limit, since=parse_time(since), weak=weak,
            )  # fmt: skip
    except CLI_ERRORS as exc:
        raise fail(exc) from exc
    rows = [
        {"reason": s.reason, "event_id": s.event_id, "score": s.score,
         "similarity": s.similarity, "content": s.content[:500]}
        for s in found
    ]  # fmt: skip
    if fmt == "json":
        print_json({"name": name, "version": fitted.version, "suggestions": rows})
        return
    table = Table("reason", "event_id", "score", "content")
    for r in rows:
        table.add_row(str(r["reason"]), str(r["event_id"]), f"{r['score']:.3f}",
                      str(r["content"])[:80])  # fmt: skip
    Console().print(table)
    console.print(f"label one with: telltale signals label {name} EVENT_ID --positive|--negative")


def _weak_labels(client: Any, fitted: FittedSignal, embedder: Any, since: datetime | None) -> Any:
    """The pool and its weak labels, for a signal whose spec has labelling functions."""
    if not fitted.spec.labelling_functions:
        return None
    from signals import embed_example_windows, label_pool
    from telltale.signal_store import labelling_signals, stored_examples, weak_pool

    pool = weak_pool(client, fitted.field, fitted.embedder_id, since=since)
    if not len(pool):
        return None
    gold = embed_example_windows(fitted.spec, embedder, lookup=stored_examples(client))
    named = labelling_signals(client, fitted.spec)
    return pool, label_pool(fitted.spec, embedder, pool, named, gold)


def _suggest_from_feedback(
    name: str, limit: int, since: str | None, model: str | None, clickhouse: str | None,
    fmt: str,
) -> None:  # fmt: skip
    """Negatively rated events, most-rated and newest first, minus the signal's own examples."""
    from storage import negatively_rated
    from telltale.signal_store import ClickHouseSignalStore

    try:
        with open_client(clickhouse) as client:
            # NAME may be a signal still to be defined: suggest for it all the same.
            fitted = ClickHouseSignalStore(client).get(name)
            known: set[str] = set()
            if fitted is not None:
                for example in (*fitted.spec.examples.positive, *fitted.spec.examples.negative):
                    event_id = getattr(example, "event_id", None)
                    if event_id:
                        known.add(str(event_id))
            found = negatively_rated(
                client, model=model, since=parse_time(since), limit=limit + len(known)
            )
    except CLI_ERRORS as exc:
        raise fail(exc) from exc
    target = fitted.spec.target if fitted is not None else "output"
    rows = [
        {"reason": "negative feedback", "event_id": r["event_id"], "model": r["model"],
         "model_version": r["model_version"], "feedback_count": r["feedback_count"],
         "comments": r["comments"],
         "content": (r["prompt"] if target == "prompt" else r["output"] or r["image"])[:500]}
        for r in found if r["event_id"] not in known
    ][:limit]  # fmt: skip
    if fmt == "json":
        print_json({"name": name, "source": "feedback", "suggestions": rows})
        return
    table = Table("event_id", "model", "ratings", "content", "comments")
    for r in rows:
        table.add_row(str(r["event_id"]), f"{r['model']} {r['model_version']}",
                      str(r["feedback_count"]), str(r["content"])[:60],
                      "; ".join(r["comments"])[:40])  # fmt: skip
    Console().print(table)
    if fitted is not None:
        console.print(f"add one as a positive: telltale signals label {name} EVENT_ID --positive")
    else:
        console.print("use them as positives in a spec: examples: {positive: [{event_id: ...}]}")


def label(
    name: str,
    event_id: str,
    positive: Annotated[bool, typer.Option("--positive/--negative", help="the label")],
    author: str = "",
    clickhouse: ClickHouseOpt = None,
    fmt: FormatOpt = "text",
) -> None:
    """Add a stored event as an example and publish a retrained version (with weak labels
    again when the current version was trained with ``--weak``)."""
    from signals import EventRef
    from telltale.signal_store import ClickHouseSignalStore

    try:
        embedder = field_embedders()
        with open_client(clickhouse) as client:
            current = current_signal(client, name)
            examples = current.spec.examples.with_example(EventRef(event_id=event_id), positive)
            spec = current.spec.model_copy(update={"examples": examples})
            weak = "weak_used" in current.metrics and bool(spec.labelling_functions)
            fitted = trained(client, spec, embedder, weak, WeakWindow())
            fitted = ClickHouseSignalStore(client).save(fitted, author=author or "label")
            label_drawn_event(client, name, event_id, positive, author or "label")
    except CLI_ERRORS as exc:
        raise fail(exc) from exc
    if fmt == "json":
        print_json(signal_summary(fitted))
    else:
        console.print(
            f"{name} v{fitted.version}: {fitted.n_positive}+{fitted.n_negative} examples, "
            f"cv F1 {fitted.metrics.get('f1', float('nan')):.2f}"
        )
