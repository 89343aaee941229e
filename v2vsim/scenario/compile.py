"""A validated scenario compiled for the engines, and the checks that what validates can run.

The engines do not read the pydantic models directly: :func:`compile_scenario` turns every
pathway into a list of :class:`CompiledStep` (indices instead of names, weekday masks, the
slots each step takes before it starts, retry targets, outcomes) once per scenario, and the
same plan answers :func:`precondition_problems`, which refuses a scenario that could not run:

* more than :data:`MAX_REFERRALS_PER_REPLICATION` referrals expected in one replication;
* a step that takes more slots of a site at one moment than the site ever has;
* a step whose allowed start days (its own ``starts_on``, its site's ``starts_on``) have no
  weekday in common, or whose site is closed for the whole run;
* ``shelf_life`` on a pathway with no release or manufacture step to start its clock;
* slots held while waiting for others in a pattern that lets patients wait for each other
  forever (a *hold-and-wait cycle*, see :func:`_deadlock_problems`).

Slot-taking rule (what the engine does, and why it cannot deadlock once these checks pass):
the slots a patient needs at one moment (the step's own slot and those booked from it with
``reserve_from``) are requested site by site in one global order (the order of ``sites`` in
the file), all the slots of one site in a single request (all or none). Requests at one moment
therefore never wait in a circle; the only remaining way to wait forever is to hold a slot
booked earlier while requesting another, which the cycle check refuses.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .distributions import DistributionSpec
from .schema import OUTCOME_BY_KIND, WEEKDAYS, Scenario, Site

__all__ = ["CompiledStep", "CompiledPathway", "MAX_REFERRALS_PER_REPLICATION", "compile_scenario",
           "precondition_problems",
           "SHELF_CLOCK_KINDS"]

#: Kinds of step whose end starts the product's shelf-life clock, in order of preference:
#: the last release step of the pathway, or (without one) its last manufacture step.
SHELF_CLOCK_KINDS = ("release", "manufacture")

#: Kinds of step that need the patient (a bridging toxicity delays their start).
PATIENT_KINDS = frozenset(("screen", "apheresis", "conditioning", "infusion"))


@dataclass
class CompiledStep:
    """One step of a pathway, as the engines read it."""

    index: int
    name: str
    kind: str
    duration: DistributionSpec
    fixed_duration: float | None
    site: int  # index into the scenario's sites (the global slot order), -1 for none
    #: Steps whose slot is taken before this step starts (this one and those booked from
    #: here with reserve_from; any still held are skipped), ordered by site, then step.
    acquire: tuple[int, ...]
    start_days: tuple[bool, ...] | None  # allowed weekdays (Mon..Sun), None: any day
    closed: tuple[tuple[float, ...], tuple[float, ...]] | None  # site closures: starts, ends
    failure_probability: float
    retry_index: int  # -1: a failure ends the pathway
    max_attempts: int  # runs of the retry_from step allowed in all, counting the first
    cost: float  # the step's cost plus its site's cost per use, charged when it begins
    failure_outcome: str
    patient_step: bool  # a bridging toxicity keeps the patient from starting it
    starts_shelf_clock: bool = False  # the product's shelf life runs from this step's end
    shelf_life: float | None = None  # on the infusion step
    #: On a release step with out_of_spec_infusion: the chance a failure is infused anyway,
    #: and the response probability after such an infusion (0 and NaN without the key).
    exception_probability: float = 0.0
    exception_response: float = float("nan")

    @property
    def any_day(self) -> bool:
        """No weekday rule and no closures: the step may start at once."""
        return self.start_days is None and self.closed is None


@dataclass
class CompiledPathway:
    name: str
    steps: list[CompiledStep]
    shelf_clock_index: int = -1  # the step whose end starts the shelf-life clock, or -1
    names: dict[str, int] = field(default_factory=dict)


def weekday_mask(*lists: list[str] | None) -> tuple[bool, ...] | None:
    """Weekdays allowed by every given list (None: no rule)."""
    given = [set(x) for x in lists if x is not None]
    if not given:
        return None
    allowed = set(WEEKDAYS).intersection(*given)
    return tuple(day in allowed for day in WEEKDAYS)


def _closed(site: Site | None, scenario: Scenario) -> tuple[tuple[float, ...], tuple[float, ...]] | None:
    if site is None or not site.closures:
        return None
    intervals = site.closed_days(scenario.start_date)
    return tuple(a for a, _ in intervals), tuple(b for _, b in intervals)


def _compile_pathway(name: str, scenario: Scenario, site_index: dict[str, int]) -> CompiledPathway:
    raw = scenario.pathways[name].steps
    names = {s.name: j for j, s in enumerate(raw)}
    first = [names[s.reserve_from] if s.reserve_from else j for j, s in enumerate(raw)]
    clock = -1
    for kind in SHELF_CLOCK_KINDS:
        found = [j for j, s in enumerate(raw) if s.kind == kind]
        if found:
            clock = found[-1]
            break
    steps = []
    for j, s in enumerate(raw):
        site_cfg = scenario.sites[s.site] if s.site is not None else None
        booked = [k for k, t in enumerate(raw) if t.site is not None and first[k] <= j <= k]
        booked.sort(key=lambda k: (site_index[raw[k].site], k))  # type: ignore[index]
        steps.append(CompiledStep(
            index=j, name=s.name, kind=s.kind, duration=s.duration,
            fixed_duration=s.duration.value if s.duration.dist == "fixed" else None,  # type: ignore[union-attr]
            site=site_index[s.site] if s.site is not None else -1,
            acquire=tuple(booked),
            start_days=weekday_mask(s.starts_on, site_cfg.starts_on if site_cfg else None),
            closed=_closed(site_cfg, scenario),
            failure_probability=s.failure_probability,
            retry_index=names[s.on_failure.retry_from] if s.on_failure else -1,
            max_attempts=s.on_failure.max_attempts if s.on_failure else 1,
            cost=s.cost + (site_cfg.cost_per_use if site_cfg else 0.0),
            failure_outcome=OUTCOME_BY_KIND.get(s.kind, "step_failed"),
            patient_step=s.kind in PATIENT_KINDS,
            starts_shelf_clock=j == clock,
            shelf_life=s.shelf_life,
            exception_probability=s.out_of_spec_infusion.probability if s.out_of_spec_infusion else 0.0,
            exception_response=(s.out_of_spec_infusion.response_probability if s.out_of_spec_infusion
                                else float("nan")),
        ))
    return CompiledPathway(name, steps, clock, names)


def compile_scenario(scenario: Scenario) -> dict[str, CompiledPathway]:
    """Every pathway of ``scenario``, compiled (see :class:`CompiledStep`)."""
    site_index = {name: k for k, name in enumerate(scenario.sites)}
    return {name: _compile_pathway(name, scenario, site_index) for name in scenario.pathways}


# --------------------------------------------------------------------------- preconditions


def _max_slots(site: Site) -> int:
    if isinstance(site.slots, list):
        return max(c.slots for c in site.slots)
    return site.slots


def _step_path(pathway: str, j: int, key: str | None = None) -> list[Any]:
    return ["pathways", pathway, "steps", j] + ([key] if key else [])


def _capacity_problems(scenario: Scenario, plans: dict[str, CompiledPathway]) -> list[tuple[list[Any], str]]:
    """A step that takes more slots of one site at once than the site ever has."""
    out = []
    site_names = list(scenario.sites)
    for pname, plan in plans.items():
        seen: set[tuple[int, ...]] = set()
        for step in plan.steps:
            by_site: dict[int, list[int]] = {}
            for k in step.acquire:  # all of them may be free at once (after a retry)
                by_site.setdefault(plan.steps[k].site, []).append(k)
            for site, targets in by_site.items():
                if any(set(targets) <= set(s) for s in seen):
                    continue  # reported at an earlier step
                seen.add(tuple(targets))
                have = _max_slots(scenario.sites[site_names[site]])
                if len(targets) > have:
                    listed = ", ".join(f"'{plan.steps[k].name}'" for k in targets)
                    key = "reserve_from" if any(_first(plan, k) != k for k in targets) else "site"
                    out.append((_step_path(pname, targets[-1], key),
                                f"needs {len(targets)} slots of site '{site_names[site]}' at once "
                                f"(for steps {listed}, from step '{step.name}') but the site has "
                                f"at most {have}: no patient could ever start"))
    return out


def _first(plan: CompiledPathway, k: int) -> int:
    """The step at which step k's slot is requested (its reserve_from, or itself)."""
    return min(j for j, s in enumerate(plan.steps) if k in s.acquire)


