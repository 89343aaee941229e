"""After the pathway: survival (a mixture cure model, background mortality) and each patient's
costs, life-years and QALYs, discounted, with the payer's costs by calendar year.

All of it is computed from what every engine records alike (the patient table and the log of
charges, :attr:`.collect.Recorder.charges`) and from named streams read by patient index, so it
is the same, to the last bit, whichever engine ran the pathway.

Times are days from the patient's referral; discounting runs from referral too (each referred
patient is evaluated as a cohort model evaluates its patients), except the sites' fixed costs,
which run from day 0 of the scenario. ``annual`` discounting counts ``(1 + r)^-k`` for all of
year ``k`` after referral; ``continuous`` counts ``(1 + r)^-t`` at ``t`` years.
"""

from __future__ import annotations

import datetime as dt
import math
from typing import Any

import numpy as np

from ..scenario import DAYS_PER_YEAR, Scenario
from ..scenario.economics import COST_CATEGORIES, KIND_CATEGORY, LifeTable
from .collect import DIED, INFUSED, UNRESOLVED, Recorder
from .rng import Streams

__all__ = ["background_years", "discount_factor", "discounted_years", "response_probability",
           "step_categories", "calendar_years"]

_CATEGORY = {name: k for k, name in enumerate(COST_CATEGORIES)}
#: What is derived once per scenario or life table, by the object's identity (a run reads the
#: same objects for every replication; a PSA makes a scenario per set, so a few are kept).
_DERIVED: dict[tuple[int, str], tuple[Any, Any]] = {}


def _once(obj: Any, what: str, make: Any) -> Any:
    hit = _DERIVED.get((id(obj), what))
    if hit is None or hit[0] is not obj:
        if len(_DERIVED) > 64:
            _DERIVED.clear()
        hit = _DERIVED[(id(obj), what)] = (obj, make())
    return hit[1]


# --------------------------------------------------------------------------- discounting

def discount_factor(t_years: np.ndarray, rate: float, method: str) -> np.ndarray:
    """Weight of a cost or outcome at ``t_years`` after referral."""
    t = np.asarray(t_years, dtype=float)
    if rate == 0.0:
        return np.ones_like(t)
    base = 1.0 + rate
    return base ** -(np.floor(t) if method == "annual" else t)


def discounted_years(a: np.ndarray, b: np.ndarray, rate: float, method: str) -> np.ndarray:
    """``∫_a^b`` of the discount weight, in years (``a <= b``; ``b`` may be ``inf``)."""
    a = np.asarray(a, dtype=float)
    b = np.asarray(b, dtype=float)
    if rate == 0.0:
        with np.errstate(invalid="ignore"):  # an empty interval at infinity
            return np.where(b > a, b - a, 0.0)
    v = 1.0 / (1.0 + rate)

    def cumulative(t: np.ndarray) -> np.ndarray:
        finite = np.isfinite(t)
        tt = np.where(finite, t, 0.0)
        if method == "annual":
            k = np.floor(tt)
            vk = v ** k
            out = (1.0 - vk) / (1.0 - v) + (tt - k) * vk
            limit = 1.0 / (1.0 - v)
        else:
            out = (1.0 - v ** tt) / -math.log(v)
            limit = 1.0 / -math.log(v)
        return np.where(finite, out, limit)

    return cumulative(b) - cumulative(a)


# --------------------------------------------------------------------------- background mortality

class _Table:
    """One column of a life table as a cumulative hazard over age (constant within a year)."""

    def __init__(self, first_age: int, qx: list[float]) -> None:
        q = np.asarray(qx, dtype=float)
        with np.errstate(divide="ignore"):
            self.h = -np.log1p(-q)  # q = 1: an infinite hazard
        self.first = float(first_age)
        self.cum = np.concatenate(([0.0], np.cumsum(self.h)))  # at ages first, first+1, ...

    def death_age(self, age: np.ndarray, budget: np.ndarray) -> np.ndarray:
        """The age at which the cumulative hazard from ``age`` reaches ``budget``."""
        m = self.h.size
        x = np.maximum(np.asarray(age, dtype=float) - self.first, 0.0)  # below the table: its first age
        k = np.minimum(np.floor(x).astype(np.int64), m - 1)
        hk = self.h[k]
        with np.errstate(invalid="ignore"):
            start = self.cum[k] + np.where(np.isinf(hk) & (x == k), 0.0, hk * (x - k))
        target = start + budget
        j = np.clip(np.searchsorted(self.cum, target, side="right") - 1, 0, m - 1)
        j = np.maximum(j, k)
        hj = self.h[j]
        with np.errstate(divide="ignore", invalid="ignore"):
            into = np.where(np.isinf(hj), 0.0, (target - self.cum[j]) / hj)
        at = np.where(j == k, np.maximum(into, x - k), into)
        # Past the end of a table closed by qx = 1: dead at once.
        return np.where(np.isinf(start), self.first + x, self.first + j + at)


