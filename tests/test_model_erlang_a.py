"""The manufacturing site with mortal patients, against the exact Erlang-A (M/M/c+M) chain.

Poisson referrals (rate lambda per day) go to one manufacture step on a site with c slots, with
an exponential duration (rate mu), then to an infusion step of duration 0; there is no
ineligibility clock, no failure and no weekday rule. Every patient has an exponential death
clock (rate theta) that runs from referral until infusion, so it runs both in the queue and in
service, and a death in service frees the slot. The number n of patients in the system (waiting
or in manufacture) is then a birth-death chain:

    birth rate   lambda                            (n -> n + 1)
    death rate   d_n = min(n, c) mu + n theta      (n -> n - 1)

with the product-form stationary law pi_n = pi_0 prod_{k=1..n} lambda / d_k. It is stable for
any load lambda / (c mu), since d_n grows without bound; the chain is truncated at N = 400.
As d_n increases with n, the neglected mass is at most pi_N r / (1 - r) with r = lambda / d_N;
for the cases here r < 0.06 and pi_N underflows to 0 (< 1e-300), so truncation changes
nothing. From pi:

- infused fraction of referrals = (completion rate) / lambda = sum_n pi_n min(n, c) mu / lambda;
- mean wait for a slot per referred patient (``queue_wait_days`` over all patients, those who
  die waiting included) = L_q / lambda, L_q = sum_n pi_n max(n - c, 0) (Little's law on the
  queue);
- probability of waiting at all (``queue_wait_days > 0``) = sum_{n >= c} pi_n, the probability
  that a referral finds every slot taken (PASTA).

The truth is computed two independent ways (the product form, and a linear solve of pi Q = 0
on the truncated generator) and checked against M/M/1 and M/M/infinity closed forms.

Start-up bias: the system starts empty. Patients referred in the first WARMUP_DAYS = 1000 days
are discarded; that is more than 15 relaxation times (1 / spectral gap of the chain: 35 days
for the c = 1 case, 53 days for c = 3, asserted below), so what is left is stationary to within
e^-15. Runs drain after the horizon until every patient is resolved, so nothing is censored.

Tolerance: replications are i.i.d., so each metric is averaged per replication and compared
with tolerance max(4 standard errors of the across-replication mean, a small absolute floor);
the seeds are fixed, so the test is deterministic. The waits within one replication are
strongly correlated, which is why the standard error comes from replication means.

Which wrong model this rejects: "the death clock stops once manufacturing starts" (d_n =
min(n, c) mu + max(n - c, 0) theta). It moves the truth by

    c = 1: infused 0.710 -> 0.775, mean wait 10.28 -> 13.48 days, P(wait) 0.710 -> 0.775
    c = 3: infused 0.790 -> 0.841, mean wait  9.47 -> 14.30 days, P(wait) 0.748 -> 0.848

i.e. by 20 to 32 standard errors of the simulated means (5 to 8 tolerances) with the budgets
below, and each test asserts that the wrong model lies outside three tolerances. (Checked by
hand too: putting the wrong rates into the truth makes all six comparisons fail.)
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pytest

import v2vsim
from v2vsim.scenario import Scenario, scenario_from_dict

Z = 4.0  # tolerance in standard errors of the across-replication mean
N_TRUNCATE = 400  # the chain's states are 0..N_TRUNCATE
WARMUP_DAYS = 1000.0  # patients referred before this are discarded
HORIZON_DAYS = 21_000.0  # referrals arrive in [0, HORIZON_DAYS)


@dataclass(frozen=True)
class Case:
    """One Erlang-A parameter set (rates per day) and its simulation budget."""

    slots: int
    lam: float  # referral rate
    mu: float  # 1 / mean manufacturing time
    theta: float  # 1 / mean time to death
    replications: int
    seed: int

    @property
    def load(self) -> float:
        return self.lam / (self.slots * self.mu)


CASES = [
    # One slot, 10-day manufacture, a referral every 10 days (load 1.0), 60-day mean survival.
    Case(slots=1, lam=0.1, mu=1 / 10, theta=1 / 60, replications=40, seed=31),
    # Three slots, 12-day manufacture, 100 referrals a year (load 1.10), 90-day mean survival.
    Case(slots=3, lam=100 / 365, mu=1 / 12, theta=1 / 90, replications=24, seed=33),
]


@dataclass(frozen=True)
class Truth:
    infused_fraction: float
    mean_wait: float  # days waiting for a slot, per referred patient
    p_wait: float  # probability that a referral waits at all


def death_rates(c: int, mu: float, theta: float, *, clock_in_service: bool = True,
                n_max: int = N_TRUNCATE) -> np.ndarray:
    """d_n for n = 0..n_max: completions plus deaths (of everyone, or only of the waiting)."""
    n = np.arange(n_max + 1, dtype=float)
    dying = n if clock_in_service else np.maximum(n - c, 0.0)
    return np.minimum(n, c) * mu + dying * theta


def stationary_product_form(lam: float, d: np.ndarray) -> np.ndarray:
    """pi_n proportional to prod_{k<=n} lambda / d_k (in logs: no overflow for large n)."""
    log_pi = np.concatenate([[0.0], np.cumsum(np.log(lam) - np.log(d[1:]))])
    pi = np.exp(log_pi - log_pi.max())
    return pi / pi.sum()


def generator(lam: float, d: np.ndarray) -> np.ndarray:
    """The truncated chain's generator Q (rows sum to 0; no births out of the last state)."""
    size = len(d)
    q = np.zeros((size, size))
    idx = np.arange(size - 1)
    q[idx, idx + 1] = lam
    q[idx + 1, idx] = d[1:]
    q -= np.diag(q.sum(axis=1))
    return q


