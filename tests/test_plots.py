"""Figures: pure counting functions against hand-worked values, and every figure renders.

The synthetic frames follow the result-frame contract (columns and meanings) without running the
model: each patient walks a fixed list of steps with random waits, durations, failures and
death/ineligibility clocks, and the patient row, site days and event trace are all derived from
that one walk so they agree with each other.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from v2vsim import metrics
from v2vsim.outputs import figures as plots

# (step name, kind, (gamma shape, scale) of the wait before it or None, duration in days,
#  failure probability, outcome when it fails for good, attempts allowed)
_STEPS: list[tuple[str, str, tuple[float, float] | None, float, float, str, int]] = [
    ("screening", "screen", None, 7.0, 0.03, "screen_failed", 1),
    ("apheresis", "apheresis", (2.0, 3.0), 1.0, 0.03, "collection_failed", 2),
    ("cryopreservation", "cryopreserve", None, 1.0, 0.0, "", 1),
    ("ship_to_site", "transport", None, 2.0, 0.01, "lost_in_transit", 1),
    ("manufacturing", "manufacture", (2.0, 5.0), 17.0, 0.08, "manufacturing_failed", 2),
    ("release_testing", "release", None, 4.0, 0.03, "out_of_specification", 1),
    ("ship_to_centre", "transport", None, 2.0, 0.0, "", 1),
    ("bridging", "delay", None, 3.0, 0.0, "", 1),
    ("conditioning", "conditioning", (1.0, 2.0), 5.0, 0.01, "product_expired", 1),
    ("infusion", "infusion", None, 0.0, 0.0, "", 1),
]
_COLUMNS = [
    "replication", "patient", "cohort", "pathway", "referral_day", "apheresis_day",
    "manufacture_start_day", "release_day", "infusion_day", "outcome", "outcome_step",
    "outcome_day", "vein_to_vein_days", "referral_to_infusion_days", "queue_wait_days",
    "manufacturing_attempts", "cost", "responded", "icu",
]


def synthetic_results(
    seed: int = 1,
    replications: int = 3,
    patients_per_replication: int = 40,
    horizon_days: float = 365.0,
    sites: tuple[str, ...] = ("Site A", "Site B"),
    slots: tuple[float, ...] = (6.0, 4.0),
    death_mean_days: float = 250.0,
    ineligible_mean_days: float = 600.0,
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Deterministic ``patients``, ``site_days`` and ``events`` frames following the contract."""
    rng = np.random.default_rng(seed)
    patient_rows: list[dict[str, object]] = []
    event_rows: list[dict[str, object]] = []
    n_days = int(horizon_days)
    in_use = np.zeros((replications, len(sites), n_days))
    queue = np.zeros((replications, len(sites), n_days))

    def add_interval(target: np.ndarray, rep: int, site: int, a: float, b: float) -> None:
        # Fraction of each one-day bin covered by [a, b).
        days = np.arange(n_days, dtype=float)
        target[rep, site] += np.clip(np.minimum(b, days + 1) - np.maximum(a, days), 0.0, 1.0)

    for rep in range(replications):
        for patient in range(patients_per_replication):
            referral = float(rng.uniform(0.0, 0.8 * horizon_days))
            cohort = str(rng.choice(["DLBCL", "MM"]))
            site = int(rng.integers(len(sites)))
            death = referral + float(rng.exponential(death_mean_days))
            ineligible = referral + float(rng.exponential(ineligible_mean_days))
            days: dict[str, float] = {}
            t = referral
            outcome, outcome_step, outcome_day = "infused", "infusion", math.nan
            queue_wait = 0.0
            attempts_manufacture = 0
            for name, kind, wait, duration, p_fail, fail_outcome, max_attempts in _STEPS:
                attempt, done = 1, False
                while not done:
                    ready = t
                    start = ready + (float(rng.gamma(*wait)) if wait else 0.0)
                    end = start + duration
                    failed = bool(rng.random() < p_fail)
                    clock_day, clock = min((death, "died"), (ineligible, "ineligible"))
                    stop = min(clock_day, horizon_days)
                    if kind == "manufacture":
                        attempts_manufacture += 1
                        queue_wait += min(start, stop) - ready
                        add_interval(queue, rep, site, ready, min(start, stop))
                        if start < stop:
                            add_interval(in_use, rep, site, start, min(end, stop))
                            days.setdefault("manufacture_start_day", start)
                    if kind == "apheresis" and start < stop:
                        days["apheresis_day"] = start
                    if end > stop or (duration == 0.0 and start >= stop):
                        status = clock if clock_day <= horizon_days else "unresolved"
                        event_rows.append(dict(
                            replication=rep, patient=patient, cohort=cohort, step=name,
                            kind=kind, attempt=attempt, ready_day=ready,
                            start_day=start if start < stop else math.nan, end_day=stop,
                            status=status,
                        ))
                        outcome, outcome_step = status, name
                        outcome_day = stop if status != "unresolved" else math.nan
                        break
                    event_rows.append(dict(
                        replication=rep, patient=patient, cohort=cohort, step=name, kind=kind,
                        attempt=attempt, ready_day=ready, start_day=start, end_day=end,
                        status="failed" if failed else "done",
                    ))
                    t = end
                    if not failed:
                        done = True
                    elif attempt == max_attempts:
                        outcome, outcome_step, outcome_day = fail_outcome, name, end
                        break
                    else:
                        attempt += 1
                if not done:
                    break
                if kind == "release":
                    days["release_day"] = t
                if kind == "infusion":
                    days["infusion_day"] = t
                    outcome_day = t
            infusion = days.get("infusion_day", math.nan)
            apheresis = days.get("apheresis_day", math.nan)
            infused = outcome == "infused"
            patient_rows.append(dict(
                replication=rep, patient=patient, cohort=cohort, pathway="standard",
                referral_day=referral, apheresis_day=apheresis,
                manufacture_start_day=days.get("manufacture_start_day", math.nan),
                release_day=days.get("release_day", math.nan), infusion_day=infusion,
                outcome=outcome, outcome_step=outcome_step, outcome_day=outcome_day,
                vein_to_vein_days=infusion - apheresis,
                referral_to_infusion_days=infusion - referral,
                queue_wait_days=queue_wait, manufacturing_attempts=attempts_manufacture,
                cost=float(rng.normal(400_000, 30_000)),
                responded=float(rng.random() < 0.6) if infused else math.nan,
                icu=float(rng.random() < 0.2) if infused else math.nan,
            ))
    patients = pd.DataFrame(patient_rows, columns=_COLUMNS)
    rep_idx, site_idx, day_idx = np.meshgrid(
        np.arange(replications), np.arange(len(sites)), np.arange(n_days), indexing="ij"
    )
    capacity = np.asarray(slots, dtype=float)[site_idx]
    site_days = pd.DataFrame({
        "replication": rep_idx.ravel(),
        "site": np.asarray(sites, dtype=object)[site_idx.ravel()],
        "day": day_idx.ravel(),
        "in_use": in_use.ravel(),
        "queue": queue.ravel(),
        "slots": capacity.ravel(),
    })
    events = pd.DataFrame(event_rows)
    events = events[events["replication"] == 0].reset_index(drop=True)
    return patients, site_days, events


