"""What one replication records, and the plain result it hands on (apart from the dynamics).

The journey reports facts as they happen (:class:`Recorder`: the day of the first apheresis,
an outcome, a trace row); at the end :func:`patient_columns` builds the patient table's
columns once, from plain arrays (:mod:`.health` adds survival and the economics).
String columns (cohort, pathway, outcome, outcome step) stay small integer codes into their
labels (:class:`PatientColumns`) until someone reads them as strings.
"""

from __future__ import annotations

import math
from array import array
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..scenario import OUTCOMES, Scenario

__all__ = ["OUTCOME_CODE", "Coded", "PatientColumns", "Recorder", "ReplicationOutput", "daily_site_use",
           "patient_columns"]

#: The model's outcome codes (int8 in the recorder): positions in OUTCOMES.
OUTCOME_CODE = {name: i for i, name in enumerate(OUTCOMES)}
INFUSED, DIED, INELIGIBLE, UNRESOLVED = (OUTCOME_CODE[k] for k in ("infused", "died", "ineligible", "unresolved"))
PRODUCT_EXPIRED = OUTCOME_CODE["product_expired"]


@dataclass(frozen=True)
class Coded:
    """A string column as small integer codes into its labels (``labels[codes]``)."""

    codes: np.ndarray
    labels: tuple[str, ...]

    def decode(self) -> np.ndarray:
        """The strings, an object array."""
        if not self.codes.size:
            return np.array([], dtype=object)
        return np.array(self.labels, dtype=object)[self.codes]


_CODE_KINDS = tuple((kind, int(np.iinfo(kind).max)) for kind in (np.int8, np.int16, np.int32))


def small_codes(codes: np.ndarray, n_labels: int) -> np.ndarray:
    """``codes`` in the smallest integer type that holds ``n_labels`` labels."""
    for kind, most in _CODE_KINDS:
        if n_labels <= most:
            return np.asarray(codes).astype(kind, copy=False)
    return np.asarray(codes, dtype=np.int64)


class PatientColumns(dict):  # type: ignore[type-arg]
    """A replication's patient columns by name, in order (a dict of arrays). A string column
    may be held as :class:`Coded`: reading it gives its strings, :meth:`coded` the codes."""

    def coded(self, name: str) -> np.ndarray | Coded:
        """The column as held: an array, or a :class:`Coded` string column (not decoded)."""
        return dict.__getitem__(self, name)  # type: ignore[no-any-return]

    def __getitem__(self, name: str) -> np.ndarray:
        value = dict.__getitem__(self, name)
        return value.decode() if isinstance(value, Coded) else value

    def __iter__(self) -> Iterator[str]:  # also makes dict(self) and {**self} read __getitem__
        return dict.__iter__(self)

    def get(self, name: str, default: Any = None) -> Any:
        return self[name] if name in self else default

    def values(self) -> Any:
        return [self[name] for name in self]

    def items(self) -> Any:
        return [(name, self[name]) for name in self]

    def copy(self) -> dict[str, np.ndarray]:
        return dict(self.items())


@dataclass
class ReplicationOutput:
    """Raw result of one replication (plain arrays; metrics are computed elsewhere)."""

    replication: int
    columns: PatientColumns  # by name; string columns held as codes (see PatientColumns)
    end_day: float
    site_busy_slot_days: dict[str, float]
    site_slots: dict[str, float]
    site_timeline: dict[str, np.ndarray]  # site -> array of (time, in_use, queue) rows
    events: list[tuple[Any, ...]]
    fixed_cost: float
    events_processed: int
    #: Sites with a slot schedule: the mean capacity of each one-day bin (``site_slots`` holds
    #: the mean over the run, so that utilisation is busy slot-days / capacity slot-days).
    site_daily_slots: dict[str, np.ndarray] = field(default_factory=dict)
    #: Sites with a calendar: the day each use started (a slot was taken).
    site_starts: dict[str, np.ndarray] = field(default_factory=dict)
    #: The engine that computed it (see :mod:`.engines`).
    engine: str = "simpy"
    #: With economics: costs by category (rows, COST_CATEGORIES) and calendar year of the
    #: horizon (columns), and the fixed costs discounted.
    budget: np.ndarray | None = None
    fixed_cost_discounted: float = math.nan


