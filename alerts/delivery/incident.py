"""What a page says about one detection, whatever service carries it.

The PagerDuty and Slack notifiers render the same facts: the signal(s), the model, the versions
(baseline → new), the failure rates with their intervals, the slice the excess concentrates in,
the detector and its runbook. They are read here, once, from a stored
:class:`~storage.DetectionRow` (its columns and the ``details`` the detectors write), so the two
formats cannot disagree.

Release-spike rates are the counts the release test fired with (``k/n`` failed units of the new
version and of the baseline) and the always-valid confidence sequence on their difference; for
a watched quantity (``latency.p95``, ``usage.*``: :mod:`alerts.tracks.release_watches`) the
"failures" are the units above the threshold frozen from the baseline, said with its unit;
slow degradation gives the expected rate and the rate since the change; a slice's rate carries
its interval from :mod:`alerts.tracks.localize`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from storage import DetectionRow, json_safe

__all__ = [
    "SEVERITIES",
    "Action",
    "Severity",
    "incident_details",
    "paging_severity",
    "rate_lines",
    "rule_uid",
    "runbook_url",
    "signals_of",
    "summarize",
    "top_slice",
    "top_slice_text",
    "versions_text",
]

Action = Literal["trigger", "resolve"]
"""What a notification says about a detection: it fired, or it resolved."""

Severity = Literal["critical", "error", "warning", "info"]
SEVERITIES: tuple[Severity, ...] = ("critical", "error", "warning", "info")
"""PagerDuty's severities (signal groups declare the same), most severe first."""


def rule_uid(detector: str) -> str:
    """The Grafana rule uid of a detector, which is also its runbook anchor in ``runbooks.md``."""
    return f"telltale-{detector.replace('_', '-')}"


def runbook_url(base: str, detector: str) -> str:
    """``<base>#<rule uid>``: the detector's section of the runbook page."""
    return f"{base}#{rule_uid(detector)}"


def signals_of(d: DetectionRow) -> list[str]:
    """The signals of a detection (a release spike lists every signal that regressed)."""
    return [s for s in d.signal.split(",") if s]


def paging_severity(d: DetectionRow, severities: Mapping[str, str], default: Severity) -> Severity:
    """The most severe of the detection's signals' severities (a signal group's own, else
    ``default``)."""
    found = [severities.get(s, default) for s in signals_of(d)] or [default]
    return min((s for s in SEVERITIES if s in found), key=SEVERITIES.index, default=default)


def _num(value: object) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _count(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2%}"


def _pp(value: float | None) -> str:
    return "n/a" if value is None else f"{value * 100:+.2f} pp"


def _baseline(d: DetectionRow) -> str | None:
    found = d.details.get("baseline_version")
    return found if isinstance(found, str) and found else None


def versions_text(d: DetectionRow) -> str:
    """``v1 → v2`` for a release, else the version (or ``all versions``)."""
    new = d.model_version or "all versions"
    base = _baseline(d)
    return f"{base} → {new}" if base else new


def _signal_figures(d: DetectionRow) -> list[dict[str, Any]]:
    """Per signal: the counts and the effect interval a release test fired with."""
    listed = d.details.get("signals")
    if isinstance(listed, list) and listed:
        return [s for s in listed if isinstance(s, dict) and s.get("signal")]
    figures = {k: d.details.get(k) for k in ("n_new", "k_new", "n_base", "k_base")}
    return [{"signal": d.signal, "effect": d.effect, "effect_low": d.effect_low,
             "effect_high": d.effect_high, **figures}]  # fmt: skip


def _rate(k: object, n: object) -> tuple[float | None, str]:
    failures, events = _count(k), _count(n)
    if failures is None or not events:
        return None, ""
    return failures / events, f" ({failures}/{events})"


def _watch(fig: Mapping[str, Any]) -> dict[str, Any] | None:
    watch = fig.get("watch")
    return watch if isinstance(watch, dict) else None


