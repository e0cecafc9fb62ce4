"""The sampling bench (``bench/alerts_sampling.py``, issue 24) thins traffic as the worker does.

Its inclusion probabilities are the sampler's, rate 1 leaves the counts alone, samples are nested
across rates, a retry storm is in or out whole, and the quick mode reports every row.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

from streams.events import GenerationEvent
from streams.sampling import Sampler, SamplingConfig

ROOT = Path(__file__).resolve().parents[2]


def _load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"bench_{name}", ROOT / "bench" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def _events(count: int, version: str) -> list[GenerationEvent]:
    at = datetime(2026, 12, 7, tzinfo=UTC)
    return [GenerationEvent(event_id=f"{version}-{i}", timestamp=at, model="m",
                            model_version=version, output={"text": "hi"})
            for i in range(count)]  # fmt: skip


@pytest.mark.parametrize("rate", [1.0, 0.25, 0.05])
def test_inclusion_probabilities_are_the_samplers(rate: float) -> None:
    traffic = _load("sampled_traffic")
    volumes = [200, 200, 40, 500, 3, 0, 120]
    minute = [0.0]
    sampler = Sampler(SamplingConfig(rate=rate, version_floor_per_min=30), clock=lambda: minute[0])
    expected = []
    for i, volume in enumerate(volumes):
        minute[0] = 60.0 * i
        p = sampler.probabilities(_events(volume, "v1"))
        expected.append(p[-1] if p else None)  # the minute's last batch: all of it seen
    got = traffic.inclusion(np.array(volumes), rate, 30.0)
    for want, have in zip(expected, got, strict=True):
        if want is not None:
            assert have == pytest.approx(want)


def test_thinning_is_nested_whole_storms_and_rate_one_is_the_identity() -> None:
    traffic = _load("sampled_traffic")
    rng = np.random.default_rng(3)
    n = rng.poisson(100, 600).astype(np.int64)
    k = rng.binomial(n, 0.05).astype(np.int64)
    storms = traffic.storm_minutes(rng, 600, 6.0, 3)
    arm = traffic.make_arm(rng, n, k, "t", storms=storms, raw_storms=True)
    copies = sum(len(s) for s in storms)
    n1, k1, p1 = arm.thin(1.0, 30.0)
    assert (p1 == 1.0).all() and n1.sum() == n.sum() + copies and k1.sum() == k.sum() + copies
    n_mid, k_mid, _ = arm.thin(0.25, 0.0)
    n_low, k_low, _ = arm.thin(0.05, 0.0)
    assert (n_low <= n_mid).all() and (n_mid <= n1).all() and (k_low <= k_mid).all()
    assert 0.2 < n_mid.sum() / n1.sum() < 0.3
    # a storm's copies share one user: it is scored whole or not at all (once, de-duplicated)
    plain = traffic.make_arm(np.random.default_rng(4), n, k, "t")
    base_n = plain.thin(0.25, 0.0)[0]
    for raw, extra in ((True, 3), (False, 1)):
        for draw, rate in ((0.1, 0.25), (0.1, 0.05)):
            stormy = traffic.Arm(plain.n, plain.k, plain.unit_draws, plain.minute, plain.failed,
                                 [np.array([5, 5, 6])], np.array([draw]), raw)  # fmt: skip
            got = stormy.thin(rate, 0.0)[0].sum() - plain.thin(rate, 0.0)[0].sum()
            assert got == (extra if draw < rate else 0)
    assert base_n.sum() > 0


def test_quick_mode_reports_every_row(capsys: pytest.CaptureFixture[str]) -> None:
    bench = _load("alerts_sampling")
    argv = ["--quick", "--json", "--part", "release", "--null-runs", "2", "--change-runs", "2"]
    assert bench.main(argv) == 0
    result = json.loads(capsys.readouterr().out)["release"]
    assert len(result["null"]) == 6 and len(result["changes"]) == 3
    for row in result["null"]:
        assert [c["rate"] for c in row["by_rate"]] == [1.0, 0.25, 0.05]
        first = row["by_rate"][0]
        assert first["p_new"] == first["p_base"] == 1.0
    canary = next(r for r in result["null"] if r["scenario"].startswith("canary 1%"))
    low = canary["by_rate"][2]
    assert low["p_new"] == 1.0 and low["p_base"] < 0.2  # the floor scores the small version whole
    big = result["changes"][2]["by_rate"]
    assert all(c["detected"] == 2 for c in big) and big[0]["p80_vs_first_rate"] == 1.0