def background_years(table: LifeTable, age: np.ndarray, male: np.ndarray | None,
                     u: np.ndarray) -> np.ndarray:
    """Years from ``age`` to death by background mortality alone, by inversion of the life
    table's survival at the uniforms ``u`` (``S = 1 - u``)."""
    budget = -np.log1p(-np.asarray(u, dtype=float))
    age = np.asarray(age, dtype=float)
    out = np.empty(age.size)
    first = table.ages[0]
    if not table.by_sex:
        out[:] = _once(table, "all", lambda: _Table(first, table.qx["all"])).death_age(age, budget)
    else:
        assert male is not None
        for key, mask in (("male", male == 1.0), ("female", male != 1.0)):
            if mask.any():
                column = _once(table, key, lambda: _Table(first, table.qx[key]))  # type: ignore[index]
                out[mask] = column.death_age(age[mask], budget[mask])
    return out - age


# --------------------------------------------------------------------------- the wait's effect

def _ratio_power(ratio: float, wait_days: np.ndarray, effect: Any) -> np.ndarray:
    return ratio ** ((wait_days - effect.reference_days) / effect.per_days)


def response_probability(p: float, wait_days: np.ndarray, effect: Any) -> np.ndarray:
    """``p`` with its odds multiplied by the odds ratio per ``per_days`` waited."""
    wait_days = np.asarray(wait_days, dtype=float)
    if effect.response_odds_ratio == 1.0 or p in (0.0, 1.0):
        return np.full(wait_days.size, p)
    odds = p / (1.0 - p) * _ratio_power(effect.response_odds_ratio, wait_days, effect)
    return odds / (1.0 + odds)


def survival_after(dist: Any, u: np.ndarray, wait_days: np.ndarray, effect: Any) -> np.ndarray:
    """Days from infusion to death by the disease: ``ppf(u)``, or with the hazard multiplied by
    ``HR`` (the ratio per ``per_days`` waited), the time with ``S(t)^HR = 1 - u``."""
    if effect.survival_hazard_ratio == 1.0:
        return dist.ppf(u)
    hr = _ratio_power(effect.survival_hazard_ratio, np.asarray(wait_days, dtype=float), effect)
    return dist.isf((1.0 - u) ** (1.0 / hr))


# --------------------------------------------------------------------------- costs

def step_categories(scenario: Scenario, pathway_list: list[str]) -> np.ndarray:
    """The cost category of step ``j`` of pathway ``p`` (codes into COST_CATEGORIES)."""
    width = max(len(scenario.pathways[name].steps) for name in pathway_list)
    out = np.zeros((len(pathway_list), width), dtype=np.int64)
    for p, name in enumerate(pathway_list):
        for j, step in enumerate(scenario.pathways[name].steps):
            out[p, j] = _CATEGORY[step.cost_category or KIND_CATEGORY[step.kind]]
    return out


def calendar_years(scenario: Scenario) -> tuple[np.ndarray, np.ndarray]:
    """The calendar years the horizon touches, and the day each begins (day 0 = start_date),
    with the horizon's end appended."""
    start = scenario.start_date
    end = start + dt.timedelta(days=math.ceil(scenario.horizon_days))
    years = np.arange(start.year, end.year + 1)
    edges = [max(0.0, float((dt.date(int(y), 1, 1) - start).days)) for y in years]
    edges.append(float(scenario.horizon_days))
    return years, np.asarray(edges)


def _by_year(edges: np.ndarray, day: np.ndarray, amount: np.ndarray, rep: np.ndarray | None = None,
             n_reps: int = 1) -> np.ndarray:
    """Sum of ``amount`` charged at ``day`` in each calendar year of the horizon, for each
    replication (``rep``: each charge's replication, None: all of the one replication): a
    ``(n_reps, years)`` array. Each sum adds its charges in their order, as one replication's
    sum alone would."""
    n_years = edges.size - 1
    inside = (day >= 0) & (day < edges[-1]) & (amount != 0)
    y = np.searchsorted(edges, day[inside], side="right") - 1
    if rep is not None:
        y = rep[inside] * n_years + y
    return np.bincount(y, weights=amount[inside], minlength=n_reps * n_years).reshape(n_reps, n_years)


