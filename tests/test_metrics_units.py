"""Units, rates per 100 referred, intervals cut to a metric's range and number formats: one
definition used by summary.csv, comparison.csv, the console and the report."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from v2vsim.metrics import (
    RATE_COUNTS,
    clip_interval,
    format_value,
    headline_rows,
    metric_label,
    paired_comparison,
    per_year,
    rate_metric,
    replication_table,
    summarise,
    support,
    t_interval,
)
from v2vsim.outputs.report.table import fmt_diff, fmt_value


def _patients(outcomes_by_rep: dict[int, list[str]]) -> tuple[pd.DataFrame, pd.DataFrame]:
    rows = []
    for rep, outcomes in outcomes_by_rep.items():
        for i, outcome in enumerate(outcomes):
            infused = outcome == "infused"
            rows.append({"replication": rep, "patient": i, "outcome": outcome,
                         "vein_to_vein_days": 14.0 if infused else math.nan,
                         "referral_to_infusion_days": 20.0 if infused else math.nan,
                         "responded": 1.0 if infused else math.nan,
                         "icu": 0.0 if infused else math.nan,
                         "queue_wait_days": 1.0, "cost": 10.0})
    runs = pd.DataFrame({"replication": list(outcomes_by_rep), "end_day": 100.0,
                         "fixed_cost": 0.0})
    return pd.DataFrame(rows), runs


def test_rates_per_100_referred_are_per_replication_ratios() -> None:
    # Replication 0: 4 referred, 1 died; replication 1: 5 referred, 2 died, 1 ineligible.
    patients, runs = _patients({0: ["infused", "infused", "infused", "died"],
                                1: ["died", "died", "ineligible", "infused", "infused"]})
    table = replication_table(patients, runs).set_index("replication")
    assert table["died_per_100_referred"].tolist() == [25.0, 40.0]
    assert table["ineligible_per_100_referred"].tolist() == [0.0, 20.0]
    assert table["responders_per_100_referred"].tolist() == [75.0, 40.0]
    # Counts stay as they were; the rate of a policy count only when the scenario has it.
    assert table["died"].tolist() == [1, 2]
    assert "rerouted_per_100_referred" not in table
    assert {rate_metric(c) for c in RATE_COUNTS if c in table} <= set(table.columns)
    # The summary's rate is the mean of the per-replication rates (32.5), not the ratio of
    # means (3 deaths of 9 referred = 33.3).
    summary = summarise(table.reset_index()).set_index("metric")
    assert summary.loc["died_per_100_referred", "mean"] == pytest.approx(32.5)
    label, unit = metric_label("died_per_100_referred")
    assert (label, unit) == ("Died before infusion, per 100 referred", "per 100 referred")


def test_intervals_are_cut_to_the_range_a_metric_can_take() -> None:
    # A rare count: the t-interval of 0, 0, 0, 1 reaches below zero.
    reps = pd.DataFrame({"replication": [0, 1, 2, 3], "product_expired": [0, 0, 0, 1],
                         "infused_fraction": [1.0, 1.0, 1.0, 0.96],
                         "product_expired_per_100_referred": [0.0, 0.0, 0.0, 100.0]})
    mean, low, high, _ = t_interval([0, 0, 0, 1])
    assert low < 0 < high  # the raw interval crosses zero ...
    summary = summarise(reps).set_index("metric")
    assert summary.loc["product_expired", "ci_low"] == 0.0  # ... the reported one does not
    assert summary.loc["product_expired", "ci_high"] == pytest.approx(high)
    assert summary.loc["product_expired", "mean"] == pytest.approx(mean)
    assert summary.loc["infused_fraction", "ci_high"] == 1.0
    assert summary.loc["product_expired_per_100_referred", ["ci_low", "ci_high"]].tolist() == [0, 100]
    assert support("cost_per_infused") == (0.0, math.inf)
    assert support("utilization_hkib") == (0.0, 1.0)
    assert support("some_new_metric") == (-math.inf, math.inf)
    assert clip_interval(math.nan, 2.0, (0.0, 1.0))[0] != clip_interval(math.nan, 2.0, (0.0, 1.0))[0]


def test_paired_differences_keep_their_sign_and_shares_their_range() -> None:
    a = pd.DataFrame({"replication": [0, 1, 2], "died": [0, 0, 3],
                      "infused_fraction": [0.0, 0.0, 0.02]})
    b = pd.DataFrame({"replication": [0, 1, 2], "died": [0, 0, 0],
                      "infused_fraction": [1.0, 1.0, 0.9]})
    table = paired_comparison({"a": a, "b": b}).set_index(["metric", "scenario"])
    # A count's difference may be negative: its interval is not cut at zero ...
    died = table.loc[("died", "b")]
    assert died["diff"] == -1.0 and died["diff_ci_low"] < -1.0
    # ... but the mean's interval is, and a difference of shares stays within +-100 points.
    assert table.loc[("died", "a"), "ci_low"] == 0.0
    share = table.loc[("infused_fraction", "b")]
    assert share["diff_ci_high"] == 1.0 and share["diff_ci_low"] > 0.7
    assert table.loc[("infused_fraction", "b"), "unit"] == "fraction"


@pytest.mark.parametrize(("value", "unit", "text"), [
    (-0.004, "count", "-0.004"), (-0.0004, "count", "0.000"), (-1e-9, "days", "0.0"),
    (-1e-9, "fraction", "0.0%"), (0.0049, "per 100 referred", "0.005"), (12.34, "per 100 referred", "12.3"),
    (3.456, "count", "3.46"), (1234.5, "days", "1,234.5"), (3471622.4, "HKD", "3,471,622"),
])
def test_values_never_show_a_signed_zero(value: float, unit: str, text: str) -> None:
    assert format_value(value, unit) == text
    assert "-0.00" not in fmt_value(-1e-12, "count") and "\u22120" not in fmt_value(-1e-12, "count")


def test_report_differences_of_zero_carry_no_sign() -> None:
    assert fmt_diff(-1e-9, "count") == "0.000"
    assert fmt_diff(0.0, "count") == "±0.00"
    assert fmt_diff(-0.0123, "fraction") == "\u22121.2 pp"
    assert fmt_diff(0.5, "per 100 referred") == "+0.50"


def test_console_summary_shows_counts_per_100_referred_and_a_year() -> None:
    summary = pd.DataFrame([
        {"metric": "referred", "mean": 100.0, "ci_low": 98.0, "ci_high": 102.0, "n": 10},
        {"metric": "infused_fraction", "mean": 0.8, "ci_low": 0.78, "ci_high": 0.82, "n": 10},
        {"metric": "died", "mean": 11.0, "ci_low": 10.0, "ci_high": 12.0, "n": 10},
        {"metric": "died_per_100_referred", "mean": 11.1, "ci_low": 10.1, "ci_high": 12.1, "n": 10},
        {"metric": "ineligible", "mean": 5.0, "ci_low": 4.0, "ci_high": 6.0, "n": 10},
    ])
    rows = {r[0]: r for r in headline_rows(summary, "HKD", horizon_days=1825)}
    assert rows["died"][1:] == ("Died before infusion, per 100 referred", "11.1",
                                "10.1 – 12.1", "2.20")
    # Without its rate (an older summary) a count is shown as it is, still with a year.
    assert rows["ineligible"][1] == "Became ineligible (over the referral window)"
    assert rows["ineligible"][4] == format_value(per_year(5.0, 1825), "count") == "1.00"
    assert rows["referred"][1:] == ("Referred patients (over the referral window)", "100.0",
                                    "98.0 – 102.0", "20.0")
    assert rows["infused_fraction"][4] == ""
    assert np.isnan(per_year(1.0, 0.0))
