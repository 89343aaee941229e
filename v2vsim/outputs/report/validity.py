"""The report's validation section, by the validity types of the ISPOR–SMDM Modeling Good Research
Practices Task Force (Eddy et al., Model transparency and validation, Med Decis Making
2012;32:733–743): face validity, verification, cross validity, external and predictive validity.

What the test suite verifies is written here as data (:data:`VERIFICATION`, naming the test
modules), so that a test can hold the text to the files it names. External validity comes from a
validation results directory (``v2vsim validation``, read by :func:`.load.load_validation`): its
table of predicted against observed, its sensitivity table and its figures.
"""

from __future__ import annotations

import math
import shlex
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import pandas as pd

from .load import ValidationDir
from .table import _MINUS, _finite, fmt_ci, fmt_value

__all__ = ["RUN_VALIDATION", "VERIFICATION", "Check", "validation_context"]

#: The commands that make a validation results directory and put it in the report.
RUN_VALIDATION: Final = ("v2vsim validation validation/*.yaml -o results/validation",
                         "v2vsim report RESULTS_DIR --validation results/validation -o report.html")


@dataclass(frozen=True)
class Check:
    """One kind of check the test suite makes, and the test modules that make it."""

    kind: str
    what: str
    files: tuple[str, ...]


#: What the test suite (``tests/`` of the source tree) checks the code against.
VERIFICATION: Final[tuple[Check, ...]] = (
    Check("Queueing theory",
          "The manufacturing site as an M/M/c queue: the mean wait against Erlang C, "
          "Wq = C(c, a) / (cμ − λ), and the slot utilisation against ρ. With patients who die "
          "while they wait or are manufactured for, the infused fraction, the mean wait and the "
          "probability of waiting against the exact Erlang-A (M/M/c+M) birth–death chain.",
          ("test_model_queueing.py", "test_model_erlang_a.py")),
    Check("Closed forms",
          "A deterministic pathway lasts the sum of its steps; with an exponential death clock a "
          "patient is infused with probability exp(−T / mean); competing death and ineligibility "
          "clocks, failure after k attempts (p^k), weekday starts and shelf life against their "
          "closed forms; bridging as a cumulative-hazard budget; survival and life-years after "
          "infusion; every distribution's mean, variance, quantiles and CDF; discounting, QALYs, "
          "the cure model and the life table by hand; ICERs, Fieller intervals and net monetary "
          "benefit from hand-made tables.",
          ("test_model_analytic.py", "test_policies_bridging.py", "test_policies_survival.py",
           "test_distributions.py", "test_economics_model.py", "test_economics_compare.py")),
    Check("Hand-worked traces",
          "A slot booked from apheresis, priorities and death clocks traced event by event; the "
          "engine's rules (slots taken together, a returned slot going to the best waiting "
          "request, expiry, retries, ties with a disease clock); site closures and capacity "
          "schedules; monthly, weekly and daily allocations (apheresis sessions); routing with "
          "overflow.",
          ("test_model_trace.py", "test_engine_rules.py", "test_policies_calendar.py",
           "test_policies_allocation.py", "test_policies_apheresis.py", "test_policies_routing.py")),
    Check("Invariants",
          "Each patient has exactly one outcome; days never go backwards; the outcome agrees with "
          "the days; a site never holds more patients than slots nor leaves a slot idle while "
          "someone queues; no patient is dropped (the unresolved are counted); more slots never "
          "lengthen the wait. Overloaded systems still end and report their unresolved patients.",
          ("test_model_invariants.py", "test_overload.py")),
    Check("Same seed, same result",
          "Common random numbers: the same seed, replication and patient give the same referral, "
          "clocks and draws in every scenario; the same scenario and seed give byte-identical "
          "files whatever the number of worker processes; worker processes and a Dask cluster "
          "give the results of one process; a resumed sweep ends with the result of an "
          "uninterrupted one.",
          ("test_model_crn.py", "test_reproducible.py", "test_experiments_parallel.py",
           "test_experiments_distributed.py", "test_experiments_resume.py")),
    Check("Identical engines",
          "The vectorised and the compiled engines against the SimPy engine (the reference) on "
          "random small scenarios: every patient column equal to the last bit, the same slot-days "
          "and trace; the slot pools against simpy.PriorityResource itself.",
          ("test_engine_vectorised.py", "test_engine_compiled.py", "test_engine_pools.py")),
    Check("Inputs",
          "Every way a scenario file can break the contract is refused as FILE:LINE: key.path: "
          "message; random mutations of the bundled scenarios never give a traceback or a hang; "
          "--set overrides equal the same edit made in the file.",
          ("test_validation.py", "test_policies_validation.py", "test_fuzz.py",
           "test_experiments_overrides.py")),
    Check("Outputs",
          "Results directories are written atomically with a sha256 manifest; the figures' "
          "counts against hand-worked values; result frames equal whichever way they travel; "
          "the report's numbers against the files it reads, its escaping of hostile text, and "
          "the page in a headless browser.",
          ("test_outputs.py", "test_plots.py", "test_results_arrays.py", "test_report.py")),
    Check("Experiments",
          "Paired comparisons against scipy's paired t-test; sweeps, one-at-a-time sensitivity, "
          "capacity searches and replications to a precision against plain runs of each variant; "
          "Morris and Sobol indices of exactly zero for an input that cannot matter; the PSA's "
          "CEAC, EVPI and EVPPI against hand computations.",
          ("test_compare.py", "test_experiments_sweep.py", "test_experiments_sensitivity.py",
           "test_experiments_capacity.py", "test_experiments_precision.py",
           "test_experiments_psa.py")),
)


