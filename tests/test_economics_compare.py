"""Incremental cost-effectiveness against a comparator, and budget impact.

Per-replication tables made by hand, so every number has an independent answer: constant
paired differences give the ICER and NMB exactly; varying ones give t-intervals from the
textbook formula (scipy's t quantile) and a Fieller interval found by inverting the t-test
numerically (root finding, not the quadratic formula the code uses).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import optimize, stats
from typer.testing import CliRunner

import v2vsim
from v2vsim.cli import app
from v2vsim.experiments.economics import (
    budget_impact,
    budget_summary,
    dominance,
    dominance_sentence,
    economic_comparison,
    fieller_interval,
    incremental_analysis,
)
from v2vsim.scenario import load_scenario

runner = CliRunner()


def table(cost: list[float], qalys: list[float], *, life_years: list[float] | None = None,
          undiscounted: float = 1.1) -> pd.DataFrame:
    """A per-replication table with the economic columns: discounted values as given,
    undiscounted ones ``undiscounted`` times larger."""
    life = qalys if life_years is None else life_years
    return pd.DataFrame({
        "replication": np.arange(len(cost)),
        "cost_discounted_per_referred": cost,
        "cost_per_referred": [c * undiscounted for c in cost],
        "life_years_discounted_per_referred": [v * 1.25 for v in life],
        "life_years_per_referred": [v * 1.25 * undiscounted for v in life],
        "qalys_discounted_per_referred": qalys,
        "qalys_per_referred": [q * undiscounted for q in qalys],
    })


BASE_COST = [400_000.0, 520_000.0, 455_000.0, 610_000.0]
BASE_QALYS = [2.0, 2.6, 1.7, 3.1]


def row(frame: pd.DataFrame, measure: str, wtp: float | None = None) -> pd.Series:
    rows = frame[frame["measure"] == measure]
    if wtp is not None:
        rows = rows[rows["wtp"] == wtp]
    assert len(rows) == 1, rows
    return rows.iloc[0]


# ---------------------------------------------------------------- ICER and NMB, exact


def test_known_cost_and_qaly_gain_give_the_icer_and_nmb_exactly() -> None:
    # Every replication: +50,000 in discounted cost and +0.5 discounted QALYs.
    other = table([c + 50_000 for c in BASE_COST], [q + 0.5 for q in BASE_QALYS])
    result = incremental_analysis({"overseas": table(BASE_COST, BASE_QALYS), "local": other},
                                  wtp=[20_000, 150_000], currency="HKD")
    assert set(result["scenario"]) == {"local"} and set(result["comparator"]) == {"overseas"}
    cost = row(result, "incremental_cost_discounted")
    assert cost["estimate"] == pytest.approx(50_000, abs=1e-8)
    # No spread in the differences: the interval is the point.
    assert (cost["ci_low"], cost["ci_high"]) == pytest.approx((50_000, 50_000), abs=1e-6)
    assert row(result, "incremental_cost")["estimate"] == pytest.approx(55_000, abs=1e-6)
    assert row(result, "incremental_qalys_discounted")["estimate"] == pytest.approx(0.5, abs=1e-12)
    assert row(result, "incremental_qalys")["estimate"] == pytest.approx(0.55, abs=1e-12)
    assert row(result, "incremental_life_years_discounted")["estimate"] == pytest.approx(0.625, abs=1e-12)
    assert row(result, "incremental_life_years")["estimate"] == pytest.approx(0.6875, abs=1e-12)
    icer = row(result, "icer_per_qaly")
    assert icer["estimate"] == pytest.approx(100_000, rel=1e-12)
    assert (icer["ci_low"], icer["ci_high"]) == pytest.approx((100_000, 100_000), rel=1e-9)
    assert icer["unit"] == "HKD per QALY" and icer["note"] == ""
    assert row(result, "icer_per_life_year")["estimate"] == pytest.approx(80_000, rel=1e-12)
    # NMB = wtp * 0.5 - 50,000.
    assert row(result, "nmb", 20_000)["estimate"] == pytest.approx(-40_000, abs=1e-6)
    assert row(result, "nmb", 150_000)["estimate"] == pytest.approx(25_000, abs=1e-6)
    assert row(result, "nmb", 150_000)["label"] == "Net monetary benefit at 150,000 HKD per QALY"


def test_intervals_are_the_t_intervals_of_the_paired_differences() -> None:
    d_cost = np.array([40_000.0, 62_000.0, 51_000.0, 47_000.0])
    d_qaly = np.array([0.50, 0.30, 0.62, 0.58])
    base = table(BASE_COST, BASE_QALYS)
    other = table(list(np.array(BASE_COST) + d_cost), list(np.array(BASE_QALYS) + d_qaly))
    result = incremental_analysis({"A": base, "B": other}, wtp=[100_000])
    t = stats.t.ppf(0.975, 3)

    def by_hand(d: np.ndarray) -> tuple[float, float, float]:
        half = t * d.std(ddof=1) / math.sqrt(d.size)
        return d.mean(), d.mean() - half, d.mean() + half

    for measure, d in (("incremental_cost_discounted", d_cost),
                       ("incremental_qalys_discounted", d_qaly),
                       ("nmb", 100_000 * d_qaly - d_cost)):
        r = row(result, measure)
        assert (r["estimate"], r["ci_low"], r["ci_high"]) == pytest.approx(by_hand(d), rel=1e-9, abs=1e-6)
        assert r["n"] == 4
    # Mean NMB by hand: 100,000 * 0.5 - 50,000 = 0.
    assert row(result, "nmb")["estimate"] == pytest.approx(0.0, abs=1e-6)
    icer = row(result, "icer_per_qaly")
    assert icer["estimate"] == pytest.approx(d_cost.mean() / d_qaly.mean(), rel=1e-12)
    assert icer["ci_low"] < icer["estimate"] < icer["ci_high"]


# ---------------------------------------------------------------- Fieller


def _fieller_by_inversion(x: np.ndarray, y: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    """The ratios R for which the t-test of mean(x - R y) = 0 is not rejected: found by
    root finding on |t(R)| = t_crit either side of the point estimate."""
    n = x.size
    crit = stats.t.ppf(0.5 + level / 2, n - 1)

    def excess(r: float) -> float:
        z = x - r * y
        return abs(z.mean()) / (z.std(ddof=1) / math.sqrt(n)) - crit

    ratio = x.mean() / y.mean()
    low = optimize.brentq(excess, ratio - 1e7, ratio, xtol=1e-9)
    high = optimize.brentq(excess, ratio, ratio + 1e7, xtol=1e-9)
    return low, high


def test_fieller_interval_against_inverting_the_t_test() -> None:
    x = np.array([40_000.0, 62_000.0, 51_000.0, 47_000.0, 55_500.0, 38_000.0])
    y = np.array([0.50, 0.30, 0.62, 0.58, 0.41, 0.47])
    ratio = fieller_interval(x, y)
    assert ratio.bounded and ratio.n == 6
    assert ratio.estimate == pytest.approx(x.mean() / y.mean(), rel=1e-14)
    assert (ratio.low, ratio.high) == pytest.approx(_fieller_by_inversion(x, y), rel=1e-8)
    # Asymmetric around the estimate, unlike a delta-method interval.
    assert ratio.high - ratio.estimate > ratio.estimate - ratio.low
    # The 90% interval is inside the 95% one.
    ninety = fieller_interval(x, y, level=0.90)
    assert ratio.low < ninety.low < ninety.high < ratio.high
    assert (ninety.low, ninety.high) == pytest.approx(_fieller_by_inversion(x, y, 0.90), rel=1e-8)


def test_fieller_is_unbounded_when_the_effect_interval_includes_zero() -> None:
    x = np.array([40_000.0, 62_000.0, 51_000.0, 47_000.0])
    y = np.array([0.5, -0.4, 0.3, -0.2])  # mean 0.05, its t-interval includes 0
    ratio = fieller_interval(x, y)
    assert not ratio.bounded
    assert (ratio.low, ratio.high) == (-math.inf, math.inf)
    assert ratio.estimate == pytest.approx(x.mean() / 0.05)
    base = table(BASE_COST, BASE_QALYS)
    other = table(list(np.array(BASE_COST) + x), list(np.array(BASE_QALYS) + y))
    icer = row(incremental_analysis({"A": base, "B": other}), "icer_per_qaly")
    assert (icer["ci_low"], icer["ci_high"]) == (-math.inf, math.inf)
    assert icer["note"] == "unbounded: the 95% CI of the incremental QALYs includes 0"


def test_fieller_drops_missing_pairs() -> None:
    x = np.array([1.0, 2.0, np.nan, 4.0, 3.0])
    y = np.array([0.5, 0.9, 1.0, np.nan, 1.1])
    assert fieller_interval(x, y).n == 3
    assert fieller_interval(x, y).estimate == pytest.approx(6.0 / 2.5)


# ---------------------------------------------------------------- dominance in words


@pytest.mark.parametrize(("d_cost", "d_qaly", "quadrant", "sentence"), [
    (-10_000, 0.2, "dominant", "local is cheaper and more effective (dominant)"),
    (10_000, -0.2, "dominated", "local is more costly and less effective (dominated)"),
    (30_000, 0.2, "more_effective_more_costly",
     "local is more effective and more costly: ICER 150,000 HKD per QALY"),
    (-30_000, -0.25, "less_costly_less_effective",
     "local is less costly and less effective: saves 120,000 HKD per QALY forgone"),
    (12_345, 0.0, "no_qaly_difference",
     "local: no difference in QALYs; it costs 12,345 HKD more per referred patient (no ICER)"),
    (-500, 0.0, "no_qaly_difference",
     "local: no difference in QALYs; it costs 500 HKD less per referred patient (no ICER)"),
    (0.0, 0.0, "no_qaly_difference", "local: no difference in QALYs and no difference in cost"),
    (0.0, 0.1, "dominant", "local costs the same and is more effective (dominant)"),
    (0.0, -0.1, "dominated", "local costs the same and is less effective (dominated)"),
])
def test_each_quadrant_is_stated_in_words(d_cost: float, d_qaly: float, quadrant: str,
                                          sentence: str) -> None:
    assert dominance(d_cost, d_qaly) == quadrant
    assert dominance_sentence("local", d_cost, d_qaly, "HKD") == sentence


def test_sentences_of_a_comparison_come_from_the_discounted_means() -> None:
    base = table(BASE_COST, BASE_QALYS)
    cheaper = table([c - 20_000 for c in BASE_COST], [q + 0.1 for q in BASE_QALYS])
    dearer = table([c + 20_000 for c in BASE_COST], [q + 0.1 for q in BASE_QALYS])
    same = table([c + 1_000 for c in BASE_COST], BASE_QALYS)
    result = economic_comparison({"overseas": base, "local": cheaper, "hybrid": dearer,
                                  "copy": same}, currency="HKD", wtp=[50_000])
    assert result.sentences() == {
        "local": "local is cheaper and more effective (dominant)",
        "hybrid": "hybrid is more effective and more costly: ICER 200,000 HKD per QALY",
        "copy": "copy: no difference in QALYs; it costs 1,000 HKD more per referred patient (no ICER)",
    }
    document = result.to_dict()
    assert document["quadrants"]["local"] == "dominant"
    rows = result.comparison_rows()
    assert "nmb_50000" in set(rows["metric"])
    nmb = rows[(rows["metric"] == "nmb_50000") & (rows["scenario"] == "hybrid")].iloc[0]
    assert nmb["diff"] == pytest.approx(50_000 * 0.1 - 20_000)
    assert math.isnan(nmb["mean"])


def test_incremental_analysis_refuses_tables_without_economics() -> None:
    plain = pd.DataFrame({"replication": [0, 1], "cost_per_referred": [1.0, 2.0]})
    with pytest.raises(ValueError, match="no economic results"):
        incremental_analysis({"A": plain, "B": plain})
    with pytest.raises(ValueError, match="different replications"):
        incremental_analysis({"A": table([1.0, 2.0], [1.0, 1.0]),
                              "B": table([1.0, 2.0, 3.0], [1.0, 1.0, 1.0])})


# ---------------------------------------------------------------- budget impact


BUDGET = pd.DataFrame({
    "replication": [0, 0, 0, 1, 1, 2],
    "year": [2025, 2025, 2026, 2025, 2026, 2026],
    "category": ["manufacture", "fixed", "manufacture", "manufacture", "fixed", "manufacture"],
    "cost": [100.0, 10.0, 200.0, 300.0, 20.0, 50.0],
})


def test_budget_summary_fills_missing_rows_with_zero_and_adds_totals() -> None:
    # Replication 3 has no cost at all: it counts as 0 in every year and category.
    summary = budget_summary(BUDGET, replications=[0, 1, 2, 3]).set_index(["year", "category"])
    assert list(summary.index.get_level_values("category").unique()) == ["manufacture", "fixed", "total"]
    t = stats.t.ppf(0.975, 3)

    def by_hand(values: list[float]) -> tuple[float, float, float]:
        v = np.array(values)
        half = t * v.std(ddof=1) / 2.0
        return v.mean(), v.mean() - half, v.mean() + half

    expected = {
        (2025, "manufacture"): [100, 300, 0, 0], (2025, "fixed"): [10, 0, 0, 0],
        (2025, "total"): [110, 300, 0, 0], (2026, "manufacture"): [200, 0, 50, 0],
        (2026, "fixed"): [0, 20, 0, 0], (2026, "total"): [200, 20, 50, 0],
    }
    for key, values in expected.items():
        got = summary.loc[key]
        assert (got["mean"], got["ci_low"], got["ci_high"]) == pytest.approx(by_hand(values))
        assert got["n"] == 4
    # Without the run's replications, those in the budget are counted.
    assert budget_summary(BUDGET).set_index(["year", "category"]).loc[(2025, "total"), "mean"] == \
        pytest.approx(410 / 3)
    assert budget_summary(BUDGET.iloc[0:0]).empty


def test_budget_impact_pairs_the_scenarios_by_replication() -> None:
    other = BUDGET.assign(cost=BUDGET["cost"] * 2)
    other = pd.concat([other, pd.DataFrame({"replication": [1], "year": [2027],
                                            "category": ["logistics"], "cost": [9.0]})])
    impact = budget_impact({"A": BUDGET, "B": other}, {"A": [0, 1, 2], "B": [0, 1, 2]})
    indexed = impact.set_index(["scenario", "year", "category"])
    # Both scenarios are shown on the union of years and categories.
    assert indexed.loc[("A", 2027, "logistics"), "mean"] == 0.0
    assert indexed.loc[("B", 2027, "logistics"), "mean"] == pytest.approx(3.0)
    assert math.isnan(indexed.loc[("A", 2025, "total"), "diff"])
    # B - A per replication in 2025 (totals 110, 300, 0): 110, 300, 0.
    d = np.array([110.0, 300.0, 0.0])
    half = stats.t.ppf(0.975, 2) * d.std(ddof=1) / math.sqrt(3)
    got = indexed.loc[("B", 2025, "total")]
    assert (got["diff"], got["diff_ci_low"], got["diff_ci_high"]) == pytest.approx(
        (d.mean(), d.mean() - half, d.mean() + half))
    assert list(impact["category"].unique()) == ["manufacture", "logistics", "fixed", "total"]


# ---------------------------------------------------------------- the command


PLAIN = """\
name: {name}
currency: HKD
horizon_days: 200
replications: 3
seed: 5
arrivals: {{rate_per_year: 20}}
cohorts:
  - {{name: adult, pathway: p, time_to_death: {{dist: exponential, mean: 400}}}}
