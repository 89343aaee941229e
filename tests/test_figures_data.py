"""The arrays the scaling figures plot, bit for bit, against plain reference computations.

The cumulative-incidence figures (of a run and of a comparison) and the site-use figure build
their day-by-replication tables without the per-replication loops and pivots of the long
tables; these tests recompute what each figure plots the plain way (one replication at a time,
``pivot_table``, ``groupby().median()``) and compare the plotted lines and bands exactly
(``tobytes``), on 40 replications of the bundled local and overseas scenarios and on a table
of odd cases (an unsorted day grid, outcomes missing from some replications).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from matplotlib.axes import Axes

import v2vsim
from v2vsim.metrics import t_quantile
from v2vsim.outputs.figures import outcomes, sites
from v2vsim.outputs.figures.compare import compare_cumulative_incidence_figure
from v2vsim.outputs.figures.display import scenario_display
from v2vsim.outputs.figures.style import tail_limit
from v2vsim.scenario import OUTCOMES

ROOT = Path(__file__).resolve().parents[1]
N = 40


@pytest.fixture(scope="module")
def runs() -> dict[str, v2vsim.Results]:
    out = {}
    for stem in ("local", "overseas"):
        sc = v2vsim.load_scenario(ROOT / "scenarios" / f"{stem}.yaml")
        out[stem] = v2vsim.simulate(sc, N, 20250415, jobs=1)
    return out


def _same(got: np.ndarray, want: np.ndarray) -> None:
    got, want = np.asarray(got, dtype=float), np.asarray(want, dtype=float)
    assert got.shape == want.shape
    assert got.tobytes() == want.tobytes(), np.flatnonzero(
        ~((got == want) | (np.isnan(got) & np.isnan(want))))[:10]


def _bands(ax: Axes) -> list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]:
    """(x, low, mid, high) of each draw_band on ``ax``, in drawing order."""
    polys = [c for c in ax.collections if c.get_paths()]
    lines = [ln for ln in ax.get_lines() if ln.get_linestyle() == "-" and len(ln.get_xdata()) > 1]
    out = []
    for poly, line in zip(polys, lines):
        [path] = poly.get_paths()
        v = path.vertices
        d = (len(v) - 3) // 2
        out.append((np.asarray(line.get_xdata(), float), v[1:d + 1, 1], np.asarray(line.get_ydata(), float),
                    v[d + 2:2 * d + 2, 1][::-1]))
    return out


def _shares_one_replication_at_a_time(patients: pd.DataFrame, days: np.ndarray,
                                      members: list[str]) -> np.ndarray:
    """days x replications: the share of each replication's patients with an outcome in
    ``members`` and ``outcome_day - referral_day <= day`` (a C-ordered table)."""
    elapsed = (patients["outcome_day"] - patients["referral_day"]).to_numpy(dtype=float)
    outcome = patients["outcome"].astype(str).to_numpy()
    replication = patients["replication"].to_numpy()
    reps = np.unique(replication)
    wide = np.empty((days.size, reps.size))
    for k, rep in enumerate(reps):
        mine = replication == rep
        t = np.sort(elapsed[mine & np.isin(outcome, members) & ~np.isnan(elapsed)])
        wide[:, k] = np.searchsorted(t, days, side="right") / mine.sum()
    return wide


def _reference_groups(patients: pd.DataFrame) -> dict[str, list[str]]:
    present = set(patients["outcome"].astype(str))
    groups = {o: [o] for o in ("infused", "died", "ineligible") if o in present}
    other = [o for o in OUTCOMES if o in present and o not in groups and o != "unresolved"]
    return {**groups, **({"other_losses": other} if other else {})}


def test_run_cumulative_incidence_plots_the_reference_bands(runs: dict[str, v2vsim.Results]) -> None:
    patients = runs["local"].patients
    fig = outcomes.cumulative_incidence_figure(patients, "local")
    elapsed = (patients["outcome_day"] - patients["referral_day"]).dropna()
    days = np.arange(0.0, max(tail_limit(elapsed.to_numpy(float)), 1.0) + 1.0)
    drawn = _bands(fig.axes[0])
    groups = _reference_groups(patients)
    assert len(drawn) == len(groups) == 4
    for (x, low, mid, high), members in zip(drawn, groups.values()):
        # The band is the 95% CI of the mean across replications, as in the comparison figure.
        wide = _shares_one_replication_at_a_time(patients, days, members) * 100.0
        mean = wide.mean(axis=1)
        half = t_quantile(0.975, wide.shape[1] - 1) * wide.std(axis=1, ddof=1) / math.sqrt(wide.shape[1])
        _same(x, days)
        _same(mid, mean)
        _same(low, mean - half)
        _same(high, mean + half)


def test_compare_cumulative_incidence_plots_the_reference_bands(runs: dict[str, v2vsim.Results]) -> None:
    patients = {r.scenario.name: r.patients for r in runs.values()}
    fig = compare_cumulative_incidence_figure(patients)
    pooled = np.concatenate([(p["outcome_day"] - p["referral_day"]).dropna().to_numpy(float)
                             for p in patients.values()])
    days = np.arange(0.0, max(tail_limit(pooled), 1.0) + 1.0)
    for panel, outcome in zip(fig.axes[:2], ("infused", "died")):
        drawn = _bands(panel)
        assert len(drawn) == len(patients)
        for (x, low, mid, high), frame in zip(drawn, patients.values()):
            wide = _shares_one_replication_at_a_time(frame, days, [outcome]) * 100.0
            mean = wide.mean(axis=1)
            half = t_quantile(0.975, wide.shape[1] - 1) * wide.std(axis=1, ddof=1) / math.sqrt(wide.shape[1])
            _same(x, days)
            _same(mid, mean)
            _same(low, mean - half)
            _same(high, mean + half)


def test_site_figure_plots_the_reference_months(runs: dict[str, v2vsim.Results]) -> None:
    """Each month's share of slot time in use (per replication, then mean and t-interval) and
    the median and 90th percentile of the waitlist over the month's days of all replications,
    computed with group-bys on the long table in calendar months from the start date."""
    results = runs["local"]
    long = results.site_days
    display = scenario_display(results.scenario)
    fig = sites.site_timeline_figure(results.site_profile, "local", display=display)
    ax_use, ax_queue = fig.axes[:2]
    rows = long[long["site"] == "hkib"].dropna(subset=["in_use", "queue"])
    start = pd.Timestamp(results.scenario.start_date)
    month = (start + pd.to_timedelta(rows["day"], unit="D")).dt.to_period("M")
    per_rep = rows.groupby([month.rename("month"), rows["replication"]])[["in_use", "slots"]].sum()
    share = (per_rep["in_use"] / per_rep["slots"]).unstack("replication")
    mean = share.mean(axis=1).to_numpy()
    n = share.count(axis=1).to_numpy()  # replications that have not ended by the month
    t = np.array([t_quantile(0.975, k - 1) if k > 1 else 0.0 for k in n])
    half = np.nan_to_num(t * share.std(axis=1, ddof=1).to_numpy() / np.sqrt(n))
    edges = np.array([(p.start_time - start).days for p in share.index] +
                     [(share.index[-1].end_time.normalize() + pd.Timedelta(days=1) - start).days],
                     dtype=float)
    edges[0] = min(edges[0], 0.0)
    [(x, low, mid, high)] = _bands(ax_use)
    np.testing.assert_allclose(x[1:], edges[1:])
    np.testing.assert_allclose(mid[:-1], 100.0 * mean, rtol=1e-12)
    # A post-step band has two vertices per month.
    # (A share lies in 0-1: the interval is clipped to it.)
    np.testing.assert_allclose(low[::2][:len(mean)], 100.0 * np.clip(mean - half, 0, 1), rtol=1e-9)
    np.testing.assert_allclose(high[::2][:len(mean)], 100.0 * np.clip(mean + half, 0, 1), rtol=1e-9)
    quantiles = rows.groupby(month)["queue"].quantile([0.5, 0.9]).unstack()
    p90_line, median_line = ax_queue.get_lines()
    np.testing.assert_allclose(median_line.get_ydata()[:-1], quantiles[0.5].to_numpy())
    np.testing.assert_allclose(p90_line.get_ydata()[:-1], quantiles[0.9].to_numpy())
    assert ax_use.get_title(loc="left").startswith("HKIB (Hong Kong Institute of Biotechnology)")
    assert ax_use.get_xlabel().startswith("Date")


@pytest.mark.parametrize("slots", [
    [1, 1, 2, 2, 1, 3, 2, 2, 1, 1, 1, 2.0],  # replications differ on a day: the median
    [1, 1, 2, 3, 1, 1, 2, 3, 1, 1, 2, 3.0],  # a schedule every replication shares
    [2.0] * 12,                                # one capacity throughout
])
def test_capacity_by_day_is_the_group_by_median(slots: list[float]) -> None:
    rows = pd.DataFrame({"replication": np.repeat([0, 1, 2], 4), "day": np.tile([0, 1, 2, 5], 3),
                         "slots": slots}).iloc[:-1]  # the last replication ends a day early
    got = sites._capacity_by_day(rows)
    pd.testing.assert_series_equal(got, rows.groupby("day")["slots"].median().sort_index())


def test_incidence_shares_of_odd_tables() -> None:
    """Unsorted and repeated grid days, days before and after every outcome, outcomes that some
    replications never have, whole and fractional days, missing outcome days: each group's
    table equals the one-replication-at-a-time count, bit for bit and in the same layout."""
    rng = np.random.default_rng(11)
    kinds = ["infused", "died", "ineligible", "unresolved"]
    grids = [np.arange(0.0, 60.0), np.array([30.0, 0.0, 7.5, 7.5, 200.0, -1.0]), np.array([3.0]),
             np.array([])]
    for trial in range(12):
        n = int(rng.integers(1, 500))
        patients = pd.DataFrame({
            "replication": rng.integers(0, 9, n) * 3,
            "outcome": pd.Categorical(rng.choice(kinds[: 2 + trial % 3], n), categories=list(OUTCOMES)),
            "referral_day": rng.uniform(0, 50, n)})
        patients["outcome_day"] = patients["referral_day"] + np.round(rng.exponential(15, n), trial % 3)
        patients.loc[patients["outcome"] == "unresolved", "outcome_day"] = np.nan
        groups = {"infused": ["infused"], "losses": ["died", "ineligible"], "never": ["product_expired"]}
        for days in grids:
            reps, shares = outcomes._incidence_shares(patients, days, groups)
            np.testing.assert_array_equal(reps, np.unique(patients["replication"]))
            for name, members in groups.items():
                want = _shares_one_replication_at_a_time(patients, days, members)
                assert shares[name].flags["C_CONTIGUOUS"]
                _same(shares[name], want)
