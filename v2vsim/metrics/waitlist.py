"""Waitlist metrics of one replication table (scenarios with sites; see
:func:`waitlist_metrics`)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

__all__ = ["WAITLIST_WITHIN_DAYS", "waitlist_metrics"]


def waitlist_metrics(table: dict[str, np.ndarray], patients: pd.DataFrame, reps: np.ndarray,
                     referred: np.ndarray, row: np.ndarray) -> None:
    """Waitlist metrics (scenarios with sites), added to ``table`` (columns by name, one value
    per replication of ``reps``; ``row``: each patient's position in ``reps``, -1 for none):
    patients listed (asked for a slot), deaths while listed (died before their first slot),
    time from listing to the first slot, and the shares of referred patients infused within
    30 and 90 days of referral."""
    size = len(reps)
    mine = row >= 0

    def count(flags: np.ndarray) -> np.ndarray:
        """How many patients of each replication have the flag (exact: integer counts)."""
        return np.bincount(row[mine & flags], minlength=size)

    listed = ~np.isnan(patients["listed_day"].to_numpy(dtype=float))
    no_slot = np.isnan(patients["slot_day"].to_numpy(dtype=float))
    outcome = patients["outcome"]
    n_listed = table["listed"] = count(listed)
    table["died_while_listed"] = count(listed & no_slot & (outcome == "died").to_numpy())
    got = count(listed & ~no_slot)
    with np.errstate(invalid="ignore", divide="ignore"):
        table["slot_fraction_of_listed"] = np.where(n_listed > 0, got / np.maximum(n_listed, 1), math.nan)
    to_slot = patients["time_to_slot_days"].groupby(patients["replication"])
    table["time_to_slot_median"] = to_slot.median().reindex(reps).to_numpy()
    table["time_to_slot_mean"] = to_slot.mean().reindex(reps).to_numpy()
    infused = (outcome == "infused").to_numpy()
    days = patients["referral_to_infusion_days"].to_numpy(dtype=float)
    with np.errstate(invalid="ignore", divide="ignore"):
        for within in WAITLIST_WITHIN_DAYS:
            treated = count(infused & (days <= within))
            table[f"treated_within_{within}_days"] = np.where(referred > 0, treated / np.maximum(referred, 1),
                                                              math.nan)


#: The waitlist metrics' windows: the share of referred patients infused within so many days.
WAITLIST_WITHIN_DAYS = (30, 90)
