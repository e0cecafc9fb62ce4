"""The four telltale dashboards, built with grafana-foundation-sdk on the ClickHouse source.

* **Overview** — failure rate per signal and model version, release annotations, the
  negative user-feedback rate per app and version, tokens per event and cost per minute per
  model version (``TELLTALE_USAGE_PRICES``), the signals that changed most since each
  model's last release, open detections.
* **Signal drill-down** — rate, score distribution, threshold, recent flagged events.
* **Prompt drift** — drift statistic against threshold per window, prompt-cluster shares.
* **Pipeline health** — events/s, the share of events scored (sampling), dead letters per
  minute, write latency (ingest lag), generation latency, time since the last event,
  drift-detector delay. Consumer lag lives in Kafka, not ClickHouse, and a panel says so.

Every dashboard shares the template variables ``app``, ``model``, ``version``, ``signal`` and
``slice_key`` (multi-value, with "All"), the release annotations and links to its siblings. The
Overview also shows failure rates by slice (``TELLTALE_SLICE_KEYS``), signal groups (the metric
hierarchy's decision metrics) and the failure-mode clusters of ``telltale discover``.
"""

from __future__ import annotations

from grafana_foundation_sdk.builders import dashboard as sdk
from grafana_foundation_sdk.cog import builder as cogbuilder
from grafana_foundation_sdk.models import dashboard as models

from dashboards import queries as q
from dashboards.clickhouse import ClickHouseAnnotationTargetBuilder, datasource_ref
from dashboards.panels import bar_panel, stat_panel, table_panel, text_panel, timeseries_panel
from dashboards.queries import usage as u
from storage import PriceTable

__all__ = ["TAG", "VARIABLES", "build_dashboards"]

TAG = "telltale"

# Template variable name -> (label, the query listing its values).
VARIABLES: dict[str, tuple[str, q.NamedQuery]] = {
    "app": ("App", q.VARIABLE_APP),
    "model": ("Model", q.VARIABLE_MODEL),
    "version": ("Model version", q.VARIABLE_VERSION),
    "signal": ("Signal", q.VARIABLE_SIGNAL),
    "slice_key": ("Slice key", q.VARIABLE_SLICE_KEY),
}

_NOT_IN_CLICKHOUSE = """\
**Consumer lag is not in ClickHouse.** Consumer-group lag is a Kafka metric; read it from your
Kafka monitoring or the worker's `/metrics` (`telltale_worker_consumer_lag`, and
`telltale_worker_sampling_rate`: the rate the overload control set). Here, *write latency*
(event time to stored row) rises when the worker falls behind, and *time since the last event*
shows a stalled pipeline: both have alert rules. Dead letters are counted here; their payloads
are in the Kafka topic `generations.dlq`."""


def _variable(name: str) -> sdk.QueryVariable:
    label, query = VARIABLES[name]
    return (
        sdk.QueryVariable(name)
        .label(label)
        .datasource(datasource_ref())
        .query({"editorType": "sql", "rawSql": query.sql})
        .multi(True)
        .include_all(True)
        .current(models.VariableOption(selected=True, text=["All"], value=["$__all"]))
        .refresh(models.VariableRefresh.ON_TIME_RANGE_CHANGED)
        .sort(models.VariableSort.ALPHABETICAL_ASC)
    )


def _base(uid: str, title: str, description: str) -> sdk.Dashboard:
    releases = (
        sdk.AnnotationQuery()
        .name("Releases")
        .datasource(datasource_ref())
        .enable(True)
        .icon_color("#8F3BB8")
        .target(ClickHouseAnnotationTargetBuilder(q.ANNOTATION_RELEASES))
    )
    siblings = (
        sdk.DashboardLink("Telltale")
        .type(models.DashboardLinkType.DASHBOARDS)
        .tags([TAG])
        .as_dropdown(True)
        .include_vars(True)
        .keep_time(True)
    )
    variables: list[cogbuilder.Builder[models.VariableModel]] = [
        _variable(name) for name in VARIABLES
    ]
    return (
        sdk.Dashboard(title)
        .uid(uid)
        .description(description)
        .tags([TAG])
        .timezone("utc")
        .time("now-24h", "now")
        .refresh("1m")
        .tooltip(models.DashboardCursorSync.CROSSHAIR)
        .variables(variables)
        .annotation(releases)
        .link(siblings)
    )


