"""Waitlist metrics of one replication table (scenarios with sites; see
:func:`waitlist_metrics`)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

__all__ = ["WAITLIST_WITHIN_DAYS", "waitlist_metrics"]


def waitlist_metrics(table: pd.DataFrame, patients: pd.DataFrame, reps: np.ndarray,
                      referred: np.ndarray) -> None:
    """Waitlist metrics (scenarios with sites): patients listed (asked for a slot), deaths
    while listed (died before their first slot), time from listing to the first slot, and the
    shares of referred patients infused within 30 and 90 days of referral."""
    rep = patients["replication"]
    listed = patients["listed_day"].notna()
    table["listed"] = listed.groupby(rep).sum().reindex(reps, fill_value=0).to_numpy()
    died_listed = listed & patients["slot_day"].isna() & (patients["outcome"] == "died")
    table["died_while_listed"] = died_listed.groupby(rep).sum().reindex(reps, fill_value=0).to_numpy()
    got = (listed & patients["slot_day"].notna()).groupby(rep).sum().reindex(reps, fill_value=0).to_numpy()
    with np.errstate(invalid="ignore", divide="ignore"):
        n_listed = table["listed"].to_numpy()
        table["slot_fraction_of_listed"] = np.where(n_listed > 0, got / np.maximum(n_listed, 1), math.nan)
    to_slot = patients["time_to_slot_days"].groupby(rep)
    table["time_to_slot_median"] = to_slot.median().reindex(reps).to_numpy()
    table["time_to_slot_mean"] = to_slot.mean().reindex(reps).to_numpy()
    infused = patients["outcome"] == "infused"
    days = patients["referral_to_infusion_days"]
    with np.errstate(invalid="ignore", divide="ignore"):
        for within in WAITLIST_WITHIN_DAYS:
            treated = (infused & (days <= within)).groupby(rep).sum().reindex(reps, fill_value=0).to_numpy()
            table[f"treated_within_{within}_days"] = np.where(referred > 0, treated / np.maximum(referred, 1),
                                                              math.nan)


#: The waitlist metrics' windows: the share of referred patients infused within so many days.
WAITLIST_WITHIN_DAYS = (30, 90)