def _patient(rep: int, pid: int, outcome: str, referral: float, outcome_day: float,
             apheresis: float = math.nan, manufacture: float = math.nan,
             release: float = math.nan) -> dict[str, object]:
    """One hand-written patient row; infusion fields follow from the outcome."""
    infused = outcome == "infused"
    return dict(
        replication=rep, patient=pid, cohort="DLBCL", pathway="standard",
        referral_day=referral, apheresis_day=apheresis, manufacture_start_day=manufacture,
        release_day=release, infusion_day=outcome_day if infused else math.nan,
        outcome=outcome, outcome_step="x", outcome_day=outcome_day,
        vein_to_vein_days=outcome_day - apheresis if infused else math.nan,
        referral_to_infusion_days=outcome_day - referral if infused else math.nan,
        queue_wait_days=0.0, manufacturing_attempts=1, cost=1.0,
        responded=1.0 if infused else math.nan, icu=0.0 if infused else math.nan,
    )


@pytest.fixture
def tiny() -> pd.DataFrame:
    """Two replications of four patients each, worked by hand below."""
    nan = math.nan
    rows = [
        # replication 0: infused; died before apheresis; manufacturing failed; unresolved
        _patient(0, 0, "infused", 0.0, 40.0, apheresis=10.0, manufacture=15.0, release=35.0),
        _patient(0, 1, "died", 5.0, 12.0),
        _patient(0, 2, "manufacturing_failed", 0.0, 30.0, apheresis=8.0, manufacture=12.0),
        _patient(0, 3, "unresolved", 2.0, nan, apheresis=20.0),
        # replication 1: infused; infused; out of spec; died after release
        _patient(1, 0, "infused", 0.0, 30.0, apheresis=5.0, manufacture=8.0, release=25.0),
        _patient(1, 1, "infused", 10.0, 60.0, apheresis=15.0, manufacture=20.0, release=50.0),
        _patient(1, 2, "out_of_specification", 0.0, 28.0, apheresis=6.0, manufacture=9.0),
        _patient(1, 3, "died", 0.0, 45.0, apheresis=4.0, manufacture=7.0, release=40.0),
    ]
    return pd.DataFrame(rows, columns=_COLUMNS)