def stationary_linear_solve(lam: float, d: np.ndarray) -> np.ndarray:
    """pi Q = 0 with sum(pi) = 1: one balance equation (redundant) replaced by the sum."""
    a = generator(lam, d).T
    a[-1, :] = 1.0
    b = np.zeros(len(d))
    b[-1] = 1.0
    return np.linalg.solve(a, b)


def truth_from(pi: np.ndarray, c: int, lam: float, mu: float) -> Truth:
    n = np.arange(len(pi))
    return Truth(
        infused_fraction=float(np.sum(pi * np.minimum(n, c) * mu) / lam),
        mean_wait=float(np.sum(pi * np.maximum(n - c, 0)) / lam),
        p_wait=float(pi[c:].sum()),
    )


def erlang_a(case: Case, *, clock_in_service: bool = True) -> Truth:
    d = death_rates(case.slots, case.mu, case.theta, clock_in_service=clock_in_service)
    pi = stationary_product_form(case.lam, d)
    # Truncation: d_n increases with n, so beyond N the chain steps up with odds at most
    # r = lambda / d_N and the neglected mass is at most pi_N r / (1 - r).
    r = case.lam / d[-1]
    assert r < 1 and pi[-1] * r / (1 - r) < 1e-15
    return truth_from(pi, case.slots, case.lam, case.mu)


def relaxation_days(case: Case, n_max: int = 150) -> float:
    """1 / spectral gap of the chain (truncated at n_max, ample for the relaxation rate)."""
    q = generator(case.lam, death_rates(case.slots, case.mu, case.theta, n_max=n_max))
    rates = np.sort(np.linalg.eigvals(-q).real)
    return float(1.0 / rates[1])


def erlang_a_scenario(case: Case) -> Scenario:
    return scenario_from_dict({
        "name": f"M/M/{case.slots}+M",
        "horizon_days": HORIZON_DAYS,
        "arrivals": {"rate_per_year": case.lam * 365.0},
        "cohorts": [{"name": "all", "pathway": "p",
                     "time_to_death": {"dist": "exponential", "mean": 1 / case.theta}}],
        "sites": {"plant": {"slots": case.slots}},
        "pathways": {"p": {"steps": [
            {"name": "manufacture", "kind": "manufacture", "site": "plant",
             "duration": {"dist": "exponential", "mean": 1 / case.mu}},
            {"name": "infusion", "kind": "infusion", "duration": 0},
        ]}},
    })