pathways:
  p:
    steps:
      - {{name: apheresis, kind: apheresis, duration: 1, cost: {cost}}}
      - {{name: infusion, kind: infusion, duration: 1}}
"""


def test_compare_refuses_wtp_without_economics(tmp_path: Path) -> None:
    a = tmp_path / "a.yaml"
    b = tmp_path / "b.yaml"
    a.write_text(PLAIN.format(name="a", cost=100), encoding="utf-8")
    b.write_text(PLAIN.format(name="b", cost=200), encoding="utf-8")
    out = tmp_path / "out"
    result = runner.invoke(app, ["compare", str(a), str(b), "--wtp", "20000,50000", "-o", str(out)])
    assert result.exit_code == 2, result.output
    assert "--wtp needs an economics section in every scenario" in result.output
    assert "a.yaml" in result.output and "b.yaml" in result.output
    assert not out.exists()
    bad = runner.invoke(app, ["compare", str(a), str(b), "--wtp", "20000,lots", "-o", str(out)])
    assert bad.exit_code == 2 and "--wtp" in bad.output and "lots" in bad.output


# ---------------------------------------------------------------- end to end

ECONOMIC = """\
name: {name}
horizon_days: 730
replications: 3
seed: 11
currency: HKD
arrivals: {{rate_per_year: 30}}
cohorts:
  - name: adult
    pathway: p
    after_infusion: {{response_probability: 1.0, survival_responder: {survival},
                     survival_non_responder: 365}}
