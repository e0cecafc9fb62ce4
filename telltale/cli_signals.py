"""``telltale signals ...``: define, inspect, label and back-fill quality signals."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from telltale.cli_common import (
    CLI_ERRORS,
    ClickHouseOpt,
    FormatOpt,
    KafkaOpt,
    cli_settings,
    console,
    fail,
    open_client,
    parse_time,
    print_json,
    settings_for,
)

if TYPE_CHECKING:
    from signals import FittedSignal, SignalSpec

__all__ = ["signals_app"]

signals_app = typer.Typer(
    help="Define, inspect, label and back-fill quality signals.", no_args_is_help=True
)

SinceOpt = Annotated[str | None, typer.Option(help="RFC 3339, inclusive")]
UntilOpt = Annotated[str | None, typer.Option(help="RFC 3339, exclusive")]


def current_signal(client: Any, name: str) -> FittedSignal:
    from telltale.signal_store import ClickHouseSignalStore

    fitted = ClickHouseSignalStore(client).get(name)
    if fitted is not None:
        return fitted
    raise typer.BadParameter(f"no signal named {name!r}; see `telltale signals list`")


def _embedder() -> Any:
    """The field embedders of the current settings (text model and open_clip)."""
    from telltale.wiring import make_embedders

    settings = cli_settings()
    return make_embedders(settings.embedder, settings.text_embedder, lazy_image=True)


def _verdict(client: Any, fitted: FittedSignal) -> Any:
    """Judge ``fitted`` on its examples and, when a database is given, its stored events."""
    from signals import judge, stored_flag_share
    from telltale.backfill import stored_text_flag_share
    from telltale.signal_store import ClickHouseEmbeddings

    quality = cli_settings().signal_quality
    share: float | None
    if client is None:
        share, scored = None, 0
    elif fitted.reads_text:
        share, scored = stored_text_flag_share(client, fitted, quality.flag_share_sample)
    else:
        share, scored = stored_flag_share(ClickHouseEmbeddings(client), fitted,
                                          quality.flag_share_sample)  # fmt: skip
    return judge(fitted, share, scored, min_f1_margin=quality.min_f1_margin,
                 max_flag_share=quality.max_flag_share)  # fmt: skip


def _summary(fitted: FittedSignal) -> dict[str, Any]:
    return {
        "name": fitted.name, "version": fitted.version, "kind": fitted.kind,
        "classifier": fitted.spec.classifier, "field": fitted.field,
        "embedder_id": fitted.embedder_id, "threshold": fitted.threshold,
        "metrics": fitted.metrics, "n_positive": fitted.n_positive,
        "n_negative": fitted.n_negative, "train_ms": fitted.train_ms,
        "trained_at": fitted.trained_at.isoformat(), "degenerate": fitted.degenerate,
        "degenerate_reason": fitted.degenerate_reason,
    }  # fmt: skip


def _spec_from_cluster(cluster_id: str, name: str, clickhouse: str | None, out: Path) -> None:
    """Write a starting spec: positives from the cluster, negatives from the bulk."""
    import yaml

    from signals import SignalSpec
    from storage import load_cluster

    try:
        with open_client(clickhouse) as client:
            cluster = load_cluster(client, cluster_id)
    except CLI_ERRORS as exc:
        raise fail(exc) from exc
    if cluster is None:
        raise fail(ValueError(f"no discovered cluster {cluster_id!r}; run telltale discover"))
    target, modality = cluster.field.split(".")
    try:
        spec = SignalSpec.model_validate({
            "name": name, "target": target, "modality": modality, "kind": "few_shot",
            "description": f"Started from cluster {cluster.cluster_id} of {cluster.model} "
            f"({cluster.size} outputs, {cluster.recent_share:.1%} of recent outputs).",
            "examples": {"positive": [{"event_id": e} for e in cluster.positives],
                         "negative": [{"event_id": e} for e in cluster.negatives]},
        })  # fmt: skip
    except ValueError as exc:
        raise fail(ValueError(f"cannot write a spec named {name!r}: {exc}")) from exc
    document = spec.model_dump(mode="json", exclude_defaults=True)
    header = (
        f"# Starting spec from discovered cluster {cluster.cluster_id}: review the examples\n"
        "# (telltale signals suggest / label), then: telltale signals add THIS_FILE\n"
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(header + yaml.safe_dump(document, sort_keys=False), encoding="utf-8")


@signals_app.command("add")
def add(
    spec_path: Annotated[
        str, typer.Argument(metavar="SPEC.yaml", help="the spec; with --from-cluster, a NAME")
    ],
    author: Annotated[str, typer.Option(help="recorded with the version")] = "",
    from_cluster: Annotated[
        str | None,
        typer.Option(
            "--from-cluster",
            help="write a starting spec NAME.yaml from a cluster of telltale discover",
        ),
    ] = None,
    out: Annotated[
        Path | None, typer.Option(help="where --from-cluster writes (default NAME.yaml)")
    ] = None,
    publish: Annotated[
        bool,
        typer.Option(
            "--publish",
            help="send to running workers over Kafka (they store it); for a worker that owns "
            "an embedded chDB, whose database no other process may open",
        ),
    ] = False,
    force: Annotated[
        bool,
        typer.Option(
            "--force",
            help="keep a signal judged degenerate (stored with the mark; detectors skip it)",
        ),
    ] = False,
    weak: WeakOpt = False,
    clickhouse: ClickHouseOpt = None,
    kafka: KafkaOpt = None,
    fmt: FormatOpt = "text",
) -> None:
    """Train a signal from its spec and store it as a new, immutable version.

    With ``--weak``, the spec's labelling functions also label stored traffic of its field and
    the signal trains on its examples plus those weak labels where that cross-validates better
    on the examples (see ``telltale signals train``).

    A degenerate signal (cross-validated F1 not clearly above chance, or a threshold that flags
    more than TELLTALE_SIGNALS_MAX_FLAG_SHARE of the field's stored events) is refused with
    the numbers; ``--force`` stores it marked degenerate.

    With ``--from-cluster ID NAME``, write a starting spec instead (nothing is trained).
    """
    from signals import load_spec

    if from_cluster is not None:
        target = out or Path(f"{spec_path}.yaml")
        _spec_from_cluster(from_cluster, spec_path, clickhouse, target)
        if fmt == "json":
            print_json({"spec": str(target), "cluster_id": from_cluster, "name": spec_path})
        else:
            console.print(f"wrote {target}: review it, then telltale signals add {target}")
        return
    if not Path(spec_path).is_file():
        raise typer.BadParameter(f"spec file {spec_path!r} does not exist")
    from signals import PublishedSignal, train_signal
    from streams import Emitter
    from telltale.signal_store import ClickHouseSignalStore

    try:
        spec = load_spec(spec_path)
        embedder = _embedder()
        if publish:
            if weak:
                raise typer.BadParameter("--weak labels stored traffic: it needs the database, "
                                         "not --publish")  # fmt: skip
            # The worker owns the database: the verdict sees the examples, not stored events.
            fitted = _judged(train_signal(spec, embedder), None, force)
            from telltale.wiring import kafka_security

            kafka_settings = settings_for(clickhouse, kafka).kafka
            with Emitter(kafka_settings.bootstrap, kafka_settings.control_topic,
                         security=kafka_security(kafka_settings)) as emitter:  # fmt: skip
                emitter.emit_raw(PublishedSignal(fitted, author).to_json(), key=fitted.name)
        else:
            with open_client(clickhouse) as client:
                fitted = _trained(client, spec, embedder, weak, WeakWindow())
                fitted = _judged(fitted, client, force)
                fitted = ClickHouseSignalStore(client).save(fitted, author=author)
    except _Refused as exc:
        raise fail(exc) from exc
    except CLI_ERRORS as exc:
        raise fail(exc) from exc
    summary = _summary(fitted)
    if publish:
        summary["version"] = None  # assigned by the worker that stores it
        summary["published_to"] = kafka_settings.control_topic
    if fmt == "json":
        print_json(summary)
        return
    where = f"published to {kafka_settings.control_topic}" if publish else f"v{fitted.version}"
    console.print(
        f"signal {fitted.name!r} {where}: threshold {fitted.threshold:.3f}, "
        f"cv F1 {fitted.metrics.get('f1', float('nan')):.2f}, trained in {fitted.train_ms:.0f} ms"
    )
    if _weak_line(fitted):
        console.print(_weak_line(fitted))
    if fitted.degenerate:
        console.print(f"[yellow]kept with --force, marked degenerate:[/yellow] "
                      f"{fitted.degenerate_reason}")  # fmt: skip


@signals_app.command("train")
def train(
    name: str,
    weak: WeakOpt = False,
    since: SinceOpt = None,
    until: UntilOpt = None,
    pool: Annotated[int, typer.Option(min=10, max=100_000, help="stored events to label")] = 2_000,
    author: Annotated[str, typer.Option(help="recorded with the version")] = "",
    force: Annotated[bool, typer.Option("--force", help="keep a degenerate result")] = False,
    clickhouse: ClickHouseOpt = None,
    fmt: FormatOpt = "text",
) -> None:
    """Retrain a signal from its current spec as a new version; ``--weak`` adds weak labels.

    With ``--weak`` the spec's labelling functions vote on up to ``--pool`` stored events of its
    field in [since, until), a Dawid-Skene label model turns the votes into probabilistic labels,
    and the signal is fitted with and without them. Cross-validation on the gold examples only
    decides which is kept; both sets of figures are stored with the version.
    """
    from telltale.signal_store import ClickHouseSignalStore

    try:
        embedder = _embedder()
        window = WeakWindow(parse_time(since), parse_time(until), pool)
        with open_client(clickhouse) as client:
            spec = current_signal(client, name).spec
            fitted = _judged(_trained(client, spec, embedder, weak, window), client, force)
            fitted = ClickHouseSignalStore(client).save(fitted, author=author)
    except _Refused as exc:
        raise fail(exc) from exc
    except CLI_ERRORS as exc:
        raise fail(exc) from exc
    summary = _summary(fitted)
    if fmt == "json":
        print_json(summary | {"metrics": fitted.metrics})
        return
    console.print(f"signal {fitted.name!r} v{fitted.version}: threshold {fitted.threshold:.3f}, "
                  f"cv F1 {fitted.metrics.get('f1', float('nan')):.2f}")  # fmt: skip
    if _weak_line(fitted):
        console.print(_weak_line(fitted))


WeakOpt = Annotated[
    bool,
    typer.Option(
        "--weak",
        help="also train on stored traffic labelled by the spec's labelling_functions",
    ),
]


@dataclass(frozen=True)
class WeakWindow:
    """Which stored events ``--weak`` labels."""

    since: datetime | None = None
    until: datetime | None = None
    pool: int = 2_000


def _trained(
    client: Any, spec: SignalSpec, embedder: Any, weak: bool, window: WeakWindow
) -> FittedSignal:
    """``spec`` fitted against the store: plain, or (``weak``) with weak labels too. Every
    signal a labelling function names must be registered, with ``--weak`` or without."""
    from signals import train_signal, train_weak_signal
    from telltale.signal_store import labelling_signals, stored_examples, weak_pool

    named = labelling_signals(client, spec)
    lookup = stored_examples(client)
    if not weak:
        return train_signal(spec, embedder, lookup=lookup)
    if not spec.labelling_functions:
        raise typer.BadParameter(f"signal {spec.name!r} names no labelling_functions for --weak")
    pool = weak_pool(client, spec.field, embedder.id_for(spec.field), since=window.since,
                     until=window.until, limit=window.pool)  # fmt: skip
    return train_weak_signal(spec, embedder, pool, named, lookup=lookup)


def _weak_line(fitted: FittedSignal) -> str:
    m = fitted.metrics
    if "weak_used" not in m:
        return ""
    verdict = "weak labels kept" if m["weak_used"] else "weak labels did not help; plain kept"
    return (f"{verdict}: cv F1 plain {m.get('plain_f1', float('nan')):.2f}, with weak labels "
            f"{m.get('weak_f1', float('nan')):.2f} ({m['weak_events']:.0f} stored events, "
            f"{m['weak_failure_share']:.1%} failures by the label model)")  # fmt: skip


class _Refused(ValueError):
    """A degenerate signal offered without ``--force``."""


def _judged(fitted: FittedSignal, client: Any, force: bool) -> FittedSignal:
    """``fitted`` if sound; marked degenerate if forced; else :class:`_Refused` with numbers."""
    verdict = _verdict(client, fitted)
    if not verdict.degenerate:
        return fitted
    if not force:
        raise _Refused(
            f"signal {fitted.name!r} refused as degenerate: {verdict.reason}. Add clearer "
            "examples (or more of them), or pass --force to keep it marked degenerate"
        )
    return fitted.model_copy(update={"degenerate": True, "degenerate_reason": verdict.reason})


@signals_app.command("list")
def list_signals(clickhouse: ClickHouseOpt = None, fmt: FormatOpt = "text") -> None:
    """The newest version of every signal."""
    from storage import audit_last_labelled
    from telltale.signal_store import ClickHouseSignalStore

    try:
        with open_client(clickhouse) as client:
            fitted = ClickHouseSignalStore(client).latest()
            audited = audit_last_labelled(client)
    except CLI_ERRORS as exc:
        raise fail(exc) from exc
    max_age = timedelta(days=cli_settings().audit.max_age_days)
    now = datetime.now(UTC)

    def audit_state(name: str) -> dict[str, Any]:
        last = audited.get(name)
        return {"last_audit_label": last.isoformat() if last else None,
                "audit_stale": last is None or now - last > max_age}  # fmt: skip

    if fmt == "json":
        print_json({"signals": [{**_summary(s), **audit_state(s.name)} for s in fitted]})
        return
    table = Table("name", "version", "kind", "field", "threshold", "cv F1", "embedder", "status",
                  "audit")  # fmt: skip
    for s in fitted:
        f1 = s.metrics.get("f1")
        state = audit_state(s.name)
        last = state["last_audit_label"]
        table.add_row(
            s.name, str(s.version), s.kind, s.field, f"{s.threshold:.3f}",
            "n/a" if f1 is None else f"{f1:.2f}", s.embedder_id,
            "degenerate" if s.degenerate else "ok",
            ("never audited" if last is None else "STALE " + last[:10]) if state["audit_stale"]
            else last[:10],
        )  # fmt: skip
    Console(width=160).print(table)


@signals_app.command("rm")
def remove(
    name: str, author: str = "", clickhouse: ClickHouseOpt = None, fmt: FormatOpt = "text"
) -> None:
    """Stop applying a signal (a tombstone version; its history stays)."""
    from telltale.signal_store import ClickHouseSignalStore

    try:
        with open_client(clickhouse) as client:
            removed = ClickHouseSignalStore(client).delete(name, author=author)
    except CLI_ERRORS as exc:
        raise fail(exc) from exc
    if not removed:
        raise fail(ValueError(f"no signal named {name!r}"))
    if fmt == "json":
        print_json({"removed": name})
    else:
        console.print(f"signal {name!r} removed")


@signals_app.command("eval")
def evaluate(
    name: str,
    since: SinceOpt = None,
    until: UntilOpt = None,
    clickhouse: ClickHouseOpt = None,
    fmt: FormatOpt = "text",
) -> None:
    """Cross-validated metrics of the current version, and how it behaves on stored events."""
    from storage import failure_rates, score_quantiles

    try:
        with open_client(clickhouse) as client:
            fitted = current_signal(client, name)
            rates = failure_rates(
                client, signal=name, since=parse_time(since), until=parse_time(until)
            )
            quantiles = score_quantiles(
                client, name, fitted.version, parse_time(since), parse_time(until)
            )
            # the same judgement as `signals add`: examples, and a sample of stored events
            verdict = _verdict(client, fitted)
            audit = _audit_report(client, name)
    except CLI_ERRORS as exc:
        raise fail(exc) from exc
    events = sum(r.events for r in rates)
    flagged = sum(r.failures for r in rates)
    quality = cli_settings().signal_quality
    report = {
        **_summary(fitted),
        "verdict": verdict.as_dict(),
        "observed": {
            "events": events, "flagged": flagged,
            "flag_rate": flagged / events if events else None,
            "score_quantiles": quantiles,
            "by_model_version": [r.as_dict() for r in rates],
        },
        # measured on audited production events; the cross-validated metrics are only a prior
        "audit": audit,
    }  # fmt: skip
    if fmt == "json":
        print_json(report)
        return
    m = fitted.metrics
    console.print(
        f"{name} v{fitted.version} ({fitted.spec.classifier}, {fitted.n_positive}+"
        f"{fitted.n_negative} examples, threshold {fitted.threshold:.3f})\n"
        f"  cross-validated: precision {m.get('precision', float('nan')):.2f}  "
        f"recall {m.get('recall', float('nan')):.2f}  F1 {m.get('f1', float('nan')):.2f}  "
        f"ROC-AUC {m.get('roc_auc', float('nan')):.2f}\n"
        f"  on stored events: {flagged} of {events} flagged, score quantiles {quantiles}\n"
        f"  verdict: "
        + (f"DEGENERATE: {verdict.reason}" if verdict.degenerate else
           f"sound (F1 above chance {verdict.chance_f1:.2f} by the margin; flag share within "
           f"{quality.max_flag_share:.0%})")
        + (f"\n  marked degenerate when added: {fitted.degenerate_reason}"
           if fitted.degenerate else "")
        + "\n  " + _audit_line(audit)
    )  # fmt: skip


def _label_drawn_event(client: Any, name: str, event_id: str, positive: bool, who: str) -> None:
    """A label given to an event that an audit drew is an audit label too (source ``label``)."""
    from storage import AuditLabel, drawn_versions, store_audit_labels

    versions = drawn_versions(client, name, [event_id]).get(event_id, set())
    store_audit_labels(client, [AuditLabel(name, v, event_id, int(positive), who, "label")
                                for v in sorted(versions)])  # fmt: skip


def _audit_report(client: Any, name: str) -> dict[str, Any]:
    from telltale.trust import error_report, load_errors

    audit = cli_settings().audit
    return error_report(load_errors(client, name, min_version_labels=audit.min_version_labels,
                                    include_judge=audit.use_judge_labels))  # fmt: skip


def _audit_line(audit: dict[str, Any]) -> str:
    if not audit["audited"]:
        return f"audit: none ({audit['note']})"
    e = audit["all_versions"]

    def show(key: str) -> str:
        i = e[key]
        return f"{i['value']:.2f} [{i['low']:.2f}, {i['high']:.2f}]"

    line = (f"audited (v{audit['audited_signal_version']}, {e['labelled']} labels): "
            f"sensitivity {show('sensitivity')}  specificity {show('specificity')}  "
            f"precision {show('precision')}")  # fmt: skip
    for shift in audit["error_shifts"]:
        if shift["changed"]:
            se = shift["sensitivity_difference"]["value"]
            sp = shift["specificity_difference"]["value"]
            line += (f"\n  the INSTRUMENT changed from {shift['before']} to {shift['after']}: "
                     f"sensitivity {se:+.2f}, specificity {sp:+.2f}")  # fmt: skip
    return line


@signals_app.command("backfill")
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


@signals_app.command("suggest")
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
        embedder = _embedder()
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


@signals_app.command("label")
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
        embedder = _embedder()
        with open_client(clickhouse) as client:
            current = current_signal(client, name)
            examples = current.spec.examples.with_example(EventRef(event_id=event_id), positive)
            spec = current.spec.model_copy(update={"examples": examples})
            weak = "weak_used" in current.metrics and bool(spec.labelling_functions)
            fitted = _trained(client, spec, embedder, weak, WeakWindow())
            fitted = ClickHouseSignalStore(client).save(fitted, author=author or "label")
            _label_drawn_event(client, name, event_id, positive, author or "label")
    except CLI_ERRORS as exc:
        raise fail(exc) from exc
    if fmt == "json":
        print_json(_summary(fitted))
    else:
        console.print(
            f"{name} v{fitted.version}: {fitted.n_positive}+{fitted.n_negative} examples, "
            f"cv F1 {fitted.metrics.get('f1', float('nan')):.2f}"
        )