def overview(min_slice_users: int = 0, prices: PriceTable | None = None) -> sdk.Dashboard:
    prices = prices or PriceTable()
    return (
        _base(
            "telltale-overview", "Telltale · Overview", "Which failure mode got worse, since when."
        )
        .with_panel(
            timeseries_panel(
                "Failure rate by signal and model version",
                q.OVERVIEW_FAILURE_RATE,
                description="Share of events each signal flagged, per model version. "
                "Purple markers are releases.",
                unit="percentunit",
                span=24,
            )
        )
        .with_panel(
            timeseries_panel(
                "Negative user feedback rate",
                q.NEGATIVE_FEEDBACK_RATE,
                description="Share of events with user feedback whose feedback was negative, "
                "per app and model version (delayed feedback is joined to its event; also the "
                "feedback.negative series above and in the release test).",
                unit="percentunit",
                span=24,
            )
        )
        .with_panel(
            timeseries_panel(
                "Tokens per event",
                u.TOKENS_PER_EVENT,
                description="Input and output tokens per event that reported them (usage in "
                "the event, gen_ai.usage.* in OTLP), per model version: a release that doubles "
                "the tokens per answer shows here.",
                unit="short",
                span=12,
            )
        )
        .with_panel(
            timeseries_panel(
                "Cost per minute",
                u.cost_per_minute(prices),
                description="Tokens priced with TELLTALE_USAGE_PRICES (per 1M input and output "
                "tokens) when the dashboards were built, per model version; unpriced models "
                "have no line. `telltale rates --usage` prints the same.",
                unit="short",
                span=12,
            )
        )
        .with_panel(
            table_panel(
                "Tokens and cost by model version",
                u.usage_by_version(prices),
                description="Over the time range: events that reported tokens, tokens, "
                "tokens per event, cost and cost per event (empty cost: no price).",
                span=24,
            )
        )
        .with_panel(
            table_panel(
                "Signals that changed most since the last release",
                q.RELEASE_CHANGES,
                description="Per model's newest release: the released version's rate since "
                "the release against the model's rate in the day before it.",
                span=12,
            )
        )
        .with_panel(
            table_panel(
                "Open detections",
                q.OPEN_DETECTIONS,
                description="Detections the monitor opened and has not resolved.",
                span=12,
            )
        )
        .with_panel(
            table_panel(
                "Failure rate by slice",
                q.slice_failure_rates(min_slice_users),
                description="Per slice key (Slice key variable; TELLTALE_SLICE_KEYS and app) "
                "and value: events, failures, rate and its Wilson 95% interval, the slices "
                "with the highest lower bound first. `telltale rates --by KEY` prints the same.",
                span=24,
            )
        )
        .with_panel(
            timeseries_panel(
                "Failure rate by slice over time",
                q.slice_failure_rate_series(min_slice_users),
                description="Share of events flagged per slice value; pick a slice key and a "
                "signal to keep it readable.",
                unit="percentunit",
                span=12,
            )
        )
        .with_panel(
            timeseries_panel(
                "Signal groups (decision metrics)",
                q.GROUP_FAILURE_RATE,
                description="Failure rate of each signal group (flagged when any member "
                "flags), per model version: the metric hierarchy's top line.",
                unit="percentunit",
                span=12,
            )
        )
        .with_panel(
            table_panel(
                "Failure-mode clusters (telltale discover)",
                q.DISCOVERED_CLUSTERS,
                description="Clusters of recent outputs ranked by distance from the bulk and "
                "growth of their share, with example outputs and the signals' flagged share "
                "in each. Start a signal: `telltale signals add --from-cluster ID NAME`.",
                span=24,
            )
        )
    )


def signal_drilldown() -> sdk.Dashboard:
    return (
        _base(
            "telltale-signal",
            "Telltale · Signal drill-down",
            "One signal in depth: pick it in the Signal variable.",
        )
        .with_panel(
            timeseries_panel(
                "Failure rate by model version",
                q.SIGNAL_FAILURE_RATE,
                description="Share of events the selected signals flagged.",
                unit="percentunit",
            )
        )
        .with_panel(
            timeseries_panel(
                "Corrected failure rate (audited)",
                q.SIGNAL_CORRECTED_RATE,
                description=(
                    "The flag rate with each signal's audited sensitivity and specificity taken "
                    "out (telltale signals audit), with a conservative 95% band; the raw flag "
                    "rate beside it. Signals without an audit have no series."
                ),
                unit="percentunit",
            )
        )
        .with_panel(
            timeseries_panel(
                "Audited precision",
                q.AUDITED_PRECISION,
                description=(
                    "Share of flagged events that really fail, per audit and product version. "
                    "A drop on a new version means the instrument changed, not only the product."
                ),
                unit="percentunit",
            )
        )
        .with_panel(
            bar_panel(
                "Score distribution",
                q.SCORE_DISTRIBUTION,
                description="Events per score bucket of width 0.05, flagged or not.",
                unit="short",
                x_field="score_bucket",
                stacked=True,
            )
        )
        .with_panel(
            table_panel(
                "Threshold",
                q.SIGNAL_THRESHOLD,
                description="Current version of each signal and the score that flags an event.",
                span=8,
            )
        )
        .with_panel(
            table_panel(
                "Recent flagged events",
                q.FLAGGED_EVENTS,
                description="Newest flagged events with their prompt, output and image link.",
                link_column="image",
                span=16,
                height=12,
            )
        )
    )


