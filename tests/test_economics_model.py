"""The economic evaluation of one scenario, against hand computation and closed forms.

Discounting and QALYs of a deterministic pathway by hand; a mixture cure model with an
exponential tail against its closed-form mean; background mortality from a small life table
against the table's life expectancy; the wait's effect on the response against its odds; the
budget by calendar year against the patients' costs; every engine equal to SimPy; bad input
reported as ``FILE:LINE: key.path: message``.
"""

from __future__ import annotations

import copy
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from ruamel.yaml import YAML
from typer.testing import CliRunner

import v2vsim
from v2vsim.cli import app
from v2vsim.engine.health import background_years, discounted_years, response_probability
from v2vsim.scenario import scenario_from_dict
from v2vsim.scenario.economics import LifeTable, WaitEffect

Y = 365.25


def deterministic(**economics: Any) -> dict[str, Any]:
    """One patient at day 0: apheresis (day 0 to 1, cost 1000), a 400-day delay (cost 5000 at
    day 1), infusion at day 401 (cost 2000); responds, ICU, dies 730 days after infusion."""
    eco = {
        "follow_up_years": 10,
        "discount": {"costs": 0.035, "outcomes": 0.035, "method": "annual"},
        "utilities": {"waiting": 0.6, "responder": 0.8, "non_responder": 0.5, "progressed": 0.3},
        "disutilities": {"icu": 0.05},
        "costs": {"icu": 7000, "follow_up_per_year": 1200},
    }
    eco.update(economics)
    return {
        "name": "deterministic", "horizon_days": 10, "drain_days": 5000, "replications": 1,
        "arrivals": {"schedule": [0.0]},
        "cohorts": [{"name": "c", "pathway": "p",
                     "after_infusion": {"response_probability": 1.0, "icu_probability": 1.0,
                                        "survival_responder": 730, "survival_non_responder": 730}}],
        "pathways": {"p": {"steps": [
            {"name": "aph", "kind": "apheresis", "duration": 1, "cost": 1000},
            {"name": "wait", "kind": "delay", "duration": 400, "cost": 5000},
            {"name": "inf", "kind": "infusion", "duration": 0, "cost": 2000},
        ]}},
        "economics": eco,
    }


def one_patient(data: dict[str, Any], engine: str = "simpy") -> pd.Series:
    res = v2vsim.simulate(scenario_from_dict(data), replications=1, seed=3, engine=engine)
    assert len(res.patients) == 1
    return res.patients.iloc[0]


def test_deterministic_pathway_annual_discounting_by_hand() -> None:
    p = one_patient(deterministic())
    assert p["outcome"] == "infused" and p["infusion_day"] == 401.0
    assert p["death_day"] == 401.0 + 730
    # Costs: 1000 at day 0 and 5000 at day 1 (year 0: weight 1); 2000 and the ICU's 7000 at day
    # 401 (year 1: 1/1.035); follow-up 1200 a year from day 401 to 1131: year 1 to day 730.5,
    # year 2 to 1095.75, year 3 after, weights 1/1.035, 1/1.035^2 and 1/1.035^3.
    v = 1 / 1.035

    def years_1_to_3(a: float) -> float:
        return (730.5 - a) / Y * v + 365.25 / Y * v ** 2 + (1131 - 1095.75) / Y * v ** 3

    follow = 1200 * years_1_to_3(401)
    assert p["cost_discounted"] == pytest.approx(1000 + 5000 + (2000 + 7000) * v + follow, rel=1e-12)
    assert p["cost_after_pathway"] == pytest.approx(7000 + 1200 * 730 / Y, rel=1e-12)
    # QALYs: waiting 0.6 for 401 days, responder 0.8 for 730 days, minus 0.05 at day 401.
    assert p["qalys"] == pytest.approx(0.6 * 401 / Y + 0.8 * 730 / Y - 0.05, rel=1e-12)
    qd = 0.6 * (365.25 / Y + (401 - 365.25) / Y * v) + 0.8 * years_1_to_3(401) - 0.05 * v
    assert p["qalys_discounted"] == pytest.approx(qd, rel=1e-12)
    assert p["life_years"] == pytest.approx(1131 / Y, rel=1e-12)
    ld = 365.25 / Y + years_1_to_3(365.25)
    assert p["life_years_discounted"] == pytest.approx(ld, rel=1e-12)


