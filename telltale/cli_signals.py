"""``telltale signals ...``: define, inspect, label and back-fill quality signals."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
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
from telltale.cli_signals_common import (
    SinceOpt,
    UntilOpt,
    WeakWindow,
    current_signal,
    field_embedders,
    signal_summary,
    trained,
)
from telltale.cli_signals_traffic import backfill, label, suggest

if TYPE_CHECKING:
    from signals import FittedSignal

__all__ = ["signals_app"]

signals_app = typer.Typer(
    help="Define, inspect, label and back-fill quality signals.", no_args_is_help=True
)


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
        embedder = field_embedders()
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
                fitted = trained(client, spec, embedder, weak, WeakWindow())
                fitted = _judged(fitted, client, force)
                fitted = ClickHouseSignalStore(client).save(fitted, author=author)
    except _Refused as exc:
        raise fail(exc) from exc
    except CLI_ERRORS as exc:
        raise fail(exc) from exc
    summary = signal_summary(fitted)
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
        embedder = field_embedders()
        window = WeakWindow(parse_time(since), parse_time(until), pool)
        with open_client(clickhouse) as client:
            spec = current_signal(client, name).spec
            fitted = _judged(trained(client, spec, embedder, weak, window), client, force)
            fitted = ClickHouseSignalStore(client).save(fitted, author=author)
    except _Refused as exc:
        raise fail(exc) from exc
    except CLI_ERRORS as exc:
        raise fail(exc) from exc
    summary = signal_summary(fitted)
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
        print_json({"signals": [{**signal_summary(s), **audit_state(s.name)} for s in fitted]})
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
        **signal_summary(fitted),
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


# The commands on stored traffic live in their own module; registered here, in this order.
signals_app.command("backfill")(backfill)
signals_app.command("suggest")(suggest)
signals_app.command("label")(label)
