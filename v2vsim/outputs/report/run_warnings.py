"""Warnings about a run that the report shows in a box at the top: what ``v2vsim run`` and
``v2vsim compare`` print as warnings, recomputed from the files of the results directory.

The commands print their warnings and do not write them to the directory, so the report checks
the same things from what the directory holds:

* patients still in the pathway when the run stopped (``unresolved`` in ``replications.csv``),
  worded by :func:`v2vsim.metrics.overload_warnings` itself;
* a site busy 90% of the time or more (``utilization_SITE`` in ``summary.csv``);
* a wait for a slot that grows over the referral window (``patients.parquet``: patients
  referred in its last quarter waited at least 1.5 times as long as those referred in its first,
  and the 95% interval of the increase across replications lies above 7 days), the sign of
  demand above capacity that ``overload_warnings`` reads from the daily queue;
* a precision target (``--precision`` in the manifest's command) that the final confidence
  intervals do not meet.

A manifest's own ``warnings`` list, and its ``precision`` record, are shown when present.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import pandas as pd

from ...metrics import counted_window, metric_label, overload_warnings, t_interval
from .load import RunDir
from .table import _finite

__all__ = ["PRECISION_METRICS", "run_warnings"]

#: Metrics whose interval ``--precision`` controls (as ``v2vsim.experiments.precision`` defines
#: them; the report does not import the experiments).
PRECISION_METRICS = ("infused_fraction", "vein_to_vein_median", "queue_wait_mean")
#: A site this busy is flagged (the utilisation test of ``overload_warnings``).
BUSY_FRACTION = 0.9
#: A mean wait for a slot that grows by this factor and this many days is flagged.
WAIT_GROWTH_FACTOR = 1.5
WAIT_GROWTH_DAYS = 7.0


def _unresolved(run: RunDir) -> list[str]:
    reps = run.replications
    if reps is None or "unresolved" not in reps:
        return []
    horizon = float(run.scenario.get("horizon_days", math.nan))
    drain = float(run.scenario.get("drain_days", 3650))
    no_sites = pd.DataFrame({"site": pd.Series(dtype=str), "day": pd.Series(dtype=float),
                             "queue": pd.Series(dtype=float)})
    return overload_warnings(reps, no_sites, horizon, horizon + drain)


def _busy_sites(run: RunDir) -> list[str]:
    out = []
    summary = run.summary.set_index("metric")
    for metric in summary.index:
        name = str(metric)
        if not name.startswith("utilization_") or not _finite(summary.loc[metric, "mean"]):
            continue
        util = float(summary.loc[metric, "mean"])
        if util >= BUSY_FRACTION:
            out.append(f"site '{name.removeprefix('utilization_')}' is busy {100 * util:.1f}% of the "
                       "time: patients queue for its slots and a small rise in referrals would "
                       "lengthen the wait a lot")
    return out


def _growing_wait(run: RunDir) -> list[str]:
    path = run.path / "patients.parquet"
    if not path.is_file():
        return []
    try:
        patients = pd.read_parquet(path, columns=["replication", "referral_day", "queue_wait_days"])
    except (OSError, ValueError, KeyError, ImportError):
        return []
    horizon = float(run.scenario.get("horizon_days", math.nan))
    if not math.isfinite(horizon) or not len(patients):
        return []
    start = horizon - counted_window(run.scenario)  # the warm-up's end (its patients not counted)
    quarter = (horizon - start) / 4
    day = patients["referral_day"]
    by_rep = patients.groupby("replication")["queue_wait_days"]
    early = patients.loc[(day >= start) & (day < start + quarter)].groupby("replication")[
        "queue_wait_days"].mean()
    late = patients.loc[(day >= horizon - quarter) & (day < horizon)].groupby("replication")[
        "queue_wait_days"].mean()
    growth = (late - early.reindex(late.index)).dropna().to_numpy(dtype=float)
    if len(growth) < 2 or not len(by_rep):
        return []
    # The growth is judged by its 95% interval across replications, not by its mean alone: with
    # few replications the last quarter's wait can exceed the first's by chance.
    mean, low, _high, _n = t_interval(growth)
    first, last = float(early.mean()), float(late.mean())
    if _finite(low) and low >= WAIT_GROWTH_DAYS and last >= WAIT_GROWTH_FACTOR * first:
        return [f"the wait for a slot grows over the referral window: patients referred in its last "
                f"quarter waited {last:.1f} days on average, against {first:.1f} days in its first "
                f"quarter (+{mean:.1f} days, 95% CI +{low:.1f} to +{_high:.1f}); demand exceeds "
                "capacity, so the results depend on the horizon"]
    return []


def _precision_target(command: Any) -> float | None:
    if not isinstance(command, list):
        return None
    words = [str(w) for w in command]
    for i, word in enumerate(words):
        value = word.split("=", 1)[1] if word.startswith("--precision=") else (
            words[i + 1] if word == "--precision" and i + 1 < len(words) else None)
        if value is not None:
            try:
                return float(value)
            except ValueError:
                return None
    return None


def _precision(run: RunDir) -> list[str]:
    record = run.manifest.get("precision")
    if isinstance(record, Mapping) and "reached" in record:
        if record.get("reached"):
            return []
        relative = record.get("relative")
        return [f"the precision target{f' ({100 * float(relative):g}%)' if _finite(relative) else ''} "
                f"was not reached within {record.get('replications', 'the')} replications"]
    target = _precision_target(run.manifest.get("command"))
    if target is None:
        return []
    summary = run.summary.set_index("metric")
    wide = []
    for metric in PRECISION_METRICS:
        if metric not in summary.index:
            continue
        row = summary.loc[metric]
        if not all(_finite(row[c]) for c in ("mean", "ci_low", "ci_high")) or float(row["mean"]) == 0:
            continue
        half = (float(row["ci_high"]) - float(row["ci_low"])) / 2 / abs(float(row["mean"]))
        if half > target:
            wide.append(f"{metric_label(metric, run.currency)[0]} ±{100 * half:.1f}%")
    if not wide:
        return []
    return [f"the precision target ({100 * target:g}% of the mean) was not reached within "
            f"{run.n_replications} replications (the cap): the 95% CI half-width is "
            + ", ".join(wide)]


def run_warnings(run: RunDir) -> list[str]:
    """The warnings of one run directory, as sentences without a final full stop."""
    found = [str(w) for w in run.manifest.get("warnings") or [] if str(w)]
    for check in (_unresolved, _busy_sites, _growing_wait, _precision):
        found += [w for w in check(run) if w not in found]
    return found
