"""The engines that compute a replication, and the choice between them.

The SimPy engine (:mod:`.replication` and :mod:`.journey`) is the model's reference: it is
the documented model and every other engine must give the same patients the same results,
bit for bit. A faster engine is used only where it is exact:

``"simpy"``
    The reference, for every scenario.
``"vectorised"``
    :mod:`.vectorised`: every patient's journey computed with NumPy, all patients at once,
    for scenarios in which patients cannot compete for anything (no routing rule that reads a
    queue, no site calendar) and with no out-of-specification infusion (``out_of_spec_infusion``). Slots could still bind, so each replication first computes the
    exact occupancy of every site; a replication in which any site could ever be full when a
    patient asks for a slot is run by the SimPy engine instead. Forcing it on a scenario
    outside its scope is refused with the reason.
``"compiled"``
    :mod:`.compiled`: the SimPy engine's events replayed in SimPy's order by one loop over
    arrays, compiled with Numba (the optional extra ``v2vsim[fast]``), for every scenario
    (routing rules, site calendars and bridging therapy included) but one with
    ``out_of_spec_infusion``, which only SimPy runs; it pays where patients queue.
``"auto"`` (the default)
    ``"vectorised"`` where the scenario is in its scope and its slots are ample (a Poisson
    bound on the expected occupancy, :func:`likely_free`: a speed rule, since a
    replication whose slots could bind would be computed twice); else ``"compiled"`` where
    Numba is installed and the run is large enough to repay loading the compiled code
    (:data:`COMPILED_MIN_PATIENTS` referrals over all replications); otherwise ``"simpy"``.

The results never depend on the choice; ``ReplicationOutput.engine`` says which engine ran a
replication.
"""

from __future__ import annotations

from collections.abc import Sequence

import math

from ..scenario import PathwayRule, Scenario
from .collect import ReplicationOutput
from .exception import exception_problems
from .waitlist import waitlist_problems

__all__ = ["ENGINES", "EngineError", "check_engine", "engine_for", "likely_free", "run_replication",
           "run_replications", "scope_problems", "waitlist_problems"]

#: The names accepted by ``simulate(engine=...)`` and ``--engine``.
ENGINES = ("auto", "simpy", "vectorised", "compiled")

#: Referrals over all replications from which ``auto`` takes the compiled engine (loading its
#: compiled code costs about a second per process; compiling it the first time, about half a
#: minute, once per installation).
COMPILED_MIN_PATIENTS = 200_000


class EngineError(ValueError):
    """An unknown engine, or an engine forced on a scenario outside its scope."""


def _known(engine: str) -> str:
    name = str(engine).strip().lower()
    if name not in ENGINES:
        raise EngineError(f"unknown engine {engine!r}: choose one of {', '.join(ENGINES)}")
    return name


def scope_problems(scenario: Scenario) -> list[str]:
    """Why the vectorised engine cannot run ``scenario`` (empty: it can)."""
    problems = exception_problems(scenario)
    for cohort in scenario.cohorts:
        if isinstance(cohort.pathway, PathwayRule):
            problems.append(f"cohort '{cohort.name}' is routed by a rule that reads a queue (pathway.when)")
    for name, site in scenario.sites.items():
        if site.has_calendar:
            problems.append(f"site '{name}' has a calendar (a slot schedule, closures or an "
                            "allocation of starts per month, week or day)")
    return problems + waitlist_problems(scenario)


def likely_free(scenario: Scenario) -> bool:
    """Whether every site's slots are very unlikely to bind (a speed heuristic for ``auto``:
    the result never depends on it, only which engine is tried first).

    The mean number of slots a site's patients hold (Little's law: referrals per day on the
    pathways that book it times the mean days from booking to the end of the site's step, plus
    a day for a weekday start) plus five Poisson standard deviations must stay below its slots.
    """
    per_day = scenario.expected_referrals() / scenario.horizon_days
    shares = scenario.cohort_shares()
    load: dict[str, float] = {}
    for cohort, share in zip(scenario.cohorts, shares):
        if isinstance(cohort.pathway, PathwayRule):
            return False
        pathway = scenario.pathways[cohort.pathway]
        steps = pathway.steps
        names = {s.name: j for j, s in enumerate(steps)}
        for j, step in enumerate(steps):
            if step.site is None:
                continue
            first = names[step.reserve_from] if step.reserve_from else j
            hold = sum(s.duration.mean() + (1.0 if s.starts_on else 0.0) for s in steps[first:j + 1])
            load[step.site] = load.get(step.site, 0.0) + per_day * share * hold
    for name, site in scenario.sites.items():
        mean = load.get(name, 0.0)
        if mean + 5.0 * math.sqrt(mean) + 1.0 > float(site.slots):  # type: ignore[arg-type]
            return False
    return True