# ---------------------------------------------------------------- counting: hand-worked values


def test_funnel_counts_match_hand_count(tiny: pd.DataFrame) -> None:
    # Reached per replication (rep 0, rep 1):
    #   referred 4, 4; apheresis done 3 (0, 2, 3), 4; manufacture started 2 (0, and patient 2
    #   whose manufacture then failed), 4; released 1, 3 (not the OOS patient); infused 1, 2.
    counts = plots.funnel_counts(tiny)
    assert list(counts.index) == list(plots.FUNNEL_STAGES)
    assert counts["patients"].tolist() == [4.0, 3.5, 3.0, 2.0, 1.5]
    assert counts["percent_of_referred"].tolist() == pytest.approx([100, 87.5, 75, 50, 37.5])
    assert counts["lost_after"].tolist() == [0.5, 0.5, 1.0, 0.5, 0.0]


def test_funnel_stages_are_named_for_what_they_count(tiny: pd.DataFrame) -> None:
    # A manufacture that fails has started: the patient passes "Manufacture started" and is
    # lost after it as "manufacturing failed" (the stage was "Manufactured" and left them out).
    assert plots.FUNNEL_STAGES == ("referred", "apheresed", "manufacture_started", "released",
                                   "infused")
    fig = plots.attrition_funnel_figure(tiny, "tiny")
    ticks = [t.get_text() for t in fig.axes[0].get_yticklabels()]
    assert ticks == ["Referred", "Apheresis done", "Manufacture started", "Product released",
                     "Infused"]
    losses = plots.funnel_losses(tiny)
    assert losses.loc["manufacture_started", "manufacturing_failed"] == 0.5
    assert losses.loc["apheresed", "manufacturing_failed"] == 0.0


def test_funnel_losses_by_cause_match_hand_count(tiny: pd.DataFrame) -> None:
    # Lost after referral: rep-0 death (0.5/rep). After apheresis: rep-0 unresolved. After
    # manufacture started: rep-0 manufacturing failure and rep-1 out of spec. After release:
    # rep-1 death.
    losses = plots.funnel_losses(tiny)
    assert list(losses.index) == list(plots.FUNNEL_STAGES[:-1])
    assert list(losses.columns) == [
        "died", "manufacturing_failed", "out_of_specification", "unresolved"
    ]
    expected = pd.DataFrame(
        [[0.5, 0, 0, 0], [0, 0, 0, 0.5], [0, 0.5, 0.5, 0], [0.5, 0, 0, 0]],
        index=losses.index, columns=losses.columns, dtype=float,
    )
    pd.testing.assert_frame_equal(losses, expected)
    # Invariant: losses by cause add up to the drop between consecutive stages.
    np.testing.assert_allclose(
        losses.sum(axis=1), plots.funnel_counts(tiny)["lost_after"].iloc[:-1]
    )


def test_funnel_never_widens_and_accounts_for_everyone() -> None:
    patients, _, _ = synthetic_results(seed=3, replications=4, patients_per_replication=50)
    counts = plots.funnel_counts(patients)
    assert np.all(np.diff(counts["patients"]) <= 0)
    assert counts["patients"].iloc[0] == 50
    infused_per_rep = (patients["outcome"] == "infused").sum() / 4
    assert counts["patients"].iloc[-1] == infused_per_rep
    total_lost = plots.funnel_losses(patients).to_numpy().sum()
    assert total_lost == pytest.approx(50 - infused_per_rep)


