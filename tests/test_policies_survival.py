"""Survival after infusion, life-years and deaths within a follow-up window, against closed forms.

Each referred patient is alive from referral until: the untreated death clock (as changed by
bridging) if never infused, whatever the outcome; infusion plus the survival draw of a responder
or a non-responder if infused. ``life_years`` is the time alive within ``follow_up_days`` of
referral, in years of 365.25 days; ``death_day`` the day of death if within the window.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

import v2vsim
from v2vsim.scenario import Scenario, scenario_from_dict

Z = 4.0
YEAR = 365.25
T = 10.0  # days from referral to infusion


def make(death: Any = "never", ineligible: Any = "never", *, n: int = 20_000, wait: float = T,
         after: dict[str, Any] | None = None, cohorts: list[dict[str, Any]] | None = None) -> Scenario:
    after_infusion = {"response_probability": 0.6,
                      "survival_responder": {"dist": "exponential", "mean": 800},
                      "survival_non_responder": {"dist": "exponential", "mean": 100},
                      "follow_up_days": 1000}
    after_infusion.update(after or {})
    return scenario_from_dict({
        "name": "survival",
        "horizon_days": 365,
        "arrivals": {"rate_per_year": n},
        "cohorts": cohorts or [{"name": "all", "pathway": "p", "time_to_death": death,
                                "time_to_ineligible": ineligible, "after_infusion": after_infusion}],
        "pathways": {"p": {"steps": [
            {"name": "waiting", "kind": "delay", "duration": wait},
            {"name": "infusion", "kind": "infusion", "duration": 0},
        ]}},
    })


def mean_check(values: np.ndarray, mean: float, sd: float) -> None:
    se = sd / math.sqrt(len(values))
    assert abs(values.mean() - mean) <= Z * se, (values.mean(), mean, se)


def truncated_exp_moments(m: float, w: float) -> tuple[float, float]:
    """E[min(S, w)] and E[min(S, w)^2] for S exponential with mean m."""
    q = math.exp(-w / m)
    first = m * (1 - q)
    second = 2 * m * m * (1 - q) - 2 * m * w * q  # integral of 2 t P(S > t) on [0, w]
    return first, second


def test_life_years_of_infused_patients() -> None:
    # Everybody is infused at T; then survival Exp(800) with probability 0.6, else Exp(100);
    # window F = 1000 from referral, so min(S, F - T) after infusion.
    res = v2vsim.simulate(make(), replications=1, seed=41)
    p = res.patients
    assert (p["outcome"] == "infused").all()
    w = 1000 - T
    r1, r1sq = truncated_exp_moments(800, w)
    r2, r2sq = truncated_exp_moments(100, w)
    mean = T + 0.6 * r1 + 0.4 * r2
    var = (0.6 * (T * T + 2 * T * r1 + r1sq) + 0.4 * (T * T + 2 * T * r2 + r2sq)) - mean**2
    days = p["life_years"].to_numpy() * YEAR
    mean_check(days, mean, math.sqrt(var))
    # Deaths in the window: P(S < F - T) by response.
    p_death = 0.6 * (1 - math.exp(-w / 800)) + 0.4 * (1 - math.exp(-w / 100))
    deaths = int(p["death_day"].notna().sum())
    se = math.sqrt(p_death * (1 - p_death) / len(p))
    assert abs(deaths / len(p) - p_death) <= Z * se
    assert res.replications.loc[0, "deaths_in_follow_up"] == deaths
    np.testing.assert_allclose(res.replications.loc[0, "life_years_per_referred"], p["life_years"].mean())
    # Non-responders die sooner: the response decides which survival applies (same uniform).
    resp = p["responded"] == 1
    assert p.loc[resp, "life_years"].mean() > p.loc[~resp, "life_years"].mean() + 1
    # Every death is after infusion, and life-years end at death or at the window.
    dead = p["death_day"].notna()
    assert (p.loc[dead, "death_day"] > p.loc[dead, "infusion_day"]).all()
    np.testing.assert_allclose(p.loc[dead, "life_years"] * YEAR,
                               p.loc[dead, "death_day"] - p.loc[dead, "referral_day"], rtol=1e-9)
    np.testing.assert_allclose(p.loc[~dead, "life_years"] * YEAR, 1000.0, rtol=1e-12)


def test_untreated_deaths_count_their_survival_until_death() -> None:
    # Death clock X ~ Exp(20) before infusion at T = 10; after infusion Exp(200) for all.
    # life = X if X < T, else T + min(S, F - T):
    #   E[life] = E[X; X < T] + P(X > T) (T + E[min(S, F - T)]).
    m, m_after, f = 20.0, 200.0, 1000.0
    after = {"survival_responder": {"dist": "exponential", "mean": m_after},
             "survival_non_responder": {"dist": "exponential", "mean": m_after}, "follow_up_days": f}
    res = v2vsim.simulate(make({"dist": "exponential", "mean": m}, after=after), replications=1, seed=42)
    p = res.patients
    q = math.exp(-T / m)
    before = m * (1 - q) - T * q  # E[X; X < T]
    later, later_sq = truncated_exp_moments(m_after, f - T)
    mean = before + q * (T + later)
    before_sq = 2 * m * m * (1 - q) - 2 * m * T * q - T * T * q  # E[X^2; X < T]
    second = before_sq + q * (T * T + 2 * T * later + later_sq)
    mean_check(p["life_years"].to_numpy() * YEAR, mean, math.sqrt(second - mean**2))
    died = p["outcome"] == "died"
    assert died.mean() > 0.3
    np.testing.assert_allclose(p.loc[died, "death_day"], p.loc[died, "outcome_day"])
    np.testing.assert_allclose(p.loc[died, "life_years"] * YEAR,
                               p.loc[died, "outcome_day"] - p.loc[died, "referral_day"], rtol=1e-9)
    # Everybody dies within the window here only with P = 1 - q e^{-(F - T)/200}.
    p_death = 1 - q * math.exp(-(f - T) / m_after)
    se = math.sqrt(p_death * (1 - p_death) / len(p))
    assert abs(p["death_day"].notna().mean() - p_death) <= Z * se


def test_a_patient_who_becomes_ineligible_lives_until_the_death_clock() -> None:
    # Common random numbers: with a pathway nobody survives and no ineligibility clock, every
    # patient's death clock shows as its outcome day. With an ineligibility clock, patients who
    # become ineligible first still die on that very day (death_day), not at ineligibility.
    death = {"dist": "weibull", "shape": 0.8, "median": 60}
    after = {"follow_up_days": 100_000}
    plain = v2vsim.simulate(make(death, n=2000, wait=1e6, after=after), replications=1, seed=43).patients
    both = v2vsim.simulate(make(death, {"dist": "exponential", "mean": 40}, n=2000, wait=1e6, after=after),
                           replications=1, seed=43).patients
    inel = both["outcome"] == "ineligible"
    assert inel.sum() > 500
    np.testing.assert_allclose(both.loc[inel, "death_day"], plain.loc[inel, "outcome_day"], rtol=1e-12)
    assert (both.loc[inel, "death_day"] > both.loc[inel, "outcome_day"]).all()


def test_never_means_alive_through_the_window() -> None:
    after = {"survival_responder": "never", "survival_non_responder": "never", "follow_up_days": 365}
    p = v2vsim.simulate(make(n=200, after=after), replications=1, seed=44).patients
    np.testing.assert_allclose(p["life_years"], 365 / YEAR)
    assert p["death_day"].isna().all()


def test_without_a_survival_model_nothing_changes() -> None:
    # Defaults: no life-years, no follow-up metrics; a cohort without the model makes the
    # per-referred metric undefined (NaN) rather than silently partial.
    plain = make(after={"survival_responder": None, "survival_non_responder": None, "follow_up_days": None})
    res = v2vsim.simulate(plain, replications=1, seed=45)
    assert res.patients["life_years"].isna().all() and res.patients["death_day"].isna().all()
    assert "life_years_per_referred" not in res.replications
    assert "deaths_in_follow_up" not in res.replications
    modelled = {"response_probability": 0.5, "survival_responder": 400, "survival_non_responder": 50,
                "follow_up_days": 365}
    mixed = make(n=500, cohorts=[
        {"name": "with", "pathway": "p", "after_infusion": modelled},
        {"name": "without", "pathway": "p"},
    ])
    res = v2vsim.simulate(mixed, replications=2, seed=46)
    p = res.patients
    assert p.loc[p["cohort"] == "with", "life_years"].notna().all()
    assert p.loc[p["cohort"] == "without", "life_years"].isna().all()
    assert res.replications["life_years_per_referred"].isna().all()
    # Fixed survivals: responders die 410 days after referral (outside the window), the others
    # at 60 days: deaths in follow-up = non-responders of the modelled cohort.
    with_ = p[p["cohort"] == "with"]
    np.testing.assert_allclose(with_["life_years"] * YEAR, np.where(with_["responded"] == 1, 365.0, 60.0))
    expected = with_.groupby("replication")["responded"].apply(lambda r: int((r == 0).sum())).to_numpy()
    assert res.replications["deaths_in_follow_up"].tolist() == expected.tolist()


@pytest.mark.parametrize("name", ["slot_shortage.yaml"])
def test_bundled_scenario_reports_life_years(name: str) -> None:
    from pathlib import Path

    sc = v2vsim.load_scenario(Path(__file__).resolve().parent.parent / "scenarios" / name)
    res = v2vsim.simulate(sc, replications=2, seed=1)
    p = res.patients
    assert p["life_years"].between(0, 1825 / YEAR + 1e-12).all()
    summary = res.summary().set_index("metric")
    assert summary.loc["life_years_per_referred", "n"] == 2
    assert summary.loc["deaths_in_follow_up", "mean"] > 0
