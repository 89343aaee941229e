"""The waitlist policies' part of a replication (a mixin of :class:`.replication.Replication`).

* a starting **backlog**: the first patients of the replication, referred at day 0, longest
  waiting first, with clocks conditioned on the days already waited;
* a site's **queue order** (:meth:`Waitlists.queue_key`): the key a waiting patient is served
  by, after its cohort's priority, fixed when it joins the queue (the pools compare keys as
  they compare priorities; the request's order breaks ties);
* **re-referral** (:meth:`Waitlists.switch_pathway`): the new plan of a patient who left a list.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..scenario import Scenario
from .journey import Patient

__all__ = ["Waitlists", "waitlist_problems"]


def waitlist_problems(scenario: Scenario) -> list[str]:
    """The waitlist policies only the SimPy engine runs: a starting backlog, a queue order
    other than first come first served, re-referral while waiting."""
    problems = []
    if scenario.backlog:
        problems.append("it starts with a backlog of waiting patients")
    for name, site in scenario.sites.items():
        if site.queue is not None and not site.queue.is_default:
            problems.append(f"site '{name}' orders its queue by {site.queue.order}")
    for cohort in scenario.cohorts:
        if cohort.re_referral is not None:
            problems.append(f"cohort '{cohort.name}' is re-referred while waiting")
    return problems


class Waitlists:
    """The waitlist methods of a replication; the state they read and write is the
    replication's (``scenario``, ``streams``, ``arrivals``, ``cohort_of``, ``death``, ...)."""

    __slots__ = ()

    scenario: Any
    streams: Any
    arrivals: np.ndarray
    n: int
    prior: np.ndarray | None
    backlog_cohort: np.ndarray | None
    cohort_of: np.ndarray
    u_death: np.ndarray
    u_inel: np.ndarray
    death: Any
    queue_rules: list[Any]
    cohort_rerefer: list[Any]
    re_referred: np.ndarray
    estimate_noise: np.ndarray | None
    pathway_taken: np.ndarray

    def _backlog(self) -> np.ndarray | None:
        """The starting backlog as the first patients, all referred at day 0, longest waiting
        first (their order in a first-come-first-served list); their cohorts where given
        (``backlog_cohort``) and the days each has already waited. None: no backlog."""
        entries = self.scenario.backlog
        self.backlog_cohort: np.ndarray | None = None
        if not entries:
            return None
        count = sum(e.count for e in entries)
        u = self.streams("backlog:waited").extend_to(count)[:count]
        waited = np.empty(count)
        names = [c.name for c in self.scenario.cohorts]
        cohort = np.full(count, -1, dtype=np.int64)
        k = 0
        for e in entries:
            waited[k:k + e.count] = e.waited_days.ppf(u[k:k + e.count])
            if e.cohort is not None:
                cohort[k:k + e.count] = names.index(e.cohort)
            k += e.count
        order = np.argsort(-waited, kind="stable")
        self.backlog_cohort = cohort[order]
        self.arrivals = np.concatenate((np.zeros(count), self.arrivals))
        return waited[order]

    def _condition_backlog(self, death: np.ndarray, inel: np.ndarray) -> None:
        """The backlog's clocks, conditioned on having lasted the days already waited ``w``: the
        uniform ``u`` read as ``u' = 1 - S(w) (1 - u)``, so that ``T = ppf(u')`` is drawn given
        ``T > w``; the clock runs ``T - w`` more days from day 0 (``u'`` is kept for bridging)."""
        sc = self.scenario
        b = self.prior.size  # type: ignore[union-attr]
        w = self.prior
        self.u_death, self.u_inel = self.u_death.copy(), self.u_inel.copy()  # the streams' own stay as drawn
        for c, cohort in enumerate(sc.cohorts):
            mask = np.zeros(self.n, dtype=bool)
            mask[:b] = (self.cohort_of[:b] == c) & (w > 0)  # type: ignore[operator]  # w = 0: as drawn
            if not mask.any():
                continue
            for dist, u, out in ((cohort.time_to_death, self.u_death, death),
                                 (cohort.time_to_ineligible, self.u_inel, inel)):
                wm = w[mask[:b]]  # type: ignore[index]
                survived = np.asarray(dist.sf(wm), dtype=float)
                conditioned = 1.0 - survived * (1.0 - u[mask])
                total = np.asarray(dist.ppf(conditioned), dtype=float)
                # A clock that could not have lasted w (S(w) = 0) rings at day 0.
                out[mask] = np.where(survived > 0, np.maximum(total - wm, 0.0), 0.0)
                u[mask] = conditioned

    def _set_up_waitlists(self) -> None:
        """Who may be re-referred (``re_referred`` 0, NaN for cohorts without the rule), and each
        patient's standard normal z for a committee's estimate of remaining survival."""
        n = self.n
        self.re_referred = np.full(n, math.nan)
        for c, rerefer in enumerate(self.cohort_rerefer):
            if rerefer is not None:
                self.re_referred[self.cohort_of == c] = 0.0
        self.estimate_noise = None
        if any(rule is not None and rule[1] > 0 for rule in self.queue_rules or ()):
            from scipy.special import ndtri

            self.estimate_noise = ndtri(self.streams("queue:estimate").extend_to(n)[:n])

    def join_backlog(self, p: Patient, now: float) -> None:
        """Backlog patient p joins at day 0 where it waits: at the first step of its pathway
        that takes a site's slot (the steps before it are behind it: not run, not charged;
        bridging due at one of them starts there), referred ``prior`` days before."""
        p.listed_from = now - self.prior[p.index]  # type: ignore[index]
        p.start_at = next((k for k, step in enumerate(p.steps) if step.acquire), 0)
        if 0 <= p.bridge_at < p.start_at:
            p.bridge_at = p.start_at

    def queue_key(self, p: Patient, rule: tuple[str, float], now: float) -> tuple[int, float]:
        """A waiting patient's place in a site's queue by ``rule`` (the site's ``queue.order``
        and ``estimate_error``), after its cohort's priority; the request's order breaks ties.
        Fixed when the patient joins the queue."""
        if rule is None:  # this site: first come first served (another site has an order)
            return p.priority  # type: ignore[return-value]
        order, error = rule
        if order == "referral":
            return p.priority, p.listed_from
        i = p.index
        if order == "sickest_first":  # the death clock's remaining days, as the committee sees them
            left = p.referral + self.death[i] - now
            if error > 0:  # a lognormal error: exp(sd * z), z standard normal, one per patient
                left *= math.exp(error * float(self.estimate_noise[i]))  # type: ignore[index]
            return p.priority, now + left
        cohort = self.scenario.cohorts[p.cohort].after_infusion  # most_benefit
        from .health import response_probability

        chance = response_probability(cohort.response_probability, np.array([now - p.listed_from]),
                                      cohort.wait_effect)
        return p.priority, -float(chance[0])

    def switch_pathway(self, p: Patient) -> None:
        """Patient p starts its cohort's re-referral pathway (see :meth:`.Journey.re_refer`)."""
        steps, bridge_at, shelf_clock, pathway = self.cohort_rerefer[p.cohort][1]  # type: ignore[index]
        p.steps = steps
        p.runs = [0] * len(steps)
        if p.bridge_at >= 0:  # bridging not started yet: at its step of the new pathway
            p.bridge_at = bridge_at
        p.shelf_clock = shelf_clock
        p.expiry = math.inf
        p.cut = p.deadline
        self.pathway_taken[p.index] = pathway
        self.re_referred[p.index] = 1.0

    def _backlog_waited(self) -> np.ndarray:
        """Days each backlog patient had already waited at day 0 (NaN: referred in the run)."""
        out = np.full(self.n, math.nan)
        if self.prior is not None:
            out[:self.prior.size] = self.prior
        return out