def _flow_by_year(edges: np.ndarray, a: np.ndarray, b: np.ndarray, per_year: float,
                  rep: np.ndarray | None = None, n_reps: int = 1) -> np.ndarray:
    """A cost flowing at ``per_year`` over ``[a, b)`` (days), split by calendar year, for each
    replication (``rep``, in order: see :func:`_by_year`)."""
    out = np.zeros((n_reps, edges.size - 1))
    if per_year == 0.0 or not a.size:
        return out
    # Each replication's days are summed as a slice of their own (the same pairwise sum).
    bounds = [0, a.size] if rep is None else np.searchsorted(rep, np.arange(n_reps + 1)).tolist()
    for y in range(out.shape[1]):
        lo, hi = edges[y], edges[y + 1]
        days = np.clip(np.minimum(b, hi) - np.maximum(a, lo), 0.0, None)
        for r in range(n_reps):
            if bounds[r + 1] > bounds[r]:
                out[r, y] = per_year * float(days[bounds[r]:bounds[r + 1]].sum()) / DAYS_PER_YEAR
    return out


# --------------------------------------------------------------------------- one replication

def survival(rec: Recorder, scenario: Scenario, streams: Streams, arrivals: np.ndarray, cohort_of: np.ndarray,
             death_after_referral: Any) -> dict[str, np.ndarray]:
    """Death day and life-years in each cohort's follow-up window (NaN where not modelled),
    and, with economics, what the economic evaluation reads.

    Alive from referral until the untreated death clock (as changed by bridging) unless
    infused; after infusion, the survival draw of a responder or a non-responder (the same
    uniform for both: common random numbers), never for a cured responder. With a life table,
    background mortality also applies from the day the patient leaves the pathway.
    """
    n = rec.n
    nan = math.nan
    eco = scenario.economics
    follow = np.full(n, nan)
    death_day = np.full(n, nan)
    life_years = np.full(n, nan)
    out: dict[str, np.ndarray] = {}
    modelled = [c for c, co in enumerate(scenario.cohorts) if co.after_infusion.has_survival]
    if eco is not None:
        out["cured"] = np.full(n, nan)
    if not (modelled and n):
        out.update(death_day=death_day, life_years=life_years)
        return out
    dead = arrivals + np.asarray(death_after_referral)
    died = rec.outcome == DIED
    dead[died] = rec.outcome_day[died]  # the very instant the patient left
    u = streams("after:survival").extend_to(n)[:n]
    infused = rec.outcome == INFUSED
    curing = any(scenario.cohorts[c].after_infusion.cure_fraction > 0 for c in modelled)
    u_cure = streams("after:cure").extend_to(n)[:n] if curing else None
    for c in modelled:
        after = scenario.cohorts[c].after_infusion
        mask = cohort_of == c
        follow[mask] = eco.follow_up_days if eco is not None else after.follow_up_days
        m = mask & infused
        if m.any():
            resp = rec.responded[m] == 1.0
            wait = rec.infusion_day[m] - arrivals[m]
            effect = after.wait_effect
            days = np.where(resp, survival_after(after.survival_responder, u[m], wait, effect),
                            survival_after(after.survival_non_responder, u[m], wait, effect))
            if u_cure is not None and after.cure_fraction > 0:
                cured = resp & (u_cure[m] < after.cure_fraction)
                days = np.where(cured, math.inf, days)
                if "cured" in out:
                    out["cured"][m] = cured
            elif "cured" in out:
                out["cured"][m] = 0.0
            dead[m] = rec.infusion_day[m] + days
    if eco is not None and eco.life_table is not None:
        age, male = _ages(scenario, streams, cohort_of, n)
        out["age"] = age
        out["male"] = male if male is not None else np.full(n, nan)
        # Patients still in the pathway when the run stops: from the stop.
        left = np.where(np.isnan(rec.outcome_day), scenario.horizon_days + scenario.drain_days, rec.outcome_day)
        alive_at_exit = ~died & np.isfinite(left)
        if alive_at_exit.any():
            k = alive_at_exit
            u_bg = streams("after:background").extend_to(n)[:n]
            at_age = age[k] + (left[k] - arrivals[k]) / DAYS_PER_YEAR
            years = background_years(eco.life_table, at_age, None if male is None else male[k], u_bg[k])
            dead[k] = np.minimum(dead[k], left[k] + years * DAYS_PER_YEAR)
    has = ~np.isnan(follow)
    alive = np.minimum(dead - arrivals, follow)
    life_years[has] = alive[has] / DAYS_PER_YEAR
    within = has & (dead - arrivals <= follow)
    death_day[within] = dead[within]
    out.update(death_day=death_day, life_years=life_years)
    if eco is not None:
        out["_alive_days"] = alive  # for the economics below (not a patient column)
    return out