def prompt_drift() -> sdk.Dashboard:
    return (
        _base(
            "telltale-drift",
            "Telltale · Prompt drift",
            "Are users sending prompts the model did not see before?",
        )
        .with_panel(
            timeseries_panel(
                "Drift statistic and threshold per window",
                q.DRIFT_STATISTIC,
                description="Per window, the drift test's statistic (its p-value) and the "
                "per-look level it must fall to for a detection (the threshold).",
                unit="short",
            )
        )
        .with_panel(
            bar_panel(
                "Prompt-cluster shares (newest window)",
                q.DRIFT_CLUSTER_SHARES,
                description="Share of reference and recent prompts per cluster; clusters "
                "that grew explain the drift.",
                unit="percentunit",
                x_field="cluster",
            )
        )
    )


def pipeline_health() -> sdk.Dashboard:
    return (
        _base(
            "telltale-pipeline",
            "Telltale · Pipeline health",
            "Is the pipeline keeping up?",
        )
        .with_panel(
            timeseries_panel(
                "Events per second",
                q.EVENTS_PER_SECOND,
                description="Events stored per second, by model.",
                unit="reqps",
            )
        )
        .with_panel(
            timeseries_panel(
                "Share of events scored (sampling)",
                q.SHARE_SCORED,
                description="Stored events the signals scored, by model and event minute: 1 "
                "unless the worker samples (TELLTALE_SAMPLE_RATE, or the overload control "
                "lowering the rate while the worker falls behind, TELLTALE_SAMPLE_MAX_LAG_S). "
                "The worker's rate in effect is also on /healthz and "
                "telltale_worker_sampling_rate.",
                unit="percentunit",
            )
        )
        .with_panel(
            timeseries_panel(
                "Write latency (event time to stored row)",
                q.INGEST_LAG,
                description="Ingest lag: how long after its own timestamp an event was "
                "stored. Replayed history (over a day late) is left out.",
                unit="s",
            )
        )
        .with_panel(
            stat_panel(
                "Seconds since the last event",
                q.SECONDS_SINCE_LAST_EVENT,
                description="Red after 10 minutes without a stored event: the stall alert.",
                unit="s",
                red_from=600,
            )
        )
        .with_panel(
            timeseries_panel(
                "Dead letters per minute",
                q.DEAD_LETTERS,
                description="Payloads the worker refused, by source topic; reasons and "
                "payloads are in the dead-letter topic.",
                unit="short",
            )
        )
        .with_panel(
            timeseries_panel(
                "Embedding cache hit rate",
                q.EMBEDDING_CACHE_HIT_RATE,
                description="Share of texts answered without the model: repeats within a "
                "batch, the workers' in-process LRU, and the shared ClickHouse cache. Per field.",
                unit="percentunit",
            )
        )
        .with_panel(text_panel("Consumer lag", _NOT_IN_CLICKHOUSE))
        .with_panel(
            timeseries_panel(
                "Generation latency reported by the apps",
                q.GENERATION_LATENCY,
                description="latency_ms of the events: p50, p95, p99.",
                unit="ms",
            )
        )
        .with_panel(
            timeseries_panel(
                "Drift detector delay",
                q.DRIFT_DETECTOR_DELAY,
                description="How long after a window closed its drift test was stored. The "
                "monitor stores no run times; this is the nearest measure.",
                unit="s",
            )
        )
    )


def build_dashboards(
    min_slice_users: int = 0, prices: PriceTable | None = None
) -> list[models.Dashboard]:
    """The dashboard models, in display order; ``min_slice_users`` > 0 merges slices of fewer
    distinct users into ``other`` (``TELLTALE_PRIVACY_MIN_SLICE_USERS``); ``prices``
    (``TELLTALE_USAGE_PRICES``) prices the tokens in the cost panels."""
    builders = (
        overview(min_slice_users, prices),
        signal_drilldown(),
        prompt_drift(),
        pipeline_health(),
    )
    return [b.build() for b in builders]
