"""The warm-up (``warmup_days``): patients referred before it are simulated and kept in the
patients table but counted by no metric; Welch's moving average and the suggested warm-up
against hand-worked numbers; bad values refused as ``FILE:LINE: key.path: message``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import v2vsim
from v2vsim.metrics import WARMUP_COLUMN, counted, replication_table
from v2vsim.metrics.sites import slot_days_before
from v2vsim.outputs.figures.warmup import (
    MONTH_DAYS,
    fitted_window,
    monthly_waits,
    suggest_warmup,
    warmup_figure,
    welch_moving_average,
)
from v2vsim.scenario import ScenarioError, load_scenario

from scenario_texts import SMALL

#: One one-slot site, 10 days on it, then a 1-day infusion; referrals on days 0, 5, 10, 15.
#: By hand: patient k waits 5k days (0, 5, 10, 15), holds the slot over [10k, 10k + 10] and is
#: infused on day 10k + 11; the run ends on day 41 with 40 slot-days held.
HAND = """\
name: hand
horizon_days: 20
drain_days: 100
replications: 2
seed: 1
arrivals: {schedule: [0, 5, 10, 15]}
cohorts:
  - {name: a, pathway: p}
sites:
  dev: {slots: 1}
pathways:
  p:
    steps:
      - {name: make, kind: manufacture, site: dev, duration: 10}
      - {name: infusion, kind: infusion, duration: 1}
