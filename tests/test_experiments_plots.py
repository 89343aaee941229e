"""Experiment figures: built from tidy tables (no simulation), one panel per quantity asked."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from v2vsim.outputs.figures import experiments as px
from v2vsim.experiments import Target
from v2vsim.outputs.figures import save_figure


def sweep_frame() -> pd.DataFrame:
    rows = []
    for point, (slots, rate) in enumerate((s, r) for s in (1, 2, 3) for r in (20, 30)):
        for metric, mean in (("infused_fraction", 0.7 + 0.05 * slots), ("queue_wait_mean", 10 / slots + rate / 10),
                             ("utilization_plant", 0.9 / slots)):
            rows.append({"point": point, "sites.plant.slots": slots, "arrivals.rate_per_year": rate,
                         "metric": metric, "mean": mean, "ci_low": mean * 0.95, "ci_high": mean * 1.05, "n": 10})
    return pd.DataFrame(rows)


def visible_axes(fig) -> list:  # type: ignore[no-untyped-def]
    return [ax for ax in fig.axes if ax.get_visible() and ax.get_label() != "<colorbar>"]


def test_sweep_curves_one_panel_per_metric_one_line_per_group(tmp_path: Path) -> None:
    fig = px.sweep_curves_figure(sweep_frame(), "sites.plant.slots", ["infused_fraction", "queue_wait_mean", "nope"],
                                 group=["arrivals.rate_per_year"], scenario_name="t", footer="f")
    axes = visible_axes(fig)
    assert len(axes) == 2
    assert len(axes[0].lines) == 2  # one mean line per arrival rate
    x, y = axes[0].lines[0].get_data()
    assert list(x) == [1, 2, 3] and np.allclose(y, [75, 80, 85])  # fractions shown as percentages
    assert {p.suffix for p in save_figure(fig, tmp_path, "curves")} == {".png", ".svg"}


def test_heatmap_cells_are_the_means() -> None:
    fig = px.sweep_heatmap_figure(sweep_frame(), "sites.plant.slots", "arrivals.rate_per_year", "queue_wait_mean")
    image = fig.axes[0].images[0].get_array()
    assert image.shape == (2, 3)
    assert image[0, 0] == pytest.approx(10 + 2) and image[1, 2] == pytest.approx(10 / 3 + 3)


def test_scatter_tornado_morris_sobol_and_capacity_figures() -> None:
    frame = sweep_frame()
    assert len(visible_axes(px.sweep_scatter_figure(frame, ["sites.plant.slots", "arrivals.rate_per_year"],
                                                    "infused_fraction"))) == 2
    oat = pd.DataFrame([{"parameter": "a.b", "base_value": 1, "low": 0, "high": 2, "metric": "m", "base_mean": 0.5,
                         "low_mean": 0.4, "low_ci_low": 0.35, "low_ci_high": 0.45, "high_mean": 0.7,
                         "high_ci_low": 0.65, "high_ci_high": 0.75, "swing": 0.3}])
    fig = px.tornado_figure(oat, "infused_fraction")
    assert len(fig.axes[0].patches) == 2
    morris = pd.DataFrame({"parameter": ["a", "b"], "metric": "m", "mu": [0.1, 0.0], "mu_star": [0.1, 0.0],
                           "mu_star_conf": [0.02, 0.0], "sigma": [0.05, 0.0]})
    assert len(visible_axes(px.morris_figure(morris, "infused_fraction"))) == 2
    sobol = pd.DataFrame({"parameter": ["a", "b"], "metric": "m", "S1": [0.6, 0.0], "S1_conf": [0.1, 0.01],
                          "ST": [0.7, 0.0], "ST_conf": [0.1, 0.01]})
    assert len(px.sobol_figure(sobol, "infused_fraction").axes[0].patches) == 4
    curve = frame[frame["arrivals.rate_per_year"] == 20].rename(columns={"sites.plant.slots": "slots"})
    fig = px.capacity_figure(curve, [Target("queue_wait_mean", "<=", 7.0)], "plant", 2)
    assert len(visible_axes(fig)) == 2  # the target's metric and the site's utilisation