def _start_day_problems(scenario: Scenario, plans: dict[str, CompiledPathway]) -> list[tuple[list[Any], str]]:
    """Steps with no allowed start day, or on a site closed for the whole run."""
    out = []
    stop = scenario.horizon_days + scenario.drain_days
    for pname, plan in plans.items():
        raw = scenario.pathways[pname].steps
        for step, s in zip(plan.steps, raw):
            if step.start_days is not None and not any(step.start_days):
                site_days = scenario.sites[s.site].starts_on if s.site is not None else None
                if not s.starts_on and s.starts_on is not None:
                    why = "starts_on is empty"
                elif site_days is not None and s.starts_on is not None:
                    why = (f"its starts_on ({', '.join(s.starts_on)}) and site '{s.site}' "
                           f"starts_on ({', '.join(site_days)}) have no day in common")
                else:
                    why = "its site's starts_on is empty"
                key = "starts_on" if s.starts_on is not None else "site"
                out.append((_step_path(pname, step.index, key),
                            f"step '{s.name}' can never start: {why}"))
            if step.closed is not None:
                whole = any(a <= 0 and b >= stop for a, b in zip(*step.closed))
                if whole:
                    out.append((["sites", s.site, "closures"],
                                f"site '{s.site}' is closed for the whole run (day 0 to {stop:g}), so "
                                f"step '{s.name}' of pathway '{pname}' can never start"))
    return out


