"""External validation: the shipped published-trial cases, the case format and the command.

The shipped cases are checked against an independent closed form computed here, whatever the
trials observed: with ample capacity, no retry and no loss of fitness, a patient is infused when
manufacture succeeds (probability 1 - p) and the death clock outlasts the time to infusion T, so

    P(infused) = (1 - p) E[S(T)],
    P(died)    = E[1 - S(M)] + (1 - p) E[S(M) - S(T)]    (M: end of the failing step),

with the expectation over the one random (lognormal) duration by numerical integration, and
the median time to infusion among the infused from the density S(t) f_T(t). This validates the
simulator (its clocks, steps, failures and counting), not the trials.
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
from scipy import integrate, optimize, stats
from typer.testing import CliRunner

from v2vsim.cli import app
from v2vsim.experiments.validation import binomial_interval, metric_values, run_case
from v2vsim.scenario import ScenarioError
from v2vsim.scenario.cases import load_case
from v2vsim.scenario.distributions import Exponential, Fixed, Lognormal, Never, Weibull

ROOT = Path(__file__).resolve().parents[1]
CASES = sorted((ROOT / "validation").glob("*.yaml"))
Z90 = 1.2815515655446004
runner = CliRunner()


# --------------------------------------------------------------------------- the closed form


def _survival(dist):
    if isinstance(dist, Weibull):
        median = dist.median if dist.median is not None else dist.scale_ * math.log(2) ** (1 / dist.shape)
        return lambda t: math.exp(-math.log(2) * (max(t, 0.0) / median) ** dist.shape)
    if isinstance(dist, Exponential):
        mean = dist.mean_ if dist.mean_ is not None else dist.median / math.log(2)
        return lambda t: math.exp(-max(t, 0.0) / mean)
    raise AssertionError(f"closed form written for Weibull or exponential death clocks, not {dist}")


def closed_form(scenario):
    """(P infused, P died, median time to infusion among the infused) of a one-cohort scenario."""
    assert len(scenario.cohorts) == 1
    cohort = scenario.cohorts[0]
    assert isinstance(cohort.time_to_ineligible, Never) and cohort.bridging is None
    steps = scenario.pathways[cohort.pathway].steps
    assert not scenario.sites and all(s.starts_on is None and s.on_failure is None for s in steps)
    failing = [j for j, s in enumerate(steps) if s.failure_probability > 0]
    assert len(failing) <= 1
    j_fail = failing[0] if failing else len(steps) - 1
    p = steps[j_fail].failure_probability if failing else 0.0
    fixed_total = fixed_to_fail = 0.0
    random_at, mu, sigma = None, 0.0, 0.0
    for j, step in enumerate(steps):
        d = step.duration
        if isinstance(d, Fixed):
            fixed_total += d.value
            fixed_to_fail += d.value if j <= j_fail else 0.0
        else:
            assert isinstance(d, Lognormal) and d.median is not None and random_at is None
            random_at, mu, sigma = j, math.log(d.median), (math.log(d.p90) - math.log(d.median)) / Z90
    S = _survival(cohort.time_to_death)
    if random_at is None:
        e_t, e_m = S(fixed_total), S(fixed_to_fail)
        return (1 - p) * e_t, 1 - e_m + (1 - p) * (e_m - e_t), fixed_total
    pdf = stats.lognorm(s=sigma, scale=math.exp(mu)).pdf
    m_has_x = random_at <= j_fail

    def expect(g):
        return integrate.quad(lambda x: g(x) * pdf(x), 0, np.inf, limit=200)[0]

    e_t = expect(lambda x: S(fixed_total + x))
    e_m = expect(lambda x: S(fixed_to_fail + (x if m_has_x else 0.0)))
    mass = e_t

    def cdf(t):  # P(T <= t | infused)
        x = t - fixed_total
        return 0.0 if x <= 0 else integrate.quad(lambda y: S(fixed_total + y) * pdf(y), 0, x, limit=200)[0] / mass

    median = optimize.brentq(lambda t: cdf(t) - 0.5, fixed_total + 1e-9, fixed_total + 50 * math.exp(mu + 3 * sigma))
    return (1 - p) * e_t, 1 - e_m + (1 - p) * (e_m - e_t), median


def _tolerance(values: np.ndarray) -> float:
    """Four standard errors of the mean of the virtual trials."""
    values = values[np.isfinite(values)]
    return 4 * values.std(ddof=1) / math.sqrt(len(values))


@pytest.fixture(scope="module")
def shipped():
    return {path.stem: (load_case(path), run_case(load_case(path), jobs=1)) for path in CASES}


def test_cases_are_shipped():
    names = {p.stem for p in CASES}
    assert {"zuma1", "juliet", "eliana"} <= names


@pytest.mark.parametrize("name", [p.stem for p in CASES])
def test_prediction_agrees_with_the_closed_form(shipped, name):
    lc, result = shipped[name]
    infused, died, median = closed_form(lc.scenario)
    reps = result.results.replications
    assert (reps["referred"] == lc.case.trial.size).all()  # each replication is one trial
    for metric, expected in (("infused_fraction", infused), ("died_fraction", died)):
        values = metric_values(reps, metric)
        tol = _tolerance(values)
        assert tol < 0.01, "too few virtual trials for a sharp check"
        assert abs(np.nanmean(values) - expected) < tol, (metric, np.nanmean(values), expected, tol)
    values = metric_values(reps, "vein_to_vein_median")
    # The sample median of ~100 infused patients is biased by O(1/n) days: allow 0.05 d more.
    assert abs(np.nanmean(values) - median) < _tolerance(values) + 0.05, (np.nanmean(values), median)


def test_the_closed_form_check_can_fail(shipped):
    """A 4-point change in the manufacturing failure rate is many tolerances away."""
    lc, _ = shipped["zuma1"]
    infused, _, _ = closed_form(lc.scenario)
    variant = lc.source.variant({**lc.trial_scenario,
                                 "pathways.zuma1.steps.manufacture.failure_probability": 0.05})
    from v2vsim import simulate

    values = metric_values(simulate(variant, 400, 2017, jobs=1).replications, "infused_fraction")
    assert abs(values.mean() - infused) > 5 * _tolerance(values)


def test_rows_hold_the_published_observations(shipped):
    _, zuma = shipped["zuma1"]
    row = next(r for r in zuma.rows if r["metric"] == "infused_fraction")
    assert (row["observed_k"], row["observed_n"]) == (101, 111)
    assert row["observed"] == pytest.approx(101 / 111)
    assert row["trial_low"] < row["predicted_ci_low"] <= row["predicted_mean"] <= row["predicted_ci_high"] < row["trial_high"]
    assert row["error"] == pytest.approx(100 * (row["predicted_mean"] - 101 / 111))
    assert row["verdict"] == ("inside" if row["trial_low"] <= 101 / 111 <= row["trial_high"] else "outside")


def test_sensitivity_moves_the_right_way(shipped):
    """More loss of fitness, fewer infused; stronger bridging, fewer deaths; the baseline row
    is the case's own run (common random numbers: identical values)."""
    _, juliet = shipped["juliet_uspi"]
    rows = [r for r in juliet.sensitivity if r["metric"] == "infused_fraction"
            and r["path"].endswith("time_to_ineligible")]
    means = [r["predicted_mean"] for r in sorted(rows, key=lambda r: r["value"])]
    assert means == sorted(means, reverse=True) and means[0] > means[-1] + 0.1
    died = sorted((r for r in juliet.sensitivity if r["metric"] == "died_fraction"
                   and r["path"].endswith("bridging")), key=lambda r: r["value"])
    assert [r["predicted_mean"] for r in died] == sorted(r["predicted_mean"] for r in died)
    base = next(r for r in juliet.rows if r["metric"] == "died_fraction")
    marked = [r for r in died if r["baseline"]]
    assert len(marked) == 1 and marked[0]["predicted_mean"] == base["predicted_mean"]


