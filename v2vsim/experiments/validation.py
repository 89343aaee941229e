"""External validation: run published-trial cases as virtual trials and set predictions beside
what the trials observed.

Each replication of a case is one virtual trial of the trial's own size (see
:mod:`v2vsim.scenario.cases`). For every outcome the table gives the predicted mean with its
Monte-Carlo 95% CI (a t-interval across the virtual trials: how precisely the simulation knows
the mean), the 95% range of a trial of that size (the 2.5th to 97.5th percentiles of the
virtual trials: where one real trial of that size would fall if the model were right), the
observed value with its exact (Clopper-Pearson) binomial 95% CI, the error and a verdict:
``inside`` when the observed value lies in the trial-size range. A case's sensitivity inputs are
run with the same seeds (common random numbers), so the curves are smooth in the input.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from ..engine.runner import Results, simulate
from ..metrics import t_interval
from ..scenario.cases import FRACTION_METRICS, LoadedCase, metric_unit

__all__ = [
    "CaseResult",
    "SENSITIVITY_COLUMNS",
    "VALIDATION_COLUMNS",
    "binomial_interval",
    "metric_label",
    "metric_values",
    "run_case",
    "run_cases",
    "validation_points",
]

VALIDATION_COLUMNS = (
    "case", "trial", "metric", "label", "unit", "trial_size", "replications",
    "predicted_mean", "predicted_ci_low", "predicted_ci_high", "trial_low", "trial_high",
    "observed", "observed_k", "observed_n", "observed_ci_low", "observed_ci_high",
    "error", "error_unit", "verdict", "observed_source", "mechanism",
)
SENSITIVITY_COLUMNS = (
    "case", "trial", "metric", "label", "unit", "path", "input_label", "value", "baseline",
    "mechanism", "predicted_mean", "predicted_ci_low", "predicted_ci_high", "trial_low",
    "trial_high", "observed", "observed_ci_low", "observed_ci_high",
)

_LABELS = {
    "infused_fraction": "Infused, % of enrolled",
    "not_infused_fraction": "Not infused, % of enrolled",
    "died_fraction": "Died before infusion, % of enrolled",
    "ineligible_fraction": "Became ineligible, % of enrolled",
    "manufacturing_failed_fraction": "Manufacturing failed, % of enrolled",
    "out_of_specification_fraction": "Out of specification, % of enrolled",
    "vein_to_vein_median": "Apheresis to infusion, median (days)",
    "vein_to_vein_mean": "Apheresis to infusion, mean (days)",
    "referral_to_infusion_median": "Enrolment to infusion, median (days)",
    "referral_to_infusion_mean": "Enrolment to infusion, mean (days)",
}


def metric_label(metric: str) -> str:
    """The metric in words, with its unit."""
    if metric in _LABELS:
        return _LABELS[metric]
    return metric.removesuffix("_fraction").replace("_", " ").capitalize() + ", % of enrolled"


def binomial_interval(k: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """Exact (Clopper-Pearson) interval of a share k of n."""
    from scipy.stats import beta

    alpha = 1 - level
    low = 0.0 if k == 0 else float(beta.ppf(alpha / 2, k, n - k + 1))
    high = 1.0 if k == n else float(beta.ppf(1 - alpha / 2, k + 1, n - k))
    return low, high


def metric_values(replications: pd.DataFrame, metric: str) -> np.ndarray:
    """The metric of every virtual trial (NaN where it is undefined, e.g. nobody infused)."""
    referred = replications["referred"].to_numpy(dtype=float)
    with np.errstate(invalid="ignore", divide="ignore"):
        if metric == "not_infused_fraction":
            return 1.0 - replications["infused"].to_numpy(dtype=float) / referred
        if metric in FRACTION_METRICS:
            return replications[metric.removesuffix("_fraction")].to_numpy(dtype=float) / referred
    return replications[metric].to_numpy(dtype=float)


def _predicted(values: np.ndarray) -> dict[str, float]:
    values = values[np.isfinite(values)]
    if len(values) == 0:
        return dict.fromkeys(("predicted_mean", "predicted_ci_low", "predicted_ci_high",
                              "trial_low", "trial_high"), math.nan)
    mean, low, high, _ = t_interval(values)
    trial_low, trial_high = np.quantile(values, [0.025, 0.975])
    return {"predicted_mean": mean, "predicted_ci_low": low, "predicted_ci_high": high,
            "trial_low": float(trial_low), "trial_high": float(trial_high)}


@dataclass
class CaseResult:
    """One case's rows of the validation and sensitivity tables, and its baseline run."""

    loaded: LoadedCase
    results: Results
    rows: list[dict[str, Any]] = field(default_factory=list)
    sensitivity: list[dict[str, Any]] = field(default_factory=list)


