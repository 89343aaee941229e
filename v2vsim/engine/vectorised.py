"""The vectorised engine: every patient's journey at once, with NumPy, where patients never compete.

When no patient ever waits for a slot, a patient's journey depends only on its own draws: the
SimPy engine's story (:meth:`.journey.Journey.patient`) becomes a computation on arrays. This
module performs that story step by step for all patients standing at the same step at once,
with the same expressions in the same order as the journey (the clock after a wait is
``now + (target - now)``, as SimPy schedules a timeout), on the very draws the SimPy engine
reads (the replication's set-up is :class:`.replication.Replication`'s, unchanged), so the
results are the same to the last bit.

Scope (:func:`.engines.scope_problems`): no routing rule (it reads a queue), no site calendar
(slot schedules, closures and allocations make patients wait for the date). Slots may still
bind, so after computing the journeys each replication proves that no request could have
waited (:mod:`.occupancy`); where the proof fails it is handed back (``None``) and the SimPy
engine runs it. Small replications are computed together (:class:`Batch`), side by side in
the same arrays.

Bridging (new disease clocks), a bridging toxicity's start rule, and patients' start days
that need the scalar rule run the journey's own methods patient by patient, so they are the
same code as the reference. It is one piece: the journey's story told for arrays, in the
journey's order, reads best beside it as one text.
"""

from __future__ import annotations

import math
from types import SimpleNamespace
from typing import Any

import numpy as np

from ..scenario import Scenario
from .collect import DIED, INELIGIBLE, INFUSED, OUTCOME_CODE, PRODUCT_EXPIRED, ReplicationOutput
from .journey import _STATUS, Patient
from .clocks import referral_clock
from .occupancy import site_results
from .replication import Replication, set_up
from .results import outputs_together

__all__ = ["run_batch", "run_vectorised", "Batch"]

_INF = math.inf
_NAN = math.nan


def _values(draws: Any, n: int) -> np.ndarray:
    """The first ``n`` values of a replication's draws (an ``array('d')`` or a ``Draws``)."""
    values = draws.head(n) if hasattr(draws, "head") else draws
    return np.frombuffer(values, dtype=float)[:n] if n else np.zeros(0)  # a view: no copy


class _BatchStep:
    """A step of a pathway (the same in every replication of a scenario) with the draws of
    every patient of the batch, replication after replication."""

    _COPY = ("index", "name", "kind", "site", "acquire", "start_days", "closed", "any_day",
             "failure_probability", "retry_index", "max_attempts", "cost", "failure_outcome",
             "patient_step", "starts_shelf_clock", "shelf_life", "is_apheresis", "is_manufacture",
             "is_release", "fixed_duration")

    def __init__(self, by_rep: list[Any], sizes: list[int]) -> None:
        for name in self._COPY:
            setattr(self, name, getattr(by_rep[0], name))
        self._by_rep = by_rep
        self._sizes = sizes
        self._cache: dict[tuple[str, int], np.ndarray] = {}

    def values(self, what: str, attempt: int) -> np.ndarray:
        """Durations or failure uniforms of attempt ``attempt`` for every patient of the batch."""
        key = (what, attempt)
        found = self._cache.get(key)
        if found is None:
            parts = []
            for step, n in zip(self._by_rep, self._sizes):
                if attempt == 1:
                    draws = step.first_durations if what == "duration" else step.first_failures
                else:
                    draws = (step.durations if what == "duration" else step.failures)(attempt)
                parts.append(_values(draws, n))
            found = self._cache[key] = _joined(parts)
        return found


def _joined(parts: list[np.ndarray]) -> np.ndarray:
    """The parts side by side; a single part itself (no copy: a batch of one large replication)."""
    return parts[0] if len(parts) == 1 else np.concatenate(parts)


class _Recorded:
    """The recorder's per-patient arrays for every patient of the batch (a batch of one
    replication writes into its recorder's own arrays)."""

    def __init__(self, reps: list[Replication]) -> None:
        for name in _RECORDED:
            setattr(self, name, _joined([getattr(r.rec, name) for r in reps]))