# --------------------------------------------------------------------------- statistics


def test_exact_binomial_interval_closed_forms():
    # k = 0: upper bound 1 - (alpha/2)^(1/n); k = n mirrors it.
    assert binomial_interval(0, 10) == (0.0, pytest.approx(1 - 0.025 ** (1 / 10)))
    assert binomial_interval(10, 10) == (pytest.approx(0.025 ** (1 / 10)), 1.0)
    low, high = binomial_interval(101, 111)
    # Clopper-Pearson bounds satisfy the binomial tail equations.
    assert stats.binom.sf(100, 111, low) == pytest.approx(0.025, rel=1e-6)
    assert stats.binom.cdf(101, 111, high) == pytest.approx(0.025, rel=1e-6)


# --------------------------------------------------------------------------- the case format


def _copy(tmp_path: Path, name: str = "zuma1") -> Path:
    shutil.copytree(ROOT / "validation" / "scenarios", tmp_path / "scenarios")
    target = tmp_path / f"{name}.yaml"
    shutil.copyfile(ROOT / "validation" / f"{name}.yaml", target)
    return target


def _problems(path: Path) -> list[str]:
    with pytest.raises(ScenarioError) as info:
        load_case(path)
    return [str(p) for p in info.value.problems]


def _line(path: Path, text: str) -> int:
    return next(i for i, line in enumerate(path.read_text().splitlines(), 1) if text in line)