def _shelf_life_problems(scenario: Scenario, plans: dict[str, CompiledPathway]) -> list[tuple[list[Any], str]]:
    out = []
    for pname, plan in plans.items():
        for step in plan.steps:
            if step.shelf_life is not None and plan.shelf_clock_index < 0:
                out.append((_step_path(pname, step.index, "shelf_life"),
                            "shelf_life runs from the end of the last release step (or, without "
                            "one, the last manufacture step), and this pathway has neither"))
    return out


def _held_at(plan: CompiledPathway, j: int) -> set[int]:
    """Steps whose slot a patient may hold when it requests slots at step ``j``.

    A slot booked for step k is held from its request (at ``first(k)`` or later, after a retry)
    until k ends. Walking forward it is held at steps after ``first(k)`` up to k; a retry from a
    step f in ``[first(k), k)`` back to r keeps it held at steps ``r..f`` as well.
    """
    held = set()
    for k, step in enumerate(plan.steps):
        if step.site < 0 or j > k:
            continue
        f0 = _first(plan, k)
        if f0 < j:
            held.add(k)
            continue
        for f, failing in enumerate(plan.steps):
            r = failing.retry_index
            if r >= 0 and f0 <= f < k and r <= j <= f:
                held.add(k)
    return held


def _deadlock_problems(scenario: Scenario, plans: dict[str, CompiledPathway]) -> list[tuple[list[Any], str]]:
    """Refuse hold-and-wait cycles between sites.

    Edge X -> Y: some patient may hold a slot of X while it waits for a slot of Y (a slot booked
    earlier and still held, or a site earlier in the global order requested at the same
    moment). A cycle (including X -> X: holding one slot of a site while waiting for another of
    the same site) lets patients wait for each other forever: every slot of the cycle held by
    someone waiting for the next.
    """
    site_names = list(scenario.sites)
    edges: dict[tuple[int, int], tuple[str, int, int, int]] = {}  # (X, Y) -> (pathway, step, held, wanted)
    for pname, plan in plans.items():
        for step in plan.steps:
            if not step.acquire:
                continue
            held = _held_at(plan, step.index)
            wanted = [k for k in step.acquire if k not in held]
            for t in wanted:
                y = plan.steps[t].site
                for k in held:
                    edges.setdefault((plan.steps[k].site, y), (pname, step.index, k, t))
                for t2 in wanted:
                    x = plan.steps[t2].site
                    if x < y:  # earlier in the global order, taken first and held meanwhile
                        edges.setdefault((x, y), (pname, step.index, t2, t))
    graph: dict[int, list[int]] = {}
    for x, y in edges:
        graph.setdefault(x, []).append(y)
    cycle = _find_cycle(graph)
    if cycle is None:
        return []
    lines = []
    for x, y in zip(cycle, cycle[1:] + cycle[:1]):
        pname, j, k, t = edges[(x, y)]
        steps = plans[pname].steps
        lines.append(f"in pathway '{pname}' a patient at step '{steps[j].name}' may hold a slot of "
                     f"'{site_names[x]}' (for step '{steps[k].name}') while waiting for a slot of "
                     f"'{site_names[y]}' (for step '{steps[t].name}')")
    pname, j, k, t = edges[(cycle[0], cycle[1 % len(cycle)])]
    path = _step_path(pname, t, "reserve_from" if _first(plans[pname], t) != t else "site")
    return [(path, "patients could wait for each other's slots forever: " + "; ".join(lines)
             + ". Book these slots from the same step (reserve_from) so that they are taken "
               "together, or do not hold one while waiting for the other")]


