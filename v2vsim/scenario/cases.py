"""The external-validation case contract: a published trial, the scenario built from its inputs,
and the outcomes it is meant to predict.

A case file (YAML, line numbers kept like a scenario's) names a scenario file built from
published **inputs** only, the trial's size (each replication is a virtual trial of that many
enrolled patients), the **observed** outcomes with their sources, and optionally the inputs
whose sensitivity shows what a miss depends on. An observed outcome may never be the same
published number as an input: every input and outcome names its ``quantity`` (the published
number in words) and a case whose outcome repeats an input's quantity is refused.

:func:`load_case` reads and checks a case file and its scenario and raises
:class:`~.errors.ScenarioError` with every problem as ``FILE:LINE: key.path: message``. Running
the cases is :mod:`v2vsim.experiments.validation`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from .errors import Problem, ScenarioError, did_you_mean, format_path
from .messages import clean_loc
from .overrides import ScenarioSource
from .schema import OUTCOMES, Scenario
from .yaml_io import UnreadableFile, line_of, read_text_file, read_yaml, to_plain

__all__ = [
    "Case",
    "LoadedCase",
    "Observed",
    "Outcome",
    "SensitivityInput",
    "FRACTION_METRICS",
    "TIME_METRICS",
    "VALIDATION_METRICS",
    "case_json_schema",
    "load_case",
    "metric_unit",
]

#: Shares of the enrolled patients (observed as k of n): one per patient outcome, and the
#: complement of infusion.
FRACTION_METRICS: tuple[str, ...] = tuple(f"{o}_fraction" for o in OUTCOMES if o != "unresolved") \
    + ("not_infused_fraction",)
#: Times among the infused patients of a virtual trial (observed as a value in days).
TIME_METRICS: tuple[str, ...] = (
    "vein_to_vein_median",
    "vein_to_vein_mean",
    "referral_to_infusion_median",
    "referral_to_infusion_mean",
)
VALIDATION_METRICS: tuple[str, ...] = FRACTION_METRICS + TIME_METRICS

Metric = Literal[VALIDATION_METRICS]  # type: ignore[valid-type]
Text = Annotated[str, Field(min_length=1, max_length=2000)]
Slug = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")]


def metric_unit(metric: str) -> str:
    """``fraction`` or ``days``."""
    return "fraction" if metric in FRACTION_METRICS else "days"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Trial(_Model):
    size: Annotated[int, Field(ge=1, le=100_000, strict=True)] = Field(
        description="Patients enrolled in the trial: each replication is a virtual trial of this size.")
    accrual_days: Annotated[float, Field(gt=0, le=36500, allow_inf_nan=False)] = Field(
        default=365.0,
        description="Days over which the enrolled patients arrive (evenly spaced); matters only "
                    "when slots are scarce.")


class Observed(_Model):
    k: Annotated[int, Field(ge=0, strict=True)] | None = Field(
        default=None, description="Patients with the outcome (fraction metrics).")
    n: Annotated[int, Field(ge=1, strict=True)] | None = Field(
        default=None, description="Patients it is a share of; must equal trial.size.")
    value: Annotated[float, Field(gt=0, allow_inf_nan=False)] | None = Field(
        default=None, description="The observed time in days (time metrics).")
    low: Annotated[float, Field(ge=0, allow_inf_nan=False)] | None = Field(
        default=None, description="Published lower end (e.g. of a range or IQR), shown, not tested.")
    high: Annotated[float, Field(ge=0, allow_inf_nan=False)] | None = Field(
        default=None, description="Published upper end, shown, not tested.")

    @model_validator(mode="after")
    def _shape(self) -> "Observed":
        counted = self.k is not None or self.n is not None
        if counted and self.value is not None:
            raise ValueError("give either k and n (a share) or value (a time), not both")
        if counted and (self.k is None or self.n is None):
            raise ValueError("give both k and n")
        if not counted and self.value is None:
            raise ValueError("give k and n (a share of the enrolled) or value (a time in days)")
        if self.k is not None and self.n is not None and self.k > self.n:
            raise ValueError(f"k ({self.k}) cannot exceed n ({self.n})")
        if self.low is not None and self.high is not None and self.low > self.high:
            raise ValueError(f"low ({self.low:g}) exceeds high ({self.high:g})")
        return self

    @property
    def point(self) -> float:
        """The observed value: k / n or the time."""
        if self.value is not None:
            return float(self.value)
        assert self.k is not None and self.n is not None
        return self.k / self.n


class Outcome(_Model):
    metric: Metric = Field(description="What the case predicts (see the metric list in the docs).")
    observed: Observed
    quantity: Text = Field(description="The published number in words, e.g. '101 of 111 enrolled infused'.")
    source: Text = Field(description="Where it was published.")
    mechanism: str | None = Field(
        default=None, max_length=4000,
        description="When the prediction misses: the mechanism the inputs lack.")


class Input(_Model):
    path: Text = Field(description="Dotted path of the value in the scenario file.")
    quantity: Text = Field(description="The published number in words.")
    source: Text = Field(description="Where it was published.")


class SensitivityInput(_Model):
    path: Text = Field(description="Dotted path of the scenario value to vary.")
    label: Text = Field(description="What the x axis shows, in words with units.")
    values: list[Any] = Field(min_length=1, max_length=20,
                              description="Values set at `path` (numbers, 'never' or mappings).")
    x: list[Annotated[float, Field(allow_inf_nan=False)]] | None = Field(
        default=None, description="Where each value sits on the x axis (default: the values).")
    baseline_x: Annotated[float, Field(allow_inf_nan=False)] | None = Field(
        default=None, description="Where the scenario's own value sits on the axis, when it is "
                                  "not one of `values` (e.g. no bridging = hazard ratio 1).")
    mechanism: str | None = Field(default=None, max_length=4000,
                                  description="The mechanism this input stands for.")

    @model_validator(mode="after")
    def _x(self) -> "SensitivityInput":
        if self.x is not None and len(self.x) != len(self.values):
            raise ValueError(f"x has {len(self.x)} entries but values has {len(self.values)}")
        if self.x is None and not all(isinstance(v, (int, float)) and not isinstance(v, bool)
                                      for v in self.values):
            raise ValueError("values that are not numbers need x (their positions on the axis)")
        return self

    @property
    def positions(self) -> list[float]:
        return list(self.x) if self.x is not None else [float(v) for v in self.values]


class Case(_Model):
    name: Slug = Field(description="Short name (file names, tables).")
    title: Text = Field(description="The trial in words, e.g. 'ZUMA-1 (axi-cel, r/r LBCL)'.")
    description: str | None = Field(default=None, max_length=10_000)
    scenario: Text = Field(description="Scenario file built from the inputs, relative to the case file.")
    trial: Trial
    replications: Annotated[int, Field(ge=2, le=100_000, strict=True)] = Field(
        default=400, description="Virtual trials simulated.")
    seed: Annotated[int, Field(ge=0, lt=2**63, strict=True)] | None = Field(
        default=None, description="Default: the scenario's seed.")
    inputs: list[Input] = Field(min_length=1, description="The published inputs and their sources.")
    outcomes: list[Outcome] = Field(min_length=1, description="The observed outcomes predicted.")
    sensitivity: list[SensitivityInput] = Field(default_factory=list)


def case_json_schema() -> dict[str, Any]:
    """JSON Schema of a validation case file (``v2vsim schema --case``), with the loader's bounds
    and forms in standard keywords (:mod:`.json_schema`)."""
    from .json_schema import validation_case_json_schema

    return validation_case_json_schema(Case)


@dataclass(frozen=True)
class LoadedCase:
    """A checked case: the case, its scenario file and the scenario it is run as."""

    case: Case
    file: Path
    source: ScenarioSource
    scenario: Scenario

    @property
    def trial_scenario(self) -> dict[str, Any]:
        """Overrides that make each replication a virtual trial of the trial's size."""
        size, accrual = self.case.trial.size, self.case.trial.accrual_days
        schedule = [round(i * accrual / size, 6) for i in range(size)]
        return {"arrivals": {"schedule": schedule}, "horizon_days": accrual}