"""


def _with_warmup(text: str, line: str) -> str:
    return text.replace("horizon_days:", f"{line}\nhorizon_days:", 1)


def test_welch_moving_average_by_hand() -> None:
    # w = 2, m = 6: Ȳ1 = Y1, Ȳ2 = (Y1+Y2+Y3)/3, Ȳ3 = (Y1..Y5)/5, Ȳ4 = (Y2..Y6)/5; m - w = 4 values.
    y = [4.0, 0.0, 2.0, 6.0, 1.0, 3.0]
    assert welch_moving_average(y, 2) == pytest.approx([4.0, 2.0, 13 / 5, 12 / 5])
    assert welch_moving_average(y, 0) == pytest.approx(y)
    assert welch_moving_average([1.0, 2.0], 2).size == 0


def test_suggested_warmup_by_hand() -> None:
    # w = 0 (the moving average is y); second half (from month 4 of 8) all 10: level 10, no
    # noise, band ±0.5 (the floor, over 5% of 10); months 0-2 are outside it.
    found = suggest_warmup(np.array([0.0, 5.0, 9.0, 10.0, 10.0, 10.0, 10.0, 10.0]), window=0)
    assert (found.level_days, found.band_days, found.months) == (10.0, 0.5, 3)
    assert found.days == pytest.approx(3 * MONTH_DAYS)
    assert "3 months" in found.text()
    # Still rising at the end (a trend, no noise): never settles.
    rising = suggest_warmup(np.arange(10, dtype=float), window=1)
    assert rising.months is None and rising.days is None and "no warm-up suggested" in rising.text()


def test_monthly_waits_mean_over_replications() -> None:
    # Month 0: replication 0's mean (1 + 3) / 2 = 2 and replication 1's 6: mean 4. Month 1:
    # only replication 1 (5). Month 2 holds no referral; day 100 is past the 3 whole months.
    patients = pd.DataFrame({"replication": [0, 0, 1, 1, 0],
                             "referral_day": [1.0, 20.0, 3.0, 40.0, 100.0],
                             "queue_wait_days": [1.0, 3.0, 6.0, 5.0, 99.0]})
    y = monthly_waits(patients, 3 * MONTH_DAYS)
    assert y[:2] == pytest.approx([4.0, 5.0]) and np.isnan(y[2]) and y.size == 3


def test_slot_days_before_by_hand() -> None:
    log = np.array([[0.0, 1.0, 0.0], [2.0, 2.0, 1.0], [5.0, 0.0, 0.0]])
    assert slot_days_before(log, 0.0) == 0.0
    assert slot_days_before(log, 3.0) == pytest.approx(1 * 2 + 2 * 1)
    assert slot_days_before(log, 10.0) == pytest.approx(8.0)
    assert slot_days_before(np.zeros((0, 3)), 4.0) == 0.0


@pytest.mark.parametrize("engine", ["auto", "simpy"])
def test_warmup_patients_are_kept_but_not_counted(engine: str) -> None:
    plain = v2vsim.simulate(load_scenario("hand.yaml", HAND), engine=engine)
    warm = v2vsim.simulate(load_scenario("hand.yaml", _with_warmup(HAND, "warmup_days: 7")), engine=engine)
    assert plain.patients["queue_wait_days"].tolist()[:4] == [0.0, 5.0, 10.0, 15.0]
    assert WARMUP_COLUMN not in plain.patients
    # Every patient is still in the table, marked; only those referred on days 10 and 15 count.
    assert len(warm.patients) == len(plain.patients) == 8
    assert warm.patients[WARMUP_COLUMN].tolist() == [True, True, False, False] * 2
    for table, referred, wait, util in ((plain.replications, 4, 7.5, 40 / 41),
                                        (warm.replications, 2, 12.5, (40 - 7) / (41 - 7))):
        assert table["referred"].tolist() == [referred] * 2
        assert table["infused"].tolist() == [referred] * 2
        assert table["queue_wait_mean"].tolist() == pytest.approx([wait] * 2)
        # Slot-days held from the warm-up's end over the days from it to the end of the run.
        assert table["utilization_dev"].tolist() == pytest.approx([util] * 2)
    assert len(counted(warm.patients)) == 4


def test_no_warmup_is_identical_to_warmup_zero(tmp_path: Path) -> None:
    """A scenario without warmup_days and one with warmup_days: 0 give the same tables, and the
    metrics of a patients table with a column marking no one equal those without it."""
    a = v2vsim.simulate(load_scenario("s.yaml", SMALL))
    b = v2vsim.simulate(load_scenario("s.yaml", _with_warmup(SMALL, "warmup_days: 0")))
    pd.testing.assert_frame_equal(a.replications, b.replications)
    pd.testing.assert_frame_equal(a.patients, b.patients)
    runs = pd.DataFrame({"replication": a.replications["replication"], "end_day": a.replications["end_day"],
                         "fixed_cost": 0.0})
    marked = a.patients.assign(**{WARMUP_COLUMN: False})
    pd.testing.assert_frame_equal(replication_table(a.patients, runs), replication_table(marked, runs))
    # The run's files: no warm-up figure, no warm-up record.
    out = a.save(tmp_path / "run")
    assert not (out / "figures" / "warmup.png").exists()
    assert "warmup" not in json.loads((out / "manifest.json").read_text())


def test_warmup_run_draws_its_figure_and_records_the_suggestion(tmp_path: Path) -> None:
    sc = load_scenario("s.yaml", _with_warmup(SMALL.replace("horizon_days: 200", "horizon_days: 400"),
                                              "warmup_days: 60"))
    res = v2vsim.simulate(sc)
    out = res.save(tmp_path / "run")
    assert (out / "figures" / "warmup.png").is_file()
    record = json.loads((out / "manifest.json").read_text())["warmup"]
    # 400 days: 13 whole months, so the half-window is cut from 6 to a quarter of them, 3
    assert record["warmup_days"] == 60 and record["window"] == 3 and record["text"].startswith("warm-up:")
    assert pd.read_parquet(out / "patients.parquet")[WARMUP_COLUMN].sum() == (
        res.patients["referral_day"] < 60).sum()
    fig, found = warmup_figure(res.patients, sc.name, sc.horizon_days, warmup_days=60)
    assert found.record() == {k: record[k] for k in found.record()}
    fig.clear()


@pytest.mark.parametrize("value, message", [
    ("-1", "warmup_days: must be at least 0 (got -1)"),
    ("200", "warmup_days: must be less than horizon_days (200)"),
    ("250", "warmup_days: must be less than horizon_days (200) (got 250)"),
    ("true", "warmup_days: must be a number, not true"),
])
def test_bad_warmup_is_refused_with_file_and_line(value: str, message: str) -> None:
    text = _with_warmup(SMALL, f"warmup_days: {value}")
    line = text.splitlines().index(f"warmup_days: {value}") + 1
    with pytest.raises(ScenarioError) as info:
        load_scenario("bad.yaml", text)
    assert str(info.value).splitlines() == [f"bad.yaml:{line}: {message}"]


def test_the_window_is_at_most_a_quarter_of_the_months() -> None:
    # Welch's rule w <= m / 4: 12 months take w = 2 (a 5-month window), 60 months keep w = 6.
    assert [fitted_window(m) for m in (1, 4, 5, 12, 13, 25, 60)] == [0, 0, 1, 2, 3, 6, 6]
    # A one-year run settles: the moving average has a second half.
    found = suggest_warmup(np.array([40.0, 80, 80, 80, 82, 78, 78, 80, 79, 78, 81, 81]))
    assert found.window == 2 and found.months is not None