pathways:
  p:
    steps:
      - {{name: apheresis, kind: apheresis, duration: 1, cost: {apheresis}}}
      - {{name: infusion, kind: infusion, duration: 1, cost: 2000}}
economics:
  follow_up_years: 5
  discount: {{costs: 0.035, outcomes: 0.0}}
  utilities: {{waiting: 0.6, responder: 0.8, non_responder: 0.5, progressed: 0.3}}
  wtp: [20000, 50000]
"""


@pytest.fixture(scope="module")
def economic_pair(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    # No disease clocks and a certain response: every patient is infused. "local" charges
    # 10,000 more for apheresis, on the referral day (discount weight 1 in year 0), and its
    # responders live exactly one year longer (730 + 365.25 days, within the 5-year follow-up,
    # outcomes undiscounted): +10,000 and +0.8 QALYs (utility 0.8) per referred patient.
    folder = tmp_path_factory.mktemp("economic")
    a, b = folder / "overseas.yaml", folder / "local.yaml"
    a.write_text(ECONOMIC.format(name="overseas", survival=730, apheresis=1000), encoding="utf-8")
    b.write_text(ECONOMIC.format(name="local", survival=1095.25, apheresis=11000), encoding="utf-8")
    return a, b


def test_compare_command_writes_the_economic_rows_and_budgets(economic_pair: tuple[Path, Path],
                                                             tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = runner.invoke(app, ["compare", *map(str, economic_pair), "-o", str(out), "-j", "1"])
    assert result.exit_code == 0, result.output
    assert "local is more effective and more costly: ICER 12,500 HKD per QALY" in result.output
    table = pd.read_csv(out / "comparison.csv")
    assert list(table.columns) == ["metric", "label", "unit", "scenario", "mean", "ci_low",
                                   "ci_high", "n", "diff", "diff_ci_low", "diff_ci_high"]
    rows = table[table["scenario"] == "local"].set_index("metric")
    expected = {"incremental_cost_discounted": 10_000, "incremental_cost": 10_000,
                "incremental_life_years": 1.0, "incremental_qalys": 0.8,
                "incremental_qalys_discounted": 0.8, "icer_per_qaly": 12_500,
                "icer_per_life_year": 10_000, "nmb_20000": 6_000, "nmb_50000": 30_000}
    for metric, value in expected.items():
        assert rows.loc[metric, "diff"] == pytest.approx(value, rel=1e-9), metric
        assert rows.loc[metric, "diff_ci_low"] == pytest.approx(value, rel=1e-6), metric
        assert rows.loc[metric, "diff_ci_high"] == pytest.approx(value, rel=1e-6), metric
    assert rows.loc["icer_per_qaly", "unit"] == "HKD per QALY"
    assert not (table["scenario"] == "overseas").any() or not table.loc[
        table["scenario"] == "overseas", "metric"].str.startswith(("icer_", "nmb_")).any()
    document = json.loads((out / "comparison.json").read_text())
    assert document["economics"]["quadrants"] == {"local": "more_effective_more_costly"}
    assert document["economics"]["wtp"] == [20_000, 50_000]

    # Budget: per calendar year, local - overseas is 10,000 per apheresis begun in that year;
    # over all years each scenario's budget is its total cost.
    budget = pd.read_csv(out / "budget.csv")
    totals = budget[budget["category"] == "total"]
    patients = pd.read_parquet(out / "local" / "patients.parquet")
    start = pd.Timestamp(load_scenario(out / "local" / "scenario.yaml").start_date)
    year = (start + pd.to_timedelta(patients["apheresis_day"], unit="D")).dt.year
    per_rep = patients.assign(year=year).groupby(["year", "replication"]).size().unstack(fill_value=0)
    local_totals = totals[totals["scenario"] == "local"].set_index("year")
    for y, counts in per_rep.iterrows():
        assert local_totals.loc[y, "diff"] == pytest.approx(10_000 * counts.mean(), rel=1e-9)
    for name in ("overseas", "local"):
        reps = pd.read_csv(out / name / "replications.csv")
        assert totals.loc[totals["scenario"] == name, "mean"].sum() == pytest.approx(
            reps["cost_total"].mean(), rel=1e-9)
        own = pd.read_csv(out / name / "budget.csv")
        mine = budget[budget["scenario"] == name]
        assert own["mean"].to_numpy() == pytest.approx(mine["mean"].to_numpy(), rel=1e-12)
        assert (out / name / "figures" / "budget_impact.png").is_file()
    assert (out / "figures" / "budget_impact.png").is_file()
    assert runner.invoke(app, ["verify", str(out)]).exit_code == 0

    report = tmp_path / "report.html"
    made = runner.invoke(app, ["report", str(out), "-o", str(report)])
    assert made.exit_code == 0, made.output
    page = report.read_text(encoding="utf-8")
    assert "Cost-effectiveness against" in page and "ICER: discounted cost per QALY gained" in page
    assert "local is more effective and more costly: ICER 12,500 HKD per QALY" in page
    assert "Net monetary benefit at 50,000 HKD per QALY" in page and "+30,000" in page
    assert "Budget impact" in page


def test_wtp_given_to_compare_replaces_the_scenarios_thresholds(economic_pair: tuple[Path, Path]) -> None:
    comparison = v2vsim.compare(list(economic_pair), replications=2, wtp=[10_000])
    assert comparison.economics is not None
    table = comparison.economics.table
    nmb = table[table["measure"] == "nmb"]
    assert nmb["wtp"].tolist() == [10_000]
    assert nmb["estimate"].iloc[0] == pytest.approx(10_000 * 0.8 - 10_000, rel=1e-9)
    assert comparison.economics.sentence("local") == \
        "local is more effective and more costly: ICER 12,500 HKD per QALY"
    plain = PLAIN.format(name="plain", cost=1)
    with pytest.raises(ValueError, match="economics section in every scenario"):
        path = economic_pair[0].parent / "plain.yaml"
        path.write_text(plain, encoding="utf-8")
        v2vsim.compare([economic_pair[0], load_scenario(path)], replications=2, wtp=[1.0])


def test_console_table_shows_dominance_in_place_of_a_negative_icer() -> None:
    from types import SimpleNamespace

    from rich.console import Console

    from v2vsim.cli.compare import economics_table

    base = table(BASE_COST, BASE_QALYS)
    cheaper = table([c - 20_000 for c in BASE_COST], [q + 0.1 for q in BASE_QALYS])
    economics = economic_comparison({"overseas": base, "local": cheaper}, currency="HKD", wtp=[50_000])
    console = Console(width=200, record=True)
    console.print(economics_table(SimpleNamespace(economics=economics)))  # type: ignore[arg-type]
    text = console.export_text()
    lines = text.splitlines()
    at = next(k for k, line in enumerate(lines) if "ICER (HKD per QALY)" in line)
    assert "dominant" in lines[at] and "(ratio -200,000" in lines[at + 1]
    nmb_line = next(line for line in text.splitlines() if "Net monetary benefit at 50,000" in line)
    assert "+25,000" in nmb_line  # 50,000 x 0.1 + 20,000


def test_threshold_names_are_plain_numbers() -> None:
    """``nmb_<threshold>`` reads as the threshold: 1119000, not 1.119e+06."""
    from v2vsim.experiments.economics import _threshold_name

    assert _threshold_name(1_119_000.0) == "1119000"
    assert _threshold_name(50_000) == "50000"
    assert _threshold_name(2500.5) == "2500.5"