def _normal(text: str) -> str:
    return re.sub(r"\s+", " ", text.strip().lower())


def _model_in(ann: Any) -> Any:
    """The pydantic model inside an annotation (``list[X]``, ``X | None``), if any."""
    import typing

    if isinstance(ann, type) and issubclass(ann, BaseModel):
        return ann
    for arg in typing.get_args(ann):
        model = _model_in(arg)
        if model is not None:
            return model
    return None


def _known(model: type[BaseModel], path: list[Any]) -> list[str]:
    """Keys allowed at ``path`` in a case (for an unknown key's suggestion)."""
    current: Any = model
    for key in path[:-1]:
        if isinstance(key, int):
            continue
        fields = getattr(current, "model_fields", {})
        if key not in fields:
            return []
        current = _model_in(fields[key].annotation)
    return list(getattr(current, "model_fields", {}) or [])


def _message(err: Mapping[str, Any], path: list[Any]) -> str:
    kind = err["type"]
    msg = str(err["msg"])
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, "):]
    if kind == "extra_forbidden":
        return f"unknown key{did_you_mean(str(path[-1]), _known(Case, path))}"
    if kind == "missing":
        return "required"
    if kind == "literal_error" and path and path[-1] == "metric":
        return (f"unknown metric {err.get('input')!r}{did_you_mean(str(err.get('input')), VALIDATION_METRICS)}")
    return msg


