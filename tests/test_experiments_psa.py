"""Probabilistic sensitivity analysis: parameter sets, common random numbers, the decision
analysis (CEAC, EVPI, EVPPI) against hand computations, resuming, and bad declarations."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

import v2vsim
from v2vsim.cli import app
from v2vsim.experiments import PointStore, executor_for
from v2vsim.experiments import psa as ps
from v2vsim.experiments.decision import ceac_table, evpi_table, evppi, smooth_fit
from v2vsim.scenario import ScenarioError
from v2vsim.scenario.overrides import ScenarioSource
from v2vsim.scenario.uncertain import Uncertain

TINY = """\
name: {name}
horizon_days: 200
replications: 4
seed: 5
currency: HKD
arrivals: {{rate_per_year: 30}}
cohorts:
  - name: adults
    share: 1
    pathway: main
    time_to_death: {{dist: exponential, mean: 400}}
    after_infusion:
      response_probability: 0.6
      survival_responder: {{dist: exponential, mean: 2000}}
      survival_non_responder: {{dist: exponential, mean: 300}}
pathways:
  main:
    steps:
      - {{name: manufacture, kind: manufacture, duration: {days}, cost: {cost}, failure_probability: 0.05}}
      - {{name: infusion, kind: infusion, duration: 1, cost: 50000}}
economics:
  follow_up_years: 5
  utilities: {{waiting: 0.6, responder: 0.85, non_responder: 0.5, progressed: 0.4}}
  wtp: [200000, 500000]
"""

UNCERTAIN = """\
uncertain:
  - path: pathways.main.steps.manufacture.cost
    name: {cost_name}
    distribution: {{gamma: {{mean: {cost}, sd: {sd}}}}}
  - path: cohorts.adults.after_infusion.response_probability
    name: response
    distribution: {{beta: {{mean: 0.6, sd: 0.08}}}}