def _measure(fig: Mapping[str, Any] | None) -> str:
    """What a release signal's rate counts: failures, or units above a watch's threshold."""
    watch = _watch(fig) if fig is not None else None
    if watch is None:
        return "failure rate"
    threshold = _num(watch.get("threshold"))
    above = "n/a" if threshold is None else f"{threshold:.4g}"
    return f"share of units above {above} {watch.get('unit', '')}".rstrip()


def _release_rates(d: DetectionRow) -> list[dict[str, Any]]:
    out = []
    for fig in _signal_figures(d):
        rate, _ = _rate(fig.get("k_new"), fig.get("n_new"))
        base, _ = _rate(fig.get("k_base"), fig.get("n_base"))
        out.append({
            "signal": fig["signal"], "version": d.model_version, "rate": rate,
            "failures": _count(fig.get("k_new")), "units": _count(fig.get("n_new")),
            "baseline_version": _baseline(d), "baseline_rate": base,
            "baseline_failures": _count(fig.get("k_base")),
            "baseline_units": _count(fig.get("n_base")),
            "difference": _num(fig.get("effect")),
            "difference_interval": [_num(fig.get("effect_low")), _num(fig.get("effect_high"))],
            "interval": "always-valid confidence sequence",
            **({"watch": _watch(fig)} if _watch(fig) else {}),
        })  # fmt: skip
    return out


def rate_lines(d: DetectionRow) -> list[str]:
    """One line per signal: the rates, their counts, and the interval the detector gives."""
    if d.detector == "release_spike":
        lines = []
        for r in _release_rates(d):
            _, new = _rate(r["failures"], r["units"])
            _, old = _rate(r["baseline_failures"], r["baseline_units"])
            low, high = r["difference_interval"]
            watch = r.get("watch")
            what = f" — {watch.get('indicator')}" if watch else ""
            lines.append(
                f"{r['signal']}{what}: {r['version']} {_pct(r['rate'])}{new} vs "
                f"{r['baseline_version'] or 'baseline'} {_pct(r['baseline_rate'])}{old}; "
                f"{_pp(r['difference'])}, always-valid CS [{_pp(low)}, {_pp(high)}]"
            )
        return lines
    if d.detector == "degradation":
        p0, now = _num(d.details.get("p0")), _num(d.details.get("rate_since_change"))
        since = d.details.get("change_at")
        when = f" since {since}" if isinstance(since, str) else ""
        return [
            f"{d.signal}: expected {_pct(p0)}, observed {_pct(now)}{when} "
            f"(CUSUM {d.statistic:.2f} >= {d.threshold:.2f})"
        ]
    if d.detector == "prompt_drift":
        line = f"prompts: p = {d.statistic:.2g} <= {d.threshold:.2g}"
        if d.effect is not None:
            line += f"; largest cluster change {_pp(d.effect)}"
        return [line]
    return [f"{d.key}: statistic {d.statistic:.4g} vs threshold {d.threshold:.4g}"]


def top_slice(d: DetectionRow) -> dict[str, Any] | None:
    """The slice the excess failures concentrate in (release spikes), as stored."""
    localization = d.details.get("localization")
    if not isinstance(localization, dict):
        return None
    slices = localization.get("slices")
    if not isinstance(slices, list) or not slices or not isinstance(slices[0], dict):
        return None
    return dict(slices[0])


def top_slice_text(d: DetectionRow) -> str:
    """``locale=de & tier=free: 31.00% [22.10%, 41.30%] vs 4.90% baseline; 82% of the excess``."""
    top = top_slice(d)
    if top is None:
        return ""
    text = str(top.get("slice", "?"))
    rate, base = _num(top.get("rate")), _num(top.get("baseline_rate"))
    interval = top.get("rate_interval")
    if rate is not None:
        text += f": {_pct(rate)}"
        if isinstance(interval, list) and len(interval) == 2:
            text += f" [{_pct(_num(interval[0]))}, {_pct(_num(interval[1]))}]"
        if base is not None:
            text += f" vs {_pct(base)} baseline"
    share = _num(top.get("share_of_excess"))
    if share is not None:
        text += f"; {share:.0%} of the excess"
    return text