# --------------------------------------------------------------------------------------------
# Formatting
# --------------------------------------------------------------------------------------------


def _text(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return str(value).strip()


def _unit(unit: Any) -> str:
    """The report's unit of a validation metric: ``%`` for fractions (stored 0–1)."""
    unit = _text(unit)
    return "%" if unit in ("fraction", "%") else unit


def _signed(value: Any, unit: str) -> str:
    if not _finite(value):
        return "–"
    x = float(value)
    sign = "+" if x > 0 else _MINUS if x < 0 else "±"
    return f"{sign}{abs(x):,.1f} {unit}".rstrip()


def _error(row: Mapping[str, Any], unit: str) -> str:
    """``error`` is already in percentage points for fractions and in days for times."""
    word = _text(row.get("error_unit")) or ("pp" if unit == "%" else unit)
    return _signed(row.get("error"), word)


def _count(value: Any) -> str:
    return f"{int(round(float(value))):,}" if _finite(value) else ""


def _input_value(value: Any) -> str:
    """An input's value as written: whole numbers without a decimal point."""
    if isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            return value
        return _input_value(number) if math.isfinite(number) else value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        x = float(value)
        if math.isfinite(x) and x == round(x) and abs(x) < 1e15:
            return f"{int(x):,}"
        return f"{x:,.4g}"
    return _text(value)


def _as_bool(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("true", "1", "yes")
    return bool(value) and _text(value) != ""


def _trial_name(row: Mapping[str, Any]) -> str:
    title = _text(row.get("trial"))
    return (title.split(" (")[0].strip() if title else "") or _text(row.get("case"))


# --------------------------------------------------------------------------------------------
# External validity
# --------------------------------------------------------------------------------------------


def _cases(table: pd.DataFrame) -> list[dict[str, Any]]:
    """Rows of ``validation.csv`` grouped by case, in order of appearance, formatted."""
    cases = []
    for case, rows in table.groupby(table["case"].astype(str), sort=False):
        first = rows.iloc[0]
        entries = []
        for _, r in rows.iterrows():
            row = r.to_dict()
            unit = _unit(row.get("unit"))
            k, n = row.get("observed_k"), row.get("observed_n")
            entries.append({
                "label": _text(row.get("label")) or _text(row.get("metric")),
                "metric": _text(row.get("metric")),
                "unit": "" if unit == "%" else unit,
                "predicted": fmt_value(row.get("predicted_mean"), unit),
                "predicted_ci": fmt_ci(row.get("predicted_ci_low"), row.get("predicted_ci_high"), unit),
                "trial_range": fmt_ci(row.get("trial_low"), row.get("trial_high"), unit) or "–",
                "observed": fmt_value(row.get("observed"), unit),
                "observed_count": f"{_count(k)} of {_count(n)}" if _finite(k) and _finite(n) else "",
                "observed_ci": fmt_ci(row.get("observed_ci_low"), row.get("observed_ci_high"), unit),
                "error": _error(row, unit),
                "verdict": _text(row.get("verdict")).lower(),
                "source": _text(row.get("observed_source")),
                "mechanism": _text(row.get("mechanism")),
            })
        size, reps = first.get("trial_size"), first.get("replications")
        cases.append({"case": case, "trial": _text(first.get("trial")) or case,
                      "trial_size": _count(size), "replications": _count(reps), "rows": entries})
    return cases


def _sensitivity(sens: pd.DataFrame | None) -> list[dict[str, Any]]:
    """One entry per case, metric and input: the values tried (the case's own marked), the
    predicted means over them, and the values at which the observed value falls inside the
    95% range of one trial of the trial's size."""
    if sens is None or not len(sens):
        return []
    frame = sens.copy()
    for key in ("case", "metric", "path"):
        frame[key] = frame[key].fillna("").astype(str)
    out = []
    for _, rows in frame.groupby(["case", "metric", "path"], sort=False):
        first = rows.iloc[0].to_dict()
        unit = _unit(first.get("unit"))
        numeric = pd.to_numeric(rows["value"], errors="coerce")
        if numeric.notna().all():
            rows = rows.assign(_x=numeric).sort_values("_x", kind="stable")
        values, inside_at = [], []
        observed_known = False
        for _, r in rows.iterrows():
            row = r.to_dict()
            text = _input_value(row.get("value"))
            values.append({"text": text, "baseline": _as_bool(row.get("baseline"))})
            obs, lo, hi = row.get("observed"), row.get("trial_low"), row.get("trial_high")
            if _finite(obs):
                observed_known = True
                if _finite(lo) and _finite(hi) and float(lo) <= float(obs) <= float(hi):
                    inside_at.append(text)
        means = pd.to_numeric(rows["predicted_mean"], errors="coerce").dropna()
        mechanism = next((m for m in (_text(v) for v in rows.get("mechanism", pd.Series(dtype=object)))
                          if m), "")
        out.append({
            "trial": _trial_name(first), "label": _text(first.get("label")) or _text(first.get("metric")),
            "input_label": _text(first.get("input_label")) or _text(first.get("path")),
            "path": _text(first.get("path")), "values": values,
            "predicted": (f"{fmt_value(means.min(), unit)} to {fmt_value(means.max(), unit)}"
                          if len(means) else "–") + ("" if unit == "%" else f" {unit}"),
            "inside_at": ", ".join(inside_at) if inside_at else (
                "none of the values tried" if observed_known else "no observed value"),
            "mechanism": mechanism,
        })
    return out


_CAPTIONS: Final = {
    "validation": (
        "Predicted against observed",
        "One row per published trial and outcome. Blue: the model's mean over the virtual "
        "trials with its 95% Monte-Carlo confidence interval (thick bar, often narrower than the "
        "dot); light blue band: the 95% range of one virtual trial of the trial's size (2.5th to "
        "97.5th percentile of the replications), where a trial of that size would fall if the "
        "model were right. Black: the value the trial observed, with its exact binomial 95% "
        "interval for proportions. On the right: inside or outside that range, and the error "
        "(predicted mean minus observed; percentage points or days)."),
    "validation_sensitivity": (
        "Predictions against inputs the trials do not report",
        "Each panel moves one input of one case: the predicted mean (line) with its 95% "
        "Monte-Carlo interval (dark band) and the 95% range of one trial of the trial's size "
        "(light band); the observed value (dashed) with its exact binomial 95% interval (grey); "
        "the case's own value ringed."),
}


def _external(validation: ValidationDir, first_figure: int, embed: Callable[[Path], str]) -> dict[str, Any]:
    table = validation.table
    verdicts = table["verdict"].fillna("").astype(str).str.strip().str.lower()
    outside = [f"{_trial_name(r.to_dict())} · {_text(r.get('label')) or _text(r.get('metric'))}"
               for (_, r), v in zip(table.iterrows(), verdicts) if v == "outside"]
    figures = []
    for number, path in enumerate(validation.figures, start=first_figure):
        title, caption = _CAPTIONS.get(path.stem, (path.stem.replace("_", " ").capitalize(), ""))
        figures.append({"number": number, "title": title, "caption": caption, "src": embed(path),
                        "alt": title, "file": path.name})
    command = validation.manifest.get("command")
    return {
        "dir": str(validation.path),
        "command": shlex.join(str(c) for c in command) if isinstance(command, list) else _text(command) or "–",
        "version": _text(validation.manifest.get("v2vsim_version")) or "–",
        "n_rows": int(len(table)),
        "n_inside": int((verdicts == "inside").sum()),
        "n_outside": int((verdicts == "outside").sum()),
        "outside": outside,
        "cases": _cases(table),
        "sensitivity": _sensitivity(validation.sensitivity),
        "figures": figures,
    }


def validation_context(validation: ValidationDir | None, embed: Callable[[Path], str],
                       first_figure: int = 1) -> dict[str, Any]:
    """The validation section as plain data: the checks of the test suite, and the external
    validation when a validation results directory is given (else how to make one).

    ``embed`` turns a figure file into the image source the page uses (a ``data:`` URI);
    ``first_figure`` numbers the validation figures after the report's others.
    """
    return {
        "verification": [{"kind": c.kind, "what": c.what, "files": list(c.files)} for c in VERIFICATION],
        "test_files": sum(len(c.files) for c in VERIFICATION),
        "commands": list(RUN_VALIDATION),
        "external": None if validation is None else _external(validation, first_figure, embed),
    }
