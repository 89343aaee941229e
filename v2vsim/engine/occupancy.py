"""Proof that no patient waited for a slot, and what the sites report, from the slots' takes and releases.

The vectorised engine (:mod:`.vectorised`) records every take (time, units) and release (time,
one slot) of every site. :func:`site_results` then, replication by replication and site by
site:

* proves that every request found its slots free *whatever the order of the events of one
  instant*: at each instant a slot is asked for, the slots taken up to and including that
  instant minus those given back strictly before it (a conservative count) never exceed the
  site's slots; otherwise the replication is handed back (``None``) to the SimPy engine;
* sums the slot-days held up to the stop in time order, as the pools do (each distinct
  instant's level times the time to the next, added one after the other), so the result is
  the same float;
* writes the change log ``(time, in use, queue)`` with one row per distinct instant (the state
  after all of the instant's changes: what the per-day profile reads of the pools' log).
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["site_results"]


def site_results(names: list[str], slots: list[int], logs: list[bool], n_reps: int,
                 takes: list[tuple[int, np.ndarray, np.ndarray, np.ndarray]],
                 releases: list[tuple[int, np.ndarray, np.ndarray]],
                 stop: float) -> list[tuple[dict[str, float], dict[str, np.ndarray]] | None]:
    """For each replication: ``None`` if a request could have waited, else each site's
    slot-days held up to the stop and its change log. ``takes``: ``(site, times, units,
    replications)``; ``releases``: ``(site, times, replications)``, one slot each."""
    found: list[Any] = [({}, {}) for _ in range(n_reps)]
    for s, (name, site_slots, with_log) in enumerate(zip(names, slots, logs)):
        mine = [x for x in takes if x[0] == s]
        back = [x for x in releases if x[0] == s]
        tt = np.concatenate([x[1] for x in mine]) if mine else np.zeros(0)
        tu = np.concatenate([x[2] for x in mine]) if mine else np.zeros(0, dtype=np.int64)
        tr = np.concatenate([x[3] for x in mine]) if mine else np.zeros(0, dtype=np.int64)
        rt = np.concatenate([x[1] for x in back]) if back else np.zeros(0)
        rr = np.concatenate([x[2] for x in back]) if back else np.zeros(0, dtype=np.int64)
        keep, gone = tt < stop, rt < stop
        tt, tu, tr, rt, rr = tt[keep], tu[keep], tr[keep], rt[gone], rr[gone]
        # Replication by replication, in time order (one replication: a stable sort by time,
        # the same order, at half the cost).
        if n_reps == 1:
            t_order, r_order = np.argsort(tt, kind="stable"), np.argsort(rt, kind="stable")
        else:
            t_order, r_order = np.lexsort((tt, tr)), np.lexsort((rt, rr))
        tt, tu, tr, rt, rr = tt[t_order], tu[t_order], tr[t_order], rt[r_order], rr[r_order]
        t_cuts = np.searchsorted(tr, np.arange(n_reps + 1))
        r_cuts = np.searchsorted(rr, np.arange(n_reps + 1))
        for r in range(n_reps):
            if found[r] is None:
                continue
            a, b = t_cuts[r], t_cuts[r + 1]
            found[r] = _site_result(found[r], name, site_slots, stop, tt[a:b], tu[a:b],
                                    rt[r_cuts[r]:r_cuts[r + 1]], with_log)
    return found


def _site_result(found: Any, name: str, slots: int, stop: float, tt: np.ndarray, tu: np.ndarray,
                 rt: np.ndarray, with_log: bool) -> Any:
    """One replication's site: ``None`` if a request could have waited, else ``found`` with the
    site's slot-days and change log added. ``tt``/``tu``: sorted take times and units, ``rt``:
    sorted release times (one slot each), all before the stop."""
    if tt.size:
        # At each instant a slot is asked for: the slots taken up to and including it minus
        # those given back strictly before it (whatever the order of the instant's events).
        taken_by = np.cumsum(tu)[np.searchsorted(tt, tt, side="right") - 1]
        back_before = np.searchsorted(rt, tt, side="left")
        if int((taken_by - back_before).max()) > slots:
            return None
    # In use after each instant's changes (the distinct instants of the takes and releases),
    # and the slot-days, summed in time order.
    times, at_take, at_release = _union_of_sorted(tt, rt)
    # Whole slots, counted as integers (the same values a float count gives, exactly).
    level = (np.cumsum(np.bincount(np.repeat(at_take, tu), minlength=times.size))
             - np.cumsum(np.bincount(at_release, minlength=times.size)))
    busy, timeline = found
    if times.size:
        terms = np.empty(times.size)
        terms[0] = 0.0
        np.multiply(level[:-1], np.diff(times), out=terms[1:])
        total = np.add.accumulate(terms)[-1]
        busy[name] = float(total + float(level[-1]) * (stop - times[-1]))
    else:
        busy[name] = 0.0
    log = np.zeros((times.size if with_log else 0, 3))
    if log.size:
        log[:, 0] = times
        log[:, 1] = level
    timeline[name] = log
    return found


def _union_of_sorted(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``np.union1d(a, b)`` of two sorted arrays, and each value's position in it (what
    ``searchsorted`` of the union would give): a stable sort of the two runs merges them in
    linear time (union1d sorts them afresh), then the repeats go."""
    both = np.concatenate((a, b))
    order = np.argsort(both, kind="stable")
    merged = both[order]
    keep = np.empty(merged.size, dtype=bool)
    if merged.size:
        keep[0] = True
        np.not_equal(merged[1:], merged[:-1], out=keep[1:])
    where = np.empty(merged.size, dtype=np.int64)
    where[order] = np.cumsum(keep) - 1
    return merged[keep], where[:a.size], where[a.size:]