class Recorder:
    """Per-patient facts of one replication, by patient index (NaN: did not happen)."""

    def __init__(self, n: int, trace_patients: int, charges: bool = False) -> None:
        nan = math.nan
        self.n = n
        self.apheresis_day = np.full(n, nan)
        self.manufacture_start_day = np.full(n, nan)
        self.release_day = np.full(n, nan)
        self.listed_day = np.full(n, nan)  # first request for a slot (joined a site's list)
        self.slot_day = np.full(n, nan)  # the slots of that first request all held
        self.infusion_day = np.full(n, nan)
        self.outcome_day = np.full(n, nan)
        self.outcome = np.full(n, UNRESOLVED, dtype=np.int8)
        self.outcome_step = np.full(n, -1, dtype=np.int16)
        self.queue_wait = np.zeros(n)
        self.attempts = np.zeros(n, dtype=np.int16)
        self.cost = np.zeros(n)
        self.responded = np.full(n, nan)
        self.icu = np.full(n, nan)
        self.bridging_day = np.full(n, nan)
        self.bridging_toxicity = np.full(n, nan)
        #: The release step whose failure was infused under an exception (out_of_spec_infusion)
        #: for the product in hand, or -1.
        self.out_of_spec_step = np.full(n, -1, dtype=np.int16)
        self.trace_patients = trace_patients
        #: (patient, step, kind, attempt, ready_day, start_day, end_day, status)
        self.events: list[tuple[Any, ...]] = []
        #: With economics: every step's cost as it is charged, flat (patient, step index, day).
        self.charges: array[float] | None = array("d") if charges else None

    def left(self, i: int, outcome: int, step: int, day: float, wait: float, cost: float,
             runs: int) -> None:
        """Patient i left the pathway (any outcome) at ``day`` from step index ``step``."""
        self.outcome[i] = outcome
        self.outcome_step[i] = step
        self.outcome_day[i] = day
        self.queue_wait[i] = wait
        self.cost[i] = cost
        self.attempts[i] = runs

    def unresolved(self, i: int, wait: float, cost: float, runs: int) -> None:
        """Running totals of patient i (called at the stop for those still in the pathway)."""
        self.queue_wait[i] = wait
        self.cost[i] = cost
        self.attempts[i] = runs


#: The last step-name table (:func:`_step_codes`), by the identity of the names' list: the
#: replications of one set-up share that list.
_STEP_TABLE: list[Any] = [(None, None, None)]


def _step_table(step_names: list[list[str]]) -> tuple[np.ndarray, tuple[str, ...]]:
    names, table, labels_found = _STEP_TABLE[0]
    if names is step_names:
        return table, labels_found
    labels: dict[str, int] = {"": 0}
    table = np.zeros((max(len(step_names), 1), 1 + max((len(s) for s in step_names), default=0)),
                     dtype=np.int64)
    for p, names in enumerate(step_names):
        for s, name in enumerate(names):
            table[p, s + 1] = labels.setdefault(name, len(labels))
    _STEP_TABLE[0] = (step_names, table, tuple(labels))
    return table, tuple(labels)


def _step_codes(pathway_taken: np.ndarray, outcome_step: np.ndarray,
                step_names: list[list[str]]) -> Coded:
    """The name of each patient's outcome step ("" for none) as codes into the distinct names."""
    table, labels = _step_table(step_names)
    codes = table[pathway_taken, outcome_step.astype(np.int64) + 1]
    return Coded(small_codes(codes, len(labels)), labels)


def patient_columns(rec: Recorder, scenario: Scenario, arrivals: np.ndarray, cohort_of: np.ndarray,
                    pathway_taken: np.ndarray, step_names: list[list[str]]) -> PatientColumns:
    """The contract's patient columns (the runner adds ``replication``)."""
    cohorts = tuple(c.name for c in scenario.cohorts)
    pathways = tuple(scenario.pathways)
    return PatientColumns({
        "patient": np.arange(rec.n),
        "cohort": Coded(small_codes(cohort_of, len(cohorts)), cohorts),
        "pathway": Coded(small_codes(pathway_taken, len(pathways)), pathways),
        "referral_day": arrivals,
        "apheresis_day": rec.apheresis_day,
        "manufacture_start_day": rec.manufacture_start_day,
        "release_day": rec.release_day,
        "infusion_day": rec.infusion_day,
        "outcome": Coded(rec.outcome, tuple(OUTCOMES)),
        "outcome_step": _step_codes(pathway_taken, rec.outcome_step, step_names),
        "outcome_day": rec.outcome_day,
        "vein_to_vein_days": rec.infusion_day - rec.apheresis_day,
        "referral_to_infusion_days": rec.infusion_day - arrivals,
        "queue_wait_days": rec.queue_wait,
        "manufacturing_attempts": rec.attempts.astype(np.int64),
        "cost": rec.cost,
        "responded": rec.responded,
        "icu": rec.icu,
        "listed_day": rec.listed_day,
        "slot_day": rec.slot_day,
        "time_to_slot_days": rec.slot_day - rec.listed_day,
    })


def daily_site_use(log: np.ndarray, end_day: float) -> tuple[np.ndarray, np.ndarray]:
    """Mean slots held and mean queue length per one-day bin (days ``0..ceil(end_day)-1``)
    from a change log: rows ``(time, in_use, queue)`` after each change; values hold until
    the next row."""
    n_days = max(1, int(math.ceil(end_day)))
    if log.size == 0:
        return np.zeros(n_days), np.zeros(n_days)
    edges = np.arange(n_days + 1, dtype=float)
    times = log[:, 0]
    k = np.searchsorted(times, edges, side="right") - 1  # last change at or before each edge
    seen = k >= 0
    kk = np.maximum(k, 0)
    out = []
    for col in (1, 2):
        values = log[:, col]
        # Integral of the step function up to each change time, then up to each bin edge.
        at_change = np.concatenate(([0.0], np.cumsum(values[:-1] * np.diff(times))))
        cum = np.where(seen, at_change[kk] + values[kk] * (edges - times[kk]), 0.0)
        out.append(np.diff(cum))
    return out[0], out[1]