def incident_details(d: DetectionRow, runbook: str | None) -> dict[str, Any]:
    """The structured facts of a page (PagerDuty's ``custom_details``), JSON-safe."""
    details: dict[str, Any] = {
        "detector": d.detector,
        "model": d.model,
        "model_version": d.model_version,
        "baseline_version": _baseline(d),
        "signals": signals_of(d),
        "opened_at": d.as_dict()["opened_at"],
        "detection_id": d.detection_id,
        "key": d.key,
        "statistic": d.statistic,
        "threshold": d.threshold,
        "p_value": d.p_value,
        "e_value": d.e_value,
        "rates": rate_lines(d),
    }
    if d.detector == "release_spike":
        details["rate_figures"] = _release_rates(d)
    top = top_slice(d)
    if top is not None:
        details["top_slice"] = top
    if runbook:
        details["runbook"] = runbook
    return json_safe(details)  # type: ignore[no-any-return]


# --- the one-line summary (every format's title or fallback text) -----------------------------


def _amount(value: float | None, signed: bool = True) -> str:
    if value is None:
        return "n/a"
    return f"{value * 100:+.2f} pp" if signed else f"{value:.2%}"


def _where(localization: object) -> str:
    """``; concentrated in locale=de & customer_tier=free (82% of the excess, 31.0% vs 4.9%)``."""
    if not isinstance(localization, dict):
        return ""
    slices = localization.get("slices")
    if not isinstance(slices, list) or not slices or not isinstance(slices[0], dict):
        return ""
    top = slices[0]
    share, rate, base = top.get("share_of_excess"), top.get("rate"), top.get("baseline_rate")
    numbers = []
    if isinstance(share, float):
        numbers.append(f"{share:.0%} of the excess")
    if isinstance(rate, float) and isinstance(base, float):
        numbers.append(f"{rate:.1%} vs {base:.1%}")
    suffix = f" ({', '.join(numbers)})" if numbers else ""
    return f"; concentrated in {top.get('slice', '?')}{suffix}"


def summarize(action: Action, d: DetectionRow) -> str:
    """One line an on-call engineer can act on: what, where, how big, and the evidence."""
    details = d.details
    where = " ".join(part for part in (d.model, d.model_version) if part)
    if d.detector == "release_spike":
        name, *others = signals_of(d) or [d.signal]
        lead = next((f for f in _signal_figures(d) if f["signal"] == name), None)
        what = d.signal  # a watch first: its name and unit, then the others
        if lead is not None and _watch(lead):
            what = name + (f" (and {', '.join(others)})" if others else "")
        text = (
            f"{where}: {what} {_measure(lead)} {_amount(d.effect)} vs "
            f"{details.get('baseline_version', 'the previous version')} since release "
            f"(always-valid CS [{_amount(d.effect_low)}, {_amount(d.effect_high)}]; "
            f"e-value {d.statistic:.3g} >= {d.threshold:.3g})"
        )
        text += _where(details.get("localization"))
    elif d.detector == "degradation":
        p0, rate = details.get("p0"), details.get("rate_since_change")
        text = (
            f"{where}: {d.signal} failure rate crept from "
            f"{_amount(p0 if isinstance(p0, float) else None, False)} to "
            f"{_amount(rate if isinstance(rate, float) else None, False)} "
            f"(CUSUM {d.statistic:.2f} >= {d.threshold:.2f})"
        )
    elif d.detector == "prompt_drift":
        text = f"{where}: prompts drifted from the reference window (p = {d.statistic:.2g} <= "
        text += f"{d.threshold:.2g})"
        clusters = details.get("clusters")
        if isinstance(clusters, list) and clusters and isinstance(clusters[0], dict):
            top = clusters[0]
            examples = top.get("recent_examples") or []
            text += f"; largest growth {_amount(top.get('change'))} in prompts like "
            text += "; ".join(repr(str(e)[:80]) for e in examples[:2]) or "(no text)"
    else:
        text = f"{where}: {d.key} statistic {d.statistic:.3g} vs threshold {d.threshold:.3g}"
    state = "RESOLVED" if action == "resolve" else "FIRING"
    return f"[telltale] {state} {d.detector}: {text}"