def test_cumulative_incidence_matches_hand_count(tiny: pd.DataFrame) -> None:
    # Days since referral: rep 0 -> infused 40, died 7, manufacturing_failed 30, unresolved -;
    # rep 1 -> infused 30 and 50, out_of_specification 28, died 45. Denominator 4 per rep.
    ci = plots.cumulative_incidence(tiny, [0, 7, 29, 30, 45, 50])
    assert sorted(ci["outcome"].unique()) == sorted(
        ["infused", "died", "manufacturing_failed", "out_of_specification"]
    )
    wide = ci.pivot_table(index=["outcome", "replication"], columns="day", values="share")
    assert wide.loc[("infused", 0)].tolist() == [0, 0, 0, 0, 0.25, 0.25]
    assert wide.loc[("infused", 1)].tolist() == [0, 0, 0, 0.25, 0.25, 0.5]
    assert wide.loc[("died", 0)].tolist() == [0, 0.25, 0.25, 0.25, 0.25, 0.25]
    assert wide.loc[("died", 1)].tolist() == [0, 0, 0, 0, 0.25, 0.25]
    assert wide.loc[("out_of_specification", 1)].tolist() == [0, 0, 0.25, 0.25, 0.25, 0.25]


def test_cumulative_incidence_groups_and_unresolved(tiny: pd.DataFrame) -> None:
    groups = {"lost": ["died", "manufacturing_failed", "out_of_specification"]}
    ci = plots.cumulative_incidence(tiny, [1000], groups)
    shares = ci.set_index("replication")["share"]
    # Rep 0: two of four lost, the unresolved patient stays in the denominator.
    assert shares.to_dict() == {0: 0.5, 1: 0.5}


def test_cumulative_incidence_sums_to_resolved_share() -> None:
    patients, _, _ = synthetic_results(seed=4, replications=3)
    ci = plots.cumulative_incidence(patients, [1e6])
    total = ci.groupby("replication")["share"].sum()
    resolved = (patients["outcome"] != "unresolved").groupby(patients["replication"]).mean()
    np.testing.assert_allclose(total.to_numpy(), resolved.to_numpy())


def test_cumulative_incidence_is_non_decreasing() -> None:
    patients, _, _ = synthetic_results(seed=5, replications=2)
    ci = plots.cumulative_incidence(patients, np.arange(0, 366))
    for _, group in ci.groupby(["replication", "outcome"]):
        assert np.all(np.diff(group.sort_values("day")["share"].to_numpy()) >= 0)


# ---------------------------------------------------------------- house style


def test_palette_and_outcome_colours() -> None:
    assert plots.scenario_colors(3) == ["#0072B2", "#E69F00", "#009E73"]
    assert len(set(plots.scenario_colors(8))) == 8
    assert plots.scenario_colors(9)[8] == plots.scenario_colors(1)[0]
    assert set(plots.OUTCOMES) == set(plots.OUTCOME_COLORS) == set(plots.OUTCOME_LABELS)
    assert len(set(plots.OUTCOME_COLORS.values())) == len(plots.OUTCOMES)
    assert plots.outcome_color("something_new") == "#999999"
    assert plots.outcome_label("something_new") == "Something new"
    assert plots.footer_text("base", 200, 1) == "Scenario: base · 200 replications · seed 1"


def test_module_does_not_import_the_model() -> None:
    for path in sorted(Path(plots.__file__).parent.glob("*.py")):  # every module of the package
        source = path.read_text(encoding="utf-8")
        assert "simpy" not in source
        assert "v2vsim.model" not in source and "from . import model" not in source


# ---------------------------------------------------------------- figures render


def _texts(fig: Figure) -> str:
    return " ".join(t.get_text() for t in fig.findobj(lambda a: hasattr(a, "get_text")))


def _render_all(
    patients: pd.DataFrame, site_days: pd.DataFrame, events: pd.DataFrame, out_dir: Path
) -> list[Path]:
    """Build every figure and draw it (small PNGs: layout errors only show up when drawing)."""
    figures = {
        "vein_to_vein": plots.vein_to_vein_figure(patients, "edge"),
        "attrition_funnel": plots.attrition_funnel_figure(patients, "edge"),
        "cumulative_incidence": plots.cumulative_incidence_figure(patients, "edge"),
        "site_utilisation": plots.site_timeline_figure(site_days, "edge"),
        "journey": plots.journey_figure(events, "edge"),
    }
    return [
        path
        for stem, fig in figures.items()
        for path in plots.save_figure(fig, out_dir, stem, formats=("png",), dpi=30)
    ]