def test_deterministic_pathway_continuous_discounting_by_hand() -> None:
    p = one_patient(deterministic(discount={"costs": 0.05, "outcomes": 0.02, "method": "continuous"}))
    rc, ro = math.log(1.05), math.log(1.02)

    def integral(a: float, b: float, r: float) -> float:  # ∫ e^{-r t} dt over years
        return (math.exp(-r * a / Y) - math.exp(-r * b / Y)) / r

    cost = (1000 + 5000 * math.exp(-rc / Y) + 9000 * math.exp(-rc * 401 / Y)
            + 1200 * integral(401, 1131, rc))
    assert p["cost_discounted"] == pytest.approx(cost, rel=1e-12)
    q = 0.6 * integral(0, 401, ro) + 0.8 * integral(401, 1131, ro) - 0.05 * math.exp(-ro * 401 / Y)
    assert p["qalys_discounted"] == pytest.approx(q, rel=1e-12)


def test_zero_rates_discount_nothing_and_follow_up_cuts() -> None:
    p = one_patient(deterministic(discount={"costs": 0, "outcomes": 0}, follow_up_years=2))
    end = 2 * Y  # dies at 1131 > 730.5: alive through the follow-up
    assert math.isnan(p["death_day"])
    assert p["qalys"] == pytest.approx(0.6 * 401 / Y + 0.8 * (end - 401) / Y - 0.05, rel=1e-12)
    assert p["qalys_discounted"] == p["qalys"]
    assert p["life_years_discounted"] == p["life_years"] == pytest.approx(2.0)
    assert p["cost_discounted"] == pytest.approx(1000 + 5000 + 9000 + 1200 * (end - 401) / Y, rel=1e-12)


def test_discounted_years_closed_forms() -> None:
    # Annual: whole years weigh v^k; continuous: the integral of (1 + r)^-t.
    v = 1 / 1.035
    assert discounted_years(np.array(0.0), np.array(3.0), 0.035, "annual") == pytest.approx(1 + v + v * v)
    assert discounted_years(np.array(0.5), np.array(np.inf), 0.035, "annual") == pytest.approx(1 / (1 - v) - 0.5)
    assert discounted_years(np.array(0.0), np.array(np.inf), 0.035, "continuous") == pytest.approx(1 / math.log(1.035))


def test_cure_model_mean_survival_closed_form() -> None:
    """Infused at day T with cure fraction pi and an exponential tail (mean m) for the rest,
    within follow-up F: E[life-years] = (T + pi (F - T) + (1 - pi) m (1 - e^{-(F - T)/m})) / 365.25."""
    pi, m, F = 0.4, 400.0, 10 * Y
    data = deterministic(follow_up_years=10)
    data["arrivals"] = {"rate_per_year": 2000}
    data["horizon_days"] = 365
    data["cohorts"][0]["after_infusion"].update(
        survival_responder={"dist": "exponential", "mean": m}, survival_non_responder=1, cure_fraction=pi)
    data["pathways"]["p"]["steps"][1]["duration"] = 20
    res = v2vsim.simulate(scenario_from_dict(data), replications=2, seed=11)
    p = res.patients
    T = 21.0
    np.testing.assert_allclose(p["infusion_day"] - p["referral_day"], T, rtol=1e-9)
    expected = (T + pi * (F - T) + (1 - pi) * m * (1 - math.exp(-(F - T) / m))) / Y
    se = p["life_years"].std() / math.sqrt(len(p))
    assert len(p) > 3000
    assert abs(p["life_years"].mean() - expected) < 4 * se
    assert p["cured"].mean() == pytest.approx(pi, abs=4 * math.sqrt(pi * (1 - pi) / len(p)))
    # The cured live through the follow-up; a cured patient's death is never from the disease.
    assert p.loc[p["cured"] == 1, "death_day"].isna().all()


SMALL_TABLE = {"ages": [60, 61, 62, 63, 64], "qx": {"all": [0.1, 0.2, 0.3, 0.5, 1.0]}}


def test_background_inversion_is_exact_at_year_ends() -> None:
    table = LifeTable.model_validate(SMALL_TABLE)
    # S(1) = 0.9, S(2) = 0.72, S(3) = 0.504 from age 60; S = 1 - u at death.
    u = 1 - np.array([0.9, 0.72, 0.504])
    years = background_years(table, np.full(3, 60.0), None, u)
    np.testing.assert_allclose(years, [1.0, 2.0, 3.0], rtol=1e-12)
    # Within a year the hazard is constant: half-way through age 60, S = 0.9 ** 0.5.
    assert background_years(table, np.array([60.0]), None, np.array([1 - 0.9 ** 0.5]))[0] == pytest.approx(0.5)
    # From age 60.5, the remaining survival of age 60's year is 0.9 ** 0.5.
    assert background_years(table, np.array([60.5]), None, np.array([1 - 0.9 ** 0.5]))[0] == pytest.approx(0.5)
    # qx = 1 at 64: nobody lives past 64.
    assert background_years(table, np.array([60.0]), None, np.array([0.999999]))[0] == pytest.approx(4.0)


