"""The site-day profile kept compact: runs of equal values (:class:`Runs`) in blocks of one
replication at one site (:class:`SiteDays`), expanded into a long table only when read."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

__all__ = ["SITE_DAY_COLUMNS", "SiteBlock", "Runs", "SiteDays", "slot_days_before"]

#: Columns of the site-day table.
SITE_DAY_COLUMNS = ("replication", "site", "day", "slots", "in_use", "queue")
#: One replication's days at one site: ``(replication, site, slots, in_use, queue)``, where
#: ``slots`` is the capacity or, with a slot schedule, the capacity of each day.
SiteBlock = tuple[int, str, "float | np.ndarray", "Runs | np.ndarray", "Runs | np.ndarray"]


def slot_days_before(log: np.ndarray, day: float) -> float:
    """Slot-days held in ``[0, day]`` from a site's change log: rows ``(time, in_use, queue)``
    after each change, each value holding until the next row (none held before the first)."""
    times = log[:, 0] if log.size else np.zeros(0)
    k = int(np.searchsorted(times, day, side="right"))  # the changes at or before ``day``
    if k == 0:
        return 0.0
    held = log[:k, 1]
    return float(np.sum(held[:-1] * np.diff(times[:k])) + held[-1] * (day - times[k - 1]))


@dataclass
class Runs:
    """Blocks of a daily series, each as runs of equal values (the same bits): a site's days
    change seldom, so a replication's series takes a tenth of its days. Exact both ways."""

    values: np.ndarray  # one per run
    lengths: np.ndarray  # days of each run (int32)
    blocks: np.ndarray  # runs of each block

    @classmethod
    def encode(cls, series: np.ndarray) -> Runs:
        """One block: ``series`` as runs."""
        a = np.ascontiguousarray(series, dtype=float)
        bits = a.view(np.int64)
        starts = np.flatnonzero(np.concatenate(([a.size > 0], bits[1:] != bits[:-1])))
        return cls(a[starts], np.diff(np.append(starts, a.size)).astype(np.int32), np.array([starts.size]))

    @classmethod
    def concat(cls, parts: Sequence[Runs]) -> Runs:
        return cls(*(np.concatenate([np.zeros(0, dtype)] + [getattr(p, name) for p in parts])
                     for name, dtype in (("values", float), ("lengths", np.int32), ("blocks", np.int64))))

    def expand(self, blocks: np.ndarray) -> np.ndarray:
        """The days of ``blocks``, one block after the other."""
        count = self.blocks[blocks]
        first = (np.cumsum(self.blocks) - self.blocks)[blocks]  # each block's first run
        runs = np.arange(int(count.sum())) + np.repeat(first - (np.cumsum(count) - count), count)
        return np.repeat(self.values[runs], self.lengths[runs])


@dataclass
class SiteDays:
    """A run's site-day profile: for each replication and site in turn (a *block*), days
    ``0..n-1`` with the capacity, mean slots in use and mean queue of each one-day bin (as
    :class:`Runs`). :meth:`frame` is ``Results.site_days``; :meth:`site_frame` one site's rows
    of it, all the figures and warnings read, without the whole table."""

    sites: tuple[str, ...]
    replication: np.ndarray  # per block
    site: np.ndarray  # per block: index into sites
    days: np.ndarray  # per block: its number of days
    slots: np.ndarray  # per block: the capacity (NaN: a slot schedule, in daily_slots)
    in_use: Runs
    queue: Runs
    daily_slots: dict[int, np.ndarray] = field(default_factory=dict)  # block -> capacity per day

    @classmethod
    def from_blocks(cls, blocks: Sequence[SiteBlock]) -> SiteDays:
        """The profile of ``blocks`` in order (one concatenation per column)."""
        sites = tuple(dict.fromkeys(b[1] for b in blocks))
        runs = [[b[k] if isinstance(b[k], Runs) else Runs.encode(b[k]) for b in blocks] for k in (3, 4)]
        return cls(
            sites, np.array([b[0] for b in blocks], np.int64),
            np.array([sites.index(b[1]) for b in blocks], np.int64),
            np.array([int(r.lengths.sum()) for r in runs[0]], np.int64),
            np.array([math.nan if np.ndim(b[2]) else float(b[2]) for b in blocks]),
            Runs.concat(runs[0]), Runs.concat(runs[1]),
            {i: np.asarray(b[2]) for i, b in enumerate(blocks) if np.ndim(b[2])})

    def __len__(self) -> int:
        return int(self.days.sum())

    def _columns(self, blocks: np.ndarray) -> dict[str, np.ndarray]:
        """``replication, day, slots, in_use, queue`` of the rows of ``blocks`` (ascending)."""
        days = self.days[blocks]
        at = np.cumsum(days) - days  # each block's first row among these rows
        slots = np.repeat(self.slots[blocks], days)
        for b, a, n in zip(blocks.tolist(), at.tolist(), days.tolist()):
            if b in self.daily_slots:
                slots[a:a + n] = self.daily_slots[b]
        return {"replication": np.repeat(self.replication[blocks], days),
                "day": np.arange(int(days.sum()), dtype=np.int64) - np.repeat(at, days),
                "slots": slots, "in_use": self.in_use.expand(blocks), "queue": self.queue.expand(blocks)}

    def frame(self) -> pd.DataFrame:
        """The long table: ``replication, site, day, slots, in_use, queue`` (blocks in order)."""
        if not len(self.days):
            return pd.DataFrame(columns=list(SITE_DAY_COLUMNS))
        columns = self._columns(np.arange(len(self.days)))
        site = pd.array(list(self.sites), dtype="str").take(np.repeat(self.site, self.days))
        return pd.DataFrame({"replication": columns.pop("replication"), "site": site, **columns},
                            copy=False)

    def site_names(self) -> list[str]:
        """The sites, in the order of their first rows."""
        return [self.sites[i] for i in dict.fromkeys(self.site.tolist())]

    def site_frame(self, site: str) -> pd.DataFrame:
        """``replication, day, slots, in_use, queue``: the rows of ``site``, in order."""
        blocks = np.flatnonzero(self.site == self.sites.index(site))
        return pd.DataFrame(self._columns(blocks), copy=False)
