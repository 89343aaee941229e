"""What the replications of one scenario set up together share, and their draws made together.

:func:`.replication.set_up` makes several replications of one scenario at once. What is the
same in each (the compiled plan, the steps' fixed fields, the cohorts' tables, the sites'
calendar changes) is made once (:class:`Shared`); the draws that pass through a distribution
(the cohorts, the disease clocks, the steps' first durations) are made for every replication
at once, each distribution applied to all their uniforms side by side, element by element, so
the values are those each replication would draw alone (:func:`draw_together`, into each
replication's :class:`Given`). A step's later attempts are drawn on first use
(:class:`Attempts`).
"""

from __future__ import annotations

import gc
import math
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np

from ..scenario import Scenario
from .journey import EngineStep
from .rng import Draws, Streams, UniformStream, Uniforms, floats

__all__ = ["Attempts", "Given", "Shared", "copy_step", "draw_together", "gc_paused", "step_template", "stream_purposes"]


@contextmanager
def gc_paused() -> Iterator[None]:
    """The cyclic garbage collector paused (and resumed, if it ran before). For work that makes
    many objects that live on, or only arrays, and no reference cycles: a collection would
    only walk every object of the process (the imported libraries' hundred thousand among
    them) and free nothing."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


class Attempts:
    """Draws of one step by attempt number: one named stream per attempt, made on first use
    (``what``: "duration", drawn from ``dist``, or "failure" / "exception", plain uniforms)."""

    __slots__ = ("_streams", "_name", "_what", "_dist", "_n", "_by_attempt")

    def __init__(self, streams: Streams, name: str, what: str, dist: Any, n: int, first: Any = None) -> None:
        self._streams = streams
        self._name = name
        self._what = what
        self._dist = dist
        self._n = n
        self._by_attempt: list[Any] = [] if first is None else [first]

    def _draws(self, attempt: int) -> Any:
        stream = self._streams(f"step:{self._name}:{attempt}:{self._what}")
        size = self._n if attempt == 1 else 0
        return Draws(stream, self._dist, size) if self._what == "duration" else Uniforms(stream, size)

    def __call__(self, attempt: int) -> Any:
        while len(self._by_attempt) < attempt:
            self._by_attempt.append(self._draws(len(self._by_attempt) + 1))
        return self._by_attempt[attempt - 1]


def step_template(compiled_step: Any) -> tuple[Any, ...]:
    """An engine step's fields that are the same in every replication (its draws are not), in
    the order of ``EngineStep.__slots__``."""
    template = EngineStep(compiled_step, None, None, None)
    return tuple(getattr(template, name) for name in EngineStep.__slots__)


def _step_copier() -> Any:
    """A function making an engine step from its template's fields: one assignment per slot,
    written out (a loop of setattr costs several times more, once per step and replication)."""
    lines = ["def copy(new, cls, fields):", "    step = new(cls)"]
    lines += [f"    step.{name} = fields[{k}]" for k, name in enumerate(EngineStep.__slots__)]
    lines.append("    return step")
    space: dict[str, Any] = {}
    exec("\n".join(lines), space)  # noqa: S102 - the code is made from the slots' names alone
    return space["copy"]


copy_step = _step_copier()


class Shared:
    """What every replication of one scenario shares, computed once per set-up: the compiled
    plan, the steps' fixed fields, the cohorts' tables and the sites' calendar changes."""

    __slots__ = ("compiled", "steps", "shares", "cohort_priority", "cohort_response", "cohort_icu",
                 "calendars", "step_names", "step_costs")

    def __init__(self, scenario: Scenario, compiled: dict[str, Any]) -> None:
        self.compiled = compiled
        self.steps = {name: [(c, step_template(c)) for c in compiled[name].steps] for name in scenario.pathways}
        self.shares = np.cumsum(scenario.cohort_shares())
        self.cohort_priority = [c.priority for c in scenario.cohorts]
        self.cohort_response = [c.after_infusion.response_probability for c in scenario.cohorts]
        self.cohort_icu = [c.after_infusion.icu_probability for c in scenario.cohorts]
        self.calendars: dict[str, Any] = {}  # site -> calendar_changes(...), on first use
        self.step_names = [[c.name for c, _ in self.steps[name]] for name in scenario.pathways]
        self.step_costs: np.ndarray | None = None  # Replication._step_costs, on first use