def test_run_figures_writes_png_and_svg(tmp_path: Path) -> None:
    patients, site_days, events = synthetic_results()
    paths = plots.run_figures(
        patients, site_days, events, "base", tmp_path, footer="Scenario: base · 3 replications"
    )
    stems = ["vein_to_vein", "attrition_funnel", "cumulative_incidence", "site_utilisation",
             "journey"]
    assert sorted(paths) == sorted(tmp_path / f"{s}.{e}" for s in stems for e in ("png", "svg"))
    for path in paths:
        data = path.read_bytes()
        assert len(data) > 1000
        if path.suffix == ".png":
            assert data.startswith(b"\x89PNG\r\n\x1a\n")
        else:
            assert b"<svg" in data[:2000]


def test_svg_output_is_reproducible(tmp_path: Path) -> None:
    patients, _, _ = synthetic_results(replications=2)
    paths = [
        plots.save_figure(plots.vein_to_vein_figure(patients, "a"), tmp_path / d, "v", ("svg",))[0]
        for d in ("1", "2")
    ]
    assert paths[0].read_bytes() == paths[1].read_bytes()


def test_figures_carry_titles_units_and_footer() -> None:
    patients, site_days, events = synthetic_results()
    footer = "Scenario: base · 3 replications · seed 1"
    figures = [
        plots.vein_to_vein_figure(patients, "base", footer=footer),
        plots.attrition_funnel_figure(patients, "base", footer=footer),
        plots.cumulative_incidence_figure(patients, "base", footer=footer),
        plots.site_timeline_figure(site_days, "base", footer=footer),
        plots.journey_figure(events, "base", footer=footer),
    ]
    for fig in figures:
        text = _texts(fig)
        assert footer in text and "base" in text
    assert "(days)" in _texts(figures[0])
    assert "Days since referral" in _texts(figures[2])


def test_zero_infused_and_one_replication(tmp_path: Path) -> None:
    patients, site_days, events = synthetic_results(replications=1, death_mean_days=5.0)
    patients = patients[patients["outcome"] != "infused"]
    events = events[events["kind"] != "infusion"]
    assert len(patients) > 0
    fig = plots.vein_to_vein_figure(patients, "grim")
    assert "No infused patients" in _texts(fig)
    counts = plots.funnel_counts(patients)
    assert counts.loc["infused", "patients"] == 0
    paths = _render_all(patients, site_days, events, tmp_path)
    assert len(paths) == 5 and all(p.stat().st_size > 0 for p in paths)


def test_nan_days_unused_site_and_many_sites(tmp_path: Path) -> None:
    sites = tuple(f"Site {c}" for c in "ABCDEF")
    patients, site_days, events = synthetic_results(
        replications=2, sites=sites, slots=(2, 2, 3, 3, 4, 4)
    )
    # A site that never receives a patient, and a patient with unknown days.
    unused = site_days[site_days["site"] == "Site A"].assign(site="Never used", in_use=0.0,
                                                              queue=0.0)
    site_days = pd.concat([site_days, unused], ignore_index=True)
    patients.loc[0, ["referral_day", "apheresis_day", "outcome_day"]] = math.nan
    fig = plots.site_timeline_figure(site_days, "wide")
    assert len(fig.axes) == 2 * 7
    paths = _render_all(patients, site_days, events, tmp_path)
    assert len(paths) == 5


def test_empty_frames_do_not_raise(tmp_path: Path) -> None:
    patients, site_days, events = synthetic_results(replications=1, patients_per_replication=2)
    paths = _render_all(patients.iloc[0:0], site_days.iloc[0:0], events.iloc[0:0], tmp_path)
    assert len(paths) == 5


def test_journey_limits_lanes_and_marks_outcomes() -> None:
    _, _, events = synthetic_results(replications=1, patients_per_replication=40)
    fig = plots.journey_figure(events, "base", max_patients=10)
    ax = fig.axes[0]
    labels = [t.get_text() for t in ax.get_yticklabels()]
    assert len(labels) == 10
    assert all(label.startswith("Patient ") and "(" in label for label in labels)
    # The lanes are the ten earliest referrals.
    first = events.groupby("patient")["ready_day"].min().nsmallest(10).index
    assert labels == [
        f"Patient {p} ({events.loc[events['patient'] == p, 'cohort'].iloc[0]})" for p in first
    ]


def test_vein_to_vein_gives_median_and_p90_in_the_legend() -> None:
    # The summary tables' statistics: the mean over replications of each one's own quantile.
    patients, _, _ = synthetic_results(replications=2)
    infused = patients[patients["outcome"] == "infused"]
    by_rep = infused.groupby("replication")["vein_to_vein_days"]
    median, p90 = by_rep.median().mean(), by_rep.quantile(0.9).mean()
    fig = plots.vein_to_vein_figure(patients, "base")
    legend = fig.axes[0].get_legend()
    assert legend is not None
    labels = [t.get_text() for t in legend.get_texts()]
    assert any(label.startswith(f"Median {median:.1f} d (") for label in labels), labels
    assert any(label.startswith(f"90th percentile {p90:.1f} d (") for label in labels), labels
    assert "pooled" in fig.axes[0].get_ylabel()


