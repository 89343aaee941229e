"""The manufacturing site as an M/M/c queue, against Erlang C.

Poisson referrals (rate lambda) go straight to one manufacture step with an exponential
duration (rate mu) on a site with c slots; no disease clocks, no failures, no weekday rules.
That is exactly M/M/c FIFO, whose mean wait in queue is

    Wq = C(c, a) / (c mu - lambda),  a = lambda / mu,  rho = a / c,

with C(c, a) the Erlang C probability of waiting, and whose long-run slot utilisation is rho.

Nothing is discarded as warm-up: the queue starts empty, which biases the mean wait down by
roughly (relaxation time / horizon) x Wq. The relaxation time of M/M/1 at rho = 0.7 is about
1 / (mu (1 - sqrt(rho))^2) = 375 days for a 10-day mean service, so on a 60,000-day horizon the
bias is ~0.6% of Wq, far below the ~3% standard error of the estimate; for c = 2 it is smaller
still. Every patient referred in the horizon is served in the drain (``queue_wait_mean`` is over
all of them), so nothing is censored either.

Replication means are i.i.d., so the tolerance is 4 standard errors of the mean across
replications (the waits inside one replication are strongly correlated, so a per-patient
standard error would be far too small).
"""

from __future__ import annotations

import math

import numpy as np
import pytest

import v2vsim
from v2vsim.scenario import Scenario, scenario_from_dict

MEAN_SERVICE_DAYS = 10.0
HORIZON_DAYS = 60_000.0
RHO = 0.7
Z = 4.0


def erlang_c(c: int, a: float) -> float:
    """Probability that an arrival waits in M/M/c with offered load a = lambda / mu < c."""
    rho = a / c
    top = a**c / math.factorial(c) / (1 - rho)
    return top / (sum(a**k / math.factorial(k) for k in range(c)) + top)


def mmc_wq(c: int, lam: float, mu: float) -> float:
    return erlang_c(c, lam / mu) / (c * mu - lam)


def mmc_scenario(c: int, lam_per_day: float) -> Scenario:
    return scenario_from_dict({
        "name": f"M/M/{c}",
        "horizon_days": HORIZON_DAYS,
        "arrivals": {"rate_per_year": lam_per_day * 365.0},
        "cohorts": [{"name": "all", "pathway": "p"}],  # clocks default to never
        "sites": {"plant": {"slots": c}},
        "pathways": {"p": {"steps": [
            {"name": "manufacture", "kind": "manufacture", "site": "plant",
             "duration": {"dist": "exponential", "mean": MEAN_SERVICE_DAYS}},
            {"name": "infusion", "kind": "infusion", "duration": 0},
        ]}},
    })


def test_erlang_c_reference_values() -> None:
    # M/M/1: C = rho and Wq = rho / (mu - lambda); M/M/2 at a = 1.4: C = 0.5765 (by hand:
    # (1.96/2/0.3) / (1 + 1.4 + 1.96/2/0.3)).
    assert math.isclose(erlang_c(1, 0.7), 0.7)
    assert math.isclose(mmc_wq(1, 0.07, 0.1), 0.7 / (0.1 - 0.07))
    assert math.isclose(erlang_c(2, 1.4), (0.98 / 0.3) / (2.4 + 0.98 / 0.3))


@pytest.mark.parametrize(("c", "replications"), [(1, 20), (2, 12)])
def test_mmc_mean_wait_and_utilisation(c: int, replications: int) -> None:
    mu = 1 / MEAN_SERVICE_DAYS
    lam = RHO * c * mu
    res = v2vsim.simulate(mmc_scenario(c, lam), replications=replications, seed=2024 + c, jobs=2)
    reps = res.replications
    assert (reps["unresolved"] == 0).all()
    assert (reps["infused"] == reps["referred"]).all()

    wq = mmc_wq(c, lam, mu)  # 23.33 days for c = 1, 9.61 for c = 2
    waits = reps["queue_wait_mean"].to_numpy()
    se = waits.std(ddof=1) / math.sqrt(replications)
    assert abs(waits.mean() - wq) <= Z * se, f"Wq {waits.mean():.3f} vs Erlang C {wq:.3f} (se {se:.3f})"
    assert se < 0.05 * wq  # the test is sharp enough to tell a wrong model

    # Utilisation of the site: busy slot-days / (slots x run length) -> rho.
    util = reps["utilization_plant"].to_numpy()
    se_u = util.std(ddof=1) / math.sqrt(replications)
    assert abs(util.mean() - RHO) <= Z * se_u, f"utilisation {util.mean():.4f} vs rho {RHO} (se {se_u:.4f})"

    # Probability of waiting at all -> C(c, a) (the fraction with a positive wait).
    waited = res.patients.groupby("replication")["queue_wait_days"].apply(lambda w: float((w > 0).mean()))
    se_c = waited.std(ddof=1) / math.sqrt(replications)
    c_prob = erlang_c(c, lam / mu)
    assert abs(waited.mean() - c_prob) <= Z * se_c, f"P(wait) {waited.mean():.4f} vs {c_prob:.4f}"

    # The site never holds more than c patients (time-weighted daily averages).
    assert (res.site_days["in_use"] <= c + 1e-9).all()
    assert np.isclose(res.site_days["slots"], c).all()