def test_outcome_that_repeats_an_input_is_refused(tmp_path):
    path = _copy(tmp_path)
    text = path.read_text().replace("quantity: 101 of 111 enrolled patients received axi-cel",
                                    "quantity: manufacturing failure about 1%")
    path.write_text(text)
    line = _line(path, "quantity: manufacturing failure about 1%") + 0
    lines = [l for l in path.read_text().splitlines()]
    outcome_line = [i for i, l in enumerate(lines, 1) if "manufacturing failure about 1%" in l][-1]
    assert _problems(path) == [f"{path}:{outcome_line}: outcomes[0].quantity: is the same published "
                               "number as inputs[1]: an outcome the model is fed cannot validate it"]
    assert line < outcome_line


@pytest.mark.parametrize("old, new, where, message", [
    ("observed: {k: 101, n: 111}", "observed: {k: 101, n: 110}", "outcomes[0].observed.n",
     "n (110) must equal trial.size (111)"),
    ("observed: {k: 101, n: 111}", "observed: {k: 112, n: 111}", "outcomes[0].observed",
     "k (112) cannot exceed n (111)"),
    ("observed: {k: 101, n: 111}", "observed: {value: 0.91}", "outcomes[0].observed",
     "infused_fraction is a share: give k and n, not value"),
    ("metric: infused_fraction", "metric: infused_fracton", "outcomes[0].metric",
     "unknown metric 'infused_fracton' (did you mean 'infused_fraction'?)"),
    ("  size: 111", "  sise: 111", "trial.sise", "unknown key (did you mean 'size'?)"),
    ("  size: 111", "  size: -3", "trial.size", "greater than or equal to 1"),
    ("path: pathways.zuma1.steps.manufacture.failure_probability",
     "path: pathways.zuma1.steps.manufactur.failure_probability", "inputs[1].path",
     "no such step 'manufactur'"),
    ("scenario: scenarios/zuma1.yaml", "scenario: scenarios/missing.yaml", "scenario",
     "scenarios/missing.yaml: the scenario has problems"),
    ("      - {dist: exponential, mean: 730}", "      - {dist: exponential, mean: -730}",
     "sensitivity[0].values[1]", "greater than 0"),
])
def test_bad_case_is_refused_with_line_and_path(tmp_path, old, new, where, message):
    path = _copy(tmp_path)
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))
    line = _line(path, new.strip())
    problems = _problems(path)
    assert any(p.startswith(f"{path}:{line}: {where}: ") and message in p for p in problems), problems


def test_a_scenario_file_is_not_a_case(tmp_path):
    path = ROOT / "validation" / "scenarios" / "zuma1.yaml"
    assert _problems(path) == [f"{path}:1: this is a scenario file, not a validation case "
                               "(a case names its scenario under `scenario:`)"]


# --------------------------------------------------------------------------- the command


def test_command_writes_a_verified_results_directory(tmp_path):
    case = _copy(tmp_path)
    out = tmp_path / "out"
    result = runner.invoke(app, ["validation", str(case), "-n", "40", "-o", str(out), "-j", "1"])
    assert result.exit_code == 0, result.output
    assert "ZUMA-1" in result.output and "101/111 = 91.0%" in result.output
    assert "observed outcomes inside the trial-size 95% range" in result.output
    for name in ("validation.csv", "validation.json", "sensitivity.csv", "manifest.json",
                 "cases/zuma1.yaml", "cases/zuma1_scenario.yaml", "figures/validation.png"):
        assert (out / name).is_file(), name
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["kind"] == "validation" and manifest["cases"][0]["replications"] == 40
    assert runner.invoke(app, ["verify", str(out)]).exit_code == 0
    first = (out / "validation.csv").read_bytes()
    # Without figures over a directory with figures: refused (it would delete them), then forced.
    refused = runner.invoke(app, ["validation", str(case), "-n", "40", "-o", str(out), "-j", "2", "--no-figures"])
    assert refused.exit_code == 2 and "--force" in refused.output, refused.output
    again = runner.invoke(app, ["validation", str(case), "-n", "40", "-o", str(out), "-j", "2", "--no-figures",
                                "--force"])
    assert again.exit_code == 0, again.output
    assert (out / "validation.csv").read_bytes() == first  # same seed, same result, any --jobs


def test_command_refuses_bad_cases_with_exit_2(tmp_path):
    case = _copy(tmp_path)
    case.write_text(case.read_text().replace("  size: 111", "  size: 0"))
    result = runner.invoke(app, ["validation", str(case), "-o", str(tmp_path / "out")])
    assert result.exit_code == 2
    assert f"{case}:{_line(case, 'size: 0')}: trial.size: " in result.output
    assert not (tmp_path / "out").exists()


def test_schema_of_case_files():
    result = runner.invoke(app, ["schema", "--case"])
    assert result.exit_code == 0
    document = json.loads(result.output)
    assert document["title"] == "v2vsim validation case"
    assert {"scenario", "trial", "inputs", "outcomes"} <= set(document["required"])