def test_tail_limit_hand_worked() -> None:
    # 99 values of 10 and one of 200: P99 = 10 + 0.01 x 190 = 11.9; margin max(2, 1.19) = 2;
    # 13.9 rounded up to a multiple of 5 = 15.
    assert plots.tail_limit(np.array([10.0] * 99 + [200.0])) == 15.0
    # Never beyond the data: 1..100 gives 99.01 + 9.9 -> 110, capped at floor(100) + 1.
    assert plots.tail_limit(np.arange(1.0, 101.0)) == 101.0
    assert plots.tail_limit(np.array([])) == 1.0


def _overlap(a, b) -> bool:
    return a.x0 < b.x1 and b.x0 < a.x1 and a.y0 < b.y1 and b.y0 < a.y1


def test_vein_to_vein_close_median_and_p90_do_not_collide_and_tail_is_cut() -> None:
    # Median and P90 one day apart (the local scenario: 14.0 and 15.8 days) and a long tail of
    # re-manufactured patients out to 130 days.
    patients, _, _ = synthetic_results(replications=4, patients_per_replication=150)
    infused = patients["outcome"] == "infused"
    assert infused.sum() > 300  # so that two outliers are beyond the 99th percentile
    rng = np.random.default_rng(0)
    v2v = 14.0 + rng.uniform(0.0, 1.6, infused.sum())
    v2v[:2] = [95.0, 130.0]
    patients.loc[infused, "vein_to_vein_days"] = v2v
    fig = plots.vein_to_vein_figure(patients, "close")
    ax = fig.axes[0]
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    renderer = canvas.get_renderer()
    legend = ax.get_legend().get_window_extent(renderer)
    ticks = [t.get_window_extent(renderer) for t in ax.get_yticklabels() + ax.get_xticklabels()
             if t.get_text()]
    assert ticks and not any(_overlap(legend, tick) for tick in ticks)
    assert not any(t.get_text().startswith(("Median", "P90")) for t in ax.texts)
    # The axis stops near the 97.5th percentile and the legend says what is beyond.
    assert ax.get_xlim()[1] == plots.tail_limit(v2v, 97.5) < 95.0
    assert any("Not shown:" in t.get_text() and "longest 130 days" in t.get_text()
               for t in ax.get_legend().get_texts())


def test_site_timeline_mean_of_constant_series_is_that_constant() -> None:
    # Replications hold 1, 3 and 5 of 6 slots every day: each month's share of slot time in
    # use is 50% on average, and nobody waits.
    days = np.arange(60)
    site_days = pd.concat(
        [
            pd.DataFrame({"replication": rep, "site": "S", "day": days, "in_use": float(held),
                          "queue": 0.0, "slots": 6.0})
            for rep, held in enumerate((1, 3, 5))
        ],
        ignore_index=True,
    )
    fig = plots.site_timeline_figure(site_days, "flat")
    [mean_line] = fig.axes[0].get_lines()
    np.testing.assert_allclose(mean_line.get_ydata(), 50.0)
    assert "50% over the run" in fig.axes[0].get_title(loc="left")
    assert "6 slots" in fig.axes[0].get_title(loc="left")
    for line in fig.axes[1].get_lines():
        np.testing.assert_allclose(line.get_ydata(), 0.0)


def test_site_timeline_of_one_slot_is_the_monthly_share_not_a_0_to_1_band() -> None:
    # One slot, four replications: on each day three hold it and one does not. A band across
    # replications of the daily value spans 0-1 (the old figure); the monthly share of slot
    # time in use is 75% in every replication, so its CI is that value.
    days = np.arange(61)
    site_days = pd.concat(
        [pd.DataFrame({"replication": rep, "site": "Prodigy", "day": days,
                       "in_use": np.where((days + rep) % 4 == 0, 0.0, 1.0),
                       "queue": np.where((days + rep) % 4 == 0, 0.0, 2.0), "slots": 1.0})
         for rep in range(4)],
        ignore_index=True,
    )
    fig = plots.site_timeline_figure(site_days, "one slot")
    use, queue = fig.axes[0], fig.axes[1]
    [mean] = use.get_lines()
    np.testing.assert_allclose(mean.get_ydata()[:2], 75.0, atol=1.0)
    assert use.get_ylabel() == "Slot time in use (%)"
    assert "(1 slot)" in use.get_title(loc="left")
    # The waitlist: 2 on three days in four, 0 on the fourth: median 2, 90th percentile 2.
    p90, median = queue.get_lines()
    np.testing.assert_allclose(median.get_ydata(), 2.0)
    np.testing.assert_allclose(p90.get_ydata(), 2.0)
    legend = " ".join(t.get_text() for t in fig.axes[1].get_legend().get_texts())
    assert "mean across" in legend and "CI of the mean" in legend
    assert "median day" in legend and "90th percentile" in legend
    assert use.get_xlabel() == "Simulation day"