# ------------------------------------------------------------------------------ the truth


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"c{c.slots}")
@pytest.mark.parametrize("clock_in_service", [True, False])
def test_truth_two_ways(case: Case, clock_in_service: bool) -> None:
    d = death_rates(case.slots, case.mu, case.theta, clock_in_service=clock_in_service, n_max=120)
    product = stationary_product_form(case.lam, d)
    solved = stationary_linear_solve(case.lam, d)
    np.testing.assert_allclose(solved, product, rtol=0, atol=1e-12)
    # Detailed balance, the defining property of the product form.
    np.testing.assert_allclose(product[:-1] * case.lam, product[1:] * d[1:], rtol=1e-9, atol=0)
    # Truncating at 120 or at N_TRUNCATE changes nothing that matters.
    short = truth_from(product, case.slots, case.lam, case.mu)
    full = erlang_a(case, clock_in_service=clock_in_service)
    for field in ("infused_fraction", "mean_wait", "p_wait"):
        assert math.isclose(getattr(short, field), getattr(full, field), rel_tol=1e-12)


def test_truth_closed_forms() -> None:
    # theta = 0, c = 1, rho = 0.7: M/M/1, Wq = rho / (mu - lambda), P(wait) = rho, all infused.
    mm1 = erlang_a(Case(slots=1, lam=0.07, mu=0.1, theta=1e-300, replications=1, seed=0))
    assert math.isclose(mm1.mean_wait, 0.7 / (0.1 - 0.07), rel_tol=1e-9)
    assert math.isclose(mm1.p_wait, 0.7, rel_tol=1e-9)
    assert math.isclose(mm1.infused_fraction, 1.0, rel_tol=1e-9)
    # c >= N: nobody waits, each patient races manufacture against death: mu / (mu + theta).
    inf = erlang_a(Case(slots=N_TRUNCATE, lam=0.3, mu=0.1, theta=0.05, replications=1, seed=0))
    assert inf.mean_wait == 0.0 and inf.p_wait < 1e-100
    assert math.isclose(inf.infused_fraction, 0.1 / 0.15, rel_tol=1e-12)


# ------------------------------------------------------------------------- the simulation


def per_replication(patients: pd.DataFrame) -> pd.DataFrame:
    """Infused fraction, mean queue wait and fraction that waited, per replication."""
    kept = patients[patients["referral_day"] >= WARMUP_DAYS]
    return kept.assign(
        infused=(kept["outcome"] == "infused").astype(float),
        waited=(kept["queue_wait_days"] > 0).astype(float),
    ).groupby("replication").agg(
        infused_fraction=("infused", "mean"),
        mean_wait=("queue_wait_days", "mean"),
        p_wait=("waited", "mean"),
    )


FLOORS = {"infused_fraction": 0.002, "mean_wait": 0.05, "p_wait": 0.002}


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"c{c.slots}")
def test_erlang_a_infused_fraction_wait_and_p_wait(case: Case) -> None:
    assert 0.8 <= case.load <= 1.2  # queues form and deaths matter
    assert WARMUP_DAYS >= 15 * relaxation_days(case)

    res = v2vsim.simulate(erlang_a_scenario(case), replications=case.replications,
                          seed=case.seed, jobs=1)
    p = res.patients
    assert set(p["outcome"]) <= {"infused", "died"}  # in particular nobody is unresolved
    reps = per_replication(p)
    assert len(reps) == case.replications

    truth = erlang_a(case)
    wrong = erlang_a(case, clock_in_service=False)
    problems = []
    for metric, floor in FLOORS.items():
        values = reps[metric].to_numpy()
        mean = float(values.mean())
        se = float(values.std(ddof=1) / math.sqrt(len(values)))
        tol = max(Z * se, floor)
        expected = getattr(truth, metric)
        # The test is sharp enough to reject "the death clock stops in service".
        assert abs(getattr(wrong, metric) - expected) > 3 * tol, (metric, tol)
        if abs(mean - expected) > tol:
            problems.append(f"{metric}: simulated {mean:.4f} (se {se:.4f}) vs Erlang-A "
                            f"{expected:.4f}, tolerance {tol:.4f}")
    assert not problems, "; ".join(problems)