def _ages(scenario: Scenario, streams: Streams, cohort_of: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray | None]:
    """Each patient's age at referral (years) and sex (1 male, 0 female; None without sexes)."""
    u_age = streams("cohort:age").extend_to(n)[:n]
    age = np.full(n, math.nan)
    by_sex = scenario.economics.life_table.by_sex  # type: ignore[union-attr]
    male = np.full(n, math.nan) if by_sex else None
    u_sex = streams("cohort:sex").extend_to(n)[:n] if by_sex else None
    for c, cohort in enumerate(scenario.cohorts):
        mask = cohort_of == c
        if mask.any():
            age[mask] = cohort.age.ppf(u_age[mask])  # type: ignore[union-attr]
            if male is not None:
                male[mask] = (u_sex[mask] < cohort.male_share).astype(float)  # type: ignore[index,operator]
    return age, male


def economics_columns(rec: Recorder, scenario: Scenario, streams: Streams, arrivals: np.ndarray,
                      cohort_of: np.ndarray, pathway_taken: np.ndarray, pathway_list: list[str],
                      step_cost: np.ndarray, alive_days: np.ndarray, crs: np.ndarray,
                      bridging_days: np.ndarray, bridging_len: np.ndarray,
                      bridged_days: np.ndarray | None = None, rep: np.ndarray | None = None,
                      n_reps: int = 1) -> tuple[dict[str, np.ndarray], np.ndarray, float]:
    """Each patient's costs, life-years and QALYs (discounted and not), the replication's
    costs by calendar year and category, and its fixed costs discounted (see the module).
    ``bridged_days``: the days each patient was on bridging, charged at the course's
    ``cost_per_day`` (:func:`.clocks.end_of_bridging`; None: no such cost).

    Several replications at once: their patients one after another (``rec.charges`` naming
    them by their place in all), ``rep`` each patient's replication (0, 1, ...); the costs by
    year are then a ``(n_reps, categories, years)`` array, each replication's as it alone gives."""
    eco = scenario.economics
    assert eco is not None
    n = rec.n
    disc = eco.discount
    rc, ro, method = disc.costs, disc.outcomes, disc.method
    years, edges = _once(scenario, "years", lambda: calendar_years(scenario))
    budget = np.zeros((n_reps, len(COST_CATEGORIES), years.size))
    util, dis, costs = eco.utilities, eco.disutilities, eco.costs
    y = DAYS_PER_YEAR
    infused = rec.outcome == INFUSED
    unresolved = rec.outcome == UNRESOLVED
    end = alive_days  # days from referral to death or the end of follow-up
    exit_days = np.where(unresolved, np.inf, rec.outcome_day - arrivals)
    pre_end = np.minimum(exit_days, end)
    # Bridging replaces waiting for its course, while in the pathway.
    b_start = bridging_days - arrivals
    has_bridge = ~np.isnan(b_start)
    b_from = np.where(has_bridge, np.minimum(np.maximum(b_start, 0.0), pre_end), 0.0)
    b_to = np.where(has_bridge, np.minimum(b_start + np.nan_to_num(bridging_len, nan=0.0), pre_end), 0.0)
    b_to = np.maximum(b_to, b_from)
    post_from = np.minimum(pre_end, end)
    post_u = np.where(infused, np.where(rec.responded == 1.0, util.responder, util.non_responder), util.progressed)

    def qalys(rate: float) -> np.ndarray:
        total = util.waiting * (discounted_years(0.0, pre_end / y, rate, method)
                                - discounted_years(b_from / y, b_to / y, rate, method))
        total += util.while_bridging * discounted_years(b_from / y, b_to / y, rate, method)
        total += post_u * discounted_years(post_from / y, end / y, rate, method)
        loss = np.where(infused, dis.icu * (rec.icu == 1.0) + dis.crs * (crs == 1.0), 0.0)
        at = np.where(infused, rec.infusion_day - arrivals, 0.0) / y
        return total - loss * discount_factor(at, rate, method)

    columns: dict[str, np.ndarray] = {
        "life_years_discounted": discounted_years(0.0, end / y, ro, method),
        "qalys": qalys(0.0),
        "qalys_discounted": qalys(ro),
    }
    # Pathway charges, in one order whatever the engine (patient, day, step).
    log = np.frombuffer(rec.charges, dtype=float).reshape(-1, 3) if rec.charges else np.zeros((0, 3))
    order = np.lexsort((log[:, 1], log[:, 2], log[:, 0]))
    who, step, day = log[order, 0].astype(np.int64), log[order, 1].astype(np.int64), log[order, 2]
    path = pathway_taken[who].astype(np.int64)
    amount = step_cost[path, step]
    category = _once(scenario, "categories", lambda: step_categories(scenario, pathway_list))[path, step]
    weight = discount_factor((day - arrivals[who]) / y, rc, method)
    pathway_disc = np.bincount(who, weights=amount * weight, minlength=n)
    charge_rep = None if rep is None else rep[who]
    for k in range(len(COST_CATEGORIES)):
        mine = category == k
        if mine.any():
            budget[:, k] += _by_year(edges, day[mine], amount[mine], _part(charge_rep, mine), n_reps)
    # Bridging (charged when it starts), ICU and CRS (on the infusion day), follow-up.
    hosp, bridge_k, follow_k = (_CATEGORY[k] for k in ("hospital", "bridging", "follow_up"))
    bridge_cost = np.zeros(n)
    for c, cohort in enumerate(scenario.cohorts):
        if cohort.bridging is not None and cohort.bridging.cost:
            bridge_cost[(cohort_of == c) & has_bridge] = cohort.bridging.cost
    one_off = np.where(infused, costs.icu * (rec.icu == 1.0) + costs.crs * (crs == 1.0), 0.0)
    inf_at = np.where(infused, rec.infusion_day - arrivals, 0.0)
    rate_after = np.where(infused, costs.follow_up_per_year, costs.progressed_per_year)
    after_years = np.maximum(end - post_from, 0.0) / y
    cost_after = one_off + rate_after * after_years
    disc_after = (one_off * discount_factor(inf_at / y, rc, method)
                  + rate_after * discounted_years(post_from / y, end / y, rc, method))
    disc_bridge = bridge_cost * discount_factor(np.nan_to_num(b_start, nan=0.0) / y, rc, method)
    for c, cohort in enumerate(scenario.cohorts):  # a cost per day on bridging, as it accrues
        per_day = cohort.bridging.cost_per_day if cohort.bridging is not None else 0.0
        m = (cohort_of == c) & has_bridge
        if per_day and bridged_days is not None and m.any():
            a, b = b_start[m], b_start[m] + bridged_days[m]
            disc_bridge[m] += per_day * y * discounted_years(a / y, b / y, rc, method)
            budget[:, bridge_k] += _flow_by_year(edges, arrivals[m] + a, arrivals[m] + b, per_day * y,
                                                 _part(rep, m), n_reps)
    columns["cost_after_pathway"] = cost_after
    columns["cost_discounted"] = pathway_disc + disc_bridge + disc_after
    budget[:, bridge_k] += _by_year(edges, np.nan_to_num(bridging_days, nan=-1.0), bridge_cost, rep, n_reps)
    budget[:, hosp] += _by_year(edges, np.where(infused, rec.infusion_day, -1.0), one_off, rep, n_reps)
    for per_year, mask in ((costs.follow_up_per_year, infused), (costs.progressed_per_year, ~infused & ~unresolved)):
        if per_year and mask.any():
            a = arrivals[mask] + post_from[mask]
            budget[:, follow_k] += _flow_by_year(edges, a, arrivals[mask] + end[mask], per_year,
                                                 _part(rep, mask), n_reps)
    fixed_per_year = sum(s.fixed_cost_per_year for s in scenario.sites.values())
    fixed_disc = 0.0
    if fixed_per_year:
        # Fixed costs accrue evenly over the horizon (per 365 days, as the undiscounted total).
        fixed_disc = fixed_per_year * y / 365.0 * float(discounted_years(0.0, scenario.horizon_days / y, rc, method))
        budget[:, _CATEGORY["fixed"]] += np.diff(edges) * fixed_per_year / 365.0
    return columns, (budget if rep is not None else budget[0]), fixed_disc


def _part(rep: np.ndarray | None, mask: np.ndarray) -> np.ndarray | None:
    return None if rep is None else rep[mask]