def test_journey_relative_starts_every_lane_at_zero() -> None:
    _, _, events = synthetic_results(replications=1, patients_per_replication=12)
    fig = plots.journey_figure(events, "base", relative=True)
    ax = fig.axes[0]
    assert ax.get_xlabel() == "Days since referral"
    # Each lane's first bar starts at day 0 (the lane's referral).
    lefts: dict[int, float] = {}
    for patch in ax.patches:
        lane = round(patch.get_y() + patch.get_height() / 2)
        lefts[lane] = min(lefts.get(lane, math.inf), patch.get_x())
    assert len(lefts) == 12
    np.testing.assert_allclose(list(lefts.values()), 0.0, atol=1e-9)


# ---------------------------------------------------------------- comparison figures


def synthetic_pair(replications: int = 3) -> tuple[dict[str, pd.DataFrame], dict[str, pd.DataFrame]]:
    """Two scenarios' ``patients`` and ``replications`` frames with the same replication numbers."""
    patients: dict[str, pd.DataFrame] = {}
    tables: dict[str, pd.DataFrame] = {}
    for seed, (name, death) in enumerate((("Fast", 400.0), ("Slow", 120.0)), start=11):
        frame, _, _ = synthetic_results(seed=seed, replications=replications,
                                        patients_per_replication=60, death_mean_days=death)
        runs = pd.DataFrame({"replication": range(replications), "end_day": 365.0,
                             "fixed_cost": 1_000_000.0})
        patients[name] = frame
        tables[name] = metrics.replication_table(frame, runs)
    return patients, tables


def test_per_100_referred_hand_worked() -> None:
    table = pd.DataFrame({"replication": [0, 1], "referred": [10, 20], "died": [1, 4],
                          "ineligible": [0, 2], "manufacturing_failed": [1, 0]})
    # died per 100: [10, 20] -> mean 15, sd 7.0711, half-width t(0.975, 1) x 7.0711 / sqrt(2)
    # = 12.706205 x 5 = 63.531; lost (ineligible + manufacturing failed): [10, 10].
    result = plots.per_100_referred(
        table, {"died": ["died"], "lost": ["ineligible", "manufacturing_failed", "absent"]})
    assert result.loc["died", "mean"] == 15.0
    assert result.loc["died", ["ci_low", "ci_high"]].tolist() == pytest.approx(
        [15 - 63.531, 15 + 63.531], abs=1e-3)
    assert result.loc["lost", ["mean", "ci_low", "ci_high", "n"]].tolist() == [10, 10, 10, 2]


def test_outcome_groups_name_only_what_happens() -> None:
    zero = {c: [0, 0] for c in plots.OUTCOMES}
    a = pd.DataFrame({**zero, "replication": [0, 1], "referred": [5, 5], "infused": [4, 5],
                      "died": [1, 0]})
    b = a.assign(out_of_specification=[0, 1], infused=[4, 4])
    groups = plots.outcome_groups({"a": a, "b": b})
    assert groups == {"infused": ["infused"], "died": ["died"], "ineligible": ["ineligible"],
                      "other_losses": ["out_of_specification"]}
    assert "unresolved" in plots.outcome_groups({"a": a.assign(unresolved=[0, 1])})