_RECORDED = ("apheresis_day", "manufacture_start_day", "release_day", "listed_day", "slot_day", "infusion_day",
             "outcome_day", "outcome", "outcome_step", "queue_wait", "attempts", "cost")


class Batch:
    """Replications of one scenario computed together: their patients side by side in the same
    arrays, each replication with its own draws, clocks and sites (see the module text)."""

    def __init__(self, reps: list[Replication]) -> None:
        self.reps = reps
        sizes = [r.n for r in reps]
        self.offsets = np.concatenate(([0], np.cumsum(sizes))).astype(np.int64)
        n = self.n = int(self.offsets[-1])
        self.rep_of = np.repeat(np.arange(len(reps)), sizes)
        self.local = np.arange(n) - self.offsets[self.rep_of]
        first = reps[0]
        self.start_weekday = first.start_weekday
        self.pathway_list = first.pathway_list
        self.cohort_of = _joined([r.cohort_of for r in reps])
        self.pathway_of = _joined([r.pathway_taken for r in reps])
        self.steps = {name: [_BatchStep([r.pathways[name][j] for r in reps], sizes)
                             for j in range(len(first.pathways[name]))] for name in self.pathway_list}
        # Each cohort's (pathway number, bridging step or -1, shelf-clock step); no routing rule.
        self.plans = [(plan[3], plan[1], plan[2]) for plan in first.cohort_plan]  # type: ignore[index]
        self.traced = np.concatenate([np.arange(r.n) < r.rec.trace_patients for r in reps])
        self.rec = _Recorded(reps)
        self.referral = np.concatenate([referral_clock(r.arrivals) for r in reps])
        death = _joined([np.frombuffer(r.death, dtype=float) if r.n else np.zeros(0) for r in reps])
        inel = _joined([np.frombuffer(r.ineligible, dtype=float) if r.n else np.zeros(0) for r in reps])
        d_death, d_inel = self.referral + death, self.referral + inel
        first_death = d_death <= d_inel
        self.deadline = np.where(first_death, d_death, d_inel)
        self.clock_outcome = np.where(first_death, DIED, INELIGIBLE).astype(np.int8)
        self.expiry = np.full(n, _INF)
        self.cut = self.deadline.copy()
        self.now = self.referral.copy()
        self.wait = np.zeros(n)
        self.waiting_since = np.full(n, _NAN)
        self.cost = np.zeros(n)
        self.mruns = np.zeros(n, dtype=np.int32)
        width = max(len(steps) for steps in self.steps.values())
        self.runs = np.zeros((n, width), dtype=np.int32)
        self.held = np.zeros((n, width), dtype=bool)
        self.toxic = np.zeros(n, dtype=bool)
        self.unfit_from = np.zeros(n)
        self.unfit_until = np.zeros(n)
        self.bridged = np.zeros(n, dtype=bool)
        self.step_at = np.zeros(n, dtype=np.int16)
        self.takes: list[tuple[int, np.ndarray, np.ndarray, np.ndarray]] = []  # site, times, units, reps
        self.releases: list[tuple[int, np.ndarray, np.ndarray]] = []  # site, times, reps: one slot each
        self.trace_rows: list[list[tuple[Any, ...]]] = [[] for _ in reps]
        #: With economics: (patients, step index, days) of each step's charges (Recorder.charges).
        self.charges: list[tuple[np.ndarray, int, np.ndarray]] | None = [] if first.rec.charges is not None else None

    def run(self) -> list[ReplicationOutput | None]:
        """Each replication's result, or ``None`` where a site's slots could bind."""
        sc = self.reps[0].scenario
        stop = sc.horizon_days + sc.drain_days
        for p_id, name in enumerate(self.pathway_list):
            members = np.flatnonzero(self.pathway_of == p_id)
            if members.size:
                self._journeys(members, self.steps[name], stop)
        rec = self.rec
        live = rec.outcome == OUTCOME_CODE["unresolved"]
        waiting = np.where(np.isnan(self.waiting_since), 0.0, stop - self.waiting_since)
        rec.queue_wait[live] = (self.wait + waiting)[live]
        rec.cost[live] = self.cost[live]
        rec.attempts[live] = self.mruns[live]
        del live, waiting
        sites_of = self._sites(stop)
        self._hand_charges()
        self._forget()  # the journeys' state is not needed to build the results
        done: list[Replication] = []
        for r, (rep, sites) in enumerate(zip(self.reps, sites_of)):
            if sites is None:
                continue
            part = slice(int(self.offsets[r]), int(self.offsets[r + 1]))
            for name in _RECORDED:
                mine = getattr(rep.rec, name)
                if mine is not getattr(rec, name):
                    mine[:] = getattr(rec, name)[part]
            rep.rec.events.extend(self.trace_rows[r])
            done.append(rep)
        results = iter(outputs_together(done, [(*sites, 0, {}) for sites in sites_of if sites is not None],
                                        "vectorised"))
        return [None if sites is None else next(results) for sites in sites_of]

    def _hand_charges(self) -> None:
        """Each replication's charges into its recorder, as (patient, step, day) triples."""
        if not self.charges:
            return
        who = np.concatenate([c[0] for c in self.charges])
        step = np.concatenate([np.full(c[0].size, float(c[1])) for c in self.charges])
        day = np.concatenate([c[2] for c in self.charges])
        rep = self.rep_of[who]
        for r, replication in enumerate(self.reps):
            mine = rep == r
            if mine.any():
                rows = np.column_stack((self.local[who[mine]].astype(float), step[mine], day[mine]))
                replication.rec.charges.frombytes(np.ascontiguousarray(rows).tobytes())  # type: ignore[union-attr]
        self.charges = None

    def _forget(self) -> None:
        """Drop the journeys' state (memory for the results of a large replication)."""
        for name in ("deadline", "expiry", "cut", "now", "wait", "waiting_since", "cost", "runs", "held",
                     "toxic", "unfit_from", "unfit_until", "bridged", "step_at", "referral", "local",
                     "traced", "takes", "releases", "steps"):
            setattr(self, name, None)

    # ------------------------------------------------------------------ the journeys

    def _journeys(self, members: np.ndarray, steps: list[Any], stop: float) -> None:
        """Every patient of one pathway to the end of its journey (or the stop)."""
        n_steps = len(steps)
        while True:
            at = self.step_at[members]
            active = members[(at >= 0) & (at < n_steps)]
            if not active.size:
                break
            # One pass: each step in order, so a patient moving on is taken at its next step
            # in the same pass; a retry (back to an earlier step) waits for the next pass.
            for j in range(n_steps):
                here = active[self.step_at[active] == j]
                if here.size:
                    self._step(here, steps, j, stop)
        done = members[self.step_at[members] == n_steps]
        if done.size:  # infused at the end of the last step
            now = self.now[done]
            self.rec.infusion_day[done] = now
            self._leave(done, INFUSED, n_steps - 1, steps, now)

    def _step(self, idx: np.ndarray, steps: list[Any], j: int, stop: float) -> None:
        """Patients ``idx`` (at step ``j``) do the step once: as the journey's loop body."""
        step = steps[j]
        rec = self.rec
        # Bridging starts at the first visit of its step.
        self._bridging(idx, steps, j)
        now = self.now[idx]
        ready = now.copy()
        # 1. Slots: never a wait (the site check proves it afterwards).
        acquire = step.acquire
        if acquire:
            units: dict[int, np.ndarray] = {}
            for k in acquire:
                need = ~self.held[idx, k]
                if need.any():
                    need = need.astype(np.int64)
                    site = steps[k].site
                    units[site] = units.get(site, 0) + need
                    self.held[idx[need > 0], k] = True
            anyone = np.zeros(idx.size, dtype=bool)
            for site, count in units.items():
                asked = count > 0
                anyone |= asked
                self.takes.append((site, now[asked], count[asked].astype(np.int64), self.rep_of[idx[asked]]))
            if anyone.any():  # never a wait: listed and given the slots at once
                first = anyone & np.isnan(rec.listed_day[idx])
                rec.listed_day[idx[first]] = now[first]
                first = anyone & np.isnan(rec.slot_day[idx])
                rec.slot_day[idx[first]] = now[first]
        # 2. A day the step may start.
        start = now
        toxic = self.toxic[idx]
        if toxic.any() or not step.any_day:
            start = self._start_days(idx, step, now, toxic)
        later = start > now
        if later.any():
            cut, deadline, expiry = self.cut[idx], self.deadline[idx], self.expiry[idx]
            missed = later & ((start >= deadline) | (start > expiry))
            target = np.where(missed, cut, start)
            t = np.where(later, now + (target - now), now)
            stopped = later & (t >= stop)
            if stopped.any():  # the run ends during the wait
                self.waiting_since[idx[stopped]] = ready[stopped]
                self._stop(idx[stopped])
            cut_now = missed & ~stopped
            if cut_now.any():
                self.now[idx[cut_now]] = t[cut_now]
                self._interrupted(idx[cut_now], steps, j, ready[cut_now], t[cut_now], None)
            go = ~(stopped | cut_now)
            idx, now, ready = idx[go], t[go], ready[go]
            if not idx.size:
                return
        # 3. Do the step.
        begin = now
        moved = begin != ready
        if moved.any():
            self.wait[idx[moved]] += (begin - ready)[moved]
        runs = self.runs[idx, j] + 1
        self.runs[idx, j] = runs
        self.cost[idx] += step.cost
        if self.charges is not None and step.cost:
            self.charges.append((idx.copy(), j, begin.copy()))
        if step.is_apheresis:
            first = np.isnan(rec.apheresis_day[idx])
            rec.apheresis_day[idx[first]] = begin[first]
        elif step.is_manufacture:
            self.mruns[idx] += 1
            first = self.mruns[idx] == 1
            rec.manufacture_start_day[idx[first]] = begin[first]
        if step.fixed_duration is not None:
            duration = np.full(idx.size, float(step.fixed_duration))
        else:
            duration = self._attempt_values(step, "duration", idx, runs)
        end = begin + duration
        cut, deadline, expiry = self.cut[idx], self.deadline[idx], self.expiry[idx]
        broken = (end >= cut) & ((end >= deadline) | (end > expiry))
        t = np.where(broken, np.where(cut > begin, begin + (cut - begin), begin),
                     np.where(end > begin, begin + (end - begin), begin))
        stopped = t >= stop
        if stopped.any():
            self._stop(idx[stopped])
        cut_now = broken & ~stopped
        if cut_now.any():
            self.now[idx[cut_now]] = t[cut_now]
            self._interrupted(idx[cut_now], steps, j, ready[cut_now], t[cut_now], begin[cut_now])
        ok = ~(broken | stopped)
        idx, now, ready, begin, runs = idx[ok], t[ok], ready[ok], begin[ok], runs[ok]
        if not idx.size:
            return
        self.now[idx] = now
        # 4. The step ends: its slot is freed; done, or failed.
        if step.site >= 0:
            holding = self.held[idx, j]
            if holding.any():
                self.held[idx[holding], j] = False
                self.releases.append((step.site, now[holding], self.rep_of[idx[holding]]))
        failed = np.zeros(idx.size, dtype=bool)
        if step.failure_probability > 0.0:
            u = self._attempt_values(step, "failure", idx, runs)
            failed = u < step.failure_probability
        self._trace(idx, step, runs, ready, begin, now, failed)
        if failed.any():
            self._after_failure(idx[failed], steps, step, step.failure_outcome, now[failed])
        ok = ~failed
        idx, now = idx[ok], now[ok]
        if step.is_release:
            rec.release_day[idx] = now
        if j == self._shelf_clock(steps):
            shelf_life = steps[-1].shelf_life
            if shelf_life is not None:
                self.expiry[idx] = now + shelf_life
                self.cut[idx] = np.minimum(self.deadline[idx], self.expiry[idx])
        self.step_at[idx] = j + 1

    # ------------------------------------------------------------------ the journey's pieces

    def _shelf_clock(self, steps: list[Any]) -> int:
        for k, step in enumerate(steps):
            if step.starts_shelf_clock:
                return k
        return -1

    @staticmethod
    def _attempt_values(step: _BatchStep, what: str, idx: np.ndarray, runs: np.ndarray) -> np.ndarray:
        """A step's draw of each patient for the attempt it is on (streams by attempt)."""
        most = int(runs.max())
        if most == 1:
            return step.values(what, 1)[idx]
        out = np.empty(idx.size)
        for a in range(int(runs.min()), most + 1):
            mask = runs == a
            if mask.any():
                out[mask] = step.values(what, a)[idx[mask]]
        return out

    def _start_days(self, idx: np.ndarray, step: Any, now: np.ndarray, toxic: np.ndarray) -> np.ndarray:
        """The first instant the step may start (the journey's weekday rule, vectorised; a
        patient with a bridging toxicity by the journey's own scalar rule)."""
        start = now.copy()
        days = step.start_days
        plain = ~toxic
        if days is not None and plain.any():
            allowed = np.asarray(days, dtype=bool)
            ahead = np.array([next((a for a in range(1, 8) if days[(w + a) % 7]), 0) for w in range(7)],
                             dtype=float)
            t = now[plain]
            day = np.floor(t)
            weekday = (self.start_weekday + day.astype(np.int64)) % 7
            start[plain] = np.where(allowed[weekday], t, np.where(ahead[weekday] > 0, day + ahead[weekday], _INF))
        for k in np.flatnonzero(toxic).tolist():
            i = int(idx[k])
            who = SimpleNamespace(toxic=True, unfit_from=float(self.unfit_from[i]),
                                  unfit_until=float(self.unfit_until[i]))
            start[k] = self.reps[0].start_time(who, step, float(now[k]))  # type: ignore[arg-type]
        return start

    def _bridging(self, idx: np.ndarray, steps: list[Any], j: int) -> None:
        """Patients whose bridging starts at this step, by their replication's own method."""
        pathway = self.pathway_of[idx[0]]
        here = [c for c, (p_id, bridge_at, _) in enumerate(self.plans) if p_id == pathway and bridge_at == j]
        if not here:
            return
        name = self.pathway_list[pathway]
        cohorts = self.cohort_of[idx]
        for c in here:
            _, _, shelf_clock = self.plans[c]
            for i in idx[(cohorts == c) & ~self.bridged[idx]].tolist():
                self.bridged[i] = True
                rep = self.reps[self.rep_of[i]]
                p = Patient(int(self.local[i]), c, rep.cohort_priority[c], rep.pathways[name], j, shelf_clock,
                            float(self.referral[i]), False, float(self.deadline[i]), int(self.clock_outcome[i]))
                p.expiry = float(self.expiry[i])
                p.cost = float(self.cost[i])
                rep.start_bridging(p, float(self.now[i]))
                self.deadline[i], self.clock_outcome[i], self.cut[i] = p.deadline, p.clock_outcome, p.cut
                self.cost[i] = p.cost
                if p.toxic:
                    self.toxic[i] = True
                    self.unfit_from[i], self.unfit_until[i] = p.unfit_from, p.unfit_until

    def _after_failure(self, idx: np.ndarray, steps: list[Any], step: Any, outcome: int,
                       now: np.ndarray) -> None:
        """Back to ``retry_from`` while it has run fewer than ``max_attempts`` times, else leave."""
        r = step.retry_index
        again = np.zeros(idx.size, dtype=bool)
        if r >= 0:
            again = self.runs[idx, r] < step.max_attempts
            back = idx[again]
            if r <= self._shelf_clock(steps):
                self.expiry[back] = _INF
                self.cut[back] = self.deadline[back]
            self.step_at[back] = r
        if (~again).any():
            self._leave(idx[~again], outcome, step.index, steps, now[~again])

    def _interrupted(self, idx: np.ndarray, steps: list[Any], j: int, ready: np.ndarray,
                     now: np.ndarray, begin: np.ndarray | None) -> None:
        """The cut came during a wait (``begin`` None) or the step (the journey's rule)."""
        step = steps[j]
        self.waiting_since[idx] = _NAN
        if begin is None:
            self.wait[idx] += now - ready
            begin, attempt = now, self.runs[idx, j] + 1
        else:
            attempt = self.runs[idx, j]
        clock = self.deadline[idx] <= self.expiry[idx]
        if clock.any():
            self._trace(idx[clock], step, attempt[clock], ready[clock], begin[clock], now[clock],
                        self.clock_outcome[idx[clock]])
            for code in np.unique(self.clock_outcome[idx[clock]]).tolist():
                these = clock & (self.clock_outcome[idx] == code)
                self._leave(idx[these], code, j, steps, now[these])
        expired = ~clock
        if not expired.any():
            return
        idx, now = idx[expired], now[expired]
        self._trace(idx, step, attempt[expired], ready[expired], begin[expired], now,
                    np.full(idx.size, PRODUCT_EXPIRED, dtype=np.int8))
        if step.site >= 0:
            holding = self.held[idx, j]
            if holding.any():
                self.held[idx[holding], j] = False
                self.releases.append((step.site, now[holding], self.rep_of[idx[holding]]))
        infusion = steps[-1]
        if infusion.retry_index > self._shelf_clock(steps):
            self._leave(idx, PRODUCT_EXPIRED, infusion.index, steps, now)
        else:
            self._after_failure(idx, steps, infusion, PRODUCT_EXPIRED, now)

    def _leave(self, idx: np.ndarray, outcome: int, step_index: int, steps: list[Any],
               now: np.ndarray) -> None:
        """Leave the pathway: every slot held is freed; the outcome is recorded."""
        held = self.held[idx]
        if held.any():
            for k in np.flatnonzero(held.any(axis=0)).tolist():
                holding = held[:, k]
                self.releases.append((steps[k].site, now[holding], self.rep_of[idx[holding]]))
            self.held[idx] = False
        self.step_at[idx] = -1
        rec = self.rec
        rec.outcome[idx] = outcome
        rec.outcome_step[idx] = step_index
        rec.outcome_day[idx] = now
        rec.queue_wait[idx] = self.wait[idx]
        rec.cost[idx] = self.cost[idx]
        rec.attempts[idx] = self.mruns[idx]

    def _stop(self, idx: np.ndarray) -> None:
        """The run ends before these patients' next event: they stay where they are."""
        self.step_at[idx] = -2

    def _trace(self, idx: np.ndarray, step: Any, attempt: np.ndarray, ready: np.ndarray,
               begin: np.ndarray, end: np.ndarray, status: np.ndarray) -> None:
        """Trace rows of the traced patients (into their replication's trace); ``status``:
        failed (bool: failed or done) or an outcome code (the clock that rang, or an expiry)."""
        traced = self.traced[idx]
        if not traced.any():
            return
        for k in np.flatnonzero(traced).tolist():
            i = int(idx[k])
            code = status[k]
            text = ("failed" if code else "done") if status.dtype == bool else _STATUS[int(code)]
            self.trace_rows[self.rep_of[i]].append((int(self.local[i]), step.name, step.kind, int(attempt[k]),
                                                    float(ready[k]), float(begin[k]), float(end[k]), text))

    # ------------------------------------------------------------------ the sites

    def _sites(self, stop: float) -> list[tuple[dict[str, float], dict[str, np.ndarray]] | None]:
        """Each replication's sites (see :func:`.occupancy.site_results`), or ``None``."""
        names = list(self.reps[0].scenario.sites)
        slots = [int(site.slots) for site in self.reps[0].scenario.sites.values()]  # type: ignore[arg-type]
        logs = [log is not None for log in self.reps[0].site_log]
        return site_results(names, slots, logs, len(self.reps), self.takes, self.releases, stop)


def run_batch(scenario: Scenario, seed: int, replications: list[int], *, trace: dict[int, int] | None = None,
              record_timeline: bool = True) -> list[ReplicationOutput | None]:
    """Replications of ``scenario`` on the vectorised engine, computed together; ``None`` for
    each whose slots could bind (the SimPy engine must run it). ``trace``: patients traced by
    replication number. The scenario must be in scope (:func:`scope_problems`)."""
    reps = set_up(scenario, seed, list(replications), trace or {}, record_timeline)
    return Batch(reps).run() if reps else []


def run_vectorised(scenario: Scenario, seed: int, replication: int, *, trace_patients: int = 0,
                   record_timeline: bool = True) -> ReplicationOutput | None:
    """One replication on the vectorised engine, or ``None`` when a site's slots could bind."""
    return run_batch(scenario, seed, [replication], trace={replication: trace_patients},
                     record_timeline=record_timeline)[0]