def life_expectancy(qx: list[float]) -> float:
    """Life-table expectancy with a constant hazard within each year: L = S q / h."""
    e, s = 0.0, 1.0
    for q in qx:
        if q < 1:
            h = -math.log(1 - q)
            e += s * q / h
        s *= 1 - q
    return e


def test_background_mortality_matches_life_table_expectancy() -> None:
    """Patients who leave the pathway at referral (screening fails), with no disease death,
    live as long as the life table says: e60 from the table, within 4 standard errors."""
    data = deterministic(follow_up_years="lifetime", life_table=SMALL_TABLE)
    data["arrivals"] = {"rate_per_year": 3000}
    data["horizon_days"] = 365
    data["cohorts"][0]["age"] = 60
    data["pathways"]["p"]["steps"].insert(0, {"name": "scr", "kind": "screen", "failure_probability": 1.0})
    res = v2vsim.simulate(scenario_from_dict(data), replications=2, seed=5)
    p = res.patients
    assert (p["outcome"] == "screen_failed").all()
    e60 = life_expectancy(SMALL_TABLE["qx"]["all"])
    se = p["life_years"].std() / math.sqrt(len(p))
    assert abs(p["life_years"].mean() - e60) < 4 * se, (p["life_years"].mean(), e60, se)
    assert (p["life_years"] <= 4.0 + 1e-9).all()
    # Progressed utility for all of it, no costs but the per-year one (none here).
    np.testing.assert_allclose(p["qalys"], 0.3 * p["life_years"], rtol=1e-12)


def test_response_odds_ratio_per_month_waited() -> None:
    effect = WaitEffect(response_odds_ratio=0.5, per_days=30, reference_days=0)
    # 30 days: odds 1 -> 0.5 (p = 1/3); 60 days: 0.25 (p = 0.2); 0 days: unchanged.
    np.testing.assert_allclose(response_probability(0.5, np.array([0.0, 30.0, 60.0]), effect),
                               [0.5, 1 / 3, 0.2], rtol=1e-12)
    data = deterministic()
    data["arrivals"] = {"rate_per_year": 4000}
    data["horizon_days"] = 365
    data["pathways"]["p"]["steps"][1]["duration"] = 29  # infusion at day 30
    data["cohorts"][0]["after_infusion"].update(response_probability=0.5,
                                                wait_effect={"response_odds_ratio": 0.5})
    p = v2vsim.simulate(scenario_from_dict(data), replications=1, seed=2).patients
    share = p["responded"].mean()
    assert abs(share - 1 / 3) < 4 * math.sqrt(1 / 3 * 2 / 3 / len(p))


def test_survival_hazard_ratio_per_month_waited() -> None:
    """With an exponential survival (mean m) and HR per 30 days, infused at day 60: the mean
    survival after infusion is m / HR^2."""
    data = deterministic(follow_up_years=200, discount={"costs": 0, "outcomes": 0})
    data["arrivals"] = {"rate_per_year": 4000}
    data["horizon_days"] = 365
    data["pathways"]["p"]["steps"][1]["duration"] = 59
    m = 300.0
    data["cohorts"][0]["after_infusion"].update(
        survival_responder={"dist": "exponential", "mean": m}, wait_effect={"survival_hazard_ratio": 1.5})
    p = v2vsim.simulate(scenario_from_dict(data), replications=1, seed=4).patients
    after = (p["death_day"] - p["infusion_day"]).to_numpy()
    assert abs(after.mean() - m / 1.5 ** 2) < 4 * after.std() / math.sqrt(after.size)