class Given:
    """One replication's streams and draws computed beforehand, together with the other
    replications of its set-up (:func:`set_up`): the same values as its own set-up makes."""

    __slots__ = ("streams", "arrivals", "cohort_of", "u_death", "u_inel", "death", "inel", "first")

    def __init__(self, streams: Streams, arrivals: np.ndarray) -> None:
        self.streams = streams
        self.arrivals = arrivals
        self.cohort_of: np.ndarray | None = None
        self.u_death: np.ndarray | None = None
        self.u_inel: np.ndarray | None = None
        self.death: np.ndarray | None = None
        self.inel: np.ndarray | None = None
        self.first: dict[tuple[str, int], Draws] = {}  # (pathway, step) -> first attempt's durations


def stream_purposes(scenario: Scenario) -> list[str]:
    """The streams a replication of ``scenario`` reads (a retry's streams for the second
    attempt; later ones are made when first needed)."""
    purposes = ["arrivals", "cohort", "clock:death", "clock:ineligible", "after:response", "after:icu",
                "after:survival"]
    if scenario.economics is not None:
        purposes += ["after:crs", "after:cure", "after:background", "cohort:age", "cohort:sex"]
    if any(c.bridging is not None for c in scenario.cohorts):
        purposes += ["bridging:duration", "bridging:toxicity", "bridging:toxicity_delay"]
    for pathway in scenario.pathways.values():
        for step in pathway.steps:
            for attempt in (1, 2):
                if step.duration.dist != "fixed":
                    purposes.append(f"step:{step.name}:{attempt}:duration")
                if step.failure_probability > 0:
                    purposes.append(f"step:{step.name}:{attempt}:failure")
                    if step.out_of_spec_infusion is not None and step.out_of_spec_infusion.probability > 0:
                        purposes.append(f"step:{step.name}:{attempt}:exception")
    return list(dict.fromkeys(purposes))


def draw_together(scenario: Scenario, shared: Shared, given: list[Given]) -> None:
    """The draws of several replications' patients that pass through a distribution (the
    cohorts, the disease clocks, the steps' first durations), each distribution applied once to
    every replication's uniforms side by side: element by element, so the same values as one
    replication at a time."""
    sizes = [int(g.arrivals.size) for g in given]
    purposes = ["cohort", "clock:death", "clock:ineligible", "after:response", "after:icu"]
    for steps in shared.steps.values():
        for c, _ in steps:
            if c.fixed_duration is None:
                purposes.append(f"step:{c.name}:1:duration")
            if c.failure_probability > 0.0:
                purposes.append(f"step:{c.name}:1:failure")
    purposes = list(dict.fromkeys(purposes))
    # every one of these streams is read up to n at set-up
    UniformStream.fill_sized([g.streams(p) for g in given for p in purposes], [n for n in sizes for _ in purposes])
    if not scenario.backlog:
        n_cohorts = len(scenario.cohorts)
        u_death = [g.streams("clock:death").extend_to(n)[:n] for g, n in zip(given, sizes)]
        u_inel = [g.streams("clock:ineligible").extend_to(n)[:n] for g, n in zip(given, sizes)]
        u_cohort = np.concatenate([g.streams("cohort").extend_to(n)[:n] for g, n in zip(given, sizes)])
        cohort_of = np.minimum(np.searchsorted(shared.shares, u_cohort, side="right"), n_cohorts - 1)
        all_death, all_inel = np.concatenate(u_death), np.concatenate(u_inel)
        death = np.full(all_death.size, math.inf)
        inel = np.full(all_inel.size, math.inf)
        for c, cohort in enumerate(scenario.cohorts):
            mask = cohort_of == c
            if mask.any():
                death[mask] = cohort.time_to_death.ppf(all_death[mask])
                inel[mask] = cohort.time_to_ineligible.ppf(all_inel[mask])
        at = 0
        for g, n, ud, ui in zip(given, sizes, u_death, u_inel):
            g.cohort_of, g.u_death, g.u_inel = cohort_of[at:at + n], ud, ui
            g.death, g.inel = death[at:at + n], inel[at:at + n]
            at += n
    for name, steps in shared.steps.items():
        for j, (c, _) in enumerate(steps):
            if c.fixed_duration is not None:
                continue
            purpose = f"step:{c.name}:1:duration"
            members = [(g, g.streams(purpose)) for g, n in zip(given, sizes) if n]
            if not members:
                continue
            buffers = [stream.extend_to(g.arrivals.size) for g, stream in members]
            values = c.duration.ppf(np.concatenate(buffers))
            at = 0
            for (g, stream), buffer in zip(members, buffers):
                g.first[name, j] = Draws.given(stream, c.duration, floats(values[at:at + buffer.size]))
                at += buffer.size