def validation_points(cases: Sequence[LoadedCase]) -> int:
    """Runs a validation makes: each case once, plus one per sensitivity value."""
    return sum(1 + sum(len(s.values) for s in lc.case.sensitivity) for lc in cases)


def _seed(lc: LoadedCase, seed: int | None) -> int:
    if seed is not None:
        return seed
    return lc.case.seed if lc.case.seed is not None else lc.scenario.seed


def run_case(lc: LoadedCase, *, seed: int | None = None, replications: int | None = None,
             jobs: int | None = 1, engine: str = "auto",
             step: Callable[[str], None] | None = None) -> CaseResult:
    """Run a case and its sensitivity inputs; ``step(label)`` is called after each run."""
    case = lc.case
    n = replications or case.replications
    base_seed = _seed(lc, seed)
    results = simulate(lc.scenario, n, base_seed, jobs=jobs, engine=engine)
    if step:
        step(case.name)
    out = CaseResult(lc, results)
    for outcome in case.outcomes:
        obs = outcome.observed
        unit = metric_unit(outcome.metric)
        row: dict[str, Any] = {
            "case": case.name, "trial": case.title, "metric": outcome.metric,
            "label": metric_label(outcome.metric), "unit": unit,
            "trial_size": case.trial.size, "replications": n,
            **_predicted(metric_values(results.replications, outcome.metric)),
            "observed": obs.point, "observed_k": obs.k, "observed_n": obs.n,
        }
        if unit == "fraction":
            assert obs.k is not None and obs.n is not None
            row["observed_ci_low"], row["observed_ci_high"] = binomial_interval(obs.k, obs.n)
        else:
            row["observed_ci_low"] = obs.low if obs.low is not None else math.nan
            row["observed_ci_high"] = obs.high if obs.high is not None else math.nan
        scale = 100.0 if unit == "fraction" else 1.0
        row["error"] = (row["predicted_mean"] - obs.point) * scale
        row["error_unit"] = "pp" if unit == "fraction" else "days"
        inside = row["trial_low"] <= obs.point <= row["trial_high"]
        row["verdict"] = "inside" if inside else "outside"
        row["observed_source"] = outcome.source
        row["mechanism"] = (outcome.mechanism or "").strip()
        out.rows.append(row)

    own = {s.path: lc.source.value_at(s.path) if _is_set(lc, s.path) else None for s in case.sensitivity}
    for sens in case.sensitivity:
        for value, x in zip(sens.values, sens.positions):
            variant = lc.source.variant({**lc.trial_scenario, sens.path: value})
            run = simulate(variant, n, base_seed, jobs=jobs, engine=engine)
            if step:
                step(f"{case.name}: {sens.path}")
            for outcome, row in zip(case.outcomes, out.rows):
                out.sensitivity.append({
                    "case": case.name, "trial": case.title, "metric": outcome.metric,
                    "label": row["label"], "unit": row["unit"], "path": sens.path,
                    "input_label": sens.label, "value": x,
                    "baseline": _same(value, own[sens.path]) or x == sens.baseline_x,
                    "mechanism": (sens.mechanism or "").strip(),
                    **_predicted(metric_values(run.replications, outcome.metric)),
                    "observed": row["observed"], "observed_ci_low": row["observed_ci_low"],
                    "observed_ci_high": row["observed_ci_high"],
                })
    return out


def _is_set(lc: LoadedCase, dotted: str) -> bool:
    from ..scenario import ScenarioError

    try:
        lc.source.value_at(dotted)
    except ScenarioError:
        return False
    return True


def _same(value: Any, own: Any) -> bool:
    """Whether a sensitivity value is what the scenario file has (the case's own run)."""
    if own is None:
        return False
    if isinstance(value, (int, float)) and isinstance(own, (int, float)) \
            and not isinstance(value, bool) and not isinstance(own, bool):
        return float(value) == float(own)
    return value == own


def run_cases(cases: Sequence[LoadedCase], *, seed: int | None = None,
              replications: int | None = None, jobs: int | None = 1, engine: str = "auto",
              step: Callable[[str], None] | None = None) -> tuple[list[CaseResult], pd.DataFrame, pd.DataFrame]:
    """Run every case: ``(per-case results, validation table, sensitivity table)``."""
    done = [run_case(lc, seed=seed, replications=replications, jobs=jobs, engine=engine, step=step)
            for lc in cases]
    table = pd.DataFrame([r for c in done for r in c.rows], columns=list(VALIDATION_COLUMNS))
    sens = pd.DataFrame([r for c in done for r in c.sensitivity], columns=list(SENSITIVITY_COLUMNS))
    for column in ("observed_k", "observed_n"):
        table[column] = table[column].astype("Int64")
    return done, table, sens