def test_comparison_figures_write_png_svg_and_pdf(tmp_path: Path) -> None:
    patients, tables = synthetic_pair()
    paths = plots.comparison_figures(patients, tables, tmp_path, currency="HKD",
                                     footer="2 scenarios · 3 replications · seed 1", dpi=40)
    assert sorted(paths) == sorted(tmp_path / f"{stem}.{ext}"
                                   for stem in plots.COMPARISON_FIGURES
                                   for ext in ("png", "svg", "pdf"))
    for path in paths:
        head = path.read_bytes()[:2000]
        assert {".png": head.startswith(b"\x89PNG"), ".svg": b"<svg" in head,
                ".pdf": head.startswith(b"%PDF")}[path.suffix], path
    # PDFs are reproducible too (no creation date), so manifests hash the same figure alike.
    first, second = (plots.save_figure(plots.compare_outcomes_figure(tables), tmp_path / d, "o",
                                       ("pdf",))[0] for d in "12")
    assert first.read_bytes() == second.read_bytes()


def test_comparison_figures_name_scenarios_units_and_footer() -> None:
    patients, tables = synthetic_pair()
    footer = "3 replications per scenario · seed 1"
    figures = {
        "v2v": plots.compare_vein_to_vein_figure(patients, footer=footer),
        "incidence": plots.compare_cumulative_incidence_figure(patients, footer=footer),
        "attrition": plots.compare_attrition_figure(tables, footer=footer),
        "outcomes": plots.compare_outcomes_figure(tables, footer=footer),
        "cost": plots.compare_cost_figure(tables, "HKD", footer=footer),
    }
    for name, fig in figures.items():
        text = _texts(fig)
        assert footer in text, name
        assert "Fast" in text and "Slow" in text, name
    assert "(days)" in _texts(figures["v2v"])
    assert "Days since referral" in _texts(figures["incidence"])
    assert "(%)" in _texts(figures["incidence"])
    assert "HKD thousand per patient" in _texts(figures["cost"])
    assert "per 100 referred" in _texts(figures["outcomes"])
    # One attrition panel per cause that happens, titled by the cause.
    causes = [c for c in plots.OUTCOMES if c not in ("infused", "unresolved")
              and any(t[c].sum() > 0 for t in tables.values())]
    titles = [ax.get_title(loc="left") for ax in figures["attrition"].axes if ax.get_visible()]
    assert titles == [plots.outcome_label(c) for c in causes]


def _numbers(text: str) -> list[float]:
    return [float(x) for x in re.findall(r"[+-]?\d+(?:\.\d+)?", text.replace("\u2212", "-"))]


def test_outcome_and_cost_figures_show_paired_differences() -> None:
    patients, tables = synthetic_pair(replications=5)
    fast, slow = tables["Fast"], tables["Slow"]
    per_100 = {n: 100 * t["died"] / t["referred"] for n, t in tables.items()}
    expected = metrics.paired_difference(per_100["Fast"], per_100["Slow"])
    fig = plots.compare_outcomes_figure(tables)
    deltas = [t.get_text() for t in fig.axes[0].texts if t.get_text().startswith("Δ")]
    assert len(deltas) == len(plots.outcome_groups(tables))
    died = _numbers(deltas[1])  # groups: infused, died, ...
    assert died == pytest.approx(list(expected[:3]), abs=0.051)
    cost = metrics.paired_difference(fast["cost_per_infused"], slow["cost_per_infused"])
    text = _texts(plots.compare_cost_figure(tables, "HKD"))
    line = next(t for t in text.split("\n") if t.startswith("Δ"))
    assert [1000 * x for x in _numbers(line.replace(",", ""))] == pytest.approx(
        list(cost[:3]), abs=501)


def test_cumulative_incidence_lines_are_means_so_rare_losses_show() -> None:
    # Three replications of two patients; one manufacturing failure in replication 2. Final
    # shares of other losses per replication: 0, 0, 0.5 -> mean 17% (the median would be 0%).
    rows = [_patient(0, 0, "infused", 0.0, 20.0, apheresis=2.0),
            _patient(0, 1, "infused", 0.0, 25.0, apheresis=2.0),
            _patient(1, 0, "infused", 0.0, 22.0, apheresis=2.0),
            _patient(1, 1, "infused", 0.0, 30.0, apheresis=2.0),
            _patient(2, 0, "infused", 0.0, 21.0, apheresis=2.0),
            _patient(2, 1, "manufacturing_failed", 0.0, 15.0, apheresis=2.0, manufacture=3.0)]
    fig = plots.cumulative_incidence_figure(pd.DataFrame(rows, columns=_COLUMNS), "rare")
    legend = fig.axes[0].get_legend()
    labels = [t.get_text() for t in legend.get_texts()]
    assert "Infused: 83%" in labels
    assert any(label.startswith("Other losses: 17%") for label in labels)
    assert "(mean of replications)" in legend.get_title().get_text()
