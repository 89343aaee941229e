"""Experiment figures read back from their Axes: axes fitted to the data, whole-number ticks for
whole-number parameters, one colour convention for better and worse, no empty panels, and
statistics that cannot be trusted said so on the figure. No simulation: tidy tables in."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import matplotlib.pyplot as plt
import pytest
from matplotlib.colors import to_hex

from v2vsim.experiments import Target
from v2vsim.experiments.sensitivity import sobol_diagnostics
from v2vsim.outputs.figures import experiments as px

from test_experiments_sensitivity import TINY as SENSITIVITY_TINY


def frame(metric_values: dict[str, list[float]], x: str = "sites.plant.slots", xs: Any = (1, 2, 3, 4),
          half_width: float = 0.0) -> pd.DataFrame:
    rows = []
    for point, value in enumerate(xs):
        for metric, means in metric_values.items():
            mean = means[point]
            rows.append({"point": point, x: value, "metric": metric, "mean": mean,
                         "ci_low": mean - half_width, "ci_high": mean + half_width, "n": 10})
    return pd.DataFrame(rows)


def sobol(s1: list[float], s1_conf: list[float], st: list[float], st_conf: list[float]) -> pd.DataFrame:
    return pd.DataFrame({"parameter": [f"p{i}" for i in range(len(s1))], "metric": "m", "S1": s1,
                         "S1_conf": s1_conf, "ST": st, "ST_conf": st_conf})


def all_text(fig: Any) -> str:
    parts = [t.get_text() for t in fig.texts]
    for ax in fig.axes:
        parts += [t.get_text() for t in ax.texts]
        parts += [ax.get_title(loc) for loc in ("left", "center", "right")]
        legend = ax.get_legend()
        if legend is not None:
            parts += [t.get_text() for t in legend.get_texts()]
    return "\n".join(parts)


# ------------------------------------------------------------------------------ Sobol


def test_precise_consistent_sobol_indices_raise_no_warning() -> None:
    diagnosis = sobol_diagnostics(sobol([0.5, 0.3], [0.03, 0.02], [0.6, 0.35], [0.04, 0.03]), 256)
    assert diagnosis.trustworthy and diagnosis.problems == () and diagnosis.lines() == []
    assert diagnosis.recommended_samples is None


def test_negative_and_first_above_total_beyond_their_cis_are_problems() -> None:
    diagnosis = sobol_diagnostics(sobol([-0.2, 0.6], [0.04, 0.02], [0.1, 0.4], [0.03, 0.02]), 64)
    assert len(diagnosis.problems) == 2
    assert "S1 of p0 is negative" in diagnosis.problems[0]
    assert "S1 of p1 exceeds its ST" in diagnosis.problems[1]
    # CIs already as narrow as the target: an impossible value still asks for more samples.
    assert diagnosis.recommended_samples == 128
    assert diagnosis.lines()[0].startswith("Sample too small")


def test_values_within_their_cis_of_the_possible_range_are_not_problems() -> None:
    # S1 a little above ST and a little below 0, both within their CIs: noise, not impossible.
    diagnosis = sobol_diagnostics(sobol([-0.02, 0.42], [0.04, 0.04], [0.05, 0.40], [0.04, 0.04]), 512)
    assert diagnosis.problems == ()
    assert diagnosis.trustworthy


@pytest.mark.parametrize(("n", "half_width", "expected"), [
    (64, 0.2, 1024),     # 64 x (0.2 / 0.05)^2 = 1024, already a power of 2
    (64, 0.15, 1024),    # 64 x 9 = 576, rounded up to 1024
    (16, 1.03, 8192),    # 16 x 424.4 = 6790, rounded up to 8192
    (256, 0.06, 512),    # 256 x 1.44 = 369, rounded up to 512
])
def test_recommended_base_samples_follow_the_inverse_square_root_rule(n: int, half_width: float,
                                                                      expected: int) -> None:
    diagnosis = sobol_diagnostics(sobol([0.5], [half_width], [0.6], [half_width / 2]), n)
    assert diagnosis.widest == pytest.approx(half_width)
    assert diagnosis.recommended_samples == expected
    assert f"--samples {expected} (now {n})" in " ".join(diagnosis.lines())


def test_sobol_axis_fits_the_indices_and_cuts_runaway_whiskers() -> None:
    fig = px.sobol_figure(sobol([0.55, 0.3], [0.04, 0.03], [0.62, 0.35], [0.04, 0.03]), "queue_wait_mean")
    left, right = fig.axes[0].get_xlim()
    assert -0.05 < left <= 0 and 0.66 <= right < 0.72  # the data (to 0.66) and a small margin
    # A small sample: whiskers from -0.3 to 2.06 do not stretch the axis past 0-1 by much.
    fig = px.sobol_figure(sobol([0.69, 0.32], [0.98, 0.58], [1.03, 0.2], [1.03, 0.18]), "queue_wait_mean")
    left, right = fig.axes[0].get_xlim()
    assert -0.3 < left < 0 and 1.0 < right < 1.3
    arrows = [line for line in fig.axes[0].lines if line.get_marker() in (">", "<")]
    assert len(arrows) == 4  # the whiskers cut at the edges are marked
    labels = [t.get_text() for t in fig.axes[0].get_yticklabels()]
    assert any("ST 1.03 ± 1.03" in text for text in labels)  # and their values are given


def test_sobol_warning_is_shown_on_the_figure() -> None:
    indices = sobol([0.69, 0.32], [0.98, 0.58], [1.03, 0.2], [1.03, 0.18])
    lines = sobol_diagnostics(indices, 16).lines()
    fig = px.sobol_figure(indices, "queue_wait_mean", warnings=lines)
    title = fig.axes[0].get_title("left").replace("\n", " ")
    assert "Sample too small" in title and "--samples 8192" in title
    assert "Sample too small" not in all_text(px.sobol_figure(indices, "queue_wait_mean"))


# ------------------------------------------------------------------------------ Sweeps


def test_a_flat_metric_is_not_magnified_into_a_trend() -> None:
    medians = [13.99, 14.00, 13.98, 14.00]
    fig = px.sweep_curves_figure(frame({"vein_to_vein_median": medians}, half_width=0.05),
                                 "sites.plant.slots", ["vein_to_vein_median"])
    ax = fig.axes[0]
    bottom, top = ax.get_ylim()
    assert top - bottom >= 2 * px.MIN_RELATIVE_HALF_RANGE * 14.0  # at least ±5% of the level
    assert bottom < 13.93 and top > 14.05  # the CI band is inside
    assert ax.collections, "the CI band is drawn"


def test_a_metric_that_moves_keeps_its_own_range() -> None:
    waits = [11.7, 1.7, 0.6, 0.4]
    fig = px.sweep_curves_figure(frame({"queue_wait_mean": waits}, half_width=0.3),
                                 "sites.plant.slots", ["queue_wait_mean"])
    bottom, top = fig.axes[0].get_ylim()
    assert -1.0 < bottom <= 0.1 and 12.0 <= top < 13.0


def test_integer_parameters_get_integer_ticks() -> None:
    fig = px.sweep_curves_figure(frame({"queue_wait_mean": [3, 2, 1, 0.5]}, xs=(1.0, 2.0, 3.0, 4.0)),
                                 "sites.plant.slots", ["queue_wait_mean"])
    ticks = fig.axes[0].get_xticks()
    assert list(ticks) == [1, 2, 3, 4]


def test_cost_axes_have_thousands_separators() -> None:
    fig = px.sweep_curves_figure(frame({"cost_per_infused": [950_000, 930_000, 925_000, 920_000]},
                                       half_width=20_000), "sites.plant.slots", ["cost_per_infused"],
                                 currency="HKD")
    formatter = fig.axes[0].yaxis.get_major_formatter()
    assert formatter(950_000, 0) == "950,000"


def lhs_frame() -> pd.DataFrame:
    rng = np.random.default_rng(3)
    slots = rng.integers(1, 4, 60)
    rate = rng.uniform(15, 35, 60)
    mean = 10 / slots + rate / 10
    return pd.DataFrame({"point": range(60), "sites.plant.slots": slots, "arrivals.rate_per_year": rate,
                         "metric": "queue_wait_mean", "mean": mean, "ci_low": mean - 1, "ci_high": mean + 1,
                         "n": 10})


def test_lhs_scatter_spreads_points_at_whole_numbers_and_ticks_them_whole() -> None:
    table = lhs_frame()
    fig = px.sweep_scatter_figure(table, ["sites.plant.slots", "arrivals.rate_per_year"], "queue_wait_mean")
    slots_ax = fig.axes[0]
    assert list(slots_ax.get_xticks()) == [1, 2, 3]
    points = slots_ax.lines[0]
    xs = np.asarray(points.get_xdata(), dtype=float)
    at_one = xs[table["sites.plant.slots"].to_numpy() == 1]
    assert np.ptp(at_one) > 0.1 and np.all(np.abs(at_one - 1) <= 0.2)  # spread, near their value
    assert points.get_alpha() is not None and points.get_alpha() < 1
    # The continuous parameter is not jittered.
    assert np.allclose(fig.axes[1].lines[0].get_xdata(), table["arrivals.rate_per_year"])


# ------------------------------------------------------------------------------ Heatmaps


def heatmap_frame() -> pd.DataFrame:
    rows = []
    for point, (slots, rate) in enumerate((s, r) for s in (1, 2, 3) for r in (20, 30)):
        for metric, mean in (("infused_fraction", 0.7 + 0.05 * slots - rate / 1000),
                             ("queue_wait_mean", 10 / slots + rate / 10)):
            rows.append({"point": point, "sites.plant.slots": slots, "arrivals.rate_per_year": rate,
                         "metric": metric, "mean": mean, "ci_low": mean, "ci_high": mean, "n": 10})
    return pd.DataFrame(rows)


def test_heatmaps_draw_better_in_the_same_colour_whichever_way_the_metric_counts() -> None:
    table = heatmap_frame()
    good_high = px.sweep_heatmap_figure(table, "sites.plant.slots", "arrivals.rate_per_year",
                                        "infused_fraction").axes[0].images[0]
    good_low = px.sweep_heatmap_figure(table, "sites.plant.slots", "arrivals.rate_per_year",
                                       "queue_wait_mean").axes[0].images[0]

    def colour(image: Any, value: float) -> str:
        return to_hex(image.cmap(image.norm(value)))

    infused, wait = good_high.get_array(), good_low.get_array()
    assert colour(good_high, infused.max()) == colour(good_low, wait.min())  # best: same colour
    assert colour(good_high, infused.min()) == colour(good_low, wait.max())  # worst: same colour


def test_heatmap_colour_bar_says_which_way_is_worse() -> None:
    fig = px.sweep_heatmap_figure(heatmap_frame(), "sites.plant.slots", "arrivals.rate_per_year",
                                  "queue_wait_mean")
    bar = [ax for ax in fig.axes if ax.get_label() == "<colorbar>"][0]
    assert "worse" in bar.get_ylabel()
    assert px.metric_direction("queue_wait_mean") == -1 and px.metric_direction("infused_fraction") == 1
    assert px.metric_direction("utilization_plant") == 0


# ------------------------------------------------------------------------------ Morris, capacity


def test_morris_panels_fit_their_data_and_leave_no_legend_column() -> None:
    morris = pd.DataFrame({"parameter": ["a", "b", "c"], "metric": "m", "mu": [10.0, 2.0, 0.1],
                           "mu_star": [10.0, 2.0, 0.1], "mu_star_conf": [14.0, 1.0, 0.05],
                           "sigma": [1.0, 0.5, 0.0]})
    fig = px.morris_figure(morris, "queue_wait_mean")
    assert len(fig.axes) == 2
    bars, scatter = fig.axes
    assert scatter.get_legend() is None and bars.get_legend() is None
    # sigma up to 1, mu* up to 24: each axis to its own data, not one square of 24 x 24.
    assert scatter.get_ylim()[1] < 2 and scatter.get_xlim()[1] > 20
    # mu* >= 0, so its CI is cut at 0 rather than drawn to -4.
    lows = [seg[:, 0].min() for coll in bars.collections for seg in coll.get_segments()]
    assert min(lows) >= 0
    assert {t.get_text() for t in scatter.texts} == {"a", "b", "c"}  # points labelled directly


def capacity_table() -> pd.DataFrame:
    rows = []
    for slots in (1, 2, 3):
        for metric, mean in (("queue_wait_mean", 12 / slots ** 2), ("infused_fraction", 0.8 + 0.03 * slots),
                             ("utilization_plant", 0.67 / slots)):
            rows.append({"slots": slots, "metric": metric, "mean": mean, "ci_low": mean * 0.9,
                         "ci_high": mean * 1.1, "n": 10})
    return pd.DataFrame(rows)


def test_capacity_has_one_panel_per_metric_and_no_empty_one() -> None:
    targets = [Target("queue_wait_mean", "<=", 7.0), Target("infused_fraction", ">=", 0.85)]
    fig = px.capacity_figure(capacity_table(), targets, "plant", 2)
    assert len(fig.axes) == 3
    assert all(ax.get_visible() and ax.lines for ax in fig.axes)
    for ax in fig.axes:
        assert list(ax.get_xticks()) == [1, 2, 3]  # no 1.5 slots
    assert "Answer: 2 slots" in all_text(fig)


def test_capacity_without_an_answer_does_not_show_one() -> None:
    fig = px.capacity_figure(capacity_table(), [Target("queue_wait_mean", "<=", 0.001)], "plant", None)
    assert len(fig.axes) == 2
    assert "Answer" not in all_text(fig)
    assert not [line for ax in fig.axes for line in ax.lines
                if to_hex(line.get_color()) == px.OKABE_ITO["bluish_green"].lower()]


def test_capacity_legend_takes_a_free_cell_rather_than_leaving_it_empty() -> None:
    table = capacity_table()
    extra = table[table["metric"] == "queue_wait_mean"].assign(metric="died")
    extra2 = table[table["metric"] == "queue_wait_mean"].assign(metric="vein_to_vein_median")
    targets = [Target("queue_wait_mean", "<=", 7.0), Target("infused_fraction", ">=", 0.85),
               Target("died", "<=", 5.0), Target("vein_to_vein_median", "<=", 20.0)]
    fig = px.capacity_figure(pd.concat([table, extra, extra2]), targets, "plant", 2)
    panels = [ax for ax in fig.axes if ax.axison]
    holders = [ax for ax in fig.axes if not ax.axison]
    assert len(panels) == 5 and all(ax.lines for ax in panels)
    assert len(holders) == 1 and holders[0].get_legend() is not None


# ------------------------------------------------------------------------------ Tornado


def test_tornado_shows_a_low_value_equal_to_the_base() -> None:
    oat = pd.DataFrame([{"parameter": "sites.hkib.slots", "base_value": 1, "low": 1, "high": 3,
                         "metric": "infused_fraction", "base_mean": 0.829, "low_mean": 0.829,
                         "low_ci_low": 0.81, "low_ci_high": 0.85, "high_mean": 0.889, "high_ci_low": 0.87,
                         "high_ci_high": 0.90, "swing": 0.06}])
    fig = px.tornado_figure(oat, "infused_fraction")
    ax = fig.axes[0]
    markers = [line for line in ax.lines if line.get_marker() == "D"]
    assert len(markers) == 1
    assert markers[0].get_xdata()[0] == pytest.approx(82.9)
    assert to_hex(markers[0].get_color()) == px.OKABE_ITO["sky_blue"].lower()
    texts = [t.get_text() for t in ax.texts]
    assert "low = base (82.9)" in texts and "88.9" in texts
    assert len(ax.patches) == 1  # the high bar; no invisible zero-width bar


# ------------------------------------------------------------------------------ PSA


def test_psa_parameter_names_are_written_in_words() -> None:
    from v2vsim.outputs.figures import psa

    assert psa.parameter_label("lbcl_death_clock_median") == "LBCL death clock median"
    assert psa.parameter_label("icu_cost") == "ICU cost"
    assert psa.parameter_label("product_price") == "Product price"
    evppi = pd.DataFrame({"parameter": ["icu_cost", "product_price"], "wtp": 100_000.0,
                          "evppi_per_patient": [10.0, 20.0], "evppi_per_year": [200.0, 400.0],
                          "share_of_evpi": [0.2, 0.4]})
    fig = psa.evppi_figure(evppi, currency="HKD", wtp=[100_000.0])
    labels = [t.get_text() for t in fig.axes[0].get_yticklabels()]
    assert labels == ["ICU cost", "Product price"]


def test_psa_money_axes_use_a_true_minus_sign() -> None:
    from v2vsim.outputs.figures import psa

    assert psa.money(-40_000) == "\N{MINUS SIGN}40k" and psa.money(1_250_000) == "1.25M"


def test_an_all_zero_evppi_does_not_stretch_the_figure_and_evpi_has_no_empty_second_axis() -> None:
    from v2vsim.outputs.figures import psa

    names = [f"param_{i}" for i in range(13)]
    evppi = pd.DataFrame({"parameter": names, "wtp": 100_000.0, "evppi_per_patient": 0.0,
                          "evppi_per_year": 0.0, "share_of_evpi": np.nan})
    fig = psa.evppi_figure(evppi, currency="HKD", wtp=[100_000.0])
    assert fig.get_figheight() < 7.5  # 13 rows of nothing: not the 11 inches of 13 rows of bars
    evpi = pd.DataFrame({"wtp": [0.0, 50_000.0, 100_000.0], "evpi_per_patient": 0.0, "evpi_per_year": 0.0,
                         "referrals_per_year": 20.0})
    ax = psa.evpi_figure(evpi, currency="HKD").axes[0]
    assert ax.child_axes == []  # a per-patient axis of 0 to 0.05 would say nothing
    assert list(ax.get_yticks()) == [0]


# ------------------------------------------------------------------------------ the command

# The small scenario of the sensitivity tests, with 3 replications.
TINY = SENSITIVITY_TINY.replace("replications: 4", "replications: 3")


def test_sensitivity_command_warns_of_a_sobol_sample_too_small(tmp_path: Any) -> None:
    from typer.testing import CliRunner

    from v2vsim.cli import app

    path = tmp_path / "tiny.yaml"
    path.write_text(TINY, encoding="utf-8")
    out = tmp_path / "sobol"
    result = CliRunner().invoke(app, [
        "sensitivity", str(path), "--method", "sobol", "--samples", "8", "-n", "3", "-j", "1",
        "--metric", "queue_wait_mean", "--param", "sites.plant.slots", "1", "3",
        "--param", "pathways.p.steps.manufacture.duration.mode", "9", "13", "-o", str(out)])
    assert result.exit_code == 0, result.output
    indices = pd.read_csv(out / "indices.csv")
    expected = sobol_diagnostics(indices, 8)
    assert not expected.trustworthy  # 8 base samples are far too few
    output = " ".join(result.output.split())
    assert "warning: Sample too small" in output
    assert f"--samples {expected.recommended_samples} (now 8)" in output
    assert (out / "figures" / "sobol.png").is_file()


def test_parameters_and_sites_are_named_in_words_when_the_scenario_is_known() -> None:
    from v2vsim.outputs.figures.display import ScenarioDisplay

    shown = ScenarioDisplay(sites={"hkib": "HKIB (Hong Kong Institute of Biotechnology)"},
                            steps={"manufacture": "manufacture"},
                            cohorts={"adult_LBCL": "Adult LBCL"})
    assert shown.parameter("sites.hkib.slots") == "Slots at HKIB"
    assert shown.parameter("sites.hkib.cost_per_use") == "Cost per use at HKIB"
    assert shown.parameter("arrivals.rate_per_year") == "Referrals a year"
    assert shown.parameter("cohorts.adult_LBCL.time_to_death.median") == "Adult LBCL: time to death, median"
    assert shown.parameter("pathways.local.steps.manufacture.failure_probability") == \
        "Manufacture: failure probability"
    assert shown.metric("Utilisation of hkib", "utilization_hkib") == "Utilisation of HKIB"
    # Without a scenario the axis keeps the path the user typed in --set.
    table = pd.DataFrame({"point": [0, 1, 0, 1], "sites.hkib.slots": [1, 2, 1, 2],
                          "metric": ["queue_wait_mean"] * 2 + ["utilization_hkib"] * 2,
                          "mean": [10.0, 2.0, 0.7, 0.35], "ci_low": [9.0, 1.5, 0.65, 0.3],
                          "ci_high": [11.0, 2.5, 0.75, 0.4], "n": 10})
    for display, x_label, title in ((None, "sites.hkib.slots", "Utilisation of hkib"),
                                    (shown, "Slots at HKIB", "Utilisation of HKIB")):
        fig = px.sweep_curves_figure(table, "sites.hkib.slots",
                                     ["queue_wait_mean", "utilization_hkib"], display=display)
        axes = [ax for ax in fig.axes if ax.get_xlabel()]
        assert {ax.get_xlabel() for ax in axes} == {x_label}
        assert title in [ax.get_title(loc) for ax in axes for loc in ("left", "center")]
        plt.close(fig)