"""


def write(tmp_path: Path, name: str, *, days: float = 20, cost: float = 300000, uncertain: bool = True,
          extra: str = "") -> Path:
    text = TINY.format(name=name, days=days, cost=cost)
    if uncertain:
        text += UNCERTAIN.format(cost_name=f"{name}_cost", cost=cost, sd=cost / 5)
    path = tmp_path / f"{name}.yaml"
    path.write_text(text + extra, encoding="utf-8")
    return path


# --------------------------------------------------------------------------- runs


def test_with_no_uncertain_input_a_set_is_a_plain_run(tmp_path: Path) -> None:
    path = write(tmp_path, "plain", uncertain=False)
    result = ps.run_psa([ScenarioSource(path)], 3, replications=4, seed=9)
    plain = v2vsim.simulate(v2vsim.load_scenario(path), replications=4, seed=9, jobs=1).replications
    for column in ("cost_discounted_per_referred", "qalys_discounted_per_referred", "infused_fraction", "died"):
        expected = float(plain[column].mean())
        assert result.sets[column].tolist() == [expected] * 3, column
    assert result.runs == 1  # the same seed and values: run once, the same numbers for every set


def test_a_set_is_the_scenario_with_its_values_run_with_the_same_seed(tmp_path: Path) -> None:
    a = write(tmp_path, "a")
    result = ps.run_psa([ScenarioSource(a)], 2, replications=3, seed=4)
    row = result.sets.iloc[1]
    sc = ScenarioSource(a).variant([("pathways.main.steps.manufacture.cost", row["a_cost"]),
                                    ("cohorts.adults.after_infusion.response_probability", row["response"])])
    plain = v2vsim.simulate(sc, replications=3, seed=4, jobs=1).replications
    assert row["cost_discounted_per_referred"] == float(plain["cost_discounted_per_referred"].mean())
    assert row["qalys_discounted_per_referred"] == float(plain["qalys_discounted_per_referred"].mean())


def test_same_sets_for_any_jobs_and_a_larger_psa_starts_with_the_smaller(tmp_path: Path) -> None:
    sources = [ScenarioSource(write(tmp_path, "a")), ScenarioSource(write(tmp_path, "b", days=45, cost=150000))]
    one = ps.run_psa(sources, 4, replications=3, seed=3, wtp=[0, 200000])
    with executor_for(2) as (executor, workers):
        two = ps.run_psa(sources, 4, replications=3, seed=3, wtp=[0, 200000], executor=executor, workers=workers)
    pd.testing.assert_frame_equal(one.sets, two.sets)
    more = ps.run_psa(sources, 7, replications=3, seed=3, wtp=[0, 200000])
    pd.testing.assert_frame_equal(more.sets.iloc[:8].reset_index(drop=True), one.sets)
    # The shared parameter (same name) has the same value in both scenarios of a set.
    wide = one.sets.pivot(index="set", columns="scenario", values="response")
    assert (wide["a"] == wide["b"]).all() and wide["a"].nunique() == 4
    # Another seed, other sets.
    other = ps.run_psa(sources, 4, replications=3, seed=4, wtp=[0, 200000])
    assert not np.allclose(other.sets["response"], one.sets["response"])
    # CEAC of the run: the share of sets with positive incremental NMB.
    cost, qalys = one.matrix(ps.OUTCOMES["cost"]), one.matrix(ps.OUTCOMES["qalys"])
    inb = 200000 * (qalys[:, 1] - qalys[:, 0]) - (cost[:, 1] - cost[:, 0])
    got = one.ceac[(one.ceac["wtp"] == 200000) & (one.ceac["scenario"] == "b")]["probability_cost_effective"]
    assert float(got.iloc[0]) == pytest.approx(float(np.mean(inb > 0)))


def test_resume_recomputes_only_the_missing_sets(tmp_path: Path) -> None:
    sources = [ScenarioSource(write(tmp_path, "a")), ScenarioSource(write(tmp_path, "b", days=45, cost=150000))]
    fp = ps.fingerprint(sources, replications=3, seed=2, fixed=[], version="test")
    store = PointStore(tmp_path / "out", fp)
    full = ps.run_psa(sources, 4, replications=3, seed=2, wtp=[100000], store=store)
    assert full.runs == 8
    for index in (2, 7):  # set 1 of b and set 3 of b: as if interrupted before they finished
        for suffix in (".json", ".parquet"):
            (store.dir / "points" / f"{index:06d}{suffix}").unlink()
    again = ps.run_psa(sources, 4, replications=3, seed=2, wtp=[100000], store=PointStore(tmp_path / "out", fp),
                       resume=True)
    assert again.runs == 2
    pd.testing.assert_frame_equal(again.sets, full.sets)
    # More sets resume the smaller PSA: only the new sets run.
    bigger = ps.run_psa(sources, 6, replications=3, seed=2, wtp=[100000], store=PointStore(tmp_path / "out", fp),
                        resume=True)
    assert bigger.runs == 4
    pd.testing.assert_frame_equal(bigger.sets.iloc[:8], full.sets)


# --------------------------------------------------------------------------- the decision analysis


def test_ceac_is_the_share_of_sets_with_positive_incremental_nmb() -> None:
    rng = np.random.default_rng(1)
    cost = np.column_stack([rng.normal(100, 20, 500), rng.normal(130, 25, 500)])
    qalys = np.column_stack([rng.normal(2.0, 0.1, 500), rng.normal(2.1, 0.12, 500)])
    wtp = np.array([0.0, 100.0, 300.0, 1000.0])
    table = ceac_table(cost, qalys, wtp, ["a", "b"])
    for w in wtp:
        inb = w * (qalys[:, 1] - qalys[:, 0]) - (cost[:, 1] - cost[:, 0])
        rows = table[table["wtp"] == w].set_index("scenario")
        assert rows.loc["b", "probability_cost_effective"] == pytest.approx(np.mean(inb > 0))
        assert rows.loc["a", "probability_cost_effective"] == pytest.approx(np.mean(inb <= 0))
        assert bool(rows.loc["b", "on_frontier"]) == (inb.mean() > 0)


def test_evpi_by_hand_and_zero_when_one_option_always_wins() -> None:
    # NMB at wtp 10: a = 10 q - c, b likewise.
    cost = np.array([[0.0, 5.0], [0.0, 5.0], [0.0, 5.0]])
    qalys = np.array([[1.0, 2.0], [1.0, 1.0], [1.0, 1.1]])
    # NMB a: 10, 10, 10; b: 15, 5, 6. E[max] = (15 + 10 + 10) / 3; max E = max(10, 26/3) = 10.
    table = evpi_table(cost, qalys, np.array([10.0]), per_year=20.0)
    assert table["evpi_per_patient"].iloc[0] == pytest.approx(35 / 3 - 10)
    assert table["evpi_per_year"].iloc[0] == pytest.approx((35 / 3 - 10) * 20)
    # b always cheaper and better: nothing to learn at any threshold.
    rng = np.random.default_rng(2)
    c = np.column_stack([rng.uniform(10, 20, 300), rng.uniform(0, 9, 300)])
    q = np.column_stack([rng.uniform(1, 2, 300), rng.uniform(2.1, 3, 300)])
    assert (evpi_table(c, q, np.linspace(0, 1000, 11), per_year=1.0)["evpi_per_patient"] == 0).all()


def test_evppi_of_an_irrelevant_parameter_is_zero_and_of_the_only_one_is_the_evpi() -> None:
    rng = np.random.default_rng(3)
    n = 2000
    x = rng.gamma(4.0, 0.5, n)  # the parameter that decides
    z = rng.uniform(size=n)  # a parameter that enters nothing
    cost = np.column_stack([np.full(n, 100.0), 100.0 + 30.0 * np.sin(x)])
    qalys = np.column_stack([np.full(n, 1.0), 1.0 + 0.05 * x])
    wtp = np.array([0.0, 100.0, 200.0, 300.0])
    evpi = evpi_table(cost, qalys, wtp, per_year=1.0)["evpi_per_patient"].to_numpy()
    assert (evpi > 1.0).all()
    # The only parameter: the fit recovers E[NMB | x] = NMB, so EVPPI = EVPI (within 2%).
    np.testing.assert_allclose(evppi(cost, qalys, wtp, x), evpi, rtol=0.02)
    # One that does not enter the NMB: EVPPI under 2% of the EVPI.
    assert (evppi(cost, qalys, wtp, z) <= 0.02 * evpi).all()


def test_smooth_fit_follows_a_curve_and_stays_straight_on_noise() -> None:
    rng = np.random.default_rng(4)
    x = rng.uniform(0, 3, 1000)
    truth = np.tanh(4 * (x - 1.5)) + 0.3 * x  # a threshold between two plateaus
    y = truth + rng.normal(0, 0.1, 1000)
    fitted = smooth_fit(x, y)
    cubic = np.polyval(np.polyfit(x, y, 3), x)
    assert np.sqrt(np.mean((fitted - truth) ** 2)) < 0.03  # a cubic misses it by about 0.18
    assert np.sqrt(np.mean((cubic - truth) ** 2)) > 0.1
    assert float(np.mean(fitted)) == pytest.approx(float(np.mean(y)))
    flat = smooth_fit(x, rng.normal(0, 1, 1000))
    assert float(np.ptp(flat)) < 0.5


# --------------------------------------------------------------------------- the parameters' draws


@pytest.mark.parametrize("spec, mean, sd", [
    ({"beta": {"mean": 0.05, "sd": 0.02}}, 0.05, 0.02),
    ({"beta": {"alpha": 2.0, "beta": 6.0}}, 0.25, math.sqrt(12 / (64 * 9))),
    ({"gamma": {"mean": 250000, "sd": 60000}}, 250000, 60000),
    ({"lognormal": {"mean": 1.5, "sd": 0.4}}, 1.5, 0.4),
    ({"lognormal": {"median": 0.8, "ci95": [0.6, 0.8 / 0.6 * 0.8]}}, None, None),
    ({"normal": {"mean": -3.0, "sd": 2.0}}, -3.0, 2.0),
    ({"uniform": {"low": 10, "high": 20}}, 15.0, 10 / math.sqrt(12)),
])
def test_drawn_values_have_their_distributions_mean_and_sd(spec: dict, mean: float | None, sd: float | None) -> None:
    item = Uncertain.model_validate({"path": "x.y", "distribution": spec})
    values = np.array(item.values(ps.parameter_uniforms(20250415, "x.y", 40000)))
    if mean is None:  # median/ci95: the quantiles are the ones given
        assert float(np.median(values)) == pytest.approx(0.8, rel=0.01)
        assert float(np.quantile(values, 0.025)) == pytest.approx(0.6, rel=0.02)
        return
    # 40,000 draws: the mean within 2% of the sd (about 4 standard errors), the sd within 3%.
    assert abs(float(values.mean()) - mean) < 0.02 * sd
    assert float(values.std()) == pytest.approx(sd, rel=0.03)
    assert item.distribution.mean() == pytest.approx(mean)
    assert item.distribution.sd() == pytest.approx(sd)


def test_bounds_truncate_the_draws() -> None:
    item = Uncertain.model_validate({"path": "x", "distribution": {"gamma": {"mean": 0.3, "sd": 0.2}},
                                     "bounds": [0, 0.5]})
    values = np.array(item.values(ps.parameter_uniforms(1, "x", 20000)))
    assert values.min() > 0 and values.max() <= 0.5
    # Truncation keeps the shape: the share below 0.2 is F(0.2) / F(0.5).
    cdf = item.distribution.cdf(np.array([0.2, 0.5]))
    assert float(np.mean(values < 0.2)) == pytest.approx(cdf[0] / cdf[1], abs=0.01)


def test_a_parameters_stream_does_not_depend_on_the_others_or_on_n() -> None:
    a = ps.parameter_uniforms(7, "cost", 10)
    assert np.array_equal(ps.parameter_uniforms(7, "cost", 25)[:10], a)
    assert not np.array_equal(ps.parameter_uniforms(7, "response", 10), a)
    assert ((a > 0) & (a < 1)).all()


# --------------------------------------------------------------------------- bad input (exit 2, FILE:LINE)


def _psa(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["psa", *args])
    return result.exit_code, result.output


def test_an_unknown_path_is_reported_with_its_line_and_a_suggestion(tmp_path: Path) -> None:
    path = write(tmp_path, "a", uncertain=False, extra=(
        "uncertain:\n"
        "  - path: cohorts.adults.after_infusion.respons_probability\n"
        "    distribution: {beta: {mean: 0.6, sd: 0.08}}\n"
        "  - path: pathways.main.steps.manufactur.cost\n"
        "    distribution: {gamma: {mean: 1000, sd: 100}}\n"))
    code, output = _psa(str(path), "--sets", "2", "-n", "2", "-o", str(tmp_path / "out"))
    assert code == 2, output
    lines = path.read_text().splitlines()
    first = lines.index("  - path: cohorts.adults.after_infusion.respons_probability") + 1
    assert f"{path}:{first}: uncertain[0].path: path 'cohorts.adults.after_infusion.respons_probability'" in output
    assert "respons_probability" in output and "did you mean 'response_probability'" in output
    assert f"{path}:{first + 2}: uncertain[1].path:" in output and "no such step 'manufactur'" in output
    assert "Traceback" not in output


@pytest.mark.parametrize("distribution, says", [
    ("{beta: {mean: 1.2, sd: 0.1}}", "mean must be between 0 and 1"),
    ("{beta: {mean: 0.5, sd: 0.6}}", "too large for a beta"),
    ("{gamma: {mean: 0.5, sd: -1}}", "sd"),
    ("{gamma: {mean: 0.5, sd: 0.1}}", "can draw values without an upper limit"),
    ("{normal: {mean: 0.5, sd: 0.1}}", "can draw negative values"),
    ("{weibull: {shape: 1}}", "weibull"),
])
def test_a_bad_distribution_is_reported_with_its_line(tmp_path: Path, distribution: str, says: str) -> None:
    path = write(tmp_path, "a", uncertain=False, extra=(
        "uncertain:\n"
        "  - path: cohorts.adults.after_infusion.response_probability\n"
        f"    distribution: {distribution}\n"))
    code, output = _psa(str(path), "--sets", "2", "-n", "2", "-o", str(tmp_path / "out"))
    assert code == 2, output
    line = path.read_text().splitlines().index("uncertain:") + 2
    assert any(row.startswith(f"{path}:") and "uncertain[0]" in row for row in output.splitlines()), output
    assert says in output, output
    assert f"{path}:{line}" in output or f"{path}:{line + 1}" in output, output
    assert not (tmp_path / "out").exists()


def test_a_gamma_for_a_probability_is_allowed_when_bounded(tmp_path: Path) -> None:
    path = write(tmp_path, "a", uncertain=False, extra=(
        "uncertain:\n"
        "  - path: cohorts.adults.after_infusion.response_probability\n"
        "    distribution: {gamma: {mean: 0.5, sd: 0.1}}\n"
        "    bounds: [0, 1]\n"))
    assert ps.uncertain_problems(ScenarioSource(path)) == []
    with pytest.raises(ScenarioError):
        ps.run_psa([ScenarioSource(write(tmp_path, "b", uncertain=False, extra=(
            "uncertain:\n  - path: sites.nowhere.slots\n    distribution: {uniform: {low: 1, high: 2}}\n")))],
            2, replications=2, seed=1)


def test_the_cli_writes_every_table_and_figure(tmp_path: Path) -> None:
    a, b = write(tmp_path, "a"), write(tmp_path, "b", days=45, cost=150000)
    out = tmp_path / "psa"
    code, output = _psa(str(a), str(b), "--sets", "6", "-n", "2", "--wtp", "0:600000:100000", "-j", "1",
                        "-o", str(out))
    assert code == 0, output
    for name in ("psa_sets.csv", "ceac.csv", "evpi.csv", "evppi.csv", "psa_parameters.csv", "psa_summary.csv",
                 "manifest.json", "figures/ce_plane.png", "figures/ceac.png", "figures/evpi.png",
                 "figures/evppi.png"):
        assert (out / name).is_file(), name
    sets = pd.read_csv(out / "psa_sets.csv")
    assert len(sets) == 12 and {"a_cost", "b_cost", "response", "incremental_cost"} <= set(sets.columns)
    ceac = pd.read_csv(out / "ceac.csv")
    assert len(ceac) == 14
    assert np.allclose(ceac.groupby("wtp")["probability_cost_effective"].sum(), 1.0)
    assert not Path(str(out) + ".partial").exists()
