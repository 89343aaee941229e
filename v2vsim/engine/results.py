"""A replication's results after its run, on any engine: the draws after infusion (response,
ICU admission, cytokine release syndrome), the optional policies' columns, survival and the
economic evaluation, and the :class:`.collect.ReplicationOutput` that carries them."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .calendar import capacity_profile
from .clocks import course_lengths, end_of_bridging
from .collect import INFUSED, UNRESOLVED, ReplicationOutput, patient_columns
from .exception import exception_responses, infused_out_of_specification
from .health import economics_columns, response_probability, survival

__all__ = ["Results"]


class Results:
    """The result methods of a replication; the state they read is the replication's
    (``scenario``, ``rec``, ``streams``, ``arrivals``, ``cohort_of``, ``pathways``, ...)."""

    __slots__ = ()

    scenario: Any
    rec: Any
    streams: Any
    shared: Any
    arrivals: np.ndarray
    n: int
    replication: int
    cohort_of: np.ndarray
    cohort_bridge: list[Any]
    cohort_response: list[float]
    cohort_icu: list[float]
    cohort_rule: list[Any]
    pathway_taken: np.ndarray
    pathway_list: list[str]
    pathways: dict[str, list[Any]]
    step_names: list[list[str]]
    u_response: Any
    u_icu: Any
    death: Any
    re_referred: np.ndarray
    _backlog_waited: Any  # the waitlist mixin's method (days each backlog patient had waited)

    def output(self, busy: dict[str, float], timeline: dict[str, np.ndarray], events_processed: int,
               starts: dict[str, np.ndarray], engine: str = "simpy") -> ReplicationOutput:
        """The replication's result from the recorder and what the sites report (any engine)."""
        sc = self.scenario
        rec = self.rec
        stop = sc.horizon_days + sc.drain_days
        if (rec.outcome == UNRESOLVED).any():
            end_day = stop
        else:
            end_day = max(sc.horizon_days, float(np.nanmax(rec.outcome_day)) if self.n else 0.0)
        self._after_infusion()
        bridged_days = None
        if any(b is not None and (b.durations is None or b.cost_per_day) for b in self.cohort_bridge):
            bridged_days = end_of_bridging(self, stop)
        columns = patient_columns(rec, sc, self.arrivals, self.cohort_of, self.pathway_taken, self.step_names)
        policy = self._policy_columns()
        alive_days = policy.pop("_alive_days", None)
        columns.update(policy)
        fixed = sum(s.fixed_cost_per_year for s in sc.sites.values()) * sc.horizon_days / 365.0
        budget, fixed_discounted = None, math.nan
        if sc.economics is not None:
            crs = self._crs()
            columns["crs"] = crs
            eco, budget, fixed_discounted = economics_columns(
                rec, sc, self.streams, self.arrivals, self.cohort_of, self.pathway_taken, self.pathway_list,
                self._step_costs(), alive_days, crs, rec.bridging_day, course_lengths(self),
                bridged_days)
            columns.update(eco)
        site_slots: dict[str, float] = {name: s.slots for name, s in sc.sites.items()}  # type: ignore[misc]
        daily_slots: dict[str, np.ndarray] = {}
        for name, s in sc.sites.items():
            if isinstance(s.slots, list):
                site_slots[name], daily_slots[name] = capacity_profile(s, sc.start_date, end_day)
        return ReplicationOutput(
            replication=self.replication,
            columns=columns,
            end_day=end_day,
            site_busy_slot_days=busy,
            site_slots=site_slots,
            site_timeline=timeline,
            events=rec.events,
            fixed_cost=fixed,
            events_processed=events_processed,
            site_daily_slots=daily_slots,
            site_starts=starts,
            engine=engine,
            budget=budget,
            fixed_cost_discounted=fixed_discounted,
        )

    def _after_infusion(self) -> None:
        """Response and ICU admission of every infused patient (drawn by patient index); the
        chance of a response may depend on the wait (``wait_effect``)."""
        rec = self.rec
        infused = rec.outcome == INFUSED
        if infused.any():
            response = np.asarray(self.cohort_response)[self.cohort_of]  # a new array (indexed)
            exception = exception_responses(self, response)  # out_of_spec_infusion's replace the cohort's
            for c, cohort in enumerate(self.scenario.cohorts):
                effect = cohort.after_infusion.wait_effect
                if effect.response_odds_ratio != 1.0:
                    m = infused & (self.cohort_of == c)
                    for p in [cohort.after_infusion.response_probability] if exception is None else np.unique(response[m]):
                        k = m if exception is None else m & (response == p)
                        response[k] = response_probability(float(p), rec.infusion_day[k] - self.arrivals[k], effect)
            icu = np.asarray(self.cohort_icu)[self.cohort_of]
            rec.responded[infused] = (np.asarray(self.u_response) < response)[infused]
            rec.icu[infused] = (np.asarray(self.u_icu) < icu)[infused]

    def _crs(self) -> np.ndarray:
        """Cytokine release syndrome after each infusion (its own draw; NaN if not infused)."""
        rec = self.rec
        crs = np.full(self.n, math.nan)
        infused = rec.outcome == INFUSED
        if infused.any():
            p = np.asarray([c.after_infusion.crs_probability for c in self.scenario.cohorts])[self.cohort_of]
            u = self.streams("after:crs").extend_to(self.n)[:self.n]
            crs[infused] = (u < p)[infused]
        return crs

    def _step_costs(self) -> np.ndarray:
        """The cost charged when step ``j`` of pathway ``p`` begins (as the engines charge it;
        the same in every replication of a set-up)."""
        found = self.shared.step_costs
        if found is None:
            width = max(len(self.pathways[name]) for name in self.pathway_list)
            found = np.zeros((len(self.pathway_list), width))
            for p, name in enumerate(self.pathway_list):
                for j, step in enumerate(self.pathways[name]):
                    found[p, j] = step.cost
            self.shared.step_costs = found
        return found

    def _policy_columns(self) -> dict[str, np.ndarray]:
        """Patient columns of the optional policies (NaN where a policy does not apply)."""
        n = self.n
        rerouted = np.full(n, math.nan)
        for c, rule in enumerate(self.cohort_rule):
            if rule is not None:
                mask = self.cohort_of == c
                rerouted[mask] = (self.pathway_taken[mask] != rule[0][3]).astype(float)
        columns = {"rerouted": rerouted, "bridging_day": self.rec.bridging_day,
                   "bridging_toxicity": self.rec.bridging_toxicity, "re_referred": self.re_referred,
                   "backlog_waited_days": self._backlog_waited(),
                   "infused_out_of_specification": infused_out_of_specification(self)}
        columns.update(survival(self.rec, self.scenario, self.streams, self.arrivals,
                                self.cohort_of, self.death))
        return columns
