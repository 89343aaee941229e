"""Replications to a precision (Hoad, Robinson & Davies 2010): the stopping rule checked by hand,
and the result equal to a plain run with that many replications."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from pandas.testing import assert_frame_equal
from scipy import stats
from typer.testing import CliRunner

import v2vsim
from v2vsim import experiments as ex
from v2vsim import metrics
from v2vsim.cli import app

TINY = """\
name: tiny
horizon_days: 1000
replications: 5
seed: 3
arrivals: {rate_per_year: 40}
cohorts:
  - {name: adult, pathway: p, time_to_death: {dist: exponential, mean: 250}}
sites:
  plant: {slots: 1}
pathways:
  p:
    steps:
      - {name: apheresis, kind: apheresis, duration: 1}
      - {name: manufacture, kind: manufacture, site: plant, reserve_from: apheresis, duration: {dist: uniform, low: 6, high: 12}}
      - {name: infusion, kind: infusion, duration: 1}
"""


def hand_half_width(x: np.ndarray) -> float:
    """Relative 95% t half-width, computed the textbook way."""
    x = x[np.isfinite(x)]
    return stats.t.ppf(0.975, x.size - 1) * x.std(ddof=1) / math.sqrt(x.size) / abs(x.mean())


def test_running_half_widths_match_the_textbook_formula() -> None:
    x = np.random.default_rng(1).gamma(2.0, 3.0, size=40)
    x[[5, 17]] = np.nan  # a replication without a value (no infused patient) is skipped
    running = ex.precision._relative_half_widths(x)
    for n in (3, 10, 25, 40):
        assert running[n - 1] == pytest.approx(hand_half_width(x[:n]), rel=1e-9)
    assert running[0] == math.inf


def test_stopping_rule_needs_the_look_ahead() -> None:
    rng = np.random.default_rng(2)
    values = 10 + rng.normal(0, 1, size=200)
    frame = pd.DataFrame({"infused_fraction": values, "queue_wait_mean": np.zeros(200)})
    precision = ex.Precision(0.05, min_replications=10, look_ahead=5)
    widths = ex.precision._relative_half_widths(values)
    ok = widths <= 0.05
    # The independent answer: the first n >= 10 from which every later width stays within 5%.
    first = next(n for n in range(10, 201) if ok[n - 1:].all())
    for n in range(first, first + 12):
        status = precision_at(frame, n, precision)
        assert status.n_solution == first
        assert status.reached == (n - first >= 5)
    # queue_wait_mean is always 0: ignored, not an infinite relative width.
    assert "queue_wait_mean" not in precision_at(frame, 50, precision).half_widths


def precision_at(frame: pd.DataFrame, n: int, precision: ex.Precision) -> ex.PrecisionStatus:
    return ex.precision_status(frame.iloc[:n], precision)


def test_cap_stops_without_reaching() -> None:
    values = np.random.default_rng(3).exponential(1.0, size=30)
    status = ex.precision_status(pd.DataFrame({"infused_fraction": values}),
                                 ex.Precision(0.001, min_replications=10, max_replications=30))
    assert status.done and not status.reached and status.n_solution is None


@pytest.mark.parametrize("jobs", [1, 2])
def test_result_equals_a_plain_run_with_that_many_replications(tmp_path: Path, jobs: int) -> None:
    path = tmp_path / "tiny.yaml"
    path.write_text(TINY, encoding="utf-8")
    sc = v2vsim.load_scenario(path)
    precision = ex.Precision(0.15, max_replications=200)
    res = ex.simulate_to_precision(sc, precision, seed=5, jobs=jobs)
    info = res.extra["precision"]
    n = res.n_replications
    assert info["reached"] and info["replications"] == n and n % 10 == 0 and n > 10
    plain = v2vsim.simulate(sc, n, 5, jobs=1)
    assert_frame_equal(res.patients, plain.patients)
    assert_frame_equal(res.replications, plain.replications)
    assert_frame_equal(res.site_days, plain.site_days)
    assert_frame_equal(res.events, plain.events)
    summary = metrics.summarise(plain.replications).set_index("metric")
    for metric in ex.PRECISION_METRICS:
        mean, low, high = summary.loc[metric, ["mean", "ci_low", "ci_high"]]
        if mean != 0:
            assert (high - low) / 2 <= 0.15 * abs(mean)
    # Ten fewer replications did not yet satisfy the rule (else it would have stopped there).
    assert not ex.precision_status(plain.replications.iloc[: n - 10], precision).reached


def test_run_with_precision_reports_the_count(tmp_path: Path) -> None:
    path = tmp_path / "tiny.yaml"
    path.write_text(TINY, encoding="utf-8")
    result = CliRunner().invoke(app, ["run", str(path), "--precision", "0.15", "-n", "300", "-j", "2",
                                      "--no-figures", "-o", str(tmp_path / "o")])
    assert result.exit_code == 0, result.output
    assert "precision 15% reached after" in result.output
    n = v2vsim.load_scenario(tmp_path / "o" / "scenario.yaml").replications
    assert len(pd.read_csv(tmp_path / "o" / "replications.csv")) == n
    assert f"used {n}" in result.output