def _read(file: str) -> str:
    try:
        return read_text_file(file, what="a case file")
    except UnreadableFile as exc:
        raise ScenarioError([Problem(file, None, "", str(exc))]) from None


def load_case(path: str | Path) -> LoadedCase:
    """Read and check a validation case and its scenario; ScenarioError lists every problem."""
    file = str(path)
    tree = read_yaml(_read(file), file)
    if tree is None:
        raise ScenarioError([Problem(file, 1, "", "the file is empty")])
    raw = to_plain(tree)
    if not isinstance(raw, Mapping):
        raise ScenarioError([Problem(file, 1, "", "a validation case must be a mapping of keys to values")])

    def problem(where: list[Any], message: str) -> Problem:
        return Problem(file, line_of(tree, where), format_path(where), message)

    if "pathways" in raw and "trial" not in raw:
        raise ScenarioError([Problem(file, 1, "", "this is a scenario file, not a validation case "
                                     "(a case names its scenario under `scenario:`)")])
    try:
        case = Case.model_validate(raw)
    except ValidationError as exc:
        problems = []
        for err in exc.errors(include_url=False):
            where = clean_loc(raw, err["loc"])
            problems.append(problem(where, _message(err, where)))
        problems = list(dict.fromkeys(problems))
        problems.sort(key=lambda p: p.line or 0)
        raise ScenarioError(problems) from None

    problems: list[Problem] = []
    inputs = {_normal(i.quantity): j for j, i in enumerate(case.inputs)}
    for j, outcome in enumerate(case.outcomes):
        if _normal(outcome.quantity) in inputs:
            k = inputs[_normal(outcome.quantity)]
            problems.append(problem(["outcomes", j, "quantity"],
                                    f"is the same published number as inputs[{k}]: an outcome the "
                                    "model is fed cannot validate it"))
        observed = outcome.observed
        unit = metric_unit(outcome.metric)
        if unit == "fraction" and observed.value is not None:
            problems.append(problem(["outcomes", j, "observed"],
                                    f"{outcome.metric} is a share: give k and n, not value"))
        if unit == "days" and observed.value is None:
            problems.append(problem(["outcomes", j, "observed"],
                                    f"{outcome.metric} is a time: give value (days), not k and n"))
        if observed.n is not None and observed.n != case.trial.size:
            problems.append(problem(["outcomes", j, "observed", "n"],
                                    f"n ({observed.n}) must equal trial.size ({case.trial.size}): every "
                                    "share is of the enrolled patients the virtual trial has"))
    seen = set()
    for j, outcome in enumerate(case.outcomes):
        if outcome.metric in seen:
            problems.append(problem(["outcomes", j, "metric"], f"{outcome.metric} is predicted twice"))
        seen.add(outcome.metric)

    scenario_file = (Path(file).parent / case.scenario)
    try:
        source = ScenarioSource(scenario_file)
    except ScenarioError as exc:
        problems.append(problem(["scenario"], f"{case.scenario}: the scenario has problems (below)"))
        problems.extend(exc.problems)
        raise ScenarioError(problems) from None
    except OSError as exc:
        problems.append(problem(["scenario"], f"{case.scenario}: cannot read ({exc.strerror})"))
        raise ScenarioError(problems) from None
    for j, item in enumerate(case.inputs):
        try:
            source.value_at(item.path)
        except ScenarioError as exc:
            why = exc.problems[0].message if exc.problems else "not found"
            problems.append(problem(["inputs", j, "path"], f"{item.path}: {why} in {case.scenario}"))
    for j, sens in enumerate(case.sensitivity):
        for v, value in enumerate(sens.values):
            try:
                source.variant([(sens.path, value)])
            except ScenarioError as exc:
                for p in exc.problems:
                    problems.append(problem(["sensitivity", j, "values", v],
                                            f"{p.file}: {p.path + ': ' if p.path else ''}{p.message}"
                                            .replace("--set ", "")))
    if problems:
        raise ScenarioError(problems)
    try:
        scenario = source.variant(LoadedCase(case, Path(file), source, source.base).trial_scenario)
    except ScenarioError as exc:  # e.g. a scenario that cannot take a schedule of arrivals
        raise ScenarioError([problem(["trial"], f"the scenario cannot run as a trial: {p}")
                             for p in exc.problems]) from None
    return LoadedCase(case, Path(file), source, scenario)
