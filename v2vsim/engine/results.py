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

__all__ = ["Results", "outputs_together"]


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
        return outputs_together([self], [(busy, timeline, events_processed, starts)], engine)[0]

    def _columns(self) -> tuple[float, dict[str, np.ndarray], np.ndarray | None, np.ndarray | None]:
        """The last day, the patient and policy columns (before survival and economics), the
        days each patient was on bridging (None: not needed) and cytokine release syndrome
        (None: no economics)."""
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
        columns.update(self._policy_columns())
        return end_day, columns, bridged_days, (self._crs() if sc.economics is not None else None)

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
        return columns


#: Patients whose survival and economics are computed in one go (replications are joined up to
#: this many; one larger replication goes alone).
JOIN_PATIENTS = 200_000


def outputs_together(reps: list[Results], sites: list[tuple[Any, ...]], engine: str) -> list[ReplicationOutput]:
    """Each replication's :class:`.collect.ReplicationOutput` (``sites[r]``: what its sites
    report: busy slot-days, timelines, events processed, start days). Survival and the
    economic evaluation of replications of one set-up are computed for their patients joined
    (arrays of a few hundred patients cost their calls, not their size); every value is
    computed elementwise, and every sum adds a replication's own values in their own order,
    so each replication's result is what it alone gives, bit for bit."""
    parts = [rep._columns() for rep in reps]
    health: list[tuple[dict[str, np.ndarray], dict[str, np.ndarray], Any, float]] = []
    group: list[int] = []
    patients = 0
    for r, rep in enumerate(reps + [None]):  # type: ignore[list-item]
        if group and (rep is None or not _joins(reps[group[0]], rep, patients)):
            health += _health([reps[k] for k in group], [parts[k] for k in group])
            group, patients = [], 0
        if rep is not None:
            group.append(r)
            patients += rep.n
    out = []
    for rep, (end_day, columns, _, crs), (lives, eco, budget, fixed_discounted), (busy, timeline, events, starts) \
            in zip(reps, parts, health, sites):
        columns.update(lives)
        if crs is not None:
            columns["crs"] = crs
        columns.update(eco)
        sc = rep.scenario
        site_slots: dict[str, float] = {name: s.slots for name, s in sc.sites.items()}  # type: ignore[misc]
        daily_slots: dict[str, np.ndarray] = {}
        for name, s in sc.sites.items():
            if isinstance(s.slots, list):
                site_slots[name], daily_slots[name] = capacity_profile(s, sc.start_date, end_day)
        out.append(ReplicationOutput(
            replication=rep.replication,
            columns=columns,
            end_day=end_day,
            site_busy_slot_days=busy,
            site_slots=site_slots,
            site_timeline=timeline,
            events=rep.rec.events,
            fixed_cost=sum(s.fixed_cost_per_year for s in sc.sites.values()) * sc.horizon_days / 365.0,
            events_processed=events,
            site_daily_slots=daily_slots,
            site_starts=starts,
            engine=engine,
            budget=budget,
            fixed_cost_discounted=fixed_discounted,
        ))
    return out


def _joins(first: Results, rep: Results, patients: int) -> bool:
    """Whether ``rep``'s survival and economics can be computed with ``first``'s group."""
    return (rep.scenario is first.scenario and rep.shared is first.shared
            and rep.pathway_list == first.pathway_list and patients + rep.n <= JOIN_PATIENTS)