def engine_for(scenario: Scenario, engine: str = "auto", replications: int | None = None) -> str:
    """The engine that runs ``scenario``'s replications when ``engine`` is asked for (``auto``
    counts ``replications``, default the scenario's, for the compiled engine's rule); the
    SimPy engine still takes any replication of a vectorised run whose slots could bind.
    Raises :class:`EngineError` for an unknown name or a forced engine that cannot run the
    scenario."""
    from .compiled import compiled_problems, numba_available

    name = _known(engine)
    if name == "simpy":
        return name
    if name == "auto":
        if not scope_problems(scenario) and likely_free(scenario):
            return "vectorised"
        n = scenario.replications if replications is None else replications
        if (n * scenario.expected_referrals() >= COMPILED_MIN_PATIENTS and not compiled_problems(scenario)
                and numba_available()):
            return "compiled"
        return "simpy"
    problems = scope_problems(scenario) if name == "vectorised" else compiled_problems(scenario)
    if name == "compiled" and not numba_available():
        problems = problems + ['Numba is not installed (pip install "v2vsim[fast]")']
    if problems:
        raise EngineError(f"the {name} engine cannot run scenario '{scenario.name}': "
                          + "; ".join(problems) + " (use --engine simpy or auto)")
    return name


def check_engine(engine: str, scenario: Scenario, replications: int | None = None) -> str:
    """``engine`` checked for ``scenario`` and resolved (``auto`` becomes the engine it
    chooses for that many replications, see :func:`engine_for`), as a name to pass on."""
    return engine_for(scenario, engine, replications)


def run_replication(scenario: Scenario, seed: int, replication: int, *, engine: str = "auto",
                    trace_patients: int = 0, record_timeline: bool = True) -> ReplicationOutput:
    """Simulate one replication of ``scenario`` on the chosen engine (see the module text)."""
    return run_replications(scenario, seed, [replication], engine=engine, trace={replication: trace_patients},
                            record_timeline=record_timeline)[0]


#: Patients the vectorised engine computes together at most (replications are batched up to it).
BATCH_PATIENTS = 100_000


def run_replications(scenario: Scenario, seed: int, replications: Sequence[int], *, engine: str = "auto",
                     trace: dict[int, int] | None = None, record_timeline: bool = True) -> list[ReplicationOutput]:
    """Replications of ``scenario`` in order, on the chosen engine. The vectorised engine computes
    several small replications together (up to :data:`BATCH_PATIENTS` referrals); any it hands
    back runs on SimPy. ``trace``: patients traced step by step, by replication number."""
    trace = trace or {}
    reps = list(replications)
    outputs: list[ReplicationOutput | None] = [None] * len(reps)
    chosen = engine_for(scenario, engine, len(reps)) if reps else "simpy"
    if chosen == "compiled":
        from .compiled import run_compiled

        return run_compiled(scenario, seed, reps, trace=trace, record_timeline=record_timeline)
    if chosen == "vectorised":
        from .vectorised import run_batch

        size = max(1, int(BATCH_PATIENTS // max(1.0, scenario.expected_referrals())))
        for a in range(0, len(reps), size):
            outputs[a:a + size] = run_batch(scenario, seed, reps[a:a + size], trace=trace,
                                            record_timeline=record_timeline)
    from .replication import set_up

    missing = [r for r, out in zip(reps, outputs) if out is None]
    by_simpy = {rep.replication: rep.run() for rep in set_up(scenario, seed, missing, trace, record_timeline)}
    return [out if out is not None else by_simpy[r] for r, out in zip(reps, outputs)]