def _find_cycle(graph: dict[int, list[int]]) -> list[int] | None:
    """A cycle of a directed graph as a list of nodes, or None (iterative depth-first search)."""
    colour: dict[int, int] = {}  # 1: on the stack, 2: done
    for root in sorted(graph):
        if colour.get(root):
            continue
        stack = [(root, iter(sorted(graph.get(root, ()))))]
        path = [root]
        colour[root] = 1
        while stack:
            node, children = stack[-1]
            child = next(children, None)
            if child is None:
                stack.pop()
                path.pop()
                colour[node] = 2
            elif colour.get(child) == 1:
                return path[path.index(child):]
            elif not colour.get(child):
                colour[child] = 1
                path.append(child)
                stack.append((child, iter(sorted(graph.get(child, ())))))
    return None


#: Most referrals expected in one replication: a replication holds every patient's record in
#: memory (about a kilobyte each), so 1e8 of them is already 100 GB.
MAX_REFERRALS_PER_REPLICATION = 100_000_000


def _size_problems(scenario: Scenario) -> list[tuple[list[Any], str]]:
    expected = scenario.expected_referrals()
    if expected <= MAX_REFERRALS_PER_REPLICATION:
        return []
    how = ("rate_per_year x horizon_days / 365" if scenario.arrivals.rate_per_year is not None
           else "horizon_days / the interarrival mean")
    return [(["arrivals"], f"about {expected:.3g} referrals per replication ({how}), more than "
                           f"{MAX_REFERRALS_PER_REPLICATION:,}: a replication keeps every patient "
                           "in memory (about 1 kB each); lower the rate or the horizon")]


def precondition_problems(scenario: Scenario) -> list[tuple[list[Any], str]]:
    """``(key path, message)`` for every reason the engine could not run ``scenario``."""
    plans = compile_scenario(scenario)
    return (_size_problems(scenario) + _capacity_problems(scenario, plans) + _start_day_problems(scenario, plans)
            + _shelf_life_problems(scenario, plans) + _deadlock_problems(scenario, plans))