def economic_scenario() -> dict[str, Any]:
    """Queues, retries, bridging, a cure model, background mortality and a slot schedule."""
    data = deterministic(follow_up_years="lifetime", life_table={
        "ages": list(range(0, 101)),
        "qx": {"male": [min(1.0, 0.0005 * math.exp(0.085 * a)) for a in range(101)],
               "female": [min(1.0, 0.0003 * math.exp(0.088 * a)) for a in range(101)]}})
    data["economics"]["costs"].update(crs=3000, progressed_per_year=500)
    data["economics"]["disutilities"]["crs"] = 0.02
    data.update(horizon_days=900, drain_days=2000, replications=6)
    data["arrivals"] = {"rate_per_year": 40}
    data["sites"] = {"lab": {"slots": 2, "cost_per_use": 700, "fixed_cost_per_year": 36500}}
    data["cohorts"] = [{
        "name": "c", "pathway": "p", "age": {"dist": "uniform", "low": 20, "high": 80}, "male_share": 0.6,
        "time_to_death": {"dist": "exponential", "mean": 200},
        "bridging": {"start_step": "aph", "duration": {"dist": "exponential", "mean": 15},
                     "hazard_ratio": 0.7, "cost": 900},
        "after_infusion": {"response_probability": 0.7, "icu_probability": 0.2, "crs_probability": 0.3,
                           "cure_fraction": 0.4, "survival_responder": {"dist": "exponential", "mean": 700},
                           "survival_non_responder": {"dist": "exponential", "mean": 150},
                           "wait_effect": {"response_odds_ratio": 0.9, "survival_hazard_ratio": 1.1}}}]
    data["pathways"]["p"]["steps"] = [
        {"name": "aph", "kind": "apheresis", "duration": {"dist": "uniform", "low": 0.1, "high": 0.3}, "cost": 1000},
        {"name": "ship", "kind": "transport", "duration": 1, "cost": 300},
        {"name": "make", "kind": "manufacture", "site": "lab", "reserve_from": "aph",
         "duration": {"dist": "triangular", "low": 10, "mode": 14, "high": 30}, "failure_probability": 0.2,
         "on_failure": {"retry_from": "aph", "max_attempts": 2}, "cost": 20000},
        {"name": "inf", "kind": "infusion", "duration": {"dist": "exponential", "mean": 1}, "cost": 2000},
    ]
    return data


@pytest.mark.parametrize("engine", ["vectorised", "compiled"])
def test_every_engine_gives_the_same_economics(engine: str) -> None:
    data = economic_scenario()
    if engine == "vectorised":  # slots that never bind, so that it runs every replication itself
        data["sites"]["lab"]["slots"] = 60
    sc = scenario_from_dict(data)
    ref = v2vsim.simulate(sc, replications=6, seed=9, engine="simpy")
    other = v2vsim.simulate(sc, replications=6, seed=9, engine=engine)
    assert other.extra["engines"] == {engine: 6}
    pd.testing.assert_frame_equal(other.patients, ref.patients)
    pd.testing.assert_frame_equal(other.replications, ref.replications)
    pd.testing.assert_frame_equal(other.budget, ref.budget)
    assert ref.patients["cured"].eq(1).any() and ref.patients["crs"].eq(1).any()
    assert (ref.patients["manufacturing_attempts"] == 2).any()


def test_budget_adds_up_to_the_costs_charged() -> None:
    """Every pathway charge, bridging, ICU and CRS cost falls in the calendar year it is charged;
    the fixed costs add up to the run's; with everything inside the horizon the budget holds
    every patient's pathway cost."""
    data = economic_scenario()
    data["arrivals"] = {"schedule": [float(d) for d in range(0, 300, 7)]}
    data["economics"]["costs"].update(follow_up_per_year=0, progressed_per_year=0)
    data["horizon_days"] = 3000
    res = v2vsim.simulate(scenario_from_dict(data), replications=3, seed=1)
    p, budget = res.patients, res.budget
    assert set(budget["year"]) == set(range(2025, 2033 + 1))
    by = budget.groupby(["replication", "category"])["cost"].sum().unstack()
    pathway = by[["manufacture", "logistics", "hospital", "bridging"]].sum(axis=1)
    one_off = p.groupby("replication")["cost_after_pathway"].sum()
    np.testing.assert_allclose(pathway, p.groupby("replication")["cost"].sum() + one_off, rtol=1e-12)
    np.testing.assert_allclose(by["fixed"], 36500 * 3000 / 365.0, rtol=1e-12)
    assert (by["logistics"] == 300 * p.groupby("replication")["apheresis_day"].count()).all() or (
        by["logistics"] >= 300 * p.groupby("replication")["apheresis_day"].count()).all()


def test_economic_metrics_per_referred() -> None:
    res = v2vsim.simulate(scenario_from_dict(economic_scenario()), replications=4, seed=2)
    t, p = res.replications, res.patients
    g = p.groupby("replication")
    np.testing.assert_allclose(t["qalys_discounted_per_referred"], g["qalys_discounted"].mean(), rtol=1e-12)
    np.testing.assert_allclose(t["life_years_per_referred"], g["life_years"].mean(), rtol=1e-12)
    fixed_d = t["cost_discounted_per_referred"] * t["referred"] - g["cost_discounted"].sum().to_numpy()
    assert (fixed_d > 0).all() and (fixed_d < 36500 * 900 / 365).all()
    assert (t["qalys_discounted_per_referred"] < t["qalys_per_referred"]).all()
    summary = res.summary().set_index("metric")
    assert "qalys_discounted_per_referred" in summary.index


