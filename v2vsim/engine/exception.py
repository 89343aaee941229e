"""Out-of-specification products infused under an exception (``out_of_spec_infusion`` on a
release step): the patient columns read after the run, alike for every engine.

The journey marks the release step whose failure was infused anyway
(:meth:`.journey.Journey.exception`, :attr:`.collect.Recorder.out_of_spec_step`); a retry to a
step at or before it clears the mark (the product is made again and released again).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .collect import INFUSED

__all__ = ["exception_problems", "exception_responses", "infused_out_of_specification"]


def exception_problems(scenario: Any) -> list[str]:
    """Release steps whose failures may be infused anyway (``out_of_spec_infusion``): only the
    SimPy engine runs them (the vectorised and compiled engines refuse them)."""
    return [f"step '{step.name}' of pathway '{name}' infuses failed products under an exception "
            "(out_of_spec_infusion)"
            for name, pathway in scenario.pathways.items() for step in pathway.steps
            if step.out_of_spec_infusion is not None and step.out_of_spec_infusion.probability > 0]


def _by_step(rep: Any) -> list[np.ndarray | None]:
    """Each pathway's steps' exception response probabilities (NaN: no exception), or None
    for a pathway without out_of_spec_infusion."""
    out: list[np.ndarray | None] = []
    for name in rep.pathway_list:
        steps = rep.pathways[name]
        has = any(s.exception_probability > 0.0 for s in steps)
        out.append(np.asarray([s.exception_response for s in steps], dtype=float) if has else None)
    return out


def exception_responses(rep: Any, response: np.ndarray) -> np.ndarray | None:
    """``response`` (each patient's response probability) with the response probability of
    ``out_of_spec_infusion`` for each patient infused under an exception, in place; the mask of
    those patients, or None when no pathway has out_of_spec_infusion."""
    tables = _by_step(rep)
    if all(t is None for t in tables):
        return None
    rec = rep.rec
    marked = rec.out_of_spec_step
    out = np.zeros(rep.n, dtype=bool)
    for p, table in enumerate(tables):
        m = (rec.outcome == INFUSED) & (marked >= 0) & (rep.pathway_taken == p)
        if table is not None and m.any():
            response[m] = table[marked[m]]
            out |= m
    return out


def infused_out_of_specification(rep: Any) -> np.ndarray:
    """1 for a patient infused under an exception, 0 for one infused otherwise on a pathway
    with out_of_spec_infusion, NaN for the rest (not infused, or no such pathway)."""
    rec = rep.rec
    out = np.full(rep.n, math.nan)
    for p, table in enumerate(_by_step(rep)):
        m = (rec.outcome == INFUSED) & (rep.pathway_taken == p)
        if table is not None and m.any():
            out[m] = (rec.out_of_spec_step[m] >= 0).astype(float)
    return out