def _health(reps: list[Results], parts: list[tuple[Any, ...]]
            ) -> list[tuple[dict[str, np.ndarray], dict[str, np.ndarray], Any, float]]:
    """Survival columns, economics columns, costs by year and discounted fixed costs of each
    of ``reps`` (one set-up), computed for their patients joined (see :func:`outputs_together`)."""
    one = reps[0] if len(reps) == 1 else None
    joined: Any = one if one is not None else _Joined(reps)
    sc = reps[0].scenario
    columns = survival(joined.rec, sc, joined.streams, joined.arrivals, joined.cohort_of, joined.death)
    alive_days = columns.pop("_alive_days", None)
    eco: dict[str, np.ndarray] = {}
    budget: Any = None
    fixed_discounted = math.nan
    if sc.economics is not None:
        crs = _cat([p[3] for p in parts])
        bridged = None if parts[0][2] is None else _cat([p[2] for p in parts])
        lengths = _cat([course_lengths(rep) for rep in reps])
        eco, budget, fixed_discounted = economics_columns(
            joined.rec, sc, joined.streams, joined.arrivals, joined.cohort_of, joined.pathway_taken,
            reps[0].pathway_list, reps[0]._step_costs(), alive_days, crs, joined.rec.bridging_day, lengths,
            bridged, rep=None if one is not None else joined.rep_of, n_reps=len(reps))
    if one is not None:
        return [(columns, eco, budget, fixed_discounted)]
    b = joined.bounds
    return [({name: values[b[r]:b[r + 1]] for name, values in columns.items()},
             {name: values[b[r]:b[r + 1]] for name, values in eco.items()},
             None if budget is None else budget[r], fixed_discounted) for r in range(len(reps))]


def _cat(arrays: list[Any]) -> np.ndarray:
    return np.concatenate([np.asarray(a, dtype=float) for a in arrays]) if arrays else np.zeros(0)


class _JoinedRecorder:
    """What survival and economics read of a recorder, for the patients of several replications."""

    def __init__(self, reps: list[Results], bounds: list[int]) -> None:
        recs = [rep.rec for rep in reps]
        self.n = bounds[-1]
        for name in ("outcome", "outcome_day", "responded", "icu", "infusion_day", "bridging_day"):
            setattr(self, name, np.concatenate([getattr(rec, name) for rec in recs]))
        self.charges: bytes | None = None
        if recs[0].charges is not None:
            logs = []
            for k, rec in enumerate(recs):
                if rec.charges:
                    log = np.frombuffer(rec.charges, dtype=float).reshape(-1, 3).copy()
                    log[:, 0] += bounds[k]  # the patient's place among all
                    logs.append(log)
            self.charges = np.concatenate(logs).tobytes() if logs else b""


class _JoinedStream:
    """Named streams of several replications read by the joined patient index."""

    def __init__(self, reps: list[Results], sizes: list[int]) -> None:
        self._reps, self._sizes = reps, sizes

    def __call__(self, purpose: str) -> _JoinedDraws:
        return _JoinedDraws([rep.streams(purpose) for rep in self._reps], self._sizes)


class _JoinedDraws:
    """One purpose's streams of several replications, each read up to its own patients."""

    def __init__(self, streams: list[Any], sizes: list[int]) -> None:
        self._streams, self._sizes = streams, sizes

    def extend_to(self, n: int) -> np.ndarray:
        assert n == sum(self._sizes)
        return _cat([s.extend_to(k)[:k] for s, k in zip(self._streams, self._sizes)])


class _Joined:
    """The patients of several replications one after another, as survival and economics read
    a replication (``rec``, ``streams``, ``arrivals``, ...); ``rep_of`` each one's replication."""

    def __init__(self, reps: list[Results]) -> None:
        sizes = [rep.n for rep in reps]
        self.bounds = np.concatenate(([0], np.cumsum(sizes))).astype(int).tolist()
        self.rep_of = np.repeat(np.arange(len(reps)), sizes)
        self.rec = _JoinedRecorder(reps, self.bounds)
        self.streams = _JoinedStream(reps, sizes)
        self.arrivals = _cat([rep.arrivals for rep in reps])
        self.cohort_of = np.concatenate([np.asarray(rep.cohort_of) for rep in reps])
        self.pathway_taken = np.concatenate([np.asarray(rep.pathway_taken) for rep in reps])
        self.death = _cat([rep.death for rep in reps])
