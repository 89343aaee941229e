"""Figures fit for a proposal: they state the statistics of the tables, say what their bands
are, fit their axes to the data, name things by their labels and use colours consistently.

Each test reads the drawn figure back (line data, patches, ticks, legend and title text) and
checks it against the summary tables or a plain computation, on short runs of the bundled
scenarios.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from matplotlib.colors import to_hex, to_rgb
from matplotlib.figure import Figure

import v2vsim
from v2vsim.outputs import figures as plots
from v2vsim.outputs.figures import economics, sites, timing
from v2vsim.scenario import read_yaml, scenario_from_dict, to_plain

ROOT = Path(__file__).resolve().parents[1]
N = 24


@pytest.fixture(scope="module")
def runs() -> dict[str, v2vsim.Results]:
    out = {}
    for stem in ("local", "overseas", "economics_local", "economics_overseas"):
        sc = v2vsim.load_scenario(ROOT / "scenarios" / f"{stem}.yaml")
        out[stem] = v2vsim.simulate(sc, N, 20250415, jobs=1)
    return out


def _summary(results: v2vsim.Results, metric: str) -> pd.Series:
    table = results.summary()
    return table.set_index("metric").loc[metric]


def _legend_texts(fig: Figure) -> list[str]:
    return [t.get_text() for ax in fig.axes if ax.get_legend() for t in ax.get_legend().get_texts()]


# ------------------------------------------------------------------ 1. one definition of P90


def test_the_compare_curve_crosses_90_percent_at_the_tables_p90(runs) -> None:
    names = {r.scenario.name: r for r in (runs["local"], runs["overseas"])}
    fig = plots.compare_vein_to_vein_figure({n: r.patients for n, r in names.items()})
    ax_cdf = fig.axes[0]
    curves = [ln for ln in ax_cdf.get_lines() if len(ln.get_xdata()) > 2]
    assert len(curves) == 2
    for line, results in zip(curves, names.values()):
        x, y = np.asarray(line.get_xdata(), float), np.asarray(line.get_ydata(), float)
        for share, metric in ((90.0, "vein_to_vein_p90"), (50.0, "vein_to_vein_median")):
            [at] = np.flatnonzero(y == share)
            assert abs(x[at] - _summary(results, metric)["mean"]) < 1e-9
    # The legend gives the tables' values with their CIs, not the pooled percentiles.
    for name, results in names.items():
        p90 = _summary(results, "vein_to_vein_p90")
        text = f"P90 {p90['mean']:.1f} d ({p90['ci_low']:.1f}–{p90['ci_high']:.1f})"
        assert any(text in t for t in _legend_texts(fig)), (text, _legend_texts(fig))
    assert "pooled" in fig.axes[1].get_title(loc="left")


def test_the_run_figure_marks_the_tables_median_and_p90(runs) -> None:
    results = runs["local"]
    fig = plots.vein_to_vein_figure(results.patients, results.scenario.name)
    ax = fig.axes[0]
    solid, dashed = [ln for ln in ax.get_lines() if ln.get_linestyle() in ("-", "--")]
    assert abs(solid.get_xdata()[0] - _summary(results, "vein_to_vein_median")["mean"]) < 1e-9
    assert abs(dashed.get_xdata()[0] - _summary(results, "vein_to_vein_p90")["mean"]) < 1e-9
    assert "all replications pooled" in ax.get_ylabel()


def test_quantile_average_is_the_mean_of_each_replications_quantiles() -> None:
    patients = pd.DataFrame({"replication": [0, 0, 0, 1, 1, 2], "outcome": "infused",
                             "vein_to_vein_days": [10.0, 12.0, 20.0, 11.0, 13.0, 30.0]})
    probs, mean, low, high, n = timing.quantile_average(patients, "vein_to_vein_days",
                                                        probs=np.array([0.0, 0.5, 0.9, 1.0]))
    assert n == 3
    want = np.mean([np.quantile([10, 12, 20], probs), np.quantile([11, 13], probs),
                    np.quantile([30.0], probs)], axis=0)
    np.testing.assert_allclose(mean, want)
    assert np.all(low <= mean) and np.all(mean <= high)


# ------------------------------------------------------------------ 2. bands say what they are


def test_run_and_compare_incidence_figures_label_the_same_band(runs) -> None:
    r, o = runs["local"], runs["overseas"]
    run = plots.cumulative_incidence_figure(r.patients, r.scenario.name)
    compare = plots.compare_cumulative_incidence_figure({r.scenario.name: r.patients,
                                                         o.scenario.name: o.patients})
    want = plots.band_label(0.95)
    assert want in _legend_texts(run)
    assert want in _legend_texts(compare)
    assert "CI of the mean" in want
    assert not any("middle 95%" in t.lower() for t in _legend_texts(run) + _legend_texts(compare))


# ------------------------------------------------------------------ 3. axes fit the data


def test_vein_to_vein_axes_end_near_the_data(runs) -> None:
    r = runs["local"]
    v2v = r.patients.query("outcome == 'infused'")["vein_to_vein_days"].dropna().to_numpy()
    fig = plots.vein_to_vein_figure(r.patients, r.scenario.name)
    ax = fig.axes[0]
    low, high = ax.get_xlim()
    assert math.floor(v2v.min()) - 1 <= low <= v2v.min() and low > 0  # no empty 0-11 days
    assert high == plots.tail_limit(v2v, 97.5) < v2v.max()
    tallest = max(p.get_height() for p in ax.patches)
    assert ax.get_ylim()[1] == pytest.approx(tallest * 1.08)  # not 1.6x for a legend
    compare = plots.compare_vein_to_vein_figure({"a": r.patients})
    assert compare.axes[0].get_xlim() == (low, high)


def test_cost_axis_ends_near_the_longest_bar_with_separators(runs) -> None:
    reps = {r.scenario.name: r.replications for r in (runs["local"], runs["overseas"])}
    fig = plots.compare_cost_figure(reps, "HKD")
    fig.canvas.draw()
    ax = fig.axes[0]
    longest = max(p.get_width() for p in ax.patches)
    assert ax.get_xlim()[1] < 1.15 * longest
    labels = [t.get_text() for t in fig.axes[-1].get_xticklabels() if t.get_text()]
    assert any("," in t for t in labels), labels


def test_percent_axes_stop_above_the_data(runs) -> None:
    r = runs["local"]
    fig = plots.cumulative_incidence_figure(r.patients, r.scenario.name)
    ax = fig.axes[0]
    top = max(float(np.nanmax(ln.get_ydata())) for ln in ax.get_lines() if len(ln.get_ydata()))
    assert top < ax.get_ylim()[1] < 100  # the infused curve ends near 82%: no empty top


def test_time_axes_show_dates_from_the_start_date(runs) -> None:
    r = runs["local"]
    display = plots.scenario_display(r.scenario)
    fig = plots.site_timeline_figure(r.site_profile, r.scenario.name, display=display)
    fig.canvas.draw()
    ax = fig.axes[0]
    assert ax.get_xlabel().startswith("Date")
    ticks = [t.get_text() for t in ax.get_xticklabels() if t.get_text()]
    assert ticks and all(t[-4:].isdigit() and t[-4:].startswith("20") for t in ticks), ticks
    plain = plots.site_timeline_figure(r.site_profile, r.scenario.name)
    assert plain.axes[0].get_xlabel() == "Simulation day"
    journey = plots.journey_figure(r.events, r.scenario.name, relative=False, display=display)
    assert journey.axes[0].get_xlabel().startswith("Date")


def test_footers_are_readable_on_a_slide() -> None:
    fig = plots.attrition_funnel_figure(pd.DataFrame(columns=["replication", "outcome",
                                                              "apheresis_day",
                                                              "manufacture_start_day",
                                                              "release_day"]),
                                        "x", footer="Scenario: x · 10 replications")
    [footer] = [t for t in fig.texts if t.get_text().startswith("Scenario: x")]
    assert footer.get_fontsize() >= 9


# ------------------------------------------------------------------ 5. sites


def test_one_slot_site_shows_monthly_busy_share_not_a_0_to_1_band(runs) -> None:
    r = runs["local"]
    assert r.scenario.sites["hkib"].slots == 1
    fig = plots.site_timeline_figure(r.site_profile, r.scenario.name,
                                     display=plots.scenario_display(r.scenario))
    ax_use, ax_queue = fig.axes[:2]
    [(x, low, mid, high)] = [b for b in _step_bands(ax_use)]
    # The band is the CI of a monthly mean (24 replications here): nowhere near the 0-100% of
    # a band across replications of the daily slots in use.
    assert np.nanmedian(high - low) < 50
    assert np.all((low >= 0) & (high <= 100))
    assert ax_use.get_ylabel() == "Slot time in use (%)"
    title = ax_use.get_title(loc="left")
    assert title.startswith("HKIB (Hong Kong Institute of Biotechnology)") and "hkib" not in title
    legend = " ".join(_legend_texts(fig))
    assert "median day" in legend and "90th percentile" in legend


def _step_bands(ax):
    """(x, low, mid, high) per month of each post-step band drawn with draw_band."""
    polys = [c for c in ax.collections if c.get_paths()]
    lines = [ln for ln in ax.get_lines() if len(ln.get_xdata()) > 1]
    for poly, line in zip(polys, lines):
        v = poly.get_paths()[0].vertices
        d = (len(v) - 3) // 2
        yield (np.asarray(line.get_xdata(), float), v[1:d + 1, 1][::2],
               np.asarray(line.get_ydata(), float), v[d + 2:2 * d + 2, 1][::-1][::2])


def test_month_starts_follow_the_calendar() -> None:
    import datetime as dt

    edges = sites.month_starts(0.0, 60.0, dt.date(2025, 1, 6))
    assert edges.tolist() == [-5.0, 26.0, 54.0, 85.0]  # 1 Jan, 1 Feb, 1 Mar, 1 Apr 2025
    assert sites.month_starts(0.0, 61.0, None).tolist() == pytest.approx([0, 30.4375, 60.875])


# ------------------------------------------------------------------ 6. display labels


def _without_labels(plain: dict) -> dict:
    for site in plain.get("sites", {}).values():
        site.pop("label", None)
    for cohort in plain["cohorts"]:
        cohort.pop("label", None)
    for pathway in plain["pathways"].values():
        for step in pathway["steps"]:
            step.pop("label", None)
    return plain


def test_labels_are_display_only() -> None:
    path = ROOT / "scenarios" / "local.yaml"
    labelled = v2vsim.load_scenario(path)
    assert labelled.sites["hkib"].label
    plain = scenario_from_dict(_without_labels(to_plain(read_yaml(path.read_text(), str(path)))),
                               str(path))
    assert plain.sites["hkib"].label is None and plain.cohorts[0].label is None
    a = v2vsim.simulate(labelled, 3, 7, jobs=1)
    b = v2vsim.simulate(plain, 3, 7, jobs=1)
    pd.testing.assert_frame_equal(a.patients, b.patients)
    pd.testing.assert_frame_equal(a.replications, b.replications)
    pd.testing.assert_frame_equal(a.site_days, b.site_days)
    # Without labels, figures show the keys as they are.
    assert plots.scenario_display(plain).site("hkib") == "hkib"
    assert plots.scenario_display(labelled).site("hkib") == labelled.sites["hkib"].label


def test_labels_are_described_in_the_schema() -> None:
    from v2vsim.scenario.json_schema import scenario_json_schema

    text = str(scenario_json_schema())
    assert text.count("Display only: it changes no result.") >= 3


def test_journey_lanes_name_cohorts_by_label(runs) -> None:
    r = runs["local"]
    fig = plots.journey_figure(r.events, r.scenario.name, relative=True,
                               display=plots.scenario_display(r.scenario))
    lanes = [t.get_text() for t in fig.axes[0].get_yticklabels()]
    assert lanes and all(("Paediatric ALL" in t) or ("Adult LBCL" in t) for t in lanes)


# ------------------------------------------------------------------ 7. colours


def _lab(colour: str) -> np.ndarray:
    c = np.array(to_rgb(colour))
    c = np.where(c > 0.04045, ((c + 0.055) / 1.055) ** 2.4, c / 12.92)
    m = np.array([[0.4124, 0.3576, 0.1805], [0.2126, 0.7152, 0.0722], [0.0193, 0.1192, 0.9505]])
    x = m @ c / np.array([0.95047, 1.0, 1.08883])
    f = np.where(x > 0.008856, np.cbrt(x), 7.787 * x + 16 / 116)
    return np.array([116 * f[1] - 16, 500 * (f[0] - f[1]), 200 * (f[1] - f[2])])


def test_step_and_cost_colours_are_apart_from_outcome_colours() -> None:
    outcome = list(plots.OUTCOME_COLORS.values())
    assert len(set(outcome)) == len(outcome)
    for colour in [*plots.KIND_COLORS.values(), *economics.CATEGORY_COLORS.values()]:
        distance = min(np.linalg.norm(_lab(colour) - _lab(o)) for o in outcome)
        assert distance >= 15, colour
    # The case that was seen: the ineligible marker looked like a release bar.
    assert plots.KIND_COLORS["release"] != plots.OUTCOME_COLORS["ineligible"]


def test_journey_draws_the_fixed_colours(runs) -> None:
    r = runs["local"]
    fig = plots.journey_figure(r.events, r.scenario.name, relative=True)
    handles = fig.axes[0].get_legend().legend_handles
    texts = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    for handle, text in zip(handles, texts):
        if text == "Infused":
            assert to_hex(handle.get_color()) == plots.OUTCOME_COLORS["infused"].lower()
        if text == "Manufacture":
            assert to_hex(handle.get_facecolor()) == plots.KIND_COLORS["manufacture"].lower()


# ------------------------------------------------------------------ 8. cost breakdown


def test_cost_breakdown_bars_are_the_mean_cost_per_referred_by_category(runs) -> None:
    e = runs["economics_local"]
    referred = e.replications.set_index("replication")["referred"]
    fig = plots.cost_breakdown_figure({e.scenario.name: e.budget}, {e.scenario.name: referred},
                                      e.scenario.currency)
    ax = fig.axes[0]
    per_rep = e.budget.groupby(["replication", "category"], observed=True)["cost"].sum().unstack()
    per_rep = per_rep.reindex(referred.index).fillna(0.0).div(referred, axis=0)
    labels = [t.get_text() for t in ax.get_yticklabels()]
    bars = {label: p.get_width() for label, p in zip(labels, ax.patches)}
    for category, label in economics.CATEGORY_LABELS.items():
        if label in bars:
            assert bars[label] == pytest.approx(per_rep[category].mean() / 1e3)
    assert "HKD thousand" in ax.get_xlabel()
    fig.canvas.draw()
    assert any("," in t.get_text() for t in ax.get_xticklabels()) or ax.get_xlim()[1] < 1000


def test_cost_breakdown_is_written_by_run_and_compare(runs, tmp_path: Path) -> None:
    e, o = runs["economics_local"], runs["economics_overseas"]
    paths = plots.run_figures(e.patients, e.site_profile, e.events, e.scenario.name,
                              tmp_path / "run", scenario=e.scenario, budget=e.budget)
    assert {p.name for p in paths} >= {"cost_breakdown.png", "cost_breakdown.svg"}
    without = plots.run_figures(e.patients, e.site_profile, e.events, e.scenario.name,
                                tmp_path / "plain")
    assert not any(p.stem == "cost_breakdown" for p in without)
    cmp = plots.comparison_figures({r.scenario.name: r.patients for r in (e, o)},
                                   {r.scenario.name: r.replications for r in (e, o)},
                                   tmp_path / "cmp", currency="HKD", formats=("png",), dpi=72,
                                   budgets={r.scenario.name: r.budget for r in (e, o)})
    assert "cost_breakdown.png" in {p.name for p in cmp}
    fig = plots.cost_breakdown_figure(
        {r.scenario.name: r.budget for r in (e, o)},
        {r.scenario.name: r.replications.set_index("replication")["referred"] for r in (e, o)},
        "HKD")
    # Stacked: each scenario's segments add up to its mean total.
    ax = fig.axes[0]
    for k, r in enumerate((e, o)):
        row = [p for p in ax.patches if abs(p.get_y() + p.get_height() / 2 - k) < 1e-9]
        total = economics.cost_breakdown(r.budget, r.replications.set_index("replication")
                                         ["referred"]).sum(axis=1).mean()
        assert sum(p.get_width() for p in row) == pytest.approx(total / 1e3)
