"""The decision analysis of a probabilistic sensitivity analysis, on arrays of parameter sets.

``cost`` and ``qalys`` are ``(sets, options)`` arrays (per referred patient), the first option
the comparator; ``wtp`` an array of thresholds. Net monetary benefit, the acceptability curve
and its frontier, the EVPI, and the EVPPI by single-parameter regression (Strong, Oakley &
Brennan 2014) with a penalised cubic regression spline: the methods are described in
:mod:`.psa`, which runs the sets.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["ceac_table", "evpi_table", "evppi", "evppi_table", "nmb", "smooth_fit", "summary_table"]


def nmb(cost: np.ndarray, qalys: np.ndarray, wtp: np.ndarray) -> np.ndarray:
    """Net monetary benefit ``(wtp, sets, options)``."""
    return wtp[:, None, None] * qalys[None, :, :] - cost[None, :, :]


def summary_table(cost: np.ndarray, qalys: np.ndarray, names: Sequence[str],
                  life_years: np.ndarray | None = None) -> pd.DataFrame:
    """Per option: mean cost, QALYs (and LYs) over the sets, with 2.5% and 97.5% percentiles,
    and the mean incremental values against the first option (``ICER`` of the means)."""
    rows = []
    for j, name in enumerate(names):
        row: dict[str, Any] = {"scenario": name}
        pairs = [("cost", cost), ("qalys", qalys)] + ([("life_years", life_years)] if life_years is not None else [])
        for label, m in pairs:
            row[f"{label}_mean"] = float(np.mean(m[:, j]))
            row[f"{label}_p2_5"], row[f"{label}_p97_5"] = (float(v) for v in np.percentile(m[:, j], [2.5, 97.5]))
        if j > 0:
            for label, m in pairs:
                d = m[:, j] - m[:, 0]
                row[f"incremental_{label}_mean"] = float(np.mean(d))
                row[f"incremental_{label}_p2_5"], row[f"incremental_{label}_p97_5"] = (
                    float(v) for v in np.percentile(d, [2.5, 97.5]))
            dc, dq = row["incremental_cost_mean"], row["incremental_qalys_mean"]
            row["icer"] = dc / dq if dq > 0 and dc > 0 else math.nan
            row["dominance"] = _dominance(name, names[0], dc, dq)
        rows.append(row)
    return pd.DataFrame(rows)


def _dominance(name: str, comparator: str, dc: float, dq: float) -> str:
    if dq >= 0 and dc <= 0:
        return f"{name} dominates {comparator} (cheaper and more effective on average)"
    if dq <= 0 and dc >= 0:
        return f"{name} is dominated by {comparator} (dearer and less effective on average)"
    if dq > 0:
        return f"{name} costs more and gains QALYs: ICER {dc / dq:,.0f} per QALY"
    return f"{name} saves money and loses QALYs: {dc / dq:,.0f} saved per QALY lost"


def ceac_table(cost: np.ndarray, qalys: np.ndarray, wtp: np.ndarray, names: Sequence[str]) -> pd.DataFrame:
    """Per ``wtp`` and option: the share of sets in which the option has the highest NMB
    (``probability_cost_effective``; ties go to the earlier option), its expected NMB and
    whether it is on the frontier (the highest expected NMB at that ``wtp``)."""
    values = nmb(cost, qalys, wtp)
    best = values.argmax(axis=2)  # (wtp, sets)
    expected = values.mean(axis=1)  # (wtp, options)
    frontier = expected.argmax(axis=1)
    rows = []
    for i, w in enumerate(wtp):
        for j, name in enumerate(names):
            rows.append({"wtp": float(w), "scenario": name, "probability_cost_effective": float(np.mean(best[i] == j)),
                         "expected_nmb": float(expected[i, j]), "on_frontier": bool(frontier[i] == j)})
    return pd.DataFrame(rows)


def evpi_table(cost: np.ndarray, qalys: np.ndarray, wtp: np.ndarray, per_year: float) -> pd.DataFrame:
    """Per ``wtp``: EVPI per patient ``E[max NMB] - max E[NMB]`` and per year of referrals."""
    values = nmb(cost, qalys, wtp)
    evpi = values.max(axis=2).mean(axis=1) - values.mean(axis=1).max(axis=1)
    evpi = _clean(evpi, values)
    return pd.DataFrame({"wtp": wtp.astype(float), "evpi_per_patient": evpi,
                         "referrals_per_year": per_year, "evpi_per_year": evpi * per_year})


def smooth_fit(x: np.ndarray, y: np.ndarray, max_knots: int = 10) -> np.ndarray:
    """Fitted values of a penalised cubic regression spline of ``y`` on ``x``: the basis
    ``1, x, x^2, x^3, (x - k_i)_+^3`` (``x`` scaled to [0, 1], knots at quantiles), a ridge
    penalty ``lambda * sum(b_i^2)`` on the truncated terms only, ``lambda`` minimising the
    generalised cross-validation score ``n RSS / (n - tr H)^2`` on a grid. The intercept is
    not penalised, so the fitted values average to the mean of ``y``."""
    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    n = len(y)
    span = float(np.ptp(x)) if n else 0.0
    if n < 3 or span == 0.0 or not np.isfinite(span):
        return np.full(n, float(np.mean(y)) if n else math.nan)
    t = (x - x.min()) / span
    unique = np.unique(t)
    degree = min(3, len(unique) - 1)
    columns = [t ** d for d in range(degree + 1)]
    n_knots = min(max_knots, max(0, len(unique) - 5), max(0, n // 10))
    if n_knots:
        knots = np.unique(np.quantile(unique, np.linspace(0, 1, n_knots + 2)[1:-1]))
        columns += [np.clip(t - k, 0.0, None) ** 3 for k in knots]
    basis = np.column_stack(columns)
    penalty = np.zeros(basis.shape[1])
    penalty[degree + 1:] = 1.0
    btb = basis.T @ basis
    bty = basis.T @ y
    if not penalty.any():
        beta = np.linalg.lstsq(basis, y, rcond=None)[0]
        return basis @ beta
    scale = float(np.mean(np.diag(btb)[degree + 1:])) or 1.0
    best: tuple[float, np.ndarray] | None = None
    for log_lambda in np.linspace(-8, 6, 29):
        a = btb + (10.0 ** log_lambda) * scale * np.diag(penalty)
        try:
            beta = np.linalg.solve(a, bty)
            trace = float(np.trace(np.linalg.solve(a, btb)))
        except np.linalg.LinAlgError:
            continue
        fitted = basis @ beta
        rss = float(np.sum((y - fitted) ** 2))
        if n - trace <= 0.5:
            continue
        score = n * rss / (n - trace) ** 2
        if best is None or score < best[0]:
            best = (score, fitted)
    if best is None:
        return np.full(n, float(np.mean(y)))
    fitted = best[1]
    return fitted + (float(np.mean(y)) - float(np.mean(fitted)))  # exact mean (rounding)


def evppi(cost: np.ndarray, qalys: np.ndarray, wtp: np.ndarray, x: np.ndarray) -> np.ndarray:
    """EVPPI per patient of the parameter with values ``x`` (by set), per ``wtp``."""
    d_cost = cost[:, 1:] - cost[:, :1]
    d_qalys = qalys[:, 1:] - qalys[:, :1]
    g_cost = np.column_stack([smooth_fit(x, d_cost[:, j]) for j in range(d_cost.shape[1])])
    g_qalys = np.column_stack([smooth_fit(x, d_qalys[:, j]) for j in range(d_qalys.shape[1])])
    inb = wtp[:, None, None] * g_qalys[None] - g_cost[None]  # (wtp, sets, options - 1)
    with_ref = np.concatenate([np.zeros(inb.shape[:2] + (1,)), inb], axis=2)
    value = with_ref.max(axis=2).mean(axis=1) - with_ref.mean(axis=1).max(axis=1)
    return _clean(value, nmb(cost, qalys, wtp))


def _clean(value: np.ndarray, values: np.ndarray) -> np.ndarray:
    """``E[max] - max E`` is >= 0 (Jensen); a difference within rounding of the NMBs' size is 0."""
    size = np.abs(values).mean(axis=(1, 2)) if values.size else np.zeros(len(value))
    return np.where(value <= 1e-9 * np.maximum(size, 1.0), 0.0, value)


def evppi_table(cost: np.ndarray, qalys: np.ndarray, wtp: np.ndarray, values: Mapping[str, np.ndarray],
                per_year: float, evpi: pd.DataFrame | None = None) -> pd.DataFrame:
    """Per parameter and ``wtp``: EVPPI per patient and per year, and its share of the EVPI."""
    frames = []
    for key, x in values.items():
        v = evppi(cost, qalys, wtp, np.asarray(x, dtype=float))
        frame = pd.DataFrame({"parameter": key, "wtp": wtp.astype(float), "evppi_per_patient": v,
                              "evppi_per_year": v * per_year})
        if evpi is not None:
            with np.errstate(divide="ignore", invalid="ignore"):
                frame["share_of_evpi"] = np.where(evpi["evpi_per_patient"] > 0,
                                                  v / evpi["evpi_per_patient"].to_numpy(), math.nan)
        frames.append(frame)
    if not frames:
        return pd.DataFrame(columns=["parameter", "wtp", "evppi_per_patient", "evppi_per_year", "share_of_evpi"])
    return pd.concat(frames, ignore_index=True)