# --------------------------------------------------------------------------- bad input

runner = CliRunner()


def write(tmp_path: Path, data: dict[str, Any], table: str | None = None) -> Path:
    if table is not None:
        (tmp_path / "table.csv").write_text(table, encoding="utf-8")
        data = copy.deepcopy(data)
        data["economics"]["life_table"] = "table.csv"
    path = tmp_path / "s.yaml"
    with open(path, "w", encoding="utf-8") as fh:
        YAML(typ="safe", pure=True).dump(data, fh)
    return path


def problems(path: Path) -> list[str]:
    result = runner.invoke(app, ["validate", str(path)])
    assert result.exit_code == 2, result.output
    return [line for line in result.output.splitlines() if line.startswith(str(path))]


def lined(path: Path, key: str) -> int:
    for k, line in enumerate(path.read_text().splitlines(), 1):
        if line.strip().startswith(key + ":"):
            return k
    raise AssertionError(key)


@pytest.mark.parametrize("table, fragment", [
    ("age,qx\n60,0.1\n61,0.2\n63,0.3\n", "line 4: age 63 leaves a gap after the previous age 61"),
    ("# source: none\nage,qx\n60,0.1\n62,0.2\n61,0.3\n", "line 4: age 62 leaves a gap"),
    ("age,qx\n61,0.1\n60,0.2\n", "line 3: age 60 is not above the previous age 61"),
    ("age,qx\n60,1.5\n", "line 2: qx must be a probability in [0, 1], not 1.5"),
    ("age,rate\n60,0.1\n", "line 1: the columns must be 'age,qx' or 'age,sex,qx'"),
    ("age,sex,qx\n60,male,0.1\n61,male,0.2\n", "give rows for both male and female"),
    ("age,qx\n60.5,0.1\n", "age must be a whole number"),
])
def test_bad_life_table(tmp_path: Path, table: str, fragment: str) -> None:
    data = deterministic(follow_up_years="lifetime")
    data["cohorts"][0]["age"] = 60
    path = write(tmp_path, data, table)
    found = problems(path)
    assert len(found) == 1, found
    line = lined(path, "life_table")
    assert found[0].startswith(f"{path}:{line}: economics.life_table: table.csv"), found
    assert fragment in found[0], found


@pytest.mark.parametrize("change, key, fragment", [
    (lambda d: d["economics"]["utilities"].update(responder=1.2), "economics.utilities.responder",
     "a utility must be from -0.6 (states worse than dead, as low as EQ-5D value sets go) to 1 (full health), not 1.2"),
    (lambda d: d["economics"]["utilities"].update(waiting=-0.7), "economics.utilities.waiting",
     "not -0.7"),
    (lambda d: d["economics"]["discount"].update(costs=-0.01), "economics.discount.costs", "must be at least 0 (got -0.01)"),
    (lambda d: d["economics"].update(follow_up_years="lifetime"), "economics",
     "lifetime needs a life_table"),
    (lambda d: d["cohorts"][0]["after_infusion"].update(follow_up_days=100),
     "cohorts[0].after_infusion.follow_up_days", "remove follow_up_days"),
    (lambda d: d["economics"].update(life_table=SMALL_TABLE), "cohorts[0]", "needs the cohort's age"),
])
def test_bad_economics(tmp_path: Path, change: Any, key: str, fragment: str) -> None:
    data = deterministic()
    change(data)
    path = write(tmp_path, data)
    found = problems(path)
    assert any(f": {key}: " in line and fragment in line for line in found), found
    assert all(line.split(":")[1].isdigit() for line in found), found


def test_validate_checks_uncertain_inputs_as_psa_does(tmp_path: Path) -> None:
    """`validate` refuses what `psa` would: an uncertain path that is not in the scenario."""
    data = deterministic()
    data["uncertain"] = [{"path": "economics.utilities.responder", "distribution": {"beta": {"mean": 0.8, "sd": 0.05}}},
                         {"path": "economics.utilities.respondr", "distribution": {"beta": {"mean": 0.8, "sd": 0.05}}}]
    path = write(tmp_path, data)
    found = problems(path)
    assert len(found) == 1, found
    assert ": uncertain[1].path: " in found[0] and "did you mean 'responder'" in found[0], found
    data["uncertain"].pop()
    ok = runner.invoke(app, ["validate", str(write(tmp_path, data))])
    assert ok.exit_code == 0, ok.output
